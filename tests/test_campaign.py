"""The campaign engine: failed cells, timeouts, unavailable environments, fleet, adaptive, progress."""

import io
import json
import random
import re
import threading
import time

import pytest

from edgeio import store
from edgeio.errors import UserError
from measure import adaptive
from measure import campaign as engine
from measure import plan as planning
from measure.environments.base import CellFailed, CellResult, Environment, Unavailable
from measure.progress import Estimator, Progress


class FakeTarget:
    def __init__(self, name="local", host="h"):
        self.name, self.host = name, host

    def facts(self):
        return {"host": self.host, "arch": "x86_64"}


def probe_record(cell, per_op, rng=None, noise=0.0):
    """A probe record with per-batch times around per_op (relative Gaussian noise)."""
    rng = rng or random.Random(0)
    batches = max(1, min(int(cell.get("batches") or 1), int(cell["reps"])))
    per_batch = int(cell["reps"]) // batches
    reps = [per_batch] * batches
    secs = [max(1e-9, per_op * r * (1 + rng.gauss(0, noise))) for r in reps]
    return {"probe": "edgeio-fileprobe", "version": "t", "op": cell["op"], "size": cell["size_bytes"],
            "reps": sum(reps), "io_size": cell["size_bytes"], "sync": "fsync", "direct": False,
            "cache": "warm", "batch_reps": reps, "batch_seconds": secs, "total_seconds": sum(secs),
            "errno": 0, "error": ""}


class FakeEnv(Environment):
    """Behaviour per cell op: 'ok', 'fail', 'hang', 'sleep'; noise for adaptive tests."""
    name = "fake"

    def __init__(self, target, behaviour=None, sleep=0.0, noise=0.0, seed=1, per_op=1e-4):
        super().__init__(target)
        self.per_op = per_op
        self.behaviour = behaviour or {}
        self.sleep, self.noise = sleep, noise
        self.rng = random.Random(seed)
        self.calls = []

    def run(self, cell, timeout=None):
        self.calls.append((cell["cell_id"], cell["reps"], cell.get("batches"), timeout))
        what = self.behaviour.get(cell["op"], "ok")
        if what == "fail":
            raise CellFailed("probe exit 1: EIO", log="probe said: input/output error")
        if what == "unavailable":
            raise Unavailable("fake: engine went away")
        if what == "bug":
            raise KeyError("oops")
        if what == "hang":      # ignores its timeout
            time.sleep(30)
        if what == "timeout":   # honours it
            time.sleep(timeout or 0)
            raise TimeoutError(f"probe timed out after {timeout:g} s")
        time.sleep(self.sleep)
        return CellResult(probe_record(cell, self.per_op, self.rng, self.noise), {"fs": "ext4"}, "ran fine")


def make(tmp_path, envs=("fake",), ops=("write_sync", "write", "read"), reps=100, target="local", batches=10):
    plan = planning.make_plan(list(envs), [4096], list(ops), reps, target=target, order="interleaved",
                              batches=batches)
    return store.Campaign.create(tmp_path, {"test": True}, plan), plan


def test_failed_cell_is_stored_with_log_and_campaign_goes_on(tmp_path):
    c, plan = make(tmp_path)
    env = FakeEnv(FakeTarget(), {"write": "fail", "read": "bug"})
    seen = []
    res = engine.run(c, plan, {("fake", "local"): env}, on_cell=lambda cell, rec: seen.append(rec["status"]))
    assert (res["ok"], res["failed"]) == (1, 2) and len(seen) == 3
    recs = c.records()
    failed = {r["cell"]["op"]: r for r in recs.values() if r["status"] == "failed"}
    assert "EIO" in failed["write"]["error"]
    assert "input/output error" in (c.path / failed["write"]["log"]).read_text()
    assert "internal error" in failed["read"]["error"] and "KeyError" in (c.path / failed["read"]["log"]).read_text()
    ok = next(r for r in recs.values() if r["status"] == "ok")
    assert ok["env_metadata"]["host"] == "h" and ok["env_metadata"]["fs"] == "ext4"
    lines = engine.summary_lines(res)
    assert lines[0].startswith("1 cells ok, 2 failed")
    assert any(l.startswith("failed: ") and "EIO" in l and ".log" in l for l in lines)
    c.finish(counts=res)
    assert len(store.load_samples(c.path)) == 10     # only the ok cell's batches


