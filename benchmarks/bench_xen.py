"""The xen testbed (Xen 4.17 + Linux dom0, emulated arm64): boot-to-ssh time, the domU's
boot, the xen cells' overhead per cell, and the domU/dom0-native (xen/linux) ratio per
(size, op), labelled emulated.

    python benchmarks/bench_xen.py [--boots 2] [--sizes 4KiB,1MiB] [--reps 20]

Boots the board `--boots` times (down, up) as `invoke testbed up xen` does, then runs
one `invoke measure --env linux,xen` campaign on it (interleaved): linux is the probe
natively in dom0, xen the probe in a 1 GiB domU on a file-backed xvda. The board runs
under QEMU's TCG: absolute times are the emulator's and even the ratios are skewed
(dom0's and Xen's code is emulated too). Prints figures; asserts nothing.
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

from bench_testbed import ROOT, load  # noqa: E402  (the pi board's benchmark, same directory)
from edgeio.parse import parse_sizes  # noqa: E402
from edgeio.units import format_size, format_time  # noqa: E402
from measure import testbed  # noqa: E402


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=2)
    ap.add_argument("--sizes", default="4KiB,1MiB")
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    print(f"xen testbed (EMULATED: Xen 4.17 + Linux dom0 under qemu-system-aarch64 TCG, Cortex-A72, "
          f"{os.cpu_count()} host cores), load {load()}")
    boot_s = []
    for i in range(a.boots):
        testbed.down("xen")
        state = testbed.up("xen")
        boot_s.append(state["boot_s"])
        print(f"  boot {i + 1}: {format_time(state['boot_s'])} to ssh (QEMU start to a key-authenticated "
              f"command), load {load()}", flush=True)
    if boot_s:
        print(f"boot-to-ssh: median {format_time(median(boot_s))} over {len(boot_s)} boots")
    out = Path(tempfile.mkdtemp(prefix="bench-xen-"))
    argv = [sys.executable, "-m", "invoke", "measure", "--target", testbed.status("xen")["url"],
            "--env", "linux,xen", "--size", a.sizes, "--reps", str(a.reps), "--order", "interleaved",
            "--out", str(out), "--quiet"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    print(f"  campaign: {format_time(time.monotonic() - t0)} wall (prepare + cells), exit {proc.returncode}, "
          f"load {load()}")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
    camp = next(p for p in out.iterdir() if (p / "metadata.json").exists())
    records = [json.loads(path.read_text()) for path in sorted((camp / "cells").glob("*.json"))]
    for rec in records:
        if rec["status"] != "ok":
            print(f"  FAILED {rec['cell']['env']} {rec['cell']['op']}: {rec['error'][:300]}")
    ok = [rec for rec in records if rec["status"] == "ok"]
    per_op = {(r["cell"]["env"], r["cell"]["size_bytes"], r["cell"]["op"]): r["probe"]["total_seconds"] / r["probe"]["reps"]
              for r in ok}
    xen_meta = [r["env_metadata"] for r in ok if r["cell"]["env"] == "xen"]
    if xen_meta:
        print(f"domU boot (xl create to its ready line, once per campaign): "
              f"{format_time(xen_meta[0]['domu_boot_seconds'])}")
        overhead = [m["cell_overhead_seconds"] for m in xen_meta]
        print(f"xen cell overhead (cell wall minus the probe's timed total: console round trip over SSH): "
              f"median {format_time(median(overhead))}, max {format_time(max(overhead))} over {len(overhead)} cells")
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
