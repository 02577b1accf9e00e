"""A remote machine (a Raspberry Pi on the desk) as a target, over SSH with Fabric.

The connection is a fabric.Connection, so the user's ssh_config applies as with `ssh`:
a Host alias, its HostName, User, Port, IdentityFile and ProxyJump (each jump host a
gateway Connection). The file is $EDGEIO_SSH_CONFIG if set (like `ssh -F`), else
~/.ssh/config and /etc/ssh/ssh_config. Several targets are opened at once as a
Fabric ThreadingGroup (open_fleet).

Key authentication only; every host key, the jump hosts' too, must already be in
known_hosts (never accepted silently, whatever StrictHostKeyChecking says). Commands
travel as argv: every element is quoted with shlex.quote, and the only shell text is a
constant wrapper, so no user input is ever parsed by a shell. A dropped connection
raises ConnectionLost (a CellFailed: the campaign goes on); the next call reconnects.

Target names ('ssh://...', an alias, 'testbed:pi') are resolved in measure/reach.py.
"""

import getpass
import glob
import io
import logging
import os
import re
import select
import shlex
import socket
import subprocess
import threading
import time

import fabric
import paramiko

from edgeio.errors import UserError
from edgeio.parse import parse_int
from measure.environments.base import CellFailed
from measure.targets import Target, _check, emulation_facts, machine_facts

ENV_KEY = "EDGEIO_SSH_KEY"
ENV_KNOWN_HOSTS = "EDGEIO_SSH_KNOWN_HOSTS"
ENV_SSH_CONFIG = "EDGEIO_SSH_CONFIG"
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


class _UnknownHostKey(paramiko.SSHException):
    """A host (the target or a jump host) whose key is not in known_hosts."""

    def __init__(self, known_name: str):
        super().__init__(f"{known_name} not found in known_hosts")
        self.known_name = known_name