def test_resume_skips_recorded_cells(tmp_path):
    c, plan = make(tmp_path)
    env = FakeEnv(FakeTarget(), {"write": "fail"})
    engine.run(c, plan[:2], {("fake", "local"): env})
    env2 = FakeEnv(FakeTarget())
    campaign, plan2, done = engine.resume(c.path)
    assert plan2 == plan and len(done) == 2
    res = engine.run(campaign, plan2, {("fake", "local"): env2})
    assert res["skipped"] == 2 and res["ok"] == 1 and len(env2.calls) == 1
    # retry_failed runs the failed cell again, keeping its old record aside
    res = engine.run(campaign, plan2, {("fake", "local"): env2}, retry_failed=True)
    assert res["ok"] == 1 and res["skipped"] == 2
    assert all(r["status"] == "ok" for r in campaign.records().values())
    assert len(list((campaign.cells_dir / "retried").glob("*.json"))) == 1


def test_timeouts_honoured_and_watchdog(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "WATCHDOG_GRACE_S", 0.5)
    c, plan = make(tmp_path)
    env = FakeEnv(FakeTarget(), {"write_sync": "timeout", "write": "hang"})
    t0 = time.monotonic()
    res = engine.run(c, plan, {("fake", "local"): env}, cell_timeout=0.5)
    assert time.monotonic() - t0 < 20       # the hanging cell alone would take 30 s
    errors = {r["cell"]["op"]: r["error"] for r in c.records().values() if r["status"] == "failed"}
    # the cell's time left, passed on: 0.5 s less what the engine spent before the call
    # (any amount on a loaded machine), never more
    left = float(re.fullmatch(r"probe timed out after ([0-9.e-]+) s", errors["write_sync"]).group(1))
    assert 0 < left <= 0.5
    assert "did not stop" in errors["write"]
    assert res["ok"] == 1
    assert all(call[3] is not None and call[3] <= 0.5 for call in env.calls)


def test_unavailable_environment_cells_are_not_run(tmp_path):
    c, plan = make(tmp_path, envs=("fake", "other"))
    env = FakeEnv(FakeTarget(), {"write": "unavailable"})
    res = engine.run(c, plan, {("fake", "local"): env, ("other", "local"): FakeEnv(FakeTarget())},
                     unavailable={("other", "local"): "other: not installed"})
    assert res["not_run"] == 3 + 2 and res["ok"] == 1      # write_sync ran before fake went away
    lines = engine.summary_lines(res)
    assert any("3 other cells on local: other: not installed" in l for l in lines)
    assert len(c.records()) == 1        # not-run cells are not recorded: a resume tries them


def test_store_error_stops_every_target(tmp_path):
    c, plan = make(tmp_path)

    def broken(*a, **k):
        raise UserError("cannot write x: No space left on device")
    c.record_cell = broken
    with pytest.raises(UserError, match="No space"):
        engine.run(c, plan, {("fake", "local"): FakeEnv(FakeTarget())})


def test_fleet_runs_targets_in_parallel(tmp_path):
    plan = engine.fleet_plan(planning.make_plan(["fake"], [4096], list(planning.OPS), 100), ["ssh://pi@a", "ssh://pi@b"])
    assert len({c["cell_id"] for c in plan}) == 6 and engine.target_names(plan) == ["ssh://pi@a", "ssh://pi@b"]
    # ids end up in file names and Docker container names
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", c["cell_id"]) for c in plan)
    c = store.Campaign.create(tmp_path, {}, plan)
    # Parallel means both targets are inside a cell at once: every cell waits at a barrier
    # for the other target's (serial running would break it: a timeout, not a close race).
    both = threading.Barrier(2, timeout=60)

    class Meeting(FakeEnv):
        def run(self, cell, timeout=None):
            both.wait()
            return super().run(cell, timeout)
    envs = {("fake", t): Meeting(FakeTarget(t, host=t[-1])) for t in engine.target_names(plan)}
    res = engine.run(c, plan, envs)
    assert res["ok"] == 6 and not both.broken
    samples = store.load_samples(c.path)
    assert set(zip(samples["target"], samples["host"])) == {("ssh://pi@a", "a"), ("ssh://pi@b", "b")}
    assert engine.target_metadata({"x": FakeTarget("x", "hx")}) == {"x": {"host": "hx", "arch": "x86_64"}}


