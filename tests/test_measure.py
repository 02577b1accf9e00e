"""invoke measure end to end: real linux and docker environments, the store, CLI errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import docker_running

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args, env=None):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def campaign_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir()) if parent.exists() else []


def measure_ok(out: Path, *args, env=None) -> tuple[Path, str]:
    proc = invoke("measure", "--out", str(out), *args, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (campaign,) = campaign_dirs(out)
    return campaign, proc.stdout


def check_ordering(summary: pd.DataFrame, env: str):
    # Only the physical margin: an fsync (a device flush, ~ms) against page-cache copies
    # (~µs), on medians. Buffered write vs read of 4 KiB are both copies, a few hundred ns
    # apart either way on a loaded machine: no order to assert there (benchmarks/ print it).
    s = summary[summary["env"] == env].set_index("op")["median_per_op_s"]
    assert s["write_sync"] > 3 * max(s["write"], s["read"]), s


def test_linux_campaign_is_complete_and_ordered(tmp_path):
    campaign, stdout = measure_ok(tmp_path, "--env", "linux", "--size", "4KiB", "--reps", "300",
                                  "--batches", "30", "--quiet")
    for name in ("metadata.json", "plan.json", "samples.csv", "summary.csv"):
        assert (campaign / name).is_file(), name
    samples = pd.read_csv(campaign / "samples.csv")
    assert len(samples) == 3 * 30 and set(samples["op"]) == {"write_sync", "write", "read"}
    assert (samples.groupby("op")["repetitions"].sum() == 300).all()
    assert (samples["seconds"] > 0).all() and set(samples["host"].astype(str)) != {""}
    summary = pd.read_csv(campaign / "summary.csv")
    check_ordering(summary, "linux")
    assert (summary["ci95_low_s"] <= summary["mean_per_op_s"]).all()
    assert (summary["mean_per_op_s"] <= summary["ci95_high_s"]).all()
    meta = json.loads((campaign / "metadata.json").read_text())
    for key in ("host", "arch", "kernel", "cpu_model", "memory_bytes", "kvm", "probe_version",
                "git_commit", "start_time", "end_time", "environments"):
        assert meta.get(key) not in (None, ""), key
    assert meta["environments"]["linux@local"]["filesystem"]
    assert "write_sync" in stdout and "4 KiB" in stdout


@pytest.mark.skipif(not docker_running(), reason="Docker engine not running (.ci/run starts it)")
@pytest.mark.docker
def test_linux_and_docker_campaign(tmp_path):
    campaign, stdout = measure_ok(tmp_path, "--env", "linux,docker", "--size", "4KiB", "--reps", "2000",
                                  "--batches", "40", "--quiet")
    summary = pd.read_csv(campaign / "summary.csv")
    assert set(summary["env"]) == {"linux", "docker"}
    for env in ("linux", "docker"):
        check_ordering(summary, env)
    header = next(line for line in stdout.splitlines() if line.startswith("4 KiB"))
    assert "linux" in header and "docker" in header
    meta = json.loads((campaign / "metadata.json").read_text())
    assert meta["environments"]["docker@local"]["docker_version"]
    assert meta["environments"]["docker@local"]["memory_limit_bytes"] == 4 << 30
    plan = json.loads((campaign / "plan.json").read_text())
    envs = [c["env"] for c in plan]
    assert envs != sorted(envs), "cells must be interleaved, not env by env"
    # the Docker daemon is shared (other campaigns may hold edgeio-probe images): look for ours
    tag = meta["resource_tag"]
    images = subprocess.run(["docker", "images", "-q", "--filter", f"label=edgeio.campaign={tag}"],
                            capture_output=True, text=True)
    assert images.returncode == 0 and images.stdout.strip() == "", "teardown leaves no image behind"
    rec = json.loads(next(p for p in (campaign / "cells").glob("*docker*.json")).read_text())
    assert rec["env_metadata"]["image"].startswith(f"edgeio-probe:{tag}-"), "the image is the campaign's"


@pytest.mark.skipif(not docker_running(), reason="Docker engine not running (.ci/run starts it)")
def test_docker_volume_really_holds_the_file(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    campaign, _ = measure_ok(tmp_path / "out", "--env", "docker", "--size", "64KiB", "--op", "write",
                             "--reps", "20", "--param", f"volume={vol}", "--param", "mem=256", "--quiet")
    meta = json.loads((campaign / "metadata.json").read_text())
    assert meta["environments"]["docker@local"]["storage"] == "volume"
    rec = json.loads(next((campaign / "cells").glob("*.json")).read_text())
    assert rec["status"] == "ok" and rec["probe"]["size"] == 65536
    assert list(vol.iterdir()) == [], "the probe's file is removed after the cell"


@pytest.mark.parametrize("args, message", [
    (["--env", "nosuch"], "--env 'nosuch': unknown"),
    (["--env", "linux", "--size", "4XB"], "malformed size"),
    (["--env", "linux", "--size", "4KiB", "--reps", "0"], "--reps 0: expected 1 to 100000000"),
    (["--env", "linux", "--size", "4KiB", "--reps", "many"], "--reps 'many': expected a whole number"),
    (["--env", "linux", "--op", "erase"], "--op 'erase': unknown"),
    (["--env", "linux", "--param", "blocks_per_call=8"], "not accepted by linux"),
    (["--env", "linux", "--size", "100TiB"], "GiB free"),
    (["--env", "xen"], "boot the Xen hypervisor"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    proc = invoke("measure", "--out", str(out), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert campaign_dirs(out) == []


def invoke_here(*args):
    """The `invoke` program in this process (its option parsing included): (exit code, stderr)."""
    import contextlib
    import io

    from invoke import Collection, Program
    import tasks
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            Program(namespace=Collection.from_module(tasks)).run(["invoke", *args])
            code = 0
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


@pytest.mark.parametrize("args, message", [
    # every option through the project's parsers, none through invoke's int()/float()
    (["--batches", "abc"], "--batches 'abc': expected a whole number"),
    (["--batches", "0"], "--batches 0: expected 1 to 100000000"),
    (["--seed", "abc"], "--seed 'abc': expected a whole number"),
    (["--cell-timeout", "abc"], "--cell-timeout 'abc': expected auto, none or a duration"),
    (["--size", ",,"], "--size ',,': no size given"),
    (["--op", ","], "--op ',': no op given"),
    (["--target", "ssh://nohost"], "cannot connect to ssh://"),
])
def test_every_option_is_parsed_into_one_line(tmp_path, args, message):
    code, err = invoke_here("measure", "--out", str(tmp_path / "out"), "--env", "linux", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and campaign_dirs(tmp_path / "out") == []


def test_unwritable_output_and_earlier_campaigns_untouched(tmp_path):
    out = tmp_path / "out"
    first, _ = measure_ok(out, "--env", "linux", "--size", "4KiB", "--op", "read", "--reps", "50", "--quiet")
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    proc = invoke("measure", "--out", str(first / "samples.csv" / "x"), "--env", "linux", "--size", "4KiB")
    assert proc.returncode == 2 and "cannot create output directory" in proc.stderr
    second, _ = measure_ok(tmp_path / "out2", "--env", "linux", "--size", "4KiB", "--op", "read",
                           "--reps", "50", "--quiet")
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    assert second != first


def test_docker_not_running_says_how_to_start(tmp_path):
    proc = invoke("measure", "--out", str(tmp_path), "--env", "docker", "--size", "4KiB",
                  env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert proc.returncode == 2
    assert "not running" in proc.stderr and "dockerd --iptables=false --bridge=none" in proc.stderr


def test_docker_absent(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("uname", "df", "findmnt", "mktemp", "test", "rm", "sh", "cat", "sha256sum", "nproc", "git"):
        path = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if path:
            (bindir / tool).symlink_to(path)
    proc = invoke("measure", "--out", str(tmp_path / "out"), "--env", "docker",
                  env={"PATH": f"{bindir}:{Path(sys.executable).parent}"})
    assert proc.returncode == 2 and "docker: not installed" in proc.stderr


def test_env_all_says_what_it_skipped(tmp_path):
    proc = invoke("measure", "--out", str(tmp_path), "--env", "all", "--exclude", "qemu,hvt",
                  "--size", "4KiB", "--op", "read", "--reps", "20", "--param", "dir=/var/tmp",
                  env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert proc.returncode == 0, proc.stderr
    assert "skipped xen" in proc.stderr and "skipped docker" in proc.stderr
    assert "skipped qemu on local: excluded" in proc.stderr
    (campaign,) = campaign_dirs(tmp_path)
    meta = json.loads((campaign / "metadata.json").read_text())
    assert {s[0] for s in meta["skipped"]} >= {"xen", "docker", "qemu", "hvt"}
    assert set(pd.read_csv(campaign / "summary.csv")["env"]) == {"linux"}


def test_kill_9_then_resume_from_the_command_line(tmp_path):
    import signal
    import time
    out = tmp_path / "out"
    args = [sys.executable, "-m", "invoke", "measure", "--out", str(out), "--env", "linux",
            "--size", "4KiB,64KiB", "--reps", "3000", "--batches", "10", "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*/cells/*.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (campaign,) = campaign_dirs(out)
    first = {p.name: p.read_bytes() for p in (campaign / "cells").glob("*.json")}
    assert 1 <= len(first) < 6
    done = invoke("measure", "--resume", str(campaign))
    assert done.returncode == 0, done.stderr
    assert f"{len(first)} of 6 cells already measured" in done.stderr
    records = sorted((campaign / "cells").glob("*.json"))
    assert len(records) == 6
    assert all((campaign / "cells" / name).read_bytes() == data for name, data in first.items())
    samples = pd.read_csv(campaign / "samples.csv")
    assert len(samples) == 6 * 10 and not samples.duplicated(["cell_id", "batch"]).any()


def test_resume_of_a_corrupt_campaign_names_the_file(tmp_path):
    campaign, _ = measure_ok(tmp_path, "--env", "linux", "--size", "4KiB", "--op", "read", "--reps", "20", "--quiet")
    (campaign / "plan.json").write_text("[{")
    proc = invoke("measure", "--resume", str(campaign))
    assert proc.returncode == 2 and "plan.json: corrupt results file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resume_given_the_parent_names_the_campaigns_inside(tmp_path):
    from edgeio import store
    from measure import plan as planning
    campaign = store.Campaign.create(tmp_path, {}, planning.make_plan(["linux"], [4096], ["read"], 20)).path
    code, err = invoke_here("measure", "--resume", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"holds 1 campaign(s): {campaign.name}" in err and f"--resume {campaign}" in err


def test_progress_is_quiet_off_a_terminal_for_every_command(monkeypatch, capsys):
    """Off a terminal (a log): no '\\r' status lines, from measure's Progress or calibrate's."""
    import calibration
    from edgeio.commands import calibrate as command
    from edgeio.errors import UserError
    from measure.progress import Progress, StatusLine
    seen = []

    def fit(results, validate=False, progress=None):      # stands in for a minute of refits
        seen.append(progress)
        progress("3/40 refits (2 processes)")
        raise UserError("stop here")
    monkeypatch.setattr(calibration, "fit", fit)
    with pytest.raises(UserError, match="stop here"):
        command.run(source=str(ROOT / "calibration" / "data" / "pi4_file_access.csv"), validate=True,
                    allow_priors=True, out=str(ROOT / ".cache" / "never-written.json"))
    assert isinstance(seen[0], StatusLine)
    assert "\r" not in capsys.readouterr().out
    assert Progress([], mode="auto").mode == "quiet"
    # on a terminal the line is drawn in place
    monkeypatch.setattr("measure.progress.quiet_by_default", lambda: False)
    StatusLine("  validation: ")("1/2")
    assert capsys.readouterr().out == "  validation: 1/2\r"
