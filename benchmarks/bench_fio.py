"""Does the C probe agree with fio? Same file, op, size and I/O size; prints probe/fio per case.

    python benchmarks/bench_fio.py [--dir /var/tmp] [--rounds 3] [--seconds 0.5]

fio is run so that it does what the probe does: the psync engine (one pwrite/pread per
chunk), sequential from offset 0 over a file of exactly --size bytes, one fsync (or
fdatasync) per pass for write_sync, the page cache left alone (invalidate=0, no fadvise),
buffers not rescrambled per I/O and page-aligned like the probe's (fio's default malloc'd
buffer is not, and copying 1 MiB into a misaligned buffer is up to 3x slower here). Two fio figures are printed per case:

- wall: fio's runtime divided by the passes it made (its whole loop, like the probe's
  clock around its repetitions, but including fio's own per-I/O bookkeeping);
- lat: fio's mean completion latency per call x calls per pass (+ mean fsync latency):
  the time spent in the system calls only, without fio's bookkeeping.

Small files run time-based: with a fixed amount of I/O (io_size > size) fio closes and
reopens the file at every wrap, i.e. once per 4 KiB pass, which the probe never does;
time-based runs wrap without reopening. Large files use the fixed amount (a reopen per
64 MiB pass is negligible) so every pass ends with its fsync. Rounds alternate which
tool goes first. The machine is shared (load from other jobs moves single runs by 2-4x),
so each ratio is given twice: the median of the per-round ratios (the runs of one round
are adjacent in time and see similar load) and the ratio of the minima over the rounds
(the runs least disturbed by others, the fairest view of each tool's own cost).
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

from edgeio.units import format_size  # noqa: E402
from measure.probe_build import parse_probe_output, probe_binary  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
CASES = [  # op, size, io_size
    ("write_sync", 4 * KIB, 4 * KIB),
    ("write", 4 * KIB, 4 * KIB),
    ("read", 4 * KIB, 4 * KIB),
    ("write_sync", 64 * MIB, MIB),
    ("write", 64 * MIB, MIB),
    ("read", 64 * MIB, MIB),
]
TIME_BASED_BELOW = MIB  # files smaller than this run time-based in fio (see above)


def run_probe(probe, path, op, size, io_size, reps) -> float:
    """Mean seconds per repetition."""
    proc = subprocess.run([str(probe), "--path", str(path), "--size", str(size), "--reps", str(reps),
                           "--op", op, "--io-size", str(io_size)], capture_output=True, text=True)
    rec = parse_probe_output(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"probe failed: {rec['error']}")
    return rec["total_seconds"] / rec["reps"]


def fio_args(path, op, size, io_size, reps, seconds, lean) -> list[str]:
    chunks = math.ceil(size / io_size)
    args = ["fio", "--name=edgeio", f"--filename={path}", f"--size={size}", f"--bs={io_size}",
            "--ioengine=psync", "--iodepth=1", "--invalidate=0", "--fadvise_hint=0",
            "--scramble_buffers=0", "--mem_align=4096", "--end_fsync=0", "--fsync_on_close=0", "--output-format=json",
            "--rw=" + ("read" if op == "read" else "write")]
    if op == "write_sync":
        args.append(f"--fsync={chunks}")            # one fsync per pass, as the probe
    if size < TIME_BASED_BELOW:
        args += ["--time_based=1", f"--runtime={max(1, round(seconds * 1000))}ms"]
    else:
        args.append(f"--io_size={reps * size}")     # `reps` passes over the same region
    if lean:
        args.append("--gtod_reduce=1")              # fewest clock calls: the wall figure
    else:
        args += ["--disable_slat=1", "--disable_bw_measurement=1"]
    return args


def run_fio(path, op, size, io_size, reps, seconds, lean) -> float:
    """Mean seconds per pass: from the wall time (lean) or from the call latencies."""
    proc = subprocess.run(fio_args(path, op, size, io_size, reps, seconds, lean),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fio failed: {proc.stderr.strip()[-300:]}")
    job = json.loads(proc.stdout[proc.stdout.index("{"):])["jobs"][0]
    ddir = job["read" if op == "read" else "write"]
    chunks = math.ceil(size / io_size)
    if lean:
        return ddir["runtime"] / 1000 / (ddir["total_ios"] / chunks)
    per_pass = ddir["clat_ns"]["mean"] * 1e-9 * chunks
    if op == "write_sync":
        per_pass += job["sync"]["lat_ns"]["mean"] * 1e-9
    return per_pass


def measure_case(probe, path, op, size, io_size, rounds, seconds):
    run_probe(probe, path, op, size, io_size, 2)                  # create / fill / warm the file
    guess = run_probe(probe, path, op, size, io_size, 3 if size >= MIB else 200)
    reps = max(3, round(seconds / guess))
    probe_t, wall_t, lat_t = [], [], []
    for i in range(rounds):
        steps = [lambda: probe_t.append(run_probe(probe, path, op, size, io_size, reps)),
                 lambda: wall_t.append(run_fio(path, op, size, io_size, reps, seconds, True)),
                 lambda: lat_t.append(run_fio(path, op, size, io_size, reps, seconds, False))]
        for step in (steps if i % 2 == 0 else steps[::-1]):
            step()
    return reps, probe_t, wall_t, lat_t


def human(seconds: float) -> str:
    for unit, factor in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3f} {unit}"
    return f"{seconds * 1e9:.0f} ns"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/var/tmp", help="directory for the test file (not a tmpfs)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.2, help="target duration of each run")
    parser.add_argument("--nice", type=int, default=-5,
                        help="CPU priority change for both tools (negative: less disturbed by other jobs)")
    args = parser.parse_args(argv)
    if args.nice:
        try:
            os.nice(args.nice)  # inherited by both tools, so neither is favoured
        except PermissionError:
            print("(not root: running at normal priority)")
    probe = probe_binary()
    path = Path(args.dir) / "edgeio-bench-fio.dat"
    header = f"{'case':<24}{'reps':>7}{'probe/op':>12}{'fio wall/op':>13}{'fio lat/op':>12}" \
             f"{'probe/wall':>12}{'probe/lat':>11}{'min p/wall':>12}{'min p/lat':>11}"
    print(f"probe {probe.name}, fio {subprocess.run(['fio', '--version'], capture_output=True, text=True).stdout.strip()}, "
          f"file {path}, {args.rounds} rounds; times are medians; ratios: median of per-round ratios, then ratio of minima")
    print(header)
    print("-" * len(header))
    try:
        for op, size, io_size in CASES:
            reps, ps, ws, lats = measure_case(probe, path, op, size, io_size, args.rounds, args.seconds)
            p, w, lat = (statistics.median(x) for x in (ps, ws, lats))
            pw = statistics.median(a / b for a, b in zip(ps, ws))
            pl = statistics.median(a / b for a, b in zip(ps, lats))
            name = f"{op} {format_size(size)}/{format_size(io_size)}"
            print(f"{name:<24}{reps:>7}{human(p):>12}{human(w):>13}{human(lat):>12}{pw:>12.2f}"
                  f"{pl:>11.2f}{min(ps) / min(ws):>12.2f}{min(ps) / min(lats):>11.2f}", flush=True)
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