# -- adaptive ----------------------------------------------------------------------------
def test_parse_ci_and_duration():
    assert adaptive.parse_ci("2%") == pytest.approx(0.02) and adaptive.parse_ci("0.05") == 0.05
    assert adaptive.parse_duration("10m") == 600 and adaptive.parse_duration("1.5h") == 5400
    assert adaptive.parse_duration("90s") == 90
    for bad in ("0%", "150%", "x"):
        with pytest.raises(UserError):
            adaptive.parse_ci(bad)
    for bad in ("-1m", "10 parsecs", "0"):
        with pytest.raises(UserError):
            adaptive.parse_duration(bad)


def test_decide_rule():
    rng = random.Random(3)
    tight = [1.0 + rng.gauss(0, 0.01) for _ in range(20)]
    d = adaptive.decide(tight, 1.0, 0.05, ci=0.02, budget_s=60)
    assert d.stop and d.reason == "ci reached" and d.rel_halfwidth < 0.02
    loose = [1.0 + rng.gauss(0, 0.2) for _ in range(20)]
    d = adaptive.decide(loose, 1.0, 0.05, ci=0.02, budget_s=60)
    # n_needed ≈ n (rel/ci)²: far more than 20 batches
    assert not d.stop and d.next_batches > 100
    d2 = adaptive.decide(loose, 1.0, 0.05, ci=0.02, budget_s=3)   # half of 2 s pays for 20 batches
    assert not d2.stop and d2.next_batches == 20
    d3 = adaptive.decide(loose, 59.9, 0.05, ci=0.02, budget_s=60)
    assert d3.stop and d3.reason == "budget spent"
    assert "budget spent" in adaptive.warnings(loose, 0.02, d3)[-1]


def test_adaptive_cell_runs_rounds_until_ci(tmp_path):
    c, plan = make(tmp_path, ops=("write",), reps=100, batches=10)
    adaptive.mark_plan(plan, ci=0.01, budget_s=30)
    env = FakeEnv(FakeTarget(), noise=0.05, per_op=4e-3)     # 10 reps = 40 ms batches: no calibration
    res = engine.run(c, plan, {("fake", "local"): env})
    rec = next(iter(c.records().values()))
    info = rec["adaptive"]
    assert res["ok"] == 1 and info["stopped"] == "ci reached" and info["rounds"] >= 2
    assert info["ci_achieved"] <= 0.01 and info["calibration"] is None
    assert len(rec["probe"]["batch_seconds"]) == info["batches"] == sum(call[2] for call in env.calls)
    assert rec["probe"]["reps"] == sum(rec["probe"]["batch_reps"]) == sum(call[1] for call in env.calls)
    # each round keeps the pilot's 10 repetitions per batch
    assert all(r == 10 for r in rec["probe"]["batch_reps"])


def test_adaptive_pilot_of_short_batches_only_calibrates(tmp_path):
    c, plan = make(tmp_path, ops=("write",), reps=100, batches=10)
    adaptive.mark_plan(plan, ci=0.01, budget_s=30)
    env = FakeEnv(FakeTarget(), noise=0.05, per_op=1e-4)     # 10 reps = 1 ms batches: too short
    engine.run(c, plan, {("fake", "local"): env})
    rec = next(iter(c.records().values()))
    info = rec["adaptive"]
    assert info["calibration"]["new_batch_reps"] == info["batch_reps"]
    wanted = adaptive.MIN_BATCH_S / 1e-4            # batches of the protocols' floor (20 ms)
    assert 0.9 * wanted <= info["batch_reps"] <= 1.15 * wanted
    # the pilot is kept aside: every counted batch has the calibrated size
    assert set(rec["probe"]["batch_reps"]) == {info["batch_reps"]}
    assert info["batches"] == sum(call[2] for call in env.calls[1:])


