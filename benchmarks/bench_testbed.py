"""The pi testbed (emulated arm64 board with KVM): boot-to-ssh time, and the hvt/linux,
qemu/linux and docker/linux ratios per (size, op) measured on it, labelled emulated.

    python benchmarks/bench_testbed.py [--boots 2] [--sizes 4KiB,1MiB] [--reps 20]

Boots the board `--boots` times (down, up) through the same code as `invoke testbed up`,
then runs one `invoke measure` campaign on it (linux, hvt, qemu, docker; interleaved) and
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

from edgeio.parse import parse_sizes  # noqa: E402
from edgeio.units import format_size, format_time  # noqa: E402
from measure import testbed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENVS = ("linux", "hvt", "qemu", "docker")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def boots(n: int) -> list[float]:
    times, boot_s = [], []
    for i in range(n):
        testbed.down("pi")
        t0 = time.monotonic()
        state = testbed.up("pi")
        times.append(time.monotonic() - t0)
        boot_s.append(state["boot_s"])
        print(f"  boot {i + 1}: {format_time(state['boot_s'])} to ssh (QEMU start to a key-authenticated "
              f"command), {format_time(state['ready_s'])} to ready (dockerd answering), "
              f"{format_time(times[-1])} with the seed and data disk; load {load()}", flush=True)
    return boot_s


def campaign(url: str, sizes: str, reps: int) -> Path:
    out = Path(tempfile.mkdtemp(prefix="bench-testbed-"))
    argv = [sys.executable, "-m", "invoke", "measure", "--target", url, "--env", ",".join(ENVS),
            "--size", sizes, "--reps", str(reps), "--param", "mem=512", "--order", "interleaved",
            "--out", str(out), "--quiet"]
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
    a = ap.parse_args()
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
    print(f"  {'size':>6s} {'op':11s} " + " ".join(f"{e:>9s}" for e in ENVS)
          + " " + " ".join(f"{e + '/linux':>12s}" for e in ENVS[1:]) + "  cell wall s " + "/".join(ENVS))
    for size in parse_sizes(a.sizes):
        for op in ("write_sync", "write", "read"):
            t = {e: per_op.get((e, size, op)) for e in ENVS}
            ratios = " ".join(f"{t[e] / t['linux']:12.2f}" if t[e] and t["linux"] else f"{'n/a':>12s}"
                              for e in ENVS[1:])
            wall = "/".join(f"{walls.get((e, size, op), float('nan')):.1f}" for e in ENVS)
            print(f"  {format_size(size):>6s} {op:11s} " + " ".join(f"{format_time(t[e]):>9s}" for e in ENVS)
                  + f" {ratios}  {wall}")
    print("(emulated board: ratios only; the study's Pi 4 figures are in calibration/data)")


if __name__ == "__main__":
    main()
