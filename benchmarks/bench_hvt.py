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
3. The transports (unikernel/README.md): exits per GiB (exact counters of 4 MiB runs,
   scaled) for hvt at k blocks per call, ring at batch N, mapped; the guest's own copy
   cost per byte (unikernel/tests/copycost.c: the mapped data path); then read, write and
   write_sync (flush=on-request: one flush per repetition, as the native fsync) of
   --transport-sizes for hvt k=64, ring batch=64 (k=1 at 64 MiB only, k=8) and mapped,
   each right after its linux pair; ratio to native.

    python benchmarks/bench_hvt.py [--size 4MiB] [--reps 3] [--calls 5000] [--rounds 5]
                                   [--transport-sizes 64MiB,1GiB] [--skip-transports]

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
from edgeio.parse import parse_size                         # noqa: E402
from edgeio.units import GIB                                # noqa: E402
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


EXIT_KS = (1, 8, 64, 2048)


def _hvt_cell(target, params: dict, name: str, size: int, op: str, reps: int, directory: str):
    env = HvtEnvironment(target, {**params, "dir": directory})
    env.check()
    env.prepare()
    try:
        return env.run(_cell(name, size, op, reps), timeout=7200)
    finally:
        env.teardown()


def exits_per_gib(directory: str) -> list[dict]:
    """Exact block exits of 4 MiB runs per configuration, scaled to one GiB."""
    target, size, reps, rows = LocalTarget(), 4 << 20, 2, []
    configs = [(f"hvt k={k}", {"blocks_per_call": str(k)}) for k in EXIT_KS]
    configs += [(f"ring batch={b} k={k}", {"transport": "ring", "batch": str(b), "blocks_per_call": str(k)})
                for b, k in ((64, 1), (64, 8), (256, 8))]
    configs.append(("mapped", {"transport": "mapped", "blocks_per_call": "64"}))
    for label, params in configs:
        row = {"config": label}
        for op in ("write", "write_sync"):
            r = _hvt_cell(target, {**params, "flush": "on-request"}, f"exits-{op}", size, op, reps, directory)
            c = r.metadata["counters"]
            scale = GIB / (size * reps)
            row[op] = {k: c[k] * scale for k in ("block_exits", "notifications", "flush_exits")}
            row[op]["exits"] = c["exits"]["total"] * scale
            # the guest's side per block call or ring request (its own instructions and the exits):
            # the run's time less the tender's handlers, over the calls
            calls = size * reps // (512 * int(params["blocks_per_call"]))
            row[op]["guest_us_per_call"] = (r.probe["total_seconds"]
                                            - sum(c["handler_ns"].values()) / 1e9) / calls * 1e6
        rows.append(row)
        print(f"  {label:<20} write: {row['write']['block_exits']:>10.0f} block exits/GiB   "
              f"write_sync: {row['write_sync']['block_exits']:>10.0f} (of which flush "
              f"{row['write_sync']['flush_exits']:.0f} per GiB written in 4 MiB repetitions)   "
              f"guest side {row['write']['guest_us_per_call']:.1f} us per call/request", flush=True)
    return rows


def copy_cost(directory: str, size: int = 4 << 20) -> dict:
    """The guest's own copy (edgeio_copy), RAM -> RAM and to/from a mapped disk, per byte."""
    hvt = build()
    with tempfile.TemporaryDirectory(dir=directory) as d:
        disk = Path(d) / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(size)
        proc = subprocess.run([str(hvt.tender), "--transport=mapped", f"--block:storage={disk}", str(hvt.copycost),
                               f"bytes={size}", "rounds=3"], capture_output=True, text=True, timeout=3600)
    c = _json_line(proc.stdout, "copycost")
    return {k.replace("_ps_per_byte", "_ns_per_byte"): v / 1000 for k, v in c.items() if k.endswith("_ps_per_byte")}