def test_adaptive_cell_stops_at_budget_with_warning(tmp_path):
    c, plan = make(tmp_path, ops=("write",), reps=100, batches=10)
    adaptive.mark_plan(plan, ci=0.001, budget_s=1.0)
    env = FakeEnv(FakeTarget(), noise=0.5, sleep=0.3, per_op=2e-3)
    t0 = time.monotonic()
    res = engine.run(c, plan, {("fake", "local"): env})
    assert time.monotonic() - t0 < 20      # a target of ±0.1% at 50% noise: without the budget, never
    rec = next(iter(c.records().values()))
    assert rec["adaptive"]["stopped"] == "budget spent"
    assert any("target ±0.1%" in w for w in rec["adaptive"]["warnings"])
    assert any("warning:" in l for l in engine.summary_lines(res, c.records()))


# -- progress -----------------------------------------------------------------------------
def test_estimator_learns_from_finished_cells():
    e = Estimator()
    a = {"env": "linux", "target": "local", "op": "write", "size_bytes": 4096, "reps": 100}
    assert e.estimate(a) is None
    e.add(a, 2.5, 2.0)                       # 0.5 s outside the probe's timing
    assert e.estimate(dict(a, reps=300)) == pytest.approx(0.5 + 6.0)
    # another size, one known: the square root of the size ratio
    assert e.estimate(dict(a, size_bytes=16384)) == pytest.approx(0.5 + 4.0)
    # the same op and size in another environment is the better guide
    e.add(dict(a, env="docker", size_bytes=16384), 1.0, 1.0)
    assert e.estimate(dict(a, size_bytes=16384)) == pytest.approx(0.5 + 1.0)
    # two sizes of the same env and op: a line through them
    e.add(dict(a, size_bytes=8192), 3.5, 3.0)
    assert e.estimate(dict(a, size_bytes=12288)) == pytest.approx(0.5 + 4.0)
    assert e.remaining([a, dict(a, reps=50)]) == pytest.approx(0.5 + 2.0 + 0.5 + 1.0)
    assert e.estimate(dict(a, target="ssh://pi@x")) is None
    assert e.estimate(dict(a, adaptive={"ci": 0.02, "budget_s": 600})) == 600


def test_progress_draws_current_cell_and_etas(tmp_path):
    from rich.console import Console
    c, plan = make(tmp_path, reps=100)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160)
    p = Progress(plan, mode="rich", console=console, title="camp")
    p.finished(plan[0], {"status": "ok", "wall_seconds": 2.0})
    p.started(plan[1])
    console.print(p._render())
    text = buf.getvalue()
    assert "1/3 cells" in text and plan[1]["cell_id"] in text and "ETA 0:00:0" in text


def test_progress_quiet_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    c, plan = make(tmp_path)
    with Progress(plan) as p:
        assert p.mode == "quiet"
        res = engine.run(c, plan, {("fake", "local"): FakeEnv(FakeTarget())}, progress=p)
    assert res["ok"] == 3 and len(p.done_ids) == 3


def test_records_are_json(tmp_path):
    c, plan = make(tmp_path)
    engine.run(c, plan, {("fake", "local"): FakeEnv(FakeTarget())})
    for path in c.cells_dir.glob("*.json"):
        rec = json.loads(path.read_text())
        assert rec["attempts"] == 1 and rec["wall_seconds"] > 0


