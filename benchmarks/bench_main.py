"""`invoke main` end to end, on the emulated Pi board and here: the issue-17 targets.

    python benchmarks/bench_main.py [--where board,local] [--budget 10m] [--out DIR]

For each place, runs `invoke main` (`--target testbed:pi` for the board, which is brought
up if it is not and left as found) and prints, with the host load:
  - wall time of the whole job (target on the board: <= 30 min on a quiet machine);
  - the calibration's in-sample error over its cells: median (target <= 15%) and
    largest (target <= 50%) |measured/modelled - 1|;
  - the protocol's estimate against what it took (target: actual/estimate in 0.5..2);
  - each verify's figures (median |error| of its predictions, share inside the interval).
Prints figures; asserts nothing.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from edgeio.units import format_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_main(where: str, budget: str, out: Path) -> None:
    argv = [sys.executable, "-m", "invoke", "main", "--budget", budget, "--out", str(out)]
    if where == "board":
        from measure import testbed
        was_up = testbed.status("pi") is not None
        testbed.up("pi")
        argv += ["--target", "testbed:pi"]
    print(f"{where}: {' '.join(argv[2:])} (load {load()})", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if where == "board" and not was_up:
        testbed.down("pi")
    print(f"  wall time: {format_time(wall)} (exit {proc.returncode}, load {load()})")
    if proc.returncode != 0:
        print("  " + "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-15:]))
        return
    text = proc.stdout + proc.stderr
    for line in text.splitlines():
        if line.startswith(("main: verifies on", "main on ", "protocol time:", "pilot on ")) and "took" in line \
                or line.startswith(("main: verifies on", "main on ", "protocol time:")):
            print(f"  {line}")
    campaign = next(p for p in out.iterdir() if (p / "metadata.json").exists())
    meta = json.loads((campaign / "metadata.json").read_text())
    t = meta.get("protocol_time") or {}
    if t.get("estimate_s"):
        print(f"  protocol estimate {format_time(t['estimate_s'])}, actual {format_time(t['actual_s'])}: "
              f"actual/estimate {t['actual_s'] / t['estimate_s']:.2f} (target 0.5..2)")
    cal = json.loads(next((out / "calibrations").glob("*.json")).read_text())
    fit = pd.DataFrame(cal.get("fit") or cal.get("fit_table") or [])
    if "rel_error" in fit:
        a = fit["rel_error"].abs()
        print(f"  calibration in-sample |error| over {len(a)} cells: median {a.median():.1%} (target <= 15%), "
              f"largest {a.max():.1%} (target <= 50%)")
    for v in sorted((out / "verify").iterdir()) if (out / "verify").exists() else []:
        comp = v / "comparison.csv"
        if not comp.exists():
            continue
        c = pd.read_csv(comp)
        scen = json.loads((v / "metadata.json").read_text())["verify"]["scenario"]
        print(f"  verify {scen}: {len(c)} cells, median |error| {c['rel_error'].abs().median():.1%}, "
              f"inside the 95% interval {c['inside'].astype(bool).mean():.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--where", default="board,local")
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    for where in a.where.split(","):
        out = Path(a.out) / where if a.out else Path(tempfile.mkdtemp(prefix=f"bench-main-{where}-"))
        run_main(where, a.budget, out)


if __name__ == "__main__":
    main()