def transport_times(sizes: list[int], directory: str) -> list[dict]:
    """Each transport cell right after its linux pair (same op, size, filesystem)."""
    from measure.environments.linux import LinuxEnvironment
    target, rows = LocalTarget(), []
    native = LinuxEnvironment(target, {"dir": directory})
    native.prepare()
    variants = [("hvt k=64", {"blocks_per_call": "64"}, None),
                ("ring batch=64 k=1", {"transport": "ring", "batch": "64", "blocks_per_call": "1"}, 64 << 20),
                ("ring batch=64 k=8", {"transport": "ring", "batch": "64", "blocks_per_call": "8"}, None),
                ("mapped", {"transport": "mapped", "blocks_per_call": "64"}, None)]
    try:
        for size in sizes:
            reps = 2 if size <= 64 << 20 else 1
            for label, params, max_size in variants:
                if max_size and size > max_size:
                    continue
                for op in ("read", "write", "write_sync"):
                    linux = native.run(_cell(f"linux-{op}", size, op, reps), timeout=7200)
                    linux_s = linux.probe["total_seconds"] / reps
                    r = _hvt_cell(target, {**params, "flush": "on-request"}, f"t-{op}", size, op, reps, directory)
                    per_op = r.probe["total_seconds"] / reps
                    c = r.metadata["counters"]
                    # host time inside the tender's handlers; the rest is the guest's own work and the exits
                    host_s = sum(c["handler_ns"].values()) / 1e9 / reps
                    row = {"size": size, "op": op, "config": label, "hvt_s": per_op, "linux_s": linux_s,
                           "ratio": per_op / linux_s, "block_exits_per_gib": c["block_exits"] * GIB / (size * reps),
                           "notifications": c["notifications"] / reps, "flush_exits": c["flush_exits"] / reps,
                           "tender_handler_s": host_s}
                    rows.append(row)
                    print(f"  {size >> 20:>5} MiB {op:<10} {label:<18} {per_op:9.3f} s  linux {linux_s * 1e3:9.2f} ms  "
                          f"ratio {row['ratio']:9.1f}x  block exits/GiB {row['block_exits_per_gib']:9.0f}  "
                          f"in tender handlers {host_s:7.3f} s", flush=True)
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
    ap.add_argument("--skip-calls", action="store_true")
    ap.add_argument("--transport-sizes", default="64MiB,1GiB")
    ap.add_argument("--skip-transports", action="store_true")
    args = ap.parse_args(argv)
    facts = machine_facts(LocalTarget())
    print(f"hvt benchmark on {facts['host']} ({facts['arch']}, {facts['cpu_model']}), KVM: {facts['kvm']}"
          + ("  [software KVM: guest kernel code is emulated; absolute costs are far above a Pi's]"
             if facts["kvm"] == "software" else ""))

    if not args.skip_calls:
        _print_call_costs(args)
    if not args.skip_throughput:
        size = parse_size(args.size)
        print(f"\n2. {args.size} per repetition, {args.reps} reps, ratio hvt / linux (same filesystem {args.dir}); "
              "read and write with flush=none, write_sync with flush=each-write; "
              "linux probe at its default io size (min(size, 1 MiB)), each run just before its hvt pair")
        throughput(size, args.reps, args.dir)
    if not args.skip_transports:
        print(f"\n3. transports (KVM: {facts['kvm']})\n3a. block exits per GiB (exact; 4 MiB x 2 runs scaled)")
        exits_per_gib(args.dir)
        cc = copy_cost(args.dir)
        print("3b. the guest's own copy cost (edgeio_copy, best of 3 x 4 MiB): "
              + ", ".join(f"{k.removesuffix('_ns_per_byte')} {v:.2f} ns/B" for k, v in cc.items())
              + ("  [software KVM: every guest instruction emulated; the model carries this as "
                 "guest_copy_ns_per_byte]" if facts["kvm"] == "software" else ""), flush=True)
        sizes = [parse_size(s) for s in args.transport_sizes.split(",")]
        print("3c. time per repetition, ratio to native (linux on the same filesystem, run just before); "
              "flush=on-request")
        transport_times(sizes, args.dir)


def _print_call_costs(args):
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


if __name__ == "__main__":
    main()
