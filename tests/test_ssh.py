"""SshTarget against a real OpenSSH server on loopback (tests/sshd.py)."""

import platform
import subprocess
import threading
import time

import pytest

from edgeio.errors import UserError
import measure.ssh
from measure.reach import parse_target
from measure.ssh import ConnectionLost, SshTarget
from measure.targets import target_slug
from measure.targets import LocalTarget


@pytest.fixture
def target(sshd):
    t = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    yield t
    t.close()


# -- parsing -------------------------------------------------------------------------------
def test_parse_target_forms():
    assert isinstance(parse_target("local"), LocalTarget)
    t = parse_target("ssh://pi@raspberrypi.local")
    assert isinstance(t, SshTarget) and (t.user, t.host, t.port) == ("pi", "raspberrypi.local", 22)
    assert t.name == "ssh://pi@raspberrypi.local"
    t = parse_target("ssh://pi@10.0.0.7:2222")
    assert t.port == 2222 and t.name == "ssh://pi@10.0.0.7:2222"
    assert target_slug(t.name) == "pi_10.0.0.7_2222"


@pytest.mark.parametrize("bad", ["pi@host", "ssh://", "ssh://pi:secret@host", "ssh://pi@host:notaport",
                                 "ssh://pi@host/path", "http://host"])
def test_parse_target_rejects(bad):
    with pytest.raises(UserError):
        parse_target(bad)


