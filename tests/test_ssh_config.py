"""Reaching a Pi the way users do: an ssh_config Host alias (User, Port, IdentityFile,
UserKnownHostsFile) behind a ProxyJump, with real sshds on loopback: the target
(tests/sshd.py's) and a jump host. The file reaches edgeio through $EDGEIO_SSH_CONFIG."""

import re
import subprocess

import pytest

from edgeio import store
from edgeio.errors import UserError
from measure.reach import parse_target
from measure.ssh import ConnectionLost, SshTarget, open_fleet
from sshd import Sshd


@pytest.fixture(scope="module")
def jump(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("jump")).start()
    yield server
    server.stop()


def write_config(path, sshd, jump, known_hosts, alias="raspberrypi"):
    """The alias's block, and the jump host's in a file it Includes (as in ~/.ssh/config.d/)."""
    (path.parent / "jump.conf").write_text(f"""\
Host jumpbox
    HostName 127.0.0.1
    Port {jump.port}
    User root
    IdentityFile {jump.identity}
    UserKnownHostsFile {known_hosts}
""")
    path.write_text(f"""\
Include {path.parent}/*.conf

Host {alias}
    HostName 127.0.0.1
    Port {sshd.port}
    User root
    IdentityFile {sshd.identity}
    ProxyJump jumpbox
    UserKnownHostsFile {known_hosts}
""")
    return path


@pytest.fixture
def pi_config(sshd, jump, tmp_path, monkeypatch):
    """~/.ssh/config as a Pi user has it; known_hosts holds both hosts' keys."""
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts.read_text() + jump.known_hosts.read_text())
    config = write_config(tmp_path / "ssh_config", sshd, jump, kh)
    monkeypatch.setenv("EDGEIO_SSH_CONFIG", str(config))
    return config


def _peer_port(target) -> int:
    """The source port the target's sshd saw for this session (SSH_CONNECTION)."""
    proc = target.run(["sh", "-c", 'echo "$SSH_CONNECTION"'], check=True)
    return int(proc.stdout.split()[1])


def _owner_pids(local_port: int) -> set[int]:
    """Pids holding the TCP socket whose local port is local_port (ss -tnp)."""
    out = subprocess.run(["ss", "-Htnp", "sport", f"= :{local_port}"], capture_output=True, text=True).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


def test_alias_resolves_user_port_and_key(pi_config, sshd):
    t = parse_target("raspberrypi")
    assert isinstance(t, SshTarget) and t.name == "raspberrypi"
    assert (t.user, t.host, t.port) == ("root", "127.0.0.1", sshd.port)
    assert t.known_hosts.endswith("known_hosts") and t.known_hosts != str(sshd.known_hosts)
    # an ssh:// URL naming the alias takes its block too; the URL's user wins
    u = parse_target("ssh://pi@raspberrypi")
    assert (u.user, u.host, u.port) == ("pi", "127.0.0.1", sshd.port)
    with pytest.raises(UserError, match="unknown target 'raspberry'.*ssh_config Host alias"):
        parse_target("raspberry")


def test_alias_through_the_jump_host_runs_commands(pi_config, sshd, jump):
    t = parse_target("raspberrypi")
    try:
        assert t.run(["echo", "hello pi"]).stdout == b"hello pi\n"
        # the target's session came from the jump host's sshd, not from us
        owners = _owner_pids(_peer_port(t))
        assert owners and owners <= set(jump.session_pids()), (owners, jump.session_pids())
    finally:
        t.close()
    assert t.run(["true"]).returncode == 0 and t.connects == 2      # reconnects through it too
    t.close()


def test_measure_cell_on_the_alias(pi_config, tmp_path):
    from edgeio.commands import measure
    path = measure.run(env="linux", size="4KiB", op="write", reps="50", batches=5,
                       targets=["raspberrypi"], out=str(tmp_path / "out"), quiet=True)
    recs = store.Campaign.open(path).records()
    assert len(recs) == 1 and all(r["status"] == "ok" for r in recs.values()), \
        [r.get("error") for r in recs.values()]
    samples = store.load_samples(path)
    assert set(samples["target"]) == {"raspberrypi"} and len(samples) == 5
    meta = store.Campaign.open(path).metadata()
    assert meta["targets"]["raspberrypi"]["target"] == "raspberrypi"