class _Refuse(paramiko.MissingHostKeyPolicy):
    """Never accept an unknown host key (Fabric's own default adds it)."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname)


def ssh_config() -> fabric.Config:
    """Fabric's config holding the ssh_config rules: $EDGEIO_SSH_CONFIG if set (alone, like
    `ssh -F`), else ~/.ssh/config and /etc/ssh/ssh_config, Include lines expanded."""
    path = os.environ.get(ENV_SSH_CONFIG)
    if path:
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise UserError(f"{ENV_SSH_CONFIG}={path}: no such file")
    files = [path] if path else [os.path.expanduser("~/.ssh/config"), "/etc/ssh/ssh_config"]
    rules = paramiko.SSHConfig()
    for name in files:
        if os.path.isfile(name):
            try:
                rules.parse(io.StringIO(_expand_includes(name)))
            except (OSError, UnicodeDecodeError, paramiko.SSHException) as e:
                raise UserError(f"cannot read ssh_config {name}: {e}") from None
    # The rules given as an object: Fabric then never reads the files again (its clone()
    # for each ProxyJump hop would otherwise parse them once more per connection).
    return fabric.Config(ssh_config=rules, lazy=True)


def _expand_includes(name: str, depth: int = 0) -> str:
    """The file's text with each `Include PATTERN...` replaced by the files it names
    (paramiko ignores Include; relative patterns are under ~/.ssh, as ssh reads them)."""
    lines = []
    with open(name) as f:
        for line in f:
            words = line.split()
            if words and words[0].lower() == "include" and depth < 16:
                for pattern in words[1:]:
                    pattern = os.path.expanduser(pattern)
                    if not os.path.isabs(pattern):
                        pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
                    for included in sorted(glob.glob(pattern)):
                        if os.path.isfile(included):
                            lines.append(_expand_includes(included, depth + 1))
                continue
            lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines)


def config_aliases(config: fabric.Config) -> set[str]:
    """The Host names of the ssh_config that are plain aliases (no wildcard, no negation)."""
    return {h for h in config.base_ssh_config.get_hostnames() if not re.search(r"[*?!]", h)}


def _known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _keyscan(known_name: str, known_hosts: str) -> str:
    m = re.fullmatch(r"\[(.+)\]:(\d+)", known_name)
    host, port = (m.group(1), f"-p {m.group(2)} ") if m else (known_name, "")
    return (f"check the host's fingerprint, then add it: ssh-keyscan {port}{shlex.quote(host)}"
            f" >> {shlex.quote(known_hosts)}")


def _hops(conn):
    """conn and its ProxyJump gateways, outermost last."""
    while isinstance(conn, fabric.Connection):
        yield conn
        conn = conn.gateway


def _drain(chan, out: bytearray, err: bytearray) -> None:
    """Append what the channel has buffered on stdout and stderr, without waiting."""
    while chan.recv_ready():
        out += chan.recv(1 << 16)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(1 << 16)


class SshTarget(Target):
    """Run argv, copy files and read facts on a remote Linux machine.

    host may be an ssh_config alias: HostName, User, Port, IdentityFile and ProxyJump come
    from its Host block unless given here. name: how records and reports call it (an
    alias is named by itself).
    """

    reconnect_delays = (1.0, 2.0, 4.0)   # seconds between reconnection attempts
    connect_timeout = 15
    keepalive_s = 15

    def __init__(self, host: str, port: int | None = None, user: str | None = None,
                 identity: str | None = None, known_hosts: str | None = None, name: str | None = None,
                 config: fabric.Config | None = None):
        self._config = config or ssh_config()
        self.alias = host
        rules = self._config.base_ssh_config.lookup(host)
        self.host = rules.get("hostname", host)
        self.user = user or rules.get("user") or getpass.getuser()
        self.port = port if port else parse_int(f"ssh_config Host {host}: Port", rules.get("port") or "22", 1, 65535)
        self.identity = identity or os.environ.get(ENV_KEY) or None
        listed = (rules.get("userknownhostsfile") or "").split()
        self.known_hosts = os.path.expanduser(
            known_hosts or os.environ.get(ENV_KNOWN_HOSTS) or (listed[0] if listed else DEFAULT_KNOWN_HOSTS))
        self._system_keys = not (known_hosts or os.environ.get(ENV_KNOWN_HOSTS) or listed)
        if rules.get("serveraliveinterval"):
            self.keepalive_s = parse_int(f"ssh_config Host {host}: ServerAliveInterval",
                                         rules["serveraliveinterval"], 0, 86400)
        bracket = f"[{host}]" if ":" in host else host
        self.name = name or f"ssh://{self.user}@{bracket}" + (f":{self.port}" if self.port != 22 else "")
        self._conn = None
        self._lock = threading.RLock()
        self._facts = None
        self._orphans = []         # pids of commands cut off by a dropped connection
        self.connects = 0          # how many times a connection was (re)established

    def __repr__(self):
        return f"SshTarget({self.name})"

    # -- connection --------------------------------------------------------------
    def connection(self) -> fabric.Connection:
        """A new, unopened fabric.Connection (with its jump hosts) that trusts only known hosts."""
        if self.identity and not os.path.isfile(os.path.expanduser(self.identity)):
            raise UserError(f"SSH identity file {self.identity} does not exist")
        timeouts = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout}
        kwargs = dict(timeouts, password=None, allow_agent=True, look_for_keys=self.identity is None)
        if self.identity:
            kwargs["key_filename"] = [os.path.expanduser(self.identity)]
        try:
            conn = fabric.Connection(self.alias, user=self.user, port=self.port, config=self._config,
                                     connect_timeout=self.connect_timeout, connect_kwargs=kwargs)
        except (ValueError, paramiko.SSHException) as e:
            raise UserError(f"{self.name}: ssh_config: {e}") from None
        for hop in _hops(conn):
            hop.client.set_missing_host_key_policy(_Refuse())
            if os.path.isfile(self.known_hosts):
                try:
                    hop.client.load_host_keys(self.known_hosts)
                except (OSError, paramiko.SSHException, ValueError) as e:
                    raise UserError(f"cannot read known_hosts {self.known_hosts}: {e}") from None
            if self._system_keys:
                try:
                    hop.client.load_system_host_keys()
                except (OSError, paramiko.SSHException):
                    pass
            if hop is not conn:       # a jump host: its own ssh_config block, our timeouts
                hop.connect_timeout = self.connect_timeout
                hop.connect_kwargs = {**timeouts, **hop.connect_kwargs}
        return conn

    def _trust_error(self, e: Exception) -> UserError | None:
        """The one-line UserError for a host key or authentication problem, else None."""
        kh = self.known_hosts
        if isinstance(e, _UnknownHostKey):
            which = "" if e.known_name == _known_name(self.host, self.port) else f" (a jump host to {self.name})"
            return UserError(f"host {e.known_name}{which} is not in {kh}: {_keyscan(e.known_name, kh)}")
        if isinstance(e, paramiko.BadHostKeyException):
            known = e.hostname
            return UserError(
                f"host key of {known} does NOT match {kh} (a reinstalled host, or someone in the "
                f"middle); if you trust the change: ssh-keygen -R {shlex.quote(known)} -f {shlex.quote(kh)}, "
                f"then {_keyscan(known, kh)}")
        if isinstance(e, paramiko.PasswordRequiredException):
            return UserError(f"SSH key for {self.name} is encrypted: load it into ssh-agent (ssh-add)")
        if isinstance(e, paramiko.AuthenticationException):
            return UserError(f"{self.name}: key authentication failed ({e}); set {ENV_KEY} or the "
                             f"Host's IdentityFile in ssh_config, and add the public key to the remote "
                             f"authorized_keys")
        return None

    def _opened(self, conn: fabric.Connection) -> fabric.Connection:
        for hop in _hops(conn):
            hop.transport.set_keepalive(self.keepalive_s)
        self.connects += 1
        return conn

    def _connect_once(self) -> fabric.Connection:
        conn = self.connection()
        try:
            conn.open()
        except (paramiko.SSHException, OSError, EOFError) as e:   # the jump hosts' too: sorted below
            _close(conn)
            raise self._failure(e) from None
        return self._opened(conn)

    def _failure(self, e: Exception) -> Exception:
        """What a failed open raises: a UserError (trust, keys) or a ConnectionError (network)."""
        trust = self._trust_error(e)
        if trust:
            return trust
        return ConnectionError(f"{self.name}: {getattr(e, 'strerror', None) or e}")

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
                    self._conn = self._connect_once()
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
        return bool(self._conn and self._conn.is_connected)

    def _drop(self):
        if self._conn is not None:
            _close(self._conn)
        self._conn = None

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
            conn = self._conn       # connect() may have lost it again (killing orphans)
            if conn is None or not conn.is_connected:
                raise ConnectionLost(f"{self.name}: connection lost right after connecting")
            return conn.transport

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            self._transport()
            try:
                return self._conn.sftp()        # Fabric keeps one per connection
            except (paramiko.SSHException, OSError, EOFError) as e:
                self._drop()
                raise ConnectionLost(f"{self.name}: SFTP failed: {e}") from None

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
                self._kill_remote(self._await_pid(chan, out, err))
                raise TimeoutError(f"{argv[0]} timed out after {timeout:g} s on {self.name}")
            select.select([chan], [], [], 0.01)

    def _await_pid(self, chan, out: bytearray, err: bytearray) -> str | None:
        """The remote pid of a timed-out command, or None if it has ended. A timeout can
        come before the wrapper's pid line has (a loaded machine, a short timeout): wait
        for that line too, or the command would live on unkilled."""
        limit = time.monotonic() + self.connect_timeout
        while b"\n" not in err and not chan.closed and self._alive() and time.monotonic() < limit:
            select.select([chan], [], [], 0.05)
            _drain(chan, out, err)
        return None if chan.exit_status_ready() else _pid_of(err)

    def _kill_remote(self, pid: str | None):
        """A timed-out remote command would live on without us: kill its whole session.

        sshd starts every exec channel in a session of its own, so the session id of
        the wrapper's pid covers the command's children too (sh -c, docker run...).
        """
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
            self._facts.update(emulation_facts(self))
        return dict(self._facts)

    def arch(self) -> str:
        """uname -m of the remote machine (aarch64 on a Pi 4): selects the probe binary."""
        return self.facts()["arch"]


def _close(conn: fabric.Connection) -> None:
    """Close a connection and its jump hosts (Fabric's close leaves gateways open)."""
    for hop in _hops(conn):
        try:
            hop.close()
        except Exception:   # closing a dead connection may fail in any way
            pass


class _Fleet(fabric.ThreadingGroup):
    """Fabric's ThreadingGroup, opening its connections at once."""

    def open(self):
        return self._do("open")     # Fabric's hook for group subclasses


def open_fleet(targets) -> None:
    """Open every SSH target of `targets` at once, as one Fabric ThreadingGroup, before a
    campaign: a host key or key problem on any host is a UserError naming each such host
    (one line); hosts that are only unreachable are left to the campaign's reconnects."""
    ssh, seen = [], set()
    for t in targets:
        # a group holds each user@host:port once (results are keyed so); a second target
        # to the same one connects on first use
        if isinstance(t, SshTarget) and not t._alive() and (t.host, t.user, t.port) not in seen:
            seen.add((t.host, t.user, t.port))
            ssh.append(t)
    if not ssh:
        return
    conns = [t.connection() for t in ssh]
    group = _Fleet.from_connections(conns)
    try:
        group.open()
        results = {}
    except fabric.exceptions.GroupException as e:
        results = e.result
    problems = []
    for target, conn in zip(ssh, conns):
        failure = results.get(conn) if results else None
        if isinstance(failure, Exception):
            _close(conn)
            error = target._failure(failure)
            if isinstance(error, UserError):
                problems.append(str(error))
            continue
        with target._lock:
            target._drop()
            target._conn = target._opened(conn)
    if problems:
        raise UserError("; ".join(problems))
