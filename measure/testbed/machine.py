"""Start, wait for, find and stop a board's QEMU process.

State lives in .cache/testbed/<board>/ (edgeio.paths.cache_dir):
    id_ed25519, id_ed25519.pub      the client key pair (kept across up/down)
    ssh_host_ed25519_key(.pub)      the board's host key (kept: known_hosts stays valid)
    known_hosts                     "[127.0.0.1]:PORT ssh-ed25519 ..." for the current port
    state.json                      {board, arch, pid, port, url, started, boot_s, ...} while up
    serial.log, qemu.log            console and QEMU's own output while up
    initrd, data.img                seeded initrd and the probe's data disk while up
    lock                            held by `up` while it starts the board
`down` removes everything but the keys; a process is only ever killed if its
/proc/PID/cmdline still names this state directory's files (no pid reuse accident).
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import cache_dir

from .board import Board
from .boot import seed

RUNTIME_FILES = ("state.json", "serial.log", "qemu.log", "initrd", "data.img", "qemu.pid")
USER = "root"


def state_dir(name: str) -> Path:
    return cache_dir("testbed", name)


def _keypair(path: Path, comment: str) -> None:
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return
    path.unlink(missing_ok=True)
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True)
    except FileNotFoundError:
        raise UserError("ssh-keygen not found: apt-get install openssh-client") from None


def read_state(name: str) -> dict | None:
    """The board's state if its QEMU process is alive (a stale state file is removed)."""
    path = state_dir(name) / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(state.get("pid"), state_dir(name)):
        return None
    return state


