"""The pi testbed (emulated arm64 board with KVM): boot-to-ssh time, and the hvt/linux and
qemu/linux ratios per (size, op) measured on it, labelled emulated. With --board xen: the
xen testbed's boot-to-ssh time, the domU's boot, the xen cells' overhead per cell and the
domU/dom0-native (xen/linux) ratio per (size, op).

    python benchmarks/bench_testbed.py [--boots 2] [--sizes 4KiB,1MiB] [--reps 20]
    python benchmarks/bench_testbed.py --board xen [--boots 2] [--reps 20]

Boots the board `--boots` times (down, up) through the same code as `invoke testbed up`,
then runs one `invoke measure` campaign on it (linux, hvt, qemu; interleaved order) and
prints each cell's time per op and the ratios. The board runs under QEMU's TCG: absolute
times are the emulator's, only the ratios between environments on it mean something,
and even they are skewed (kernel and hypervisor code is emulated too). The host load is
printed with each figure. Prints figures; asserts nothing.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeio.units import format_size, format_time, parse_sizes  # noqa: E402
from measure import testbed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def boots(n: int, board: str = "pi") -> list[float]:
    times = []
    for i in range(n):
        testbed.down(board)
        t0 = time.monotonic()
        state = testbed.up(board)
        times.append(time.monotonic() - t0)
        print(f"  boot {i + 1}: {format_time(times[-1])} to ssh (QEMU start to a key-authenticated "
              f"command; state boot_s {format_time(state['boot_s'])}), load {load()}", flush=True)
    return times


def campaign(url: str, sizes: str, reps: int, envs: str = "linux,hvt,qemu",
             params: tuple = ("mem=512",)) -> Path:
    out = Path(tempfile.mkdtemp(prefix="bench-testbed-"))
    argv = [sys.executable, "-m", "invoke", "measure", "--target", url, "--env", envs,
            "--size", sizes, "--reps", str(reps), *(a for p in params for a in ("--param", p)),
            "--order", "interleaved", "--out", str(out), "--quiet"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    print(f"  campaign: {format_time(time.monotonic() - t0)} wall (prepare + cells), exit "
          f"{proc.returncode}, load {load()}")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
    return next(p for p in out.iterdir() if (p / "metadata.json").exists())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=2)
    ap.add_argument("--sizes", default="4KiB,1MiB")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--board", default="pi", choices=("pi", "xen"))
    a = ap.parse_args()
    if a.board == "xen":
        return main_xen(a)
    print(f"pi testbed (EMULATED: qemu-system-aarch64 TCG, Cortex-A72, {os.cpu_count()} host cores), "
          f"load {load()}")
    times = boots(a.boots)
    print(f"boot-to-ssh: median {format_time(sorted(times)[len(times) // 2])} over {len(times)} boots")
    state = testbed.status("pi")
    camp = campaign(state["url"], a.sizes, a.reps)
    per_op, walls = {}, {}
    for path in sorted((camp / "cells").glob("*.json")):
        rec = json.loads(path.read_text())
        c = rec["cell"]
        if rec["status"] != "ok":
            print(f"  FAILED {c['env']} {c['op']}: {rec['error']}")
            continue
        p = rec["probe"]
        per_op[(c["env"], c["size_bytes"], c["op"])] = p["total_seconds"] / p["reps"]
        walls[(c["env"], c["size_bytes"], c["op"])] = rec["wall_seconds"]
    print(f"\nper op on the pi testbed (EMULATED), campaign {camp}, reps {a.reps}:")
    print(f"  {'size':>6s} {'op':11s} {'linux':>10s} {'hvt':>10s} {'qemu':>10s} {'hvt/linux':>10s} "
          f"{'qemu/linux':>10s}  cell wall linux/hvt/qemu")
    for size in parse_sizes(a.sizes):
        for op in ("write_sync", "write", "read"):
            lx, hv, qe = (per_op.get((e, size, op)) for e in ("linux", "hvt", "qemu"))
            ratio = lambda x: f"{x / lx:10.2f}" if x and lx else f"{'n/a':>10s}"  # noqa: E731
            wall = "/".join(f"{walls.get((e, size, op), float('nan')):.1f}" for e in ("linux", "hvt", "qemu"))
            print(f"  {format_size(size):>6s} {op:11s} {format_time(lx):>10s} {format_time(hv):>10s} "
                  f"{format_time(qe):>10s} {ratio(hv)} {ratio(qe)}  {wall} s")
    print("(emulated board: ratios only; the study's Pi 4 figures are in calibration/data)")


def main_xen(a):
    print(f"xen testbed (EMULATED: Xen 4.17 + Linux dom0 under qemu-system-aarch64 TCG, Cortex-A72, "
          f"{os.cpu_count()} host cores), load {load()}")
    times = boots(a.boots, "xen")
    print(f"boot-to-ssh: median {format_time(sorted(times)[len(times) // 2])} over {len(times)} boots")
    camp = campaign(testbed.status("xen")["url"], a.sizes, a.reps, envs="linux,xen", params=())
    records = [json.loads(path.read_text()) for path in sorted((camp / "cells").glob("*.json"))]
    for rec in records:
        if rec["status"] != "ok":
            print(f"  FAILED {rec['cell']['env']} {rec['cell']['op']}: {rec['error'][:300]}")
    ok = [rec for rec in records if rec["status"] == "ok"]
    per_op = {(r["cell"]["env"], r["cell"]["size_bytes"], r["cell"]["op"]): r["probe"]["total_seconds"] / r["probe"]["reps"]
              for r in ok}
    xen_meta = [r["env_metadata"] for r in ok if r["cell"]["env"] == "xen"]
    overhead = [m["cell_overhead_seconds"] for m in xen_meta]
    boot = xen_meta[0]["domu_boot_seconds"] if xen_meta else None
    if boot is not None:
        print(f"domU boot (xl create to its ready line, once per campaign): {format_time(boot)}")
    if overhead:
        print(f"xen cell overhead (cell wall minus the probe's timed total; console round trip over SSH): "
              f"median {format_time(sorted(overhead)[len(overhead) // 2])}, max {format_time(max(overhead))}"
              f" over {len(overhead)} cells")
    print(f"\nper op on the xen testbed (EMULATED), campaign {camp}, reps {a.reps}, domU 1 GiB, file backend:")
    print(f"  {'size':>6s} {'op':11s} {'dom0':>10s} {'domU':>10s} {'domU/dom0':>10s}")
    for size in parse_sizes(a.sizes):
        for op in ("write_sync", "write", "read"):
            lx, xn = per_op.get(("linux", size, op)), per_op.get(("xen", size, op))
            ratio = f"{xn / lx:10.2f}" if xn and lx else f"{'n/a':>10s}"
            print(f"  {format_size(size):>6s} {op:11s} {format_time(lx):>10s} {format_time(xn):>10s} {ratio}")
    print("(emulated board: ratios only; the study's Pi 4 figures are in calibration/data)")


if __name__ == "__main__":
    main()
