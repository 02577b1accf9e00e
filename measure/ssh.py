"""A remote machine (a Raspberry Pi on the desk) as a target, over SSH with paramiko.

Key authentication only; the host key must already be in known_hosts (never accepted
silently). Commands travel as argv: every element is quoted with shlex.quote, and the
only shell text is a constant wrapper, so no user input is ever parsed by a shell.
A dropped connection raises ConnectionLost (a CellFailed: the campaign goes on); the
next call reconnects.
"""

import getpass
import os
import select
import shlex
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import logging

import paramiko

from edgeio.errors import UserError
from measure.environments.base import CellFailed
from measure.targets import LocalTarget, Target, _check, machine_facts

ENV_KEY = "EDGEIO_SSH_KEY"
ENV_KNOWN_HOSTS = "EDGEIO_SSH_KNOWN_HOSTS"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# Constant wrapper: report the pid (so a timed-out command can be killed), then exec argv.
_WRAPPER = 'echo "edgeio-pid $$" >&2; exec "$@"'
_PID_PREFIX = b"edgeio-pid "
# Kill the session of pid $1 (constant script; the pid is a positional parameter).
_KILL_SESSION = ('sid=$(ps -o sid= -p "$1" | tr -d " "); '
                 'if [ -n "$sid" ] && [ "$sid" != 0 ]; then pkill -KILL -s "$sid"; fi; '
                 'kill -KILL "$1" 2>/dev/null; true')

# paramiko logs a dropped socket at ERROR level to stderr, through the progress display;
# we report it ourselves as ConnectionLost.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def _pid_of(err) -> str | None:
    """The remote pid the wrapper printed first on stderr."""
    line = bytes(err).partition(b"\n")[0]
    if line.startswith(_PID_PREFIX):
        pid = line[len(_PID_PREFIX):].strip().decode(errors="replace")
        return pid if pid.isdigit() else None
    return None


class ConnectionLost(CellFailed):
    """The SSH connection dropped (or could not be re-established) during a command."""


def parse_target(url: str, identity: str | None = None, known_hosts: str | None = None) -> Target:
    """'local' -> LocalTarget; 'ssh://user@host[:port]' -> SshTarget (connects on first use).

    identity / known_hosts default to $EDGEIO_SSH_KEY / $EDGEIO_SSH_KNOWN_HOSTS, then to
    ssh's own defaults (~/.ssh/id_*, the agent, ~/.ssh/known_hosts).
    """
    text = (url or "").strip()
    if text in ("", "local"):
        return LocalTarget()
    if text.startswith("testbed:"):            # an emulated board (measure/testbed), by name
        from measure.testbed import resolve_target
        state = resolve_target(text[len("testbed:"):])
        return SshTarget("127.0.0.1", port=state["port"], user="root", identity=state["identity"],
                         known_hosts=state["known_hosts"])
    if not text.startswith("ssh://"):
        raise UserError(f"unknown target {url!r}: use 'local', ssh://user@host[:port] or testbed:BOARD")
    parts = urlsplit(text)
    try:
        port = parts.port or 22
    except ValueError:
        raise UserError(f"target {url!r}: malformed port") from None
    if parts.password is not None:
        raise UserError(f"target {url!r}: passwords are not accepted, use key authentication")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UserError(f"malformed target {url!r}: use ssh://user@host[:port]")
    if parts.hostname in ("127.0.0.1", "localhost") and identity is None and known_hosts is None:
        from measure.testbed import credentials
        found = credentials(port)       # the URL `invoke testbed up` printed: its key and host key
        if found:
            identity, known_hosts = found
    return SshTarget(parts.hostname, port=port, user=parts.username or getpass.getuser(),
                     identity=identity, known_hosts=known_hosts)


def target_slug(name: str) -> str:
    """A short form of a target name safe in file and container names ([A-Za-z0-9_.-]):
    'local', 'pi_pi1', 'root_127.0.0.1_2222'."""
    text = name[len("ssh://"):] if name.startswith("ssh://") else name
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text).strip("_") or "target"


def _testbed_facts(target) -> dict:
    """An emulated testbed board (measure/testbed) says so in a marker file: record it."""
    import json
    from measure.testbed.rootfs import MARKER
    try:
        marker = json.loads(target.read_text("/" + MARKER) or "null")
    except ValueError:
        return {}
    if not isinstance(marker, dict) or not marker.get("emulated"):
        return {}
    return {"emulated": True, "testbed": {k: marker[k] for k in ("board", "cpu", "missing") if k in marker}}


def _drain(chan, out: bytearray, err: bytearray) -> None:
    """Append what the channel has buffered on stdout and stderr, without waiting."""
    while chan.recv_ready():
        out += chan.recv(1 << 16)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(1 << 16)


