"""Campaign engine figures: harness overhead per cell, local vs a loopback SSH target;
the cost of a dropped connection (reconnect + retry); a fleet's parallel speed-up.

    python benchmarks/bench_campaign.py            # prints the figures
    python benchmarks/bench_campaign.py --demo     # a small campaign with the live display

Overhead = a cell's wall time minus the time the probe measured (its total_seconds):
process start, shipping nothing (the probe is shipped once), SSH round trips, the store.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from edgeio import store  # noqa: E402
from measure import campaign as engine  # noqa: E402
from measure import plan as planning  # noqa: E402
from measure.progress import Progress  # noqa: E402
from measure.reach import parse_target  # noqa: E402
from measure.targets import LocalTarget  # noqa: E402
from sshd import Sshd  # noqa: E402


def campaign_for(targets: dict, plan, out: Path, progress_mode="quiet", title="bench"):
    plan = engine.fleet_plan(plan, list(targets))
    campaign = store.Campaign.create(out, {"targets": engine.target_metadata(targets)}, plan)
    envs = engine.environments_for(plan, targets)
    unavailable = engine.prepare(envs)
    t0 = time.monotonic()
    try:
        with Progress(plan, mode=progress_mode, title=title) as progress:
            res = engine.run(campaign, plan, envs, progress=progress, unavailable=unavailable)
    finally:
        engine.teardown(envs)
    wall = time.monotonic() - t0
    campaign.finish(counts=res)
    return campaign, res, wall


def overheads(campaign) -> dict:
    out = {}
    for rec in campaign.records().values():
        if rec["status"] == "ok":
            out.setdefault(rec["cell"]["target"], []).append(rec["wall_seconds"] - rec["probe"]["total_seconds"])
    return out


def main(demo: bool):
    work = Path(tempfile.mkdtemp(prefix="edgeio-bench-campaign-"))
    sshd = Sshd(work / "sshd").start()
    remote = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    try:
        if demo:
            plan = planning.make_plan(["linux", "docker"], [4096, 1 << 20], list(planning.OPS), None, batches=20)
            campaign, res, wall = campaign_for({"local": LocalTarget(), remote.name: remote}, plan,
                                               work / "results", progress_mode="auto", title="demo")
            print("\n".join(engine.summary_lines(res, campaign.records())))
            print(f"campaign directory: {campaign.path}")
            return
        plan = planning.make_plan(["linux"], [4096, 65536], list(planning.OPS), 100, batches=10)
        for name, targets in (("local", {"local": LocalTarget()}), ("ssh", {remote.name: remote})):
            campaign, res, wall = campaign_for(targets, plan, work / name)
            per_cell = [v for vs in overheads(campaign).values() for v in vs]
            print(f"{name:6s} harness overhead per cell: median {statistics.median(per_cell) * 1e3:.0f} ms "
                  f"(min {min(per_cell) * 1e3:.0f}, max {max(per_cell) * 1e3:.0f}) over {len(per_cell)} cells")
        # fleet: the same plan on both targets in one campaign vs one after the other
        serial = 0.0
        for targets in ({"local": LocalTarget()}, {remote.name: remote}):
            serial += campaign_for(targets, plan, work / "serial")[2]
        _, res, fleet = campaign_for({"local": LocalTarget(), remote.name: remote}, plan, work / "fleet")
        print(f"fleet of 2 targets: {fleet:.2f} s in parallel vs {serial:.2f} s one after the other "
              f"(x{serial / fleet:.2f})")
        # a dropped connection: time to notice, reconnect and run again
        remote.run(["true"])
        t0 = time.monotonic()
        sshd.drop_connections()
        try:
            remote.run(["sleep", "0.1"])
        except Exception:   # the first command on a dead link fails; the next one reconnects
            pass
        remote.run(["true"])
        print(f"dropped connection: noticed, reconnected and a command run in {time.monotonic() - t0:.2f} s")
    finally:
        remote.close()
        sshd.stop()


if __name__ == "__main__":
    main("--demo" in sys.argv)