def test_prepare_reports_what_cannot_run_and_teardown_is_best_effort():
    class Broken(FakeEnv):
        def check(self):
            raise Unavailable("broken: engine not running")

    class Messy(FakeEnv):
        prepared = False

        def prepare(self):
            self.prepared = True

        def teardown(self):
            raise OSError("rm failed")
    envs = {("broken", "local"): Broken(FakeTarget()), ("messy", "ssh://x"): Messy(FakeTarget("ssh://x"))}
    assert engine.prepare(envs) == {("broken", "local"): "broken: engine not running"}
    assert envs[("messy", "ssh://x")].prepared
    assert engine.teardown(envs) == {("messy", "ssh://x"): "rm failed"}


# -- what a campaign directory says is checked as the command line is -----------------------
def _linux_campaign(tmp_path, cells=1):
    plan = planning.make_plan(["linux"], [4096 * (i + 1) for i in range(cells)], ["read"], 10, batches=2)
    return store.Campaign.create(tmp_path, {}, plan, name="c"), plan


def _tamper(campaign, plan, **cell):
    campaign_plan = [dict(c, **cell) for c in plan]
    (campaign.path / "plan.json").write_text(json.dumps(campaign_plan))


@pytest.mark.parametrize("cell, message", [
    ({"params": {"dir": "../../etc"}}, "linux: --param dir='../../etc': expected an absolute path"),
    ({"params": {"dir": "/nonexistent-edgeio"}}, "linux: --param dir=/nonexistent-edgeio: no such directory"),
    ({"params": {"evil": "1"}}, "env linux: unknown --param evil"),
    ({"params": {"dir": 5}}, "field [0].params.dir: expected a string"),
    ({"env": "docker", "params": {"volume": "data"}}, "docker: --param volume='data': expected an absolute path"),
    ({"env": "docker", "params": {"mem": "lots"}}, "docker: --param mem='lots': expected a whole number"),
    ({"env": "hvt", "params": {"unikernel": "probe.hvt"}}, "hvt: --param unikernel='probe.hvt'"),
    ({"env": "hvt", "params": {"blocks_per_call": "0"}}, "hvt: --param blocks_per_call=0: expected 1 to 65536"),
    ({"env": "hvt", "params": {"disk": "VICTIM"}}, "hvt: --param disk=VICTIM: the cells overwrite it"),
    ({"reps": -5}, "field [0].reps: expected at least 1"),
    ({"op": "erase"}, "field [0].op"),
])
def test_resume_checks_plan_params_exactly_as_the_command_line(tmp_path, cell, message):
    from edgeio.commands import measure as command
    from conftest import have_kvm
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious " * 1000)
    if "VICTIM" in json.dumps(cell):
        if not have_kvm():
            pytest.skip("hvt's check() needs /dev/kvm before its preflight sees the disk")
        cell = json.loads(json.dumps(cell).replace("VICTIM", str(victim)))
        message = message.replace("VICTIM", str(victim))
    campaign, plan = _linux_campaign(tmp_path / "out")
    _tamper(campaign, plan, **cell)
    with pytest.raises(UserError) as err:
        command.run(resume=str(campaign.path), quiet=True)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert victim.read_bytes() == b"precious " * 1000
    assert list(campaign.cells_dir.iterdir()) == []          # nothing ran