class SshTarget(Target):
    """Run argv, copy files and read facts on a remote Linux machine."""

    reconnect_delays = (1.0, 2.0, 4.0)   # seconds between reconnection attempts
    connect_timeout = 15.0
    keepalive_s = 15

    def __init__(self, host: str, port: int = 22, user: str | None = None,
                 identity: str | None = None, known_hosts: str | None = None):
        self.host, self.port = host, int(port)
        self.user = user or getpass.getuser()
        self.identity = identity or os.environ.get(ENV_KEY) or None
        self.known_hosts = os.path.expanduser(
            known_hosts or os.environ.get(ENV_KNOWN_HOSTS) or DEFAULT_KNOWN_HOSTS)
        bracket = f"[{host}]" if ":" in host else host
        self.name = f"ssh://{self.user}@{bracket}" + (f":{self.port}" if self.port != 22 else "")
        self._client = None
        self._sftp = None
        self._lock = threading.RLock()
        self._facts = None
        self._orphans = []         # pids of commands cut off by a dropped connection
        self.connects = 0          # how many times a connection was (re)established

    def __repr__(self):
        return f"SshTarget({self.name})"

    # -- connection --------------------------------------------------------------
    def _known_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _keyscan_hint(self) -> str:
        port = f"-p {self.port} " if self.port != 22 else ""
        return (f"check the host's fingerprint, then add it: ssh-keyscan {port}{shlex.quote(self.host)}"
                f" >> {shlex.quote(self.known_hosts)}")

    def _connect_once(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if os.path.isfile(self.known_hosts):
            try:
                client.load_host_keys(self.known_hosts)
            except (OSError, paramiko.SSHException, ValueError) as e:
                raise UserError(f"cannot read known_hosts {self.known_hosts}: {e}") from None
        if not os.environ.get(ENV_KNOWN_HOSTS):
            try:
                client.load_system_host_keys()
            except (OSError, paramiko.SSHException):
                pass
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if self.identity and not os.path.isfile(os.path.expanduser(self.identity)):
            raise UserError(f"SSH identity file {self.identity} does not exist")
        try:
            client.connect(
                self.host, port=self.port, username=self.user, password=None,
                key_filename=os.path.expanduser(self.identity) if self.identity else None,
                look_for_keys=self.identity is None, allow_agent=True,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout)
        except paramiko.BadHostKeyException:
            client.close()
            raise UserError(
                f"host key of {self._known_name()} does NOT match {self.known_hosts} (a reinstalled host, or "
                f"someone in the middle); if you trust the change: ssh-keygen -R {shlex.quote(self._known_name())}"
                f" -f {shlex.quote(self.known_hosts)}, then {self._keyscan_hint()}") from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise UserError(f"SSH key for {self.name} is encrypted: load it into ssh-agent (ssh-add)") from None
        except paramiko.AuthenticationException as e:
            client.close()
            raise UserError(f"{self.name}: key authentication failed ({e}); pass --ssh-key or set "
                            f"{ENV_KEY}, and add the public key to the remote authorized_keys") from None
        except paramiko.SSHException as e:
            client.close()
            if "not found in known_hosts" in str(e):
                raise UserError(f"host {self._known_name()} is not in {self.known_hosts}: "
                                f"{self._keyscan_hint()}") from None
            raise ConnectionError(str(e)) from None
        except (OSError, EOFError) as e:
            client.close()
            raise ConnectionError(f"{self.name}: {getattr(e, 'strerror', None) or e}") from None
        transport = client.get_transport()
        transport.set_keepalive(self.keepalive_s)
        self.connects += 1
        return client

    def connect(self) -> None:
        """(Re)connect now; network errors are retried a few times, trust errors are not."""
        with self._lock:
            if self._alive():
                return
            self._drop()
            last = None
            for delay in (0.0, *self.reconnect_delays):
                time.sleep(delay)
                try:
                    self._client = self._connect_once()
                except ConnectionError as e:
                    last = e
                    continue
                self._kill_orphans()
                return
            raise ConnectionLost(f"cannot connect to {self.name}: {last}")

    def _kill_orphans(self):
        """Commands whose connection dropped still run there (no pty, no SIGHUP): a retried
        cell must not race its own orphan for the same file, so kill them first."""
        orphans, self._orphans = self._orphans, []
        for pid, comm in orphans:
            try:
                # Only if that pid still runs the same program (after a reboot it may not).
                self.run(["sh", "-c", '[ "$(cat /proc/$1/comm 2>/dev/null)" = "$2" ] || exit 0; ' + _KILL_SESSION,
                          "sh", pid, comm], timeout=15)
            except (UserError, TimeoutError, CellFailed):
                pass

    def _alive(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def _drop(self):
        for obj in (self._sftp, self._client):
            try:
                if obj:
                    obj.close()
            except Exception:   # closing a dead connection may fail in any way
                pass
        self._sftp = self._client = None

    def reconnect(self) -> None:
        with self._lock:
            self._drop()
            self.connect()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            self.connect()
            client = self._client       # connect() may have lost it again (killing orphans)
            transport = client.get_transport() if client else None
            if transport is None or not transport.is_active():
                raise ConnectionLost(f"{self.name}: connection lost right after connecting")
            return transport

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None or not self._alive():
                transport = self._transport()
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, OSError, EOFError) as e:
                    self._drop()
                    raise ConnectionLost(f"{self.name}: SFTP failed: {e}") from None
            return self._sftp

    # -- commands ----------------------------------------------------------------
    def run(self, argv, timeout=None, input=None, check=False):
        argv = [str(a) for a in argv]
        command = shlex.join(["sh", "-c", _WRAPPER, "sh", *argv])
        try:
            chan = self._transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise ConnectionLost(f"{self.name}: connection lost starting {argv[0]}: {e}") from None
        try:
            out, err, status = self._collect(chan, argv, timeout, input)
        finally:
            chan.close()
        pid_line, _, rest = err.partition(b"\n")
        if pid_line.startswith(_PID_PREFIX):
            err = rest
        if status == 127 and b"not found" in err:
            raise UserError(f"{argv[0]}: not found on {self.name}")
        proc = subprocess.CompletedProcess(argv, status, out, err)
        if check:
            _check(proc, argv)
        return proc

    def _collect(self, chan, argv, timeout, input):
        out, err = bytearray(), bytearray()
        if input:
            # A separate writer so a command that prints before reading cannot deadlock us.
            def feed():
                try:
                    chan.sendall(input)
                    chan.shutdown_write()
                except (OSError, EOFError, paramiko.SSHException):
                    pass
            threading.Thread(target=feed, daemon=True).start()
        else:
            chan.shutdown_write()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            _drain(chan, out, err)
            if chan.exit_status_ready() and chan.eof_received and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                return bytes(out), bytes(err), chan.recv_exit_status()
            if chan.closed or not self._alive():
                # Output, exit status and close can arrive together after the reads above:
                # what paramiko has buffered is still the command's, so drain it first
                # (returning straight away lost `uname -m`'s answer on a loaded machine).
                _drain(chan, out, err)
                if chan.exit_status_ready() and chan.exit_status >= 0:
                    return bytes(out), bytes(err), chan.exit_status
                pid = _pid_of(err)
                if pid:
                    self._orphans.append((pid, os.path.basename(argv[0])[:15]))
                self.close()
                raise ConnectionLost(f"{self.name}: connection lost while running {argv[0]}",
                                     log=(bytes(out) + bytes(err)).decode(errors="replace"))
            if deadline is not None and time.monotonic() > deadline:
                self._kill_remote(err)
                raise TimeoutError(f"{argv[0]} timed out after {timeout:g} s on {self.name}")
            select.select([chan], [], [], 0.01)

    def _kill_remote(self, err: bytes):
        """A timed-out remote command would live on without us: kill its whole session.

        sshd starts every exec channel in a session of its own, so the session id of
        the wrapper's pid covers the command's children too (sh -c, docker run...).
        """
        pid = _pid_of(err)
        if pid:
            try:
                self.run(["sh", "-c", _KILL_SESSION, "sh", pid], timeout=15)
            except (UserError, TimeoutError, CellFailed):
                pass

    # -- files -------------------------------------------------------------------
    def put(self, local, remote, mode=0o644):
        try:
            sftp = self.sftp()
            sftp.put(str(local), str(remote))
            sftp.chmod(str(remote), mode)
        except FileNotFoundError as e:
            raise UserError(f"cannot copy {local} to {self.name}:{remote}: {e.strerror or e}") from None
        except PermissionError:
            raise UserError(f"cannot write {self.name}:{remote}: permission denied") from None
        except (paramiko.SSHException, EOFError, socket.error) as e:
            self.close()
            raise ConnectionLost(f"{self.name}: connection lost copying {local}: {e}") from None

    def get(self, remote, local):
        try:
            self.sftp().get(str(remote), str(local))
        except FileNotFoundError:
            raise UserError(f"{self.name}:{remote}: no such file") from None
        except (paramiko.SSHException, EOFError, socket.error) as e:
            self.close()
            raise ConnectionLost(f"{self.name}: connection lost fetching {remote}: {e}") from None

    def mkdtemp(self, prefix="edgeio-"):
        proc = self.run(["mktemp", "-d", "-t", f"{prefix}XXXXXXXX"], timeout=30, check=True)
        return proc.stdout.decode().strip()

    def which(self, program):
        # The program name is a positional parameter, never part of the script.
        proc = self.run(["sh", "-c", 'command -v -- "$1"', "sh", program], timeout=30)
        path = proc.stdout.decode(errors="replace").strip()
        return path if proc.returncode == 0 and path.startswith("/") else None

    def read_text(self, path):
        proc = self.run(["cat", "--", path], timeout=30)
        return proc.stdout.decode(errors="replace") if proc.returncode == 0 else None

    def facts(self):
        if self._facts is None:
            self._facts = dict(machine_facts(self), target=self.name)
            self._facts.update(_testbed_facts(self))
        return dict(self._facts)

    def arch(self) -> str:
        """uname -m of the remote machine (aarch64 on a Pi 4): selects the probe binary."""
        return self.facts()["arch"]