def test_env_vars_give_key_and_known_hosts(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEIO_SSH_KEY", str(tmp_path / "k"))
    monkeypatch.setenv("EDGEIO_SSH_KNOWN_HOSTS", str(tmp_path / "kh"))
    t = parse_target("ssh://u@h")
    assert t.identity == str(tmp_path / "k") and t.known_hosts == str(tmp_path / "kh")


# -- trust -----------------------------------------------------------------------------------
def test_unknown_host_key_is_refused_with_keyscan_hint(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(empty))
    with pytest.raises(UserError, match="ssh-keyscan -p"):
        t.run(["true"])
    assert empty.read_text() == ""          # nothing was added behind the user's back


def test_mismatched_host_key_is_refused(sshd, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kt, kb = other.with_suffix(".pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {kt} {kb}\n")
    t = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(kh))
    with pytest.raises(UserError, match="does NOT match"):
        t.run(["true"])


def test_wrong_key_is_refused(sshd, tmp_path):
    other = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    t = parse_target(sshd.url, identity=str(other), known_hosts=str(sshd.known_hosts))
    with pytest.raises(UserError, match="authentication failed"):
        t.run(["true"])


def test_missing_identity_file(sshd, tmp_path):
    t = parse_target(sshd.url, identity=str(tmp_path / "nope"), known_hosts=str(sshd.known_hosts))
    with pytest.raises(UserError, match="does not exist"):
        t.run(["true"])


# -- commands and files ----------------------------------------------------------------
def test_argv_reaches_the_program_verbatim(target):
    nasty = ["a b", "$(touch /tmp/edgeio-pwned)", "'q'", '"d"', "x;y", "*", ""]
    proc = target.run(["printf", "%s\\n", *nasty])
    assert proc.returncode == 0
    assert proc.stdout.decode().split("\n")[:-1] == nasty
    assert isinstance(proc, subprocess.CompletedProcess) and isinstance(proc.stdout, bytes)


def test_exit_status_stderr_input(target):
    proc = target.run(["sh", "-c", 'cat; echo err >&2; exit 3'], input=b"x" * 300_000)
    assert proc.returncode == 3 and len(proc.stdout) == 300_000 and proc.stderr == b"err\n"
    with pytest.raises(UserError, match="exit 3"):
        target.run(["sh", "-c", "exit 3"], check=True)
    with pytest.raises(UserError, match="not found"):
        target.run(["edgeio-no-such-program"])


def _ps() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def _gone(marker: str, within: float = 60) -> bool:
    """The event: no process shows `marker` (a SIGKILLed one may take a moment to exit)."""
    deadline = time.monotonic() + within
    while marker in _ps():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_timeout_kills_the_remote_command(target):
    # A child of the command (sleep under sh) must die too; its odd duration marks it, and
    # it is far longer than any wait here (ending by itself proves nothing).
    marker = f"sleep 600.{time.monotonic_ns() % 10**6:06d}"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        target.run(["sh", "-c", f"{marker}; true"], timeout=1)
    assert time.monotonic() - t0 < 120          # far below the command's 600 s
    assert _gone(marker)


def test_files_facts_arch(target, tmp_path):
    d = target.mkdtemp()
    assert d.startswith("/") and target.run(["test", "-d", d]).returncode == 0
    src = tmp_path / "src"
    src.write_bytes(bytes(range(256)) * 100)
    target.put(src, f"{d}/f", mode=0o755)
    target.get(f"{d}/f", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    assert target.run(["test", "-x", f"{d}/f"]).returncode == 0
    assert target.read_text(f"{d}/nope") is None
    assert target.which("sh").endswith("/sh") and target.which("no such; program") is None
    facts = target.facts()
    assert facts["arch"] == platform.machine() == target.arch()
    assert facts["target"] == target.name and facts["memory_bytes"] > 0
    target.run(["rm", "-rf", d], check=True)


def test_dropped_connection_mid_command_then_reconnect(sshd, target, monkeypatch):
    target.run(["true"])
    before = target.connects
    marker = f"sleep 600.{time.monotonic_ns() % 10**6:06d}"   # far longer than any wait here
    # The event the drop waits for: the client holds the command's pid line (what the
    # reconnection kills by). Seeing the command in ps is not it: its pid line may still
    # be in sshd's pipe, or the wrapper not have printed it yet.
    pid_line = threading.Event()
    drain = measure.ssh._drain

    def spy(chan, out, err):
        drain(chan, out, err)
        if measure.ssh._pid_of(err):
            pid_line.set()
    monkeypatch.setattr(measure.ssh, "_drain", spy)

    def drop_once_running():
        pid_line.wait(120)
        sshd.drop_connections()
    killer = threading.Thread(target=drop_once_running, daemon=True)
    killer.start()
    with pytest.raises(ConnectionLost):
        target.run(marker.split(), timeout=180)
    killer.join()
    assert pid_line.is_set()
    # the orphaned command still runs there until the reconnection kills it
    assert marker in _ps()
    assert target.run(["echo", "back"]).stdout == b"back\n"
    assert target.connects == before + 1
    assert _gone(marker)


def test_unreachable_host_is_connection_lost(tmp_path, sshd, monkeypatch):
    t = parse_target("ssh://root@127.0.0.1:1", identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    monkeypatch.setattr(SshTarget, "reconnect_delays", (0.1,))
    with pytest.raises(ConnectionLost, match="cannot connect"):
        t.run(["true"])


class _ChannelThatClosesWithOutputPending:
    """A stand-in (named as such) for a paramiko channel at the one moment a real one
    cannot be made to hit on purpose: the command's output, its exit status, EOF and the
    close all arrive between two polls. Before the first poll nothing has arrived."""

    def __init__(self):
        import os
        self._r, w = os.pipe()
        os.write(w, b"x")                  # select() on it returns at once
        self.polled = False
        self.closed = False
        self.eof_received = False
        self._out = b""

    def fileno(self):
        return self._r

    def shutdown_write(self):
        pass

    def recv_ready(self):
        if not self.polled:                # first look: nothing yet; then everything at once
            self.polled = True
            return False
        return bool(self._out)

    def _arrive(self):
        self._out, self.eof_received, self.closed = b"aarch64\n", True, True

    def recv(self, n):
        data, self._out = self._out, b""
        return data

    def recv_stderr_ready(self):
        if self.polled and not self.closed:
            self._arrive()                 # lands right after the stdout check
        return False

    def exit_status_ready(self):
        return self.closed

    exit_status = 0

    def recv_exit_status(self):
        return 0


def test_output_arriving_together_with_the_close_is_not_lost():
    t = SshTarget.__new__(SshTarget)
    t._alive = lambda: True
    out, err, status = SshTarget._collect(t, _ChannelThatClosesWithOutputPending(), ["uname"], 5, None)
    assert (out, status) == (b"aarch64\n", 0)