def test_one_configuration_per_environment_and_target(tmp_path):
    from edgeio.commands import measure as command
    campaign, plan = _linux_campaign(tmp_path, cells=2)
    plan[1]["params"] = {"dir": "/tmp"}          # the first cell looks harmless, the next one not
    (campaign.path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(UserError, match="other linux params than the campaign's first linux cell"):
        command.run(resume=str(campaign.path), quiet=True)


def test_a_record_must_be_the_one_of_its_plan_cell(tmp_path):
    campaign, plan = _linux_campaign(tmp_path)
    campaign.record_cell(dict(plan[0], reps=1), "ok", probe_record(dict(plan[0], reps=1), 1e-5), {})
    with pytest.raises(UserError, match="field cell.reps differs from plan.json.*--retry-failed"):
        engine.resume(campaign.path)
    _, _, records = engine.resume(campaign.path, retry_failed=True)     # the way on it names
    assert records == {} and len(list((campaign.cells_dir / "retried").glob("*.json"))) == 1


# -- the default cell timeout -----------------------------------------------------------------
def test_default_timeout_scales_with_the_expected_time():
    cell = {"env": "linux", "target": "local", "op": "write_sync", "size_bytes": 4096, "reps": 100000}
    # nothing finished yet: the slowest storage we target, at its worst
    assert engine.default_timeout(cell) == pytest.approx(100000 * (0.05 + 4096 / (2 << 20)))
    assert engine.default_timeout(dict(cell, reps=10)) == engine.TIMEOUT_FLOOR_S
    e = Estimator()
    e.add(dict(cell, reps=1000), 20.0, 19.0)           # 19 ms per fsync, 1 s around it
    assert engine.default_timeout(cell, e) == pytest.approx(10 * (1.0 + 1900.0))
    assert engine.default_timeout(dict(cell, adaptive={"ci": 0.02, "budget_s": 600}), e) == \
        engine.TIMEOUT_FLOOR_S + 900


def test_a_primitive_is_not_timed_by_the_file_ops_beside_it():
    """A qemu trap primitive of 21 million 50 ns repetitions, in a campaign whose qemu
    file ops took milliseconds: the estimator does not lend it their time (that gave a
    timeout poll() could not take), the plan's estimate serves, and no timeout, however
    many reps, exceeds the ceiling."""
    e = Estimator()
    e.add({"env": "qemu", "target": "local", "op": "write_sync", "size_bytes": 4096, "reps": 100}, 12.0, 0.5)
    e.add({"env": "qemu", "target": "local", "op": "write", "size_bytes": 1 << 20, "reps": 100}, 12.0, 0.1)
    trap = {"env": "qemu", "target": "local", "op": "trap", "kind": "primitive", "size_bytes": 4096,
            "reps": 21_625_212, "estimate_s": 9.5}
    assert e.estimate(trap) is None
    assert engine.default_timeout(trap, e) == engine.TIMEOUT_FLOOR_S
    e.add(dict(trap, reps=1000), 11.6, 5e-5)                # once one ran, its own rung
    assert e.estimate(trap) == pytest.approx(11.6 + 21_625_212 * 5e-8, rel=1e-3)   # median overhead + reps
    huge = {"env": "linux", "target": "local", "op": "write", "size_bytes": 4096, "reps": 10 ** 12}
    assert engine.default_timeout(huge) == engine.TIMEOUT_CEILING_S


def test_a_stuck_cell_is_abandoned_by_default(tmp_path, monkeypatch):
    """A guest that sleeps: no --cell-timeout given, the cell still ends, failed."""
    monkeypatch.setattr(engine, "TIMEOUT_FLOOR_S", 0.3)
    c, plan = make(tmp_path, reps=100)
    env = FakeEnv(FakeTarget(), {"read": "timeout"}, per_op=1e-5)   # the read sleeps its whole timeout
    res = engine.run(c, plan, {("fake", "local"): env})
    assert (res["ok"], res["failed"]) == (2, 1)
    recs = {r["cell"]["op"]: r for r in c.records().values()}
    assert recs["write_sync"]["timeout_s"] == pytest.approx(100 * (0.05 + 4096 / (2 << 20)))   # a priori
    learned = recs["read"]["timeout_s"]
    assert learned == pytest.approx(max(0.3, 10 * Estimator_from(recs, plan[2])), rel=1e-6)
    assert "timed out" in recs["read"]["error"]
    # overridable: an explicit timeout is used as given
    c2, plan2 = make(tmp_path / "2", reps=100)
    engine.run(c2, plan2, {("fake", "local"): FakeEnv(FakeTarget(), {"read": "timeout"})}, cell_timeout=0.2)
    assert {r["timeout_s"] for r in c2.records().values()} == {0.2}


def Estimator_from(records, cell):
    e = Estimator()
    for rec in records.values():
        if rec["status"] == "ok":
            e.add(rec["cell"], rec["wall_seconds"], rec["probe"]["total_seconds"])
    return e.estimate(cell)
