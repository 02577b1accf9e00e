"""qemu environment: boot-to-probe and teardown time per cell, and the time per
operation relative to the same probe run natively on this host, per (size, op).

    python benchmarks/bench_qemu.py [--configs x86_64:virtio,x86_64:ide,aarch64:virtio]
                                    [--sizes 4KiB,64MiB] [--reps-small 2000] [--reps-large 3]
                                    [--page-cache 1GiB] [--page-cache-mems 2048,512]

Native and guest runs are interleaved per (size, op), so a busy machine hurts both alike.
Prints figures; asserts nothing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeio.parse import parse_size  # noqa: E402
from edgeio.units import format_size, format_time  # noqa: E402
from measure.environments.base import CellFailed, probe_args  # noqa: E402
from measure.environments.qemu import QemuEnvironment  # noqa: E402
from measure.probe_build import parse_probe_output, probe_binary  # noqa: E402
from measure.targets import LocalTarget  # noqa: E402

OPS = ("write_sync", "write", "read")


def cell(size, op, reps, batches):
    return {"cell_id": f"bench-{op}-{size}", "size_bytes": size, "op": op, "reps": reps,
            "batches": batches, "io_size_bytes": None, "sync": "fsync", "direct": False,
            "cache": "warm"}


def native(c) -> float:
    """Seconds per op of the probe run directly on this host (file fresh, like env linux)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="edgeio-bench-") as d:
        argv = [str(probe_binary()), "--path", f"{d}/data"] + probe_args(c)
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    rec = parse_probe_output(proc.stdout)
    return rec["total_seconds"] / rec["reps"]


def page_cache(size: int, mems: list[str], reps: int = 3):
    """The study's qemu finding: a read of a file the guest cannot cache goes to the device."""
    print(f"\npage cache: warm read of {format_size(size)} x{reps}, x86_64 virtio, per guest memory")
    for mem in mems:
        env = QemuEnvironment(LocalTarget(), {"arch": "x86_64", "mem": mem})
        env.check()
        c = cell(size, "read", reps, reps)
        env.preflight([c])
        env.prepare()
        try:
            res = env.run(c)
        except CellFailed as e:
            print(f"   mem {mem} MiB: FAILED {str(e).splitlines()[0]}")
            continue
        finally:
            env.teardown()
        m = res.metadata
        print(f"   mem {mem:>5} MiB (MemTotal {m['guest_mem_total_bytes'] >> 20} MiB): "
              f"{format_time(res.probe['total_seconds'] / reps)}/op, device reads "
              f"{m['guest_block_reads_bytes'] / (size * reps):.2f} x size x reps ({env.accel})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="x86_64:virtio,x86_64:ide,aarch64:virtio")
    ap.add_argument("--sizes", default="4KiB,64MiB")
    ap.add_argument("--reps-small", type=int, default=2000)
    ap.add_argument("--reps-large", type=int, default=3)
    ap.add_argument("--mem", default="2048")
    ap.add_argument("--page-cache", default="1GiB",
                    help="file size for the page-cache comparison ('' to skip)")
    ap.add_argument("--page-cache-mems", default="2048,512", help="guest MiB to compare")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]

    rows = []
    for config in args.configs.split(","):
        arch, disk = config.split(":")
        env = QemuEnvironment(LocalTarget(), {"arch": arch, "disk": disk, "mem": args.mem})
        env.check()
        t = time.monotonic()
        env.prepare()
        prepare_s = time.monotonic() - t
        print(f"== {arch} disk={disk} accel={env.accel} ({env.accel_reason}); "
              f"prepare {prepare_s:.1f} s (guest build cached); QEMU {env.qemu_version}", flush=True)
        try:
            for size in sizes:
                reps = args.reps_small if size < (1 << 20) else args.reps_large
                batches = min(reps, 20)
                for op in OPS:
                    c = cell(size, op, reps, batches)
                    nat = native(c)
                    t = time.monotonic()
                    try:
                        res = env.run(c)
                    except CellFailed as e:
                        print(f"   {format_size(size)} {op}: FAILED {str(e).splitlines()[0]}")
                        continue
                    host_s = time.monotonic() - t
                    m = res.metadata
                    per_op = res.probe["total_seconds"] / res.probe["reps"]
                    row = {"arch": arch, "disk": disk, "accel": env.accel, "size": size, "op": op,
                           "reps": reps, "boot_to_probe_s": m.get("boot_to_probe_seconds"),
                           "warmup_s": m.get("warmup_seconds"), "teardown_s": m.get("teardown_seconds"), "qemu_wall_s": m.get("qemu_wall_seconds"),
                           "run_s": round(host_s, 3), "guest_per_op_s": per_op, "native_per_op_s": nat,
                           "ratio": per_op / nat if nat else None,
                           "guest_block_reads_bytes": m.get("guest_block_reads_bytes"),
                           "guest_block_writes_bytes": m.get("guest_block_writes_bytes")}
                    rows.append(row)
                    print(f"   {format_size(size):>7} {op:<10} x{reps:<5} boot-to-probe {row['boot_to_probe_s']:6.2f} s"
                          f" (warm-up {row['warmup_s']:4.2f})  teardown {row['teardown_s']:5.2f} s  run() {host_s:6.2f} s"
                          f"  guest {format_time(per_op):>9}/op  native {format_time(nat):>9}/op"
                          f"  ratio {row['ratio']:7.2f}  ({env.accel})", flush=True)
        finally:
            env.teardown()

    print("\nper config (median over its cells):")
    for config in args.configs.split(","):
        arch, disk = config.split(":")
        mine = [r for r in rows if r["arch"] == arch and r["disk"] == disk]
        if mine:
            print(f"   {arch:<8} {disk:<7} {mine[0]['accel']}: boot-to-probe "
                  f"{statistics.median(r['boot_to_probe_s'] for r in mine):.2f} s, teardown "
                  f"{statistics.median(r['teardown_s'] for r in mine):.2f} s, whole run() "
                  f"{statistics.median(r['run_s'] for r in mine):.2f} s")
    if args.page_cache:
        page_cache(parse_size(args.page_cache), args.page_cache_mems.split(","))
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
