"""Harness overhead per cell for linux and docker: prepare, start to first sample, teardown.

Overhead of a cell = its wall time minus the probe's own timed seconds (process or
container start, file creation, result parsing). Printed, not asserted.
    python benchmarks/bench_harness.py [--cells 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeio.errors import UserError  # noqa: E402
from edgeio.units import format_time  # noqa: E402
from measure.environments import environment_class  # noqa: E402
from measure.plan import make_plan  # noqa: E402
from measure.targets import LocalTarget  # noqa: E402


def bench(env_name: str, cells: int) -> dict:
    env = environment_class(env_name)(LocalTarget(), {})
    env.check()
    t0 = time.monotonic()
    env.prepare()
    prepare_s = time.monotonic() - t0
    plan = make_plan([env_name], [4096], ["read"], reps=10, batches=1)
    overheads, firsts = [], []
    for _ in range(cells):
        t0 = time.monotonic()
        result = env.run(plan[0], timeout=120)
        wall = time.monotonic() - t0
        overheads.append(wall - result.probe["total_seconds"])
        firsts.append(wall)
    t0 = time.monotonic()
    env.teardown()
    return {"env": env_name, "prepare_s": prepare_s, "cell_overhead_s": statistics.median(overheads),
            "first_sample_s": statistics.median(firsts), "teardown_s": time.monotonic() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cells", type=int, default=5)
    args = ap.parse_args()
    print(f"{'env':8} {'prepare':>10} {'start→sample':>14} {'overhead/cell':>14} {'teardown':>10}")
    for name in ("linux", "docker"):
        try:
            r = bench(name, args.cells)
        except UserError as e:
            print(f"{name:8} skipped: {e}")
            continue
        print(f"{name:8} {format_time(r['prepare_s']):>10} {format_time(r['first_sample_s']):>14} "
              f"{format_time(r['cell_overhead_s']):>14} {format_time(r['teardown_s']):>10}")


if __name__ == "__main__":
    main()
