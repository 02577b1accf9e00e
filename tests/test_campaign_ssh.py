"""Campaigns end to end on the loopback SSH target: linux and docker there, a fleet of two
targets in parallel, adaptive repetitions with the real probe."""

import json
import time

import pytest

from conftest import docker_running
from edgeio import store
from measure import adaptive
from measure import campaign as engine
from measure import plan as planning
from measure.environments.linux import LinuxEnvironment
from measure.reach import parse_target
from measure.targets import LocalTarget


@pytest.fixture
def ssh_env(sshd, monkeypatch):
    """The key and known_hosts reach the measure command through the environment."""
    monkeypatch.setenv("EDGEIO_SSH_KEY", str(sshd.identity))
    monkeypatch.setenv("EDGEIO_SSH_KNOWN_HOSTS", str(sshd.known_hosts))
    return sshd


@pytest.mark.docker
@pytest.mark.skipif(not docker_running(), reason="needs a running Docker engine")
def test_measure_command_over_ssh_linux_and_docker(ssh_env, tmp_path):
    from edgeio.commands import measure
    path = measure.run(env="linux,docker", size="4KiB", op="all", reps="200", batches=10,
                       targets=[ssh_env.url], out=str(tmp_path), quiet=True)
    campaign = store.Campaign.open(path)
    recs = campaign.records()
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs.values()), \
        [r["error"] for r in recs.values()]
    samples = store.load_samples(path)
    assert set(samples["env"]) == {"linux", "docker"}
    assert set(samples["target"]) == {ssh_env.url}
    assert len(samples) == 6 * 10 and set(samples["arch"]) == {LocalTarget().facts()["arch"]}
    meta = campaign.metadata()
    assert ssh_env.url in json.dumps(meta)
    # the probe ran there: the docker cells carry the image built on the target
    assert all(r["env_metadata"].get("image", "").startswith("edgeio-probe:")
               for r in recs.values() if r["cell"]["env"] == "docker")


def test_fleet_local_and_ssh_in_parallel(sshd, tmp_path):
    remote = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    targets = {"local": LocalTarget(), remote.name: remote}
    plan = engine.fleet_plan(planning.make_plan(["linux"], [4096, 65536], ["write", "read"], 200, batches=10),
                             list(targets))
    facts = engine.target_metadata(targets)
    campaign = store.Campaign.create(tmp_path, {"targets": facts}, plan)
    envs = engine.environments_for(plan, targets)
    unavailable = engine.prepare(envs)
    assert unavailable == {}
    threads = set()
    try:
        res = engine.run(campaign, plan, envs, on_start=lambda cell: threads.add(__import__("threading").current_thread().name))
    finally:
        engine.teardown(envs)
        remote.close()
    assert res["ok"] == 8 and len(threads) == 2      # one worker per target
    campaign.finish(counts=res)
    samples = store.load_samples(campaign.path)
    assert samples.groupby("target")["cell_id"].nunique().to_dict() == {"local": 4, remote.name: 4}
    assert campaign.metadata()["targets"][remote.name]["target"] == remote.name


class _Timed(LinuxEnvironment):
    """The real linux environment; each run's start (monotonic) and timeout noted."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = []

    def run(self, cell, timeout=None):
        self.calls.append((time.monotonic(), timeout))
        return super().run(cell, timeout=timeout)


def test_adaptive_cell_with_the_real_probe(tmp_path):
    # write_sync is the noisy op (fsync): the pilot's 20 batches rarely pin the mean to 3%
    plan = planning.make_plan(["linux"], [4096], ["write_sync"], 200, batches=20)
    adaptive.mark_plan(plan, ci=0.03, budget_s=5)
    campaign = store.Campaign.create(tmp_path, {}, plan)
    env = _Timed(LocalTarget(), {})
    env.prepare()
    try:
        res = engine.run(campaign, plan, {("linux", "local"): env})
    finally:
        env.teardown()
    rec = next(iter(campaign.records().values()))
    info = rec["adaptive"]
    assert res["ok"] == 1 and info["stopped"] in ("ci reached", "budget spent")
    # A round starts only while budget is left, and is cut at twice the budget left (at
    # least 10 s): what bounds the cell whatever the load (fsync times swing with the
    # machine's other I/O, so the wall time itself is no fixed bound).
    (pilot_start, _), *rounds = env.calls
    assert all(start - pilot_start < 5 + 2 for start, _ in rounds), env.calls   # 2 s: the engine's own steps
    assert all(timeout is not None and timeout <= max(10.0, adaptive.ROUND_TIMEOUT_FACTOR * 5)
               for _, timeout in rounds), env.calls
    assert len(rec["probe"]["batch_seconds"]) == info["batches"] >= 20
    assert info["rounds"] >= 2 or info["ci_achieved"] <= 0.03
    assert set(rec["probe"]["batch_reps"]) == {info["batch_reps"]}   # one batch size in every counted round
    if info["stopped"] == "ci reached":
        assert info["ci_achieved"] <= 0.03
    else:
        assert any("target ±3.0%" in w for w in info["warnings"])
    campaign.finish()
    assert len(store.load_samples(campaign.path)) == info["batches"]
