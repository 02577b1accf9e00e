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

# Runs (or resumes) a campaign of the linux environment; prints START/DONE per cell.
DRIVER = r"""
import sys
from pathlib import Path
from edgeio import store
from measure import campaign as engine
from measure import plan as planning
from measure.environments.linux import LinuxEnvironment
from measure.targets import LocalTarget

out = Path(sys.argv[1])
if (out / "plan.json").exists():
    campaign, plan, _ = engine.resume(out)
else:
    plan = planning.make_plan(["linux"], [4096, 8192, 12288, 16384, 20480], ["write_sync"], 600,
                              order="interleaved", batches=20)
    campaign = store.Campaign.create(out.parent, {"test": "kill"}, plan, name=out.name)
env = LinuxEnvironment(LocalTarget(), {})
env.check()
env.prepare()
say = lambda *a: print(*a, flush=True)
try:
    res = engine.run(campaign, plan, {("linux", "local"): env},
                     on_start=lambda cell: say("START", cell["cell_id"]),
                     on_cell=lambda cell, rec: say("DONE", cell["cell_id"], rec["status"]))
finally:
    env.teardown()
campaign.finish(counts=res)
say("FINISHED", res["ok"], res["skipped"])
"""


def _driver(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], cwd=PROJECT_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))


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


def test_kill_9_mid_cell_then_resume_keeps_every_sample_once(tmp_path):
    out = tmp_path / "camp"
    proc = _driver(out)
    started, done = [], []
    try:
        for line in proc.stdout:
            word, *rest = line.split()
            (started if word == "START" else done if word == "DONE" else []).append(rest[0] if rest else "")
            if len(done) >= 2 and len(started) == 3:
                break
        # the third cell's probe is running: kill the whole campaign, probe included
        deadline = time.monotonic() + 10
        while not any(n.startswith("fileprobe") for n in _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(n.startswith("fileprobe") for n in _children(proc.pid)), "no probe running to interrupt"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_cell = started[2]
    before = _cell_files(out)
    # the killed run never tore down its work directory (probe and data files): we do
    for rec in json.loads(next(iter(before.values()))).get("probe", {}).get("path", "").rsplit("/", 1)[:1]:
        if rec.startswith("/var/tmp/edgeio-linux."):
            subprocess.run(["rm", "-rf", rec])
    assert set(before) == {f"{c}.json" for c in done}          # the killed cell left no record
    assert f"{killed_cell}.json" not in before

    proc = _driver(out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "FINISHED 3 2" in stdout                              # 3 run now, 2 kept
    assert not any(line.startswith(f"START {c}") for c in done for line in stdout.splitlines())

    campaign = store.Campaign.open(out)
    after = _cell_files(out)
    plan = campaign.plan()
    assert set(after) == {f"{c['cell_id']}.json" for c in plan}
    assert all(after[name] == data for name, data in before.items())   # untouched
    samples = store.load_samples(out)
    assert not samples.duplicated(["cell_id", "batch"]).any()
    for rec in campaign.records().values():
        assert rec["status"] == "ok"
        n = len(rec["probe"]["batch_seconds"])
        assert (samples["cell_id"] == rec["cell"]["cell_id"]).sum() == n
    derived = (out / "samples.csv").read_text().strip().splitlines()
    assert len(derived) == len(samples) + 1


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
    from measure.ssh import parse_target
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


def _drop_during(sshd, cell_id, repeat: bool):
    """A thread that kills the sshd session while cell_id's probe runs (each attempt if repeat)."""
    finished, drops = threading.Event(), []

    def dropper():
        seen = set()
        deadline = time.monotonic() + 90
        while not finished.is_set() and time.monotonic() < deadline:
            new = _probe_pids(cell_id) - seen
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
def test_ssh_connection_dropped_mid_cell(sshd, tmp_path, repeat):
    target = _ssh_target(sshd)
    plan = planning.make_plan(["linux"], [4096, 8192, 12288], ["write_sync"], 1000, target=target.name,
                              order="interleaved", batches=20)
    campaign = store.Campaign.create(tmp_path, {}, plan)
    env = LinuxEnvironment(target, {})
    env.check()
    env.prepare()
    victim = plan[1]["cell_id"]
    on_cell, drops, thread = _drop_during(sshd, victim, repeat)
    try:
        res = engine.run(campaign, plan, {("linux", target.name): env}, on_cell=on_cell)
    finally:
        env.teardown()
        target.close()
    thread.join(5)
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
    proc = _driver(out)
    started = []
    try:
        for line in proc.stdout:
            if line.startswith("START"):
                started.append(line.split()[1])
                if len(started) == 2:
                    break
        deadline = time.monotonic() + 10
        while not any(n.startswith("fileprobe") for n in _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr.read()
    recs = store.Campaign.open(out).records()
    assert started[1] not in recs and all(r["status"] == "ok" for r in recs.values())
