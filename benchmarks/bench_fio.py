"""Does the C probe agree with fio? Same file, op, size and I/O size; prints probe/fio per case.

    python benchmarks/bench_fio.py [--dir /var/tmp] [--rounds 9] [--seconds 0.4] [--nice -20]

fio is run so that it does what the probe does (checked with strace: the same calls in the
same order): the psync engine (one pwrite/pread per chunk), sequential from offset 0 over
a file of exactly --size bytes, one fsync per pass for write_sync (fsync=chunks per pass),
the page cache left alone (invalidate=0, no fadvise), buffers not rescrambled per I/O and
page-aligned like the probe's (fio's default malloc'd buffer is not, and copying 1 MiB
into a misaligned buffer is up to 3x slower here). The figure taken from fio is its
runtime divided by the passes it made, with gtod_reduce (fewest clock calls).

Small files run time-based: with a fixed amount of I/O (io_size > size) fio closes and
reopens the file at every wrap, i.e. once per 4 KiB pass, which the probe never does;
time-based runs wrap without reopening. Large files use the fixed amount (a reopen per
64 MiB pass is negligible) so every pass ends with its fsync.

What cannot be made equal: fio's own per-I/O bookkeeping (io_u handling, accounting,
runtime checks), which the probe does not have. It is measured with fio's null engine
(same job, no system call) and reported; `p/(fio-null)` takes it out.

The machine is shared: other jobs move single runs by 2-4x, mostly by taking the CPU
away (a tool gets 40% of a core at times). So rounds alternate which tool goes first,
wall ratios are given as the median of the per-round ratios (a round's runs are adjacent
in time and see similar load) and as the ratio of the minima, and CPU time is compared
too (the probe's cpu_seconds, fio's usr_cpu+sys_cpu): for cached I/O, which is all CPU,
it is what the wall time would be on an idle machine. fio's runtime and CPU time are
whole milliseconds, hence runs of ~0.4 s.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeio.units import KIB, MIB, format_size  # noqa: E402
from measure.probe_build import parse_probe_output, probe_binary  # noqa: E402

CASES = [  # op, size, io_size
    ("write_sync", 4 * KIB, 4 * KIB),
    ("write", 4 * KIB, 4 * KIB),
    ("read", 4 * KIB, 4 * KIB),
    ("write_sync", 64 * MIB, MIB),
    ("write", 64 * MIB, MIB),
    ("read", 64 * MIB, MIB),
]
TIME_BASED_BELOW = MIB  # files smaller than this run time-based in fio (see above)


def run_probe(probe, path, op, size, io_size, reps) -> tuple[float, float]:
    """Mean wall and CPU seconds per repetition."""
    proc = subprocess.run([str(probe), "--path", str(path), "--size", str(size), "--reps", str(reps),
                           "--op", op, "--io-size", str(io_size)], capture_output=True, text=True)
    rec = parse_probe_output(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"probe failed: {rec['error']}")
    return rec["total_seconds"] / rec["reps"], rec["cpu_seconds"] / rec["reps"]


def fio_args(path, op, size, io_size, reps, seconds, engine="psync") -> list[str]:
    chunks = math.ceil(size / io_size)
    args = ["fio", "--name=edgeio", f"--filename={path}", f"--size={size}", f"--bs={io_size}",
            f"--ioengine={engine}", "--iodepth=1", "--invalidate=0", "--fadvise_hint=0",
            "--scramble_buffers=0", "--mem_align=4096", "--end_fsync=0", "--fsync_on_close=0",
            "--gtod_reduce=1", "--output-format=json", "--rw=" + ("read" if op == "read" else "write")]
    if op == "write_sync":
        args.append(f"--fsync={chunks}")            # one fsync per pass, as the probe
    if size < TIME_BASED_BELOW or engine == "null":
        args += ["--time_based=1", f"--runtime={max(1, round(seconds * 1000))}ms"]
    else:
        args.append(f"--io_size={reps * size}")     # `reps` passes over the same region
    return args


def run_fio(path, op, size, io_size, reps, seconds, engine="psync") -> tuple[float, float]:
    """Mean wall and CPU seconds per pass over the file, from fio's runtime and CPU usage."""
    proc = subprocess.run(fio_args(path, op, size, io_size, reps, seconds, engine),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fio failed: {proc.stderr.strip()[-300:]}")
    job = json.loads(proc.stdout[proc.stdout.index("{"):])["jobs"][0]
    ddir = job["read" if op == "read" else "write"]
    passes = ddir["total_ios"] / math.ceil(size / io_size)
    # usr_cpu/sys_cpu are percentages of job_runtime (ms): this gives back the job's CPU time.
    cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1000
    return ddir["runtime"] / 1000 / passes, cpu / passes


def measure_case(probe, path, op, size, io_size, rounds, seconds):
    """Per tool, a list of (wall, cpu) seconds per pass, one per round."""
    run_probe(probe, path, op, size, io_size, 2)                  # create / fill / warm the file
    guess = statistics.median(run_probe(probe, path, op, size, io_size, 2 if size >= MIB else 100)[0]
                              for _ in range(3))
    reps = max(3, round(seconds / guess))
    runs = {"probe": [], "fio": [], "null": []}
    for i in range(rounds):
        steps = [lambda: runs["probe"].append(run_probe(probe, path, op, size, io_size, reps)),
                 lambda: runs["fio"].append(run_fio(path, op, size, io_size, reps, seconds)),
                 lambda: runs["null"].append(run_fio(path, op, size, io_size, reps, seconds, "null"))]
        for step in (steps if i % 2 == 0 else steps[::-1]):
            step()
    return reps, runs


def human(seconds: float) -> str:
    for unit, factor in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3f} {unit}"
    return f"{seconds * 1e9:.0f} ns"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/var/tmp", help="directory for the test file (not a tmpfs)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.4, help="target duration of each run")
    parser.add_argument("--nice", type=int, default=-20,
                        help="CPU priority change for both tools (negative: less disturbed by other jobs)")
    args = parser.parse_args(argv)
    if args.nice:
        try:
            os.nice(args.nice)  # inherited by both tools, so neither is favoured
        except PermissionError:
            print("(not root: running at normal priority)")
    probe = probe_binary()
    path = Path(args.dir) / "edgeio-bench-fio.dat"
    fio_version = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"probe {probe.name}, {fio_version}, file {path}, {args.rounds} rounds of ~{args.seconds} s per tool")
    print("wall/op: minimum over rounds; wall and cpu p/fio: median of the per-round ratios"
          " (wall min: ratio of the minima); fio null: fio's own CPU cost per pass (null engine);"
          " cpu p/(fio-null): ratio of the median CPU times with fio's own cost taken out")
    header = f"{'case':<24}{'reps':>7}{'probe wall':>12}{'fio wall':>12}{'wall med':>10}{'wall min':>10}" \
             f"{'cpu med':>9}{'fio null':>11}{'cpu p/(fio-null)':>18}"
    print(header)
    print("-" * len(header))
    try:
        for op, size, io_size in CASES:
            reps, runs = measure_case(probe, path, op, size, io_size, args.rounds, args.seconds)
            (pw, pc), (fw, fc), (_, nc) = (zip(*runs[k]) for k in ("probe", "fio", "null"))
            wall_med = statistics.median(p / f for p, f in zip(pw, fw))
            cpu_med = statistics.median(p / f for p, f in zip(pc, fc))
            cpu_net = statistics.median(pc) / (statistics.median(fc) - statistics.median(nc))
            name = f"{op} {format_size(size)}/{format_size(io_size)}"
            print(f"{name:<24}{reps:>7}{human(min(pw)):>12}{human(min(fw)):>12}{wall_med:>10.2f}"
                  f"{min(pw) / min(fw):>10.2f}{cpu_med:>9.2f}{human(statistics.median(nc)):>11}"
                  f"{cpu_net:>18.2f}", flush=True)
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