def _alive(pid, directory: Path) -> bool:
    """pid runs (not a zombie) and its command line names a file of this state directory."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] == "Z":
        return False
    return str(directory).encode() in cmdline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _qemu_argv(board: Board, directory: Path, port: int) -> list[str]:
    initrd = directory / "initrd"
    argv = [board.qemu, *board.machine, "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(board.kernel), "-append", board.append,
            "-serial", f"file:{directory / 'serial.log'}",
            "-pidfile", str(directory / "qemu.pid"),
            "-drive", f"file={board.rootfs},format=raw,if=none,id=root,snapshot=on,cache=unsafe",
            "-device", f"{board.disk_device},drive=root",
            "-drive", f"file={directory / 'data.img'},format=raw,if=none,id=data,cache=writeback",
            "-device", f"{board.disk_device},drive=data",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", f"{board.net_device},netdev=net0"]
    if board.initrd_arg:
        argv += ["-initrd", str(initrd)]
    argv += [a.replace("{initrd}", str(initrd)) for a in board.extra_args]
    return argv


def _data_disk(path: Path, mib: int) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "edgeio-data",
                           "-E", "lazy_itable_init=0,lazy_journal_init=0", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"mkfs.ext4 of the board's data disk failed: {proc.stderr.strip()[-200:]}")


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "")
    except OSError:
        return "(no output)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def url(port: int) -> str:
    return f"ssh://{USER}@127.0.0.1:{port}"


def start(board: Board, timeout: float | None = None) -> dict:
    """Boot the board and return its state once sshd accepts our key; already up: its state."""
    directory = state_dir(board.name)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # two `up`s at once: the second finds it up
        return _start(board, directory, timeout)


def _start(board: Board, directory: Path, timeout: float | None) -> dict:
    current = read_state(board.name)
    if current:
        current["already_up"] = True
        return current
    if not shutil.which(board.qemu):
        raise UserError(f"{board.qemu} not found on this machine: apt-get install {board.qemu_package}")
    for name in RUNTIME_FILES:
        (directory / name).unlink(missing_ok=True)
    key, host_key = directory / "id_ed25519", directory / "ssh_host_ed25519_key"
    _keypair(key, f"edgeio-testbed-{board.name}-client")
    _keypair(host_key, f"edgeio-testbed-{board.name}-host")
    seed(board.initrd, {"authorized_keys": (directory / "id_ed25519.pub").read_bytes(),
                        "ssh_host_ed25519_key": host_key.read_bytes(),
                        "ssh_host_ed25519_key.pub": (directory / "ssh_host_ed25519_key.pub").read_bytes()},
         directory / "initrd")
    _data_disk(directory / "data.img", board.data_disk_mib)
    for attempt in range(3):            # a port taken between probe and bind: try another
        port = _free_port()
        host_pub = (directory / "ssh_host_ed25519_key.pub").read_text().split()
        (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        argv = _qemu_argv(board, directory, port)
        t0 = time.monotonic()
        with open(directory / "qemu.log", "wb") as qlog:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog,
                                    start_new_session=True)      # outlives this command
        state = {"board": board.name, "arch": board.arch, "pid": proc.pid, "port": port, "url": url(port),
                 "identity": str(key), "known_hosts": str(directory / "known_hosts"),
                 "started": time.time(), "argv": argv, "facts": board.facts}
        limit = timeout or board.boot_timeout_s
        try:
            _until_exec(proc, directory)
            _write_state(directory, state)
            _wait_ssh(proc, port, key, directory, limit)
            state["boot_s"] = time.monotonic() - t0
            _write_state(directory, state)
            _wait_ready(board, port, key, directory, t0 + limit)
        except _PortTaken:
            continue
        except BaseException:     # failed, timed out or interrupted: leave no QEMU behind
            _kill(proc.pid, directory)
            for name in ("state.json", "initrd", "data.img", "qemu.pid"):
                (directory / name).unlink(missing_ok=True)
            raise
        state["ready_s"] = time.monotonic() - t0
        _write_state(directory, state)
        return state
    raise UserError(f"testbed {board.name}: could not bind a loopback port for sshd")


def _until_exec(proc: subprocess.Popen, directory: Path, within: float = 60.0) -> None:
    """Until /proc shows QEMU (or it has exited). Popen returns once the child has begun
    its exec, when /proc/PID/cmdline is still empty: a state file naming the pid then would
    read as down, and a failure right after would leave QEMU unkilled (_kill checks
    the command line)."""
    deadline = time.monotonic() + within
    while proc.poll() is None and not _alive(proc.pid, directory) and time.monotonic() < deadline:
        time.sleep(0.001)       # polling interval only: the event is the exec done


class _PortTaken(Exception):
    pass


def _write_state(directory: Path, state: dict) -> None:
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(directory / "state.json")


def _wait_ssh(proc, port, key, directory, timeout):
    """Until sshd answers AND accepts our key with the recorded host key (events, not sleeps).

    slirp accepts a forwarded TCP connection before the guest listens, so a connect()
    proves nothing: the SSH banner does, and a command run over it proves the rest.
    """
    from measure.ssh import SshTarget
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            qlog = _tail(directory / "qemu.log", 3)
            if "hostfwd" in qlog or "Could not set up host forwarding" in qlog:
                raise _PortTaken()
            raise UserError(f"testbed QEMU exited ({proc.returncode}) before sshd answered: {qlog} | "
                            f"console: {_tail(directory / 'serial.log', 3)}")
        if _banner(port):
            target = SshTarget("127.0.0.1", port=port, user=USER, identity=str(key),
                               known_hosts=str(directory / "known_hosts"))
            target.reconnect_delays = ()
            try:
                if target.run(["true"], timeout=60).returncode == 0:
                    return
            except Exception:      # sshd up but not ready (keys being copied): try again
                pass
            finally:
                target.close()
        time.sleep(0.5)            # polling interval only: readiness is the banner + a command
    raise UserError(f"testbed: sshd did not answer within {timeout:g} s; console ends:\n"
                    f"{_tail(directory / 'serial.log')}")


def _wait_ready(board: Board, port, key, directory, deadline) -> None:
    """Each of the board's ready_commands succeeds (polled over one connection)."""
    from measure.ssh import SshTarget
    if not board.ready_commands:
        return
    target = SshTarget("127.0.0.1", port=port, user=USER, identity=str(key),
                       known_hosts=str(directory / "known_hosts"))
    try:
        for argv in board.ready_commands:
            while not _succeeds(target, argv):
                if time.monotonic() > deadline:
                    raise UserError(f"testbed {board.name}: `{' '.join(argv)}` did not succeed in time; "
                                    f"console ends:\n{_tail(directory / 'serial.log')}")
                time.sleep(1.0)    # polling interval only: readiness is the command succeeding
    finally:
        target.close()


def _succeeds(target, argv) -> bool:
    """argv exits 0 there. One try that outlasts its 60 s or loses its connection is a
    failed try, not a failed `up`: a loaded machine's emulated board can be that slow
    (docker's first start under TCG), and only the boot deadline bounds the wait."""
    from measure.environments.base import CellFailed
    try:
        return target.run(list(argv), timeout=60).returncode == 0
    except (TimeoutError, CellFailed):      # ConnectionLost is a CellFailed; the next run reconnects
        return False


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.settimeout(5)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _kill(pid: int, directory: Path, grace: float = 30.0) -> None:
    if not _alive(pid, directory):
        return
    try:
        os.kill(pid, signal.SIGTERM)          # QEMU exits cleanly on SIGTERM
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid, directory):
        try:
            os.waitpid(pid, os.WNOHANG)       # our own child (same process as start): reap it
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if _alive(pid, directory):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid, directory):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                time.sleep(0.1)


def stop(name: str) -> dict | None:
    """Stop the board's QEMU and remove its runtime files; the state it had, or None if it was down."""
    directory = state_dir(name)
    try:
        state = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        state = None
    if state:
        _kill(state.get("pid"), directory)
    for fname in RUNTIME_FILES:
        (directory / fname).unlink(missing_ok=True)
    return state
