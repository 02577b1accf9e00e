"""hvt performance figures, printed (not a timed test).

1. Per-hypercall cost: a 512 B block write and read against a bare exit round trip
   (WALLTIME), all timed by the same guest (unikernel/tests/callcost.c), beside the
   host's own pwrite/pread of 512 B (unikernel/tests/pio_cost.c). The tender's own
   overhead = block call - bare exit - host syscall, as a share of the bare exit
   (target: <= 20 %), with the tender's syscall filter on (as shipped); then the
   filter's own cost: the same calls with --no-seccomp.
2. read, write (flush=none, as stock) and write_sync (flush=each-write, as the study's
   tender) for k = 1, 8, 64, 2048 blocks per call, beside the linux environment on the
   same filesystem; ratio to native.

    python benchmarks/bench_hvt.py [--size 4MiB] [--reps 3] [--calls 5000] [--rounds 5]

This machine's KVM may be software (guest kernel mode emulated): the figures say which.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeio.paths import cache_dir                          # noqa: E402
from edgeio.units import parse_size                         # noqa: E402
from measure.environments.hvt import HvtEnvironment         # noqa: E402
from measure.hvt_build import UNIKERNEL_DIR, build          # noqa: E402
from measure.targets import LocalTarget, machine_facts      # noqa: E402

KS = (1, 8, 64, 2048)


def _json_line(text: str, key: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{") and key in line:
            return json.loads(line)[key]
    raise SystemExit(f"no {key} output in: {text[-300:]}")


def _pio_cost_binary() -> Path:
    out = cache_dir("hvt", "bench") / "pio_cost"
    src = UNIKERNEL_DIR / "tests" / "pio_cost.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-o", str(out), str(src)], check=True)
    return out


def _seccomp_check_binary() -> Path:
    out = cache_dir("hvt", "bench") / "seccomp_check"
    srcs = [UNIKERNEL_DIR / "tests" / "seccomp_check.c", UNIKERNEL_DIR / "tender" / "seccomp.c",
            UNIKERNEL_DIR / "tender" / "errors.c"]
    if not out.exists() or out.stat().st_mtime < max(p.stat().st_mtime for p in srcs):
        subprocess.run(["cc", "-O2", "-std=gnu11", "-D_GNU_SOURCE", f"-I{UNIKERNEL_DIR / 'include'}", "-o", str(out),
                        *map(str, srcs)], check=True)
    return out


def filter_cost(directory: str, runs: int = 5) -> dict:
    """Host syscalls without and with the tender's filter (fastest of runs), ns per call."""
    with tempfile.TemporaryDirectory(dir=directory) as d:
        disk = Path(d) / "disk.img"
        disk.write_bytes(b"\0" * 4096)
        samples = [_json_line(subprocess.run([str(_seccomp_check_binary()), str(disk), "cost"], capture_output=True,
                                             text=True, check=True).stdout, "seccomp_cost") for _ in range(runs)]
    return {k: min(s[k] for s in samples) for k in samples[0]}


def call_costs(calls: int, rounds: int, directory: str, extra=(), repeats: int = 3) -> dict:
    hvt = build()
    pio = _pio_cost_binary()
    with tempfile.TemporaryDirectory(dir=directory) as d:
        disk = Path(d) / "disk.img"
        disk.write_bytes(b"\0" * 4096)
        samples = {"exit_ns": [], "write_ns": [], "read_ns": [], "pwrite_ns": [], "pread_ns": [],
                   "clock_gettime_ns": []}
        for _ in range(repeats):     # guest and host measured alternately; fastest of each kept
            proc = subprocess.run([str(hvt.tender), "--counters", *extra, f"--block:storage={disk}", str(hvt.callcost),
                                   f"n={calls}", f"rounds={rounds}"], capture_output=True, text=True,
                                  timeout=600)
            guest = _json_line(proc.stdout, "callcost")
            tc = _json_line(proc.stderr, "edgeio_hvt_counters")
            for kind in ("walltime", "block_write", "block_read"):
                samples.setdefault(f"handler_{kind}_ns", []).append(
                    tc["handler_ns"][kind] / tc["exits"][kind])
            host = _json_line(subprocess.run([str(pio), str(disk), str(calls * 10)], capture_output=True,
                                             text=True, check=True).stdout, "pio_cost")
            for k in ("exit_ns", "write_ns", "read_ns"):
                samples[k].append(guest[k])
            for k in ("pwrite_ns", "pread_ns", "clock_gettime_ns"):
                samples[k].append(host[k])
    return {k: min(v) for k, v in samples.items()}


def _cell(name: str, size: int, op: str, reps: int) -> dict:
    return {"cell_id": name, "size_bytes": size, "op": op, "reps": reps, "batches": reps,
            "io_size_bytes": None, "sync": "fsync", "direct": False, "cache": "warm"}


