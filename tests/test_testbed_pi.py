"""The pi testbed: an emulated arm64 board with KVM, booted once, used as an SSH target.

Real parts throughout: QEMU (TCG) runs Debian's arm64 kernel and userland, sshd in
it is reached over loopback with the key pair and known_hosts `invoke testbed up`
made, and `invoke measure` runs the aarch64 probe natively, the aarch64 hvt tender
on the board's (nested) KVM and an inner QEMU guest with -accel kvm. Readiness is
the board's SSH answering a command, never a sleep.
"""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edgeio.paths import PROJECT_ROOT

INVOKE = [sys.executable, "-m", "invoke"]
TAG = 0xED10000000000000     # the unikernel probe writes word (offset | TAG) at each 8-byte offset


def invoke(*args, env=None, timeout=1800):
    return subprocess.run([*INVOKE, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def cells(campaign: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((campaign / "cells").glob("*.json"))]


def campaign_dir(parent: Path) -> Path:
    found = [p for p in parent.iterdir() if (p / "metadata.json").exists()]
    assert len(found) == 1, found
    return found[0]


# -- without a board (fast) -----------------------------------------------------------

def test_a_testbed_that_is_not_up_is_one_line(tmp_path):
    cache = {"EDGEIO_CACHE": str(tmp_path / "cache")}
    proc = invoke("measure", "--target", "testbed:pi", "--env", "linux", "--size", "4KiB", "--reps", "1",
                  "--out", str(tmp_path), env=cache, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: testbed pi is not up: start it with `invoke testbed up pi`"
    # the URL it printed when it was up, after it went down: the same one line, naming the board
    known = tmp_path / "cache" / "testbed" / "pi"
    known.mkdir(parents=True, exist_ok=True)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (known / "known_hosts").write_text(f"[127.0.0.1]:{port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n")
    proc = invoke("measure", "--target", f"ssh://root@127.0.0.1:{port}", "--env", "linux", "--size", "4KiB",
                  "--reps", "1", "--out", str(tmp_path), env=cache, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "testbed pi" in lines[0] and "is not up" in lines[0], lines
    assert not list(tmp_path.glob("*/metadata.json"))


def test_unknown_board_and_action_are_one_line(tmp_path):
    for args in (("testbed", "up", "nosuch"), ("testbed", "reboot", "pi"), ("testbed", "up", "../pi")):
        proc = invoke(*args, env={"EDGEIO_CACHE": str(tmp_path)}, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert proc.stderr.startswith("error: ")


def test_emulated_target_warning_in_report_caveats():
    from report.caveats import emulated_warnings
    meta = {"targets": {"ssh://root@127.0.0.1:5555": {"arch": "aarch64", "emulated": True,
                                                      "testbed": {"board": "pi"}},
                        "local": {"arch": "x86_64", "emulated": False}}}
    warnings = emulated_warnings("c1", meta)
    assert len(warnings) == 1
    assert "127.0.0.1:5555" in warnings[0] and "testbed pi" in warnings[0] and "TCG" in warnings[0]
    assert emulated_warnings("c2", {"targets": {"local": {"arch": "x86_64"}}}) == []


def test_seeded_initrd_is_the_cached_archive_then_an_aligned_seed(tmp_path):
    import gzip
    from measure.testbed.boot import seed
    base = tmp_path / "base.cpio.gz"
    base.write_bytes(gzip.compress(b"070701" + b"0" * 105))     # any length: not a multiple of 4
    out = seed(base, {"authorized_keys": b"ssh-ed25519 KEY\n"}, tmp_path / "initrd")
    data = out.read_bytes()
    start = data.index(b"070701", len(base.read_bytes()))
    assert data[:len(base.read_bytes())] == base.read_bytes()
    assert start % 4 == 0 and set(data[len(base.read_bytes()):start]) <= {0}
    assert b"seed/authorized_keys\0" in data[start:] and b"ssh-ed25519 KEY\n" in data[start:]
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_started_process_is_recorded_once_it_reads_as_the_board(tmp_path):
    """Popen returns while the child is still inside exec (/proc/PID/cmdline empty): the
    board's state must name its pid only once /proc shows the command naming the state
    directory, or `status` reads it as down and a failed `up` leaves it running. A
    stand-in (named as such) for QEMU: sh whose command line names the directory."""
    from measure.testbed.machine import _alive, _until_exec
    for _ in range(20):        # the window is short: caught nearly every time unwaited
        proc = subprocess.Popen(["sh", "-c", "read line", "sh", str(tmp_path / "qemu.stand-in")],
                                stdin=subprocess.PIPE)
        try:
            _until_exec(proc, tmp_path)
            assert _alive(proc.pid, tmp_path)
        finally:
            proc.communicate(b"\n", timeout=60)
    assert not _alive(proc.pid, tmp_path)      # reaped: gone


def test_a_ready_command_try_that_loses_its_connection_is_retried(sshd, tmp_path):
    """`up` polls the board's ready commands over SSH until the boot deadline: one try
    whose connection drops (or that outlasts its 60 s, on a loaded machine) is a failed
    try, not a failed `up`. The board's sshd is the loopback one (a stand-in for the
    emulated board, named as such); the first try's session is killed under it."""
    import shutil
    import threading
    import time
    from measure.testbed.board import Board
    from measure.testbed.machine import _wait_ready
    shutil.copy(sshd.known_hosts, tmp_path / "known_hosts")
    tried = tmp_path / "tried"
    ready = ("sh", "-c", '[ -e "$1" ] && exit 0; touch "$1"; sleep 600', "sh", str(tried))
    board = Board("stand-in", "x86_64", "qemu", "qemu", (), tmp_path, tmp_path, tmp_path, "",
                  ready_commands=(ready,))

    def drop_once_tried():
        deadline = time.monotonic() + 120
        while not tried.exists() and time.monotonic() < deadline:     # the event: the first try runs
            time.sleep(0.02)
        sshd.drop_connections()
    dropper = threading.Thread(target=drop_once_tried, daemon=True)
    dropper.start()
    _wait_ready(board, sshd.port, sshd.identity, tmp_path, time.monotonic() + 120)
    dropper.join(60)
    assert tried.exists()


# -- on the board (slow) --------------------------------------------------------------

@pytest.fixture(scope="module")
def pi():
    """The running pi testbed: started once (or found up), stopped by the last test."""
    proc = invoke("testbed", "up", "pi")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    url = proc.stdout.strip().splitlines()[-1]
    assert url.startswith("ssh://root@127.0.0.1:")
    yield {"url": url, "stdout": proc.stdout}


@pytest.mark.slow
def test_up_again_says_so_and_status_names_the_target(pi):
    proc = invoke("testbed", "up", "pi", timeout=120)
    assert proc.returncode == 0
    assert "already up" in proc.stdout and proc.stdout.strip().splitlines()[-1] == pi["url"]
    proc = invoke("testbed", "status", "pi", timeout=120)
    assert proc.returncode == 0 and "pi: up (aarch64, emulated)" in proc.stdout and pi["url"] in proc.stdout
    assert "docker: dockerd started at boot" in proc.stdout


@pytest.mark.slow
def test_measure_linux_hvt_qemu_on_the_pi(pi, tmp_path):
    reps = 3
    proc = invoke("measure", "--target", pi["url"], "--env", "linux,hvt,qemu", "--size", "4KiB",
                  "--reps", str(reps), "--param", "mem=256", "--param", "disk_mib=16", "--out", str(tmp_path),
                  "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    campaign = campaign_dir(tmp_path)
    records = cells(campaign)
    assert len(records) == 9 and all(r["status"] == "ok" for r in records), \
        [(r["cell"]["env"], r["cell"]["op"], r["error"]) for r in records if r["status"] != "ok"]
    meta = json.loads((campaign / "metadata.json").read_text())
    facts = meta["targets"][pi["url"]]
    assert facts["arch"] == "aarch64" and facts["emulated"] is True and facts["testbed"]["board"] == "pi"
    by = {(r["cell"]["env"], r["cell"]["op"]): r for r in records}
    for op in ("write_sync", "write", "read"):
        hvt = by["hvt", op]["env_metadata"]
        counters = hvt["counters"]
        assert counters["arch"] == "aarch64" and hvt["kvm"] in ("hardware", "software")
        kind = "block_read" if op == "read" else "block_write"
        assert counters["exits"][kind] == reps * 8                # one exit per 512 B block, exactly
        assert counters["exits"]["block_read" if kind == "block_write" else "block_write"] == 0
        qemu = by["qemu", op]["env_metadata"]
        assert qemu["accel"] == "kvm" and qemu["arch"] == "aarch64"
        assert by["linux", op]["probe"]["errno"] == 0
    # the write's data: word i of the 4 KiB span is (8 i) | TAG
    assert by["hvt", "write"]["probe"]["data_checksum"] == sum((8 * i) | TAG for i in range(512)) % 2**64
    # the report shows the aarch64 cells with the emulated-target warning
    proc = invoke("report", "--campaign", str(campaign), "--out", str(tmp_path / "report"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-1000:]
    text = "\n".join(p.read_text() for p in (tmp_path / "report").rglob("*.md"))
    assert "is an emulated aarch64 board (testbed pi)" in text


@pytest.mark.slow
def test_hvt_on_the_pi_reads_back_what_is_on_its_disk(pi, tmp_path):
    from measure.reach import parse_target
    words = [(i * 2654435761) % 2**64 for i in range(512)]
    local = tmp_path / "pattern.img"
    local.write_bytes(struct.pack("<512Q", *words))
    target = parse_target(pi["url"])
    remote = "/var/tmp/edgeio-test-pattern.img"
    try:
        target.put(local, remote)
        proc = invoke("measure", "--target", pi["url"], "--env", "hvt", "--op", "read", "--size", "4KiB",
                      "--reps", "2", "--param", f"disk={remote}", "--out", str(tmp_path), "--quiet")
        assert proc.returncode == 0, proc.stderr[-1000:]
        (record,) = cells(campaign_dir(tmp_path))
        assert record["status"] == "ok" and record["probe"]["data_checksum"] == sum(words) % 2**64
        assert record["env_metadata"]["counters"]["bytes_read"] == 2 * 4096
    finally:
        target.run(["rm", "-f", remote], timeout=60)
        target.close()


@pytest.mark.slow
def test_docker_on_the_pi_runs_a_cell_on_the_data_disk(pi, tmp_path):
    proc = invoke("measure", "--target", pi["url"], "--env", "docker", "--op", "write_sync", "--size", "4KiB",
                  "--reps", "2", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr[-1000:]
    (record,) = cells(campaign_dir(tmp_path))
    assert record["status"] == "ok" and record["probe"]["errno"] == 0, record["error"]
    assert record["probe"]["op"] == "write_sync" and record["probe"]["reps"] == 2
    # the container's writable layer lives on the board's data disk, as the linux probe's file does
    assert record["env_metadata"]["block_device"].startswith("/dev/vdb"), record["env_metadata"]


@pytest.mark.slow
def test_down_leaves_no_process_and_no_runtime_file(pi):
    from edgeio.paths import cache_dir
    state_dir = cache_dir("testbed", "pi")
    state = json.loads((state_dir / "state.json").read_text())
    assert Path(f"/proc/{state['pid']}").exists()
    proc = invoke("testbed", "down", "pi", timeout=300)
    assert proc.returncode == 0 and "stopped" in proc.stdout
    assert not Path(f"/proc/{state['pid']}").exists() or \
        Path(f"/proc/{state['pid']}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    leftovers = subprocess.run(["pgrep", "-f", str(state_dir)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    assert not any((state_dir / f).exists() for f in ("state.json", "data.img", "initrd", "serial.log"))
    proc = invoke("testbed", "status", "pi", timeout=120)
    assert proc.returncode == 0 and "pi: down" in proc.stdout
    assert "not up" in invoke("measure", "--target", pi["url"], "--env", "linux", timeout=300).stderr
