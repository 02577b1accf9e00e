"""Reliability, for real: kill -9 and resume, a corrupt results file, a full disk,
an SSH connection dropped in the middle of a cell. The real static probe runs in the
real linux environment (locally, or on the loopback sshd)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgeio import store
from edgeio.errors import UserError
from edgeio.paths import PROJECT_ROOT
from measure import campaign as engine
from measure import plan as planning
from measure.environments.linux import LinuxEnvironment
from measure.targets import LocalTarget

from conftest import docker_running

DRIVER = Path(__file__).with_name("campaign_driver.py")


def _driver(out: Path, env_name="linux", cells=5, **faults) -> subprocess.Popen:
    """tests/campaign_driver.py in its own session (killpg kills it and its probe);
    faults: hold=<cell index>, kill='<point>:<n>' (see the driver)."""
    env = dict(os.environ, PYTHONPATH=f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}")
    env.pop("EDGEIO_TEST_HOLD", None), env.pop("EDGEIO_TEST_KILL", None)
    if "hold" in faults:
        env["EDGEIO_TEST_HOLD"] = str(faults["hold"])
    if "kill" in faults:
        env["EDGEIO_TEST_KILL"] = faults["kill"]
    return subprocess.Popen([sys.executable, str(DRIVER), str(out), env_name, str(cells)], cwd=PROJECT_ROOT,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=env)


def _until(proc, word: str) -> list[list[str]]:
    """Lines of the driver up to the first starting with word (an event, no time limit
    but the driver's own end)."""
    lines = []
    for line in proc.stdout:
        lines.append(line.split())
        if lines[-1] and lines[-1][0] == word:
            return lines
    raise AssertionError(f"driver ended before {word}: {proc.stderr.read()[-2000:]}")


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _children(pid: int) -> list[str]:
    """Command names of the process's descendants."""
    names, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    todo.append(int(d.name))
                    names.append(stat.split("(", 1)[1].rsplit(")", 1)[0])
    return names


def _cell_files(campaign_dir: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((campaign_dir / "cells").glob("*.json"))}


def _workdirs(tag: str, env="linux") -> list[Path]:
    return sorted(Path("/var/tmp").glob(f"edgeio-{tag}-{env}.*"))


def _check_complete(out: Path):
    """Every plan cell recorded exactly once, ok; samples.csv is exactly the records' rows."""
    import pandas as pd
    campaign = store.Campaign.open(out)
    plan, records = campaign.plan(), campaign.records()
    files = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert files == sorted(f"{c['cell_id']}.json" for c in plan)
    assert all(r["status"] == "ok" for r in records.values())
    derived = store.load_samples(out)
    written = pd.read_csv(out / "samples.csv", dtype={"config": str})
    assert not derived.duplicated(["cell_id", "batch"]).any()
    for rec in records.values():
        rows = derived[derived["cell_id"] == rec["cell"]["cell_id"]]
        assert list(rows["seconds"]) == rec["probe"]["batch_seconds"]
    pd.testing.assert_frame_equal(written.reset_index(drop=True), derived.reset_index(drop=True),
                                  check_dtype=False)
    assert not list(out.rglob(".*.tmp*")), "a torn temporary file outlived the resume"


def test_kill_9_mid_cell_then_resume_keeps_every_sample_once(tmp_path):
    """Kill -9 while a probe surely runs (held: an event, no race), a second writer refused
    meanwhile; the resume removes the killed run's work directory and runs what is left."""
    out = tmp_path / "camp"
    proc = _driver(out, hold=2)
    try:
        lines = _until(proc, "HELD")
        assert any(n.startswith("fileprobe") for n in _children(proc.pid)), "the held probe runs"
        done = [w[1] for w in lines if w[0] == "DONE"]
        assert len(done) == 2
        # one writer at a time: a second one (in this process, and from the command line) is refused
        held = store.Campaign.open(out)
        with pytest.raises(UserError, match=rf"in use by another edgeio run \(pid {proc.pid} on .*started 20"):
            engine.run(held, held.plan(), {})
        second = subprocess.run([sys.executable, "-m", "invoke", "measure", "--resume", str(out)], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert f"pid {proc.pid}" in second.stderr and "started" in second.stderr
        before = _cell_files(out)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        _kill(proc)
    tag = store.Campaign.open(out).resource_tag()
    assert len(_workdirs(tag)) == 1, "the killed run left its work directory (the fault is real)"
    assert set(before) == {f"{c}.json" for c in done} == set(_cell_files(out))   # the killed cell left no record

    proc = _driver(out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "FINISHED 3 2" in stdout                              # 3 run now, 2 kept
    assert not any(line.startswith(f"START {c}") for c in done for line in stdout.splitlines())
    assert f"REMOVED linux on local: /var/tmp/edgeio-{tag}-linux." in stdout
    assert _workdirs(tag) == []
    after = _cell_files(out)
    assert all(after[name] == data for name, data in before.items())   # untouched
    _check_complete(out)


def test_killed_at_random_points_then_resumed_every_cell_once(tmp_path):
    """Fault injection: 12 kills, seeded, at the engine's and the store's own points
    (a cell starting, a log stored without its record, a record's temporary file half
    written, a record just in place, samples.csv half written) and at random moments
    from outside; each time resumed. In the end every cell is recorded exactly once
    and samples.csv is exactly the records' rows."""
    import random
    rng = random.Random(12)
    out, n_cells, kills = tmp_path / "camp", 14, []
    points = ["cell-start", "log-written", "record-torn", "recorded", "outside"]
    # the first pass tries every point once (seeded order), the kill from outside last:
    # it lands at a random moment and may let most cells finish, which must not leave
    # a store point untried (pop() takes from the end)
    first = ["outside"] + rng.sample(points[:-1], len(points) - 1)
    while len(kills) < 12:
        done = len(store.Campaign.open(out).records()) if (out / "plan.json").exists() else 0
        left = n_cells - done
        # samples.csv is written once all cells are: that point only when (nearly) none are left
        if left > 1:    # every kind of point once (seeded order), then seeded random ones
            point = first.pop() if first else rng.choice(points)
        else:
            point = rng.choice(["record-torn", "log-written", "finish-torn"][-(left + 1):])
        n = rng.randint(1, 2) if point not in ("finish-torn", "outside") else 1
        if point == "outside":
            # the last cell held: the run cannot finish before the kill (cells take ms
            # here; a kill that came too late would end the loop short of its kills)
            proc = _driver(out, cells=n_cells, hold=n_cells - 1)
            _until(proc, "START")
            time.sleep(rng.uniform(0, 0.2))      # a random moment, not a synchronisation
            _kill(proc)
        else:
            proc = _driver(out, cells=n_cells, kill=f"{point}:{n}")
            proc.communicate(timeout=300)
        kills.append((point, n, proc.returncode))
        if proc.returncode == 0:
            break           # it finished before the point came
        assert proc.returncode == -signal.SIGKILL, (kills, proc.stderr and proc.stderr.read())
        # after every kill: what is stored reads whole (no torn record counts as one)
        campaign = store.Campaign.open(out)
        assert len(campaign.records()) <= n_cells
    assert sum(1 for k in kills if k[2] == -signal.SIGKILL) >= 10, kills
    assert {"record-torn", "log-written"} <= {k[0] for k in kills}, kills
    proc = _driver(out, cells=n_cells)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "FINISHED" in stdout, stderr
    _check_complete(out)
    assert _workdirs(store.Campaign.open(out).resource_tag()) == []


def _docker_ids(*filters: str, what="ps") -> list[str]:
    args = ["docker", what, "-q"] + (["-a"] if what == "ps" else [])
    for f in filters:
        args += ["--filter", f]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not docker_running(), reason="Docker engine not running (.ci/run starts it)")
def test_killed_docker_cell_leaves_nothing_after_resume(tmp_path):
    """kill -9 while a container measures: the container (owned by dockerd) keeps running,
    the image and work directory stay; the resume stops and removes them before its
    first cell, and its own teardown leaves nothing either."""
    out = tmp_path / "camp"
    proc = _driver(out, "docker", cells=2, hold=1)
    try:
        held = _until(proc, "HELD")[-1][1]
        tag = store.Campaign.open(out).resource_tag()
        deadline = time.monotonic() + 120        # the event: dockerd reports the container running
        while not _docker_ids(f"label=edgeio.cell={held}", "status=running") and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        _kill(proc)
    running = _docker_ids(f"label=edgeio.campaign={tag}", "status=running")
    assert len(running) == 1, "the killed run's container still measures (the fault is real)"
    assert _docker_ids(f"label=edgeio.campaign={tag}", what="images") and len(_workdirs(tag, "docker")) == 1
    proc = _driver(out, "docker", cells=2)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    first_start = next(i for i, line in enumerate(lines) if line.startswith("START"))
    removed = [line for line in lines[:first_start] if line.startswith("REMOVED")]
    assert any(f"container {running[0]}" in line for line in removed), lines   # before the first cell
    assert any("image " in line for line in removed) and any(f"edgeio-{tag}-docker." in line for line in removed)
    assert "FINISHED 1 1" in stdout
    assert _docker_ids(f"label=edgeio.campaign={tag}") == []
    assert _docker_ids(f"label=edgeio.campaign={tag}", what="images") == []
    assert _workdirs(tag, "docker") == []
    _check_complete(out)


def _small_campaign(parent: Path, name="c", cells=3):
    plan = planning.make_plan(["linux"], [4096 * (i + 1) for i in range(cells)], ["write"], 50, batches=5)
    campaign = store.Campaign.create(parent, {}, plan, name=name)
    return campaign, plan


def test_corrupt_results_file_is_named_and_others_untouched(tmp_path):
    campaign, plan = _small_campaign(tmp_path)
    env = LinuxEnvironment(LocalTarget(), {})
    env.prepare()
    try:
        assert engine.run(campaign, plan, {("linux", "local"): env})["ok"] == 3
    finally:
        env.teardown()
    files = _cell_files(campaign.path)
    victim = campaign.cells_dir / sorted(files)[1]
    victim.write_bytes(files[victim.name][: len(files[victim.name]) // 2])   # torn write
    for attempt in (lambda: store.load_samples(campaign.path),
                    lambda: engine.resume(campaign.path),
                    lambda: engine.run(campaign, plan, {})):
        with pytest.raises(UserError) as err:
            attempt()
        assert str(victim) in str(err.value) and "corrupt" in str(err.value)
    after = _cell_files(campaign.path)
    assert {k: v for k, v in after.items() if k != victim.name} == \
        {k: v for k, v in files.items() if k != victim.name}


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_clear_error_no_partial_rows_then_resume(tiny_fs):
    campaign, plan = _small_campaign(tiny_fs, cells=8)
    # leave room for a few cells only
    free = os.statvfs(tiny_fs).f_bavail * os.statvfs(tiny_fs).f_frsize
    (tiny_fs / "filler").write_bytes(b"\0" * (free - 24 * 1024))
    env = LinuxEnvironment(LocalTarget(), {})
    env.prepare()
    try:
        with pytest.raises(UserError, match="No space left on device") as err:
            engine.run(campaign, plan, {("linux", "local"): env})
        assert str(campaign.path) in str(err.value)
        recorded = campaign.records()               # every stored record parses whole
        assert 0 < len(recorded) < len(plan)
        assert not list(campaign.cells_dir.glob(".*tmp*"))      # no half-written files
        with pytest.raises(UserError, match="No space left"):
            campaign.finish()
        assert not (campaign.path / "samples.csv").exists()    # no partial table either
        # room again: resume completes, every sample once
        (tiny_fs / "filler").unlink()
        res = engine.run(campaign, plan, {("linux", "local"): env})
        assert res["skipped"] == len(recorded) and res["ok"] == len(plan) - len(recorded)
    finally:
        env.teardown()
    campaign.finish()
    samples = store.load_samples(campaign.path)
    assert len(samples) == 5 * len(plan) and not samples.duplicated(["cell_id", "batch"]).any()


# -- over SSH ------------------------------------------------------------------------------
def _ssh_target(sshd):
    from measure.reach import parse_target
    return parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))


def _probe_pids(cell_id: str) -> set[int]:
    """Running probes of this cell (its data file name carries the cell id)."""
    pids = set()
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and "fileprobe" in (d / "comm").read_text() \
                    and cell_id.encode() in (d / "cmdline").read_bytes():
                pids.add(int(d.name))
        except OSError:
            continue
    return pids


def _pid_lines(monkeypatch) -> set[int]:
    """The remote pids whose line the SSH client holds (what a reconnection kills by),
    filled as they arrive: a spy on measure.ssh's channel reader."""
    import measure.ssh
    held, drain = set(), measure.ssh._drain

    def spy(chan, out, err):
        drain(chan, out, err)
        pid = measure.ssh._pid_of(err)
        if pid:
            held.add(int(pid))
    monkeypatch.setattr(measure.ssh, "_drain", spy)
    return held


def _drop_during(sshd, cell_id, repeat: bool, pid_lines: set[int]):
    """A thread that kills the sshd session while cell_id's probe runs (each attempt if
    repeat). The event is the probe running AND the client holding its pid line: a
    probe seen in /proc whose pid line is still in sshd's pipe could not be killed on
    reconnection, and the test would fail for the race, not the product."""
    finished, drops = threading.Event(), []

    def dropper():
        seen = set()
        deadline = time.monotonic() + 240
        while not finished.is_set() and time.monotonic() < deadline:
            new = (_probe_pids(cell_id) & pid_lines) - seen
            if new:
                seen |= new
                drops.append(sshd.drop_connections())
                if not repeat:
                    return
            time.sleep(0.01)
    thread = threading.Thread(target=dropper, daemon=True)
    thread.start()

    def on_cell(cell, rec):
        if cell["cell_id"] == cell_id:
            finished.set()
    return on_cell, drops, thread


@pytest.mark.parametrize("repeat", [False, True], ids=["retried", "marked-failed"])
def test_ssh_connection_dropped_mid_cell(sshd, tmp_path, repeat, monkeypatch):
    target = _ssh_target(sshd)
    plan = planning.make_plan(["linux"], [4096, 8192, 12288], ["write_sync"], 1000, target=target.name,
                              order="interleaved", batches=20)
    campaign = store.Campaign.create(tmp_path, {}, plan)
    env = LinuxEnvironment(target, {})
    env.check()
    env.prepare()
    victim = plan[1]["cell_id"]
    on_cell, drops, thread = _drop_during(sshd, victim, repeat, _pid_lines(monkeypatch))
    try:
        res = engine.run(campaign, plan, {("linux", target.name): env}, on_cell=on_cell)
    finally:
        env.teardown()
        target.close()
    thread.join(60)
    assert not _probe_pids(victim)           # the orphaned probe was killed on reconnection
    assert drops and drops[0] >= 1 and len(drops) == (2 if repeat else 1)
    recs = campaign.records()
    assert len(recs) == 3
    rec = recs[victim]
    log = (campaign.path / rec["log"]).read_text()
    assert rec["attempts"] == 2 and "connection lost" in log, (rec["error"], log[:2000])
    if repeat:
        assert rec["status"] == "failed" and "connection lost" in rec["error"]
        assert res["failed"] == 1 and res["ok"] == 2
    else:
        assert rec["status"] == "ok" and len(rec["probe"]["batch_seconds"]) == 20
        assert res["ok"] == 3
    # the campaign went on after it
    assert recs[plan[2]["cell_id"]]["status"] == "ok"


def test_ctrl_c_mid_cell_stores_no_failure(tmp_path):
    """^C (SIGINT to the whole foreground group, probe included) is no failed cell."""
    out = tmp_path / "camp"
    proc = _driver(out, hold=1)
    try:
        lines = _until(proc, "HELD")
        held = lines[-1][1]
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        _kill(proc)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr.read()
    recs = store.Campaign.open(out).records()
    assert held not in recs and len(recs) == 1 and all(r["status"] == "ok" for r in recs.values())