def throughput(size: int, reps: int, directory: str) -> list[dict]:
    """Each hvt cell right after a linux cell of the same op: the machine is shared, so
    the pair sees the same load and the ratio is the figure to trust."""
    from measure.environments.linux import LinuxEnvironment
    target = LocalTarget()
    rows = []
    native = LinuxEnvironment(target, {"dir": directory})
    native.prepare()
    try:
        for k in KS:
            for op, flush in (("read", "none"), ("write", "none"), ("write_sync", "each-write")):
                linux = native.run(_cell(f"linux-{op}-{k}", size, op, reps), timeout=3600)
                linux_s = linux.probe["total_seconds"] / reps
                env = HvtEnvironment(target, {"blocks_per_call": str(k), "flush": flush, "dir": directory})
                env.check()
                env.prepare()
                try:
                    r = env.run(_cell(f"hvt-{op}-{k}", size, op, reps), timeout=3600)
                finally:
                    env.teardown()
                per_op = r.probe["total_seconds"] / reps
                c = r.metadata["counters"]
                rows.append({"op": op, "k": k, "flush": flush, "hvt_s": per_op, "linux_s": linux_s,
                             "ratio": per_op / linux_s,
                             "exits_per_op": (c["exits"]["block_read"] + c["exits"]["block_write"]) / reps,
                             "fsyncs_per_op": c["fsyncs"] / reps})
                print(f"  {op:<10} k={k:<5} hvt {per_op * 1e3:10.2f} ms  linux {linux_s * 1e3:8.3f} ms  "
                      f"ratio {per_op / linux_s:8.1f}x  exits/op {rows[-1]['exits_per_op']:.0f}  "
                      f"fsyncs/op {rows[-1]['fsyncs_per_op']:.0f}", flush=True)
    finally:
        native.teardown()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="4MiB", help="file size for the throughput part (multiple of 1 MiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calls", type=int, default=5000, help="hypercalls per kind per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args(argv)
    facts = machine_facts(LocalTarget())
    print(f"hvt benchmark on {facts['host']} ({facts['arch']}, {facts['cpu_model']}), KVM: {facts['kvm']}"
          + ("  [software KVM: guest kernel code is emulated; absolute costs are far above a Pi's]"
             if facts["kvm"] == "software" else ""))

    # filter on (as shipped) and off (--no-seccomp), interleaved so both see the same load
    runs = {"on": [], "off": []}
    for _ in range(3):
        runs["on"].append(call_costs(args.calls, args.rounds, args.dir, repeats=1))
        runs["off"].append(call_costs(args.calls, args.rounds, args.dir, ["--no-seccomp"], repeats=1))
    c, off = ({k: min(r[k] for r in runs[mode]) for k in runs[mode][0]} for mode in ("on", "off"))
    print(f"\n1. per-hypercall cost, filter on (fastest of 3 x {args.rounds} interleaved rounds of {args.calls} "
          "calls, guest-timed)")
    print(f"  bare exit (WALLTIME)      {c['exit_ns'] / 1e3:8.2f} us   (host clock_gettime {c['clock_gettime_ns']:.0f} ns)")
    for kind, sysc in (("write", "pwrite"), ("read", "pread")):
        own = c[f"{kind}_ns"] - c["exit_ns"] - c[f"{sysc}_ns"]
        print(f"  512 B block {kind:<5}         {c[f'{kind}_ns'] / 1e3:8.2f} us   = exit + host {sysc} "
              f"{c[f'{sysc}_ns'] / 1e3:.2f} us + tender {own / 1e3:+.2f} us "
              f"({own / c['exit_ns'] * 100:+.1f} % of the exit; target <= 20 %)")
    print("  host-timed inside the tender (handler per call; its own share = handler - host syscall):")
    print(f"    walltime handler {c['handler_walltime_ns']:.0f} ns")
    for kind, sysc in (("write", "pwrite"), ("read", "pread")):
        h = c[f"handler_block_{kind}_ns"]
        print(f"    block {kind:<5} handler {h / 1e3:.2f} us, host {sysc} alone {c[f'{sysc}_ns'] / 1e3:.2f} us: "
              f"tender's own {(h - c[f'{sysc}_ns']) / 1e3:+.2f} us = "
              f"{(h - c[f'{sysc}_ns']) / c['exit_ns'] * 100:+.1f} % of the bare exit")

    print("\n   the syscall filter's cost (filter on - --no-seccomp, fastest of 3 interleaved runs each; "
          "every exit pays it on the KVM_RUN ioctl, a block call also on its pwrite/pread):")
    for key, label in (("exit_ns", "bare exit"), ("write_ns", "512 B block write"), ("read_ns", "512 B block read")):
        print(f"    {label:<18} on {c[key] / 1e3:8.2f} us   off {off[key] / 1e3:8.2f} us   "
              f"filter {(c[key] - off[key]) / 1e3:+.2f} us ({(c[key] - off[key]) / off[key] * 100:+.1f} %)")
    for kind in ("write", "read"):
        on_h, off_h = c[f"handler_block_{kind}_ns"], off[f"handler_block_{kind}_ns"]
        print(f"    block {kind:<5} handler (host-timed)  on {on_h / 1e3:.2f} us  off {off_h / 1e3:.2f} us  "
              f"filter {(on_h - off_h) / 1e3:+.2f} us")
    f = filter_cost(args.dir)
    print("    host syscalls alone (unikernel/tests/seccomp_check.c, fastest of 5 x 7 batches of 20000; "
          "the filter also turns on the kernel's speculative-store-bypass mitigation, as stock's does):")
    for name in ("pwrite", "ioctl"):
        a, b = f[f"{name}_ns_off"], f[f"{name}_ns_on"]
        print(f"      {name:<7} off {a:7.0f} ns  on {b:7.0f} ns  filter {b - a:+.0f} ns")
    per_block = (f["pwrite_ns_on"] - f["pwrite_ns_off"])
    print(f"    a block call pays the filter once more than a bare exit (its pwrite/pread): "
          f"{per_block:+.0f} ns = {per_block / c['exit_ns'] * 100:+.1f} % of the bare exit")

    if not args.skip_throughput:
        size = parse_size(args.size)
        print(f"\n2. {args.size} per repetition, {args.reps} reps, ratio hvt / linux (same filesystem {args.dir}); "
              "read and write with flush=none, write_sync with flush=each-write; "
              "linux probe at its default io size (min(size, 1 MiB)), each run just before its hvt pair")
        throughput(size, args.reps, args.dir)


if __name__ == "__main__":
    main()