def test_jump_host_down_means_no_connection(sshd, tmp_path, monkeypatch):
    """The route is the ProxyJump: with the jump host gone, the target (still up) is unreachable."""
    gone = Sshd(tmp_path / "gone").start()
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts.read_text() + gone.known_hosts.read_text())
    monkeypatch.setenv("EDGEIO_SSH_CONFIG", str(write_config(tmp_path / "cfg", sshd, gone, kh)))
    gone.stop()
    t = parse_target("raspberrypi")
    monkeypatch.setattr(SshTarget, "reconnect_delays", (0.1,))
    with pytest.raises(ConnectionLost, match="cannot connect to raspberrypi"):
        t.run(["true"])


@pytest.mark.parametrize("unknown", ["target", "jump"])
def test_unknown_host_key_is_refused_in_one_line(sshd, jump, tmp_path, monkeypatch, unknown):
    """Neither the target's nor the jump host's key is ever accepted silently: one line
    naming that host and the ssh-keyscan that adds it, exit 2, known_hosts untouched."""
    known = jump if unknown == "target" else sshd
    kh = tmp_path / "known_hosts"
    kh.write_text(known.known_hosts.read_text())
    missing = sshd if unknown == "target" else jump
    monkeypatch.setenv("EDGEIO_SSH_CONFIG", str(write_config(tmp_path / "cfg", sshd, jump, kh)))
    from edgeio.paths import PROJECT_ROOT
    proc = subprocess.run([str(PROJECT_ROOT / ".venv/bin/invoke"), "measure", "--env", "linux",
                           "--target", "raspberrypi", "--size", "4KiB", "--op", "write", "--reps", "10",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"[127.0.0.1]:{missing.port}" in lines[0] and f"ssh-keyscan -p {missing.port} 127.0.0.1" in lines[0]
    assert ("jump host" in lines[0]) == (unknown == "jump")
    assert kh.read_text() == known.known_hosts.read_text()        # nothing added behind the user's back
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("records*"))


def test_fleet_opens_every_host_and_names_each_untrusted_one(sshd, jump, tmp_path, monkeypatch):
    """open_fleet (a Fabric ThreadingGroup): both hosts tried at once; each host whose key
    is unknown is named, the trusted one stays open."""
    empty = tmp_path / "empty"
    empty.write_text("")
    good = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    bad = parse_target(jump.url, identity=str(jump.identity), known_hosts=str(empty))
    with pytest.raises(UserError) as e:
        open_fleet([good, bad])
    assert f"[127.0.0.1]:{jump.port} is not in {empty}" in str(e.value) and "\n" not in str(e.value)
    assert good._alive() and good.connects == 1 and not bad._alive()
    good.close()


def test_testbed_names_resolve_to_the_boards_sshd(sshd, tmp_path, monkeypatch):
    """testbed:pi and the URL `invoke testbed up pi` prints reach the board with its own key
    and host key (resolved in measure/reach.py). The board is a stand-in, named as such: a
    process whose command line names the state directory, and the loopback sshd as its
    sshd (booting the emulated Pi takes minutes; tests/test_testbed_pi.py does that)."""
    import json
    monkeypatch.setenv("EDGEIO_CACHE", str(tmp_path / "cache"))
    from measure.testbed import state_dir
    directory = state_dir("pi")
    board = subprocess.Popen(["sh", "-c", "echo up; read line", "sh", str(directory / "qemu.stand-in")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # Until sh has exec'd, /proc/PID/cmdline is still pytest's and the board reads as down:
    # wait for the line sh prints, not for time to pass.
    assert board.stdout.readline() == b"up\n"
    try:
        (directory / "state.json").write_text(json.dumps({
            "pid": board.pid, "port": sshd.port, "identity": str(sshd.identity),
            "known_hosts": str(sshd.known_hosts), "url": f"ssh://root@127.0.0.1:{sshd.port}"}))
        for spec in ("testbed:pi", f"ssh://root@127.0.0.1:{sshd.port}"):
            t = parse_target(spec)
            try:
                assert (t.identity, t.known_hosts) == (str(sshd.identity), str(sshd.known_hosts))
                assert t.run(["echo", "board"]).stdout == b"board\n"
            finally:
                t.close()
    finally:
        board.communicate(b"\n", timeout=30)
