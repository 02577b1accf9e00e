"""A real OpenSSH server on loopback for tests: its own host key, its own client key.

Nothing is accepted silently: the client side gets a known_hosts file holding exactly
this server's host key, and the server accepts exactly one authorized key.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class Sshd:
    """Start with Sshd(tmpdir).start(); .url, .identity, .known_hosts for the client."""

    def __init__(self, root: Path, user: str = "root", extra_config: list[str] | None = None):
        self.extra_config = list(extra_config or [])
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.proc = None
        self.port = None
        self.identity = self.root / "client_ed25519"
        self.host_key = self.root / "host_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.log = self.root / "sshd.log"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def start(self):
        client_pub = _keygen(self.identity)
        host_pub = _keygen(self.host_key)
        (self.root / "authorized_keys").write_text(client_pub + "\n")
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(5):
            self.port = _free_port()
            config = self.root / "sshd_config"
            config.write_text("\n".join([
                f"Port {self.port}", "ListenAddress 127.0.0.1",
                f"HostKey {self.host_key}", f"PidFile {self.root / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                "StrictModes no", "UsePAM no", "UseDNS no", "MaxSessions 50", "MaxStartups 50",
                "Subsystem sftp internal-sftp", "LogLevel VERBOSE", *self.extra_config, "",
            ]))
            log = open(self.log, "ab")
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            if self._wait_listening():
                break
            self.stop()
        else:
            raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}")
        # Exactly this server's key, under the name a client uses for a non-22 port.
        key_type, key_b64 = host_pub.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key_type} {key_b64}\n")
        return self

    def _wait_listening(self, timeout=120.0) -> bool:
        """Until this sshd says it listens on its port and a banner comes from there
        (events: another program that took the port between _free_port and sshd's bind
        would answer too); the deadline only bounds a failure."""
        listening = f"Server listening on 127.0.0.1 port {self.port}.".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if listening not in self.log.read_bytes():
                time.sleep(0.05)
                continue
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if self.proc and ppid == self.proc.pid:
                pids.append(int(d.name))
        return pids

    def drop_connections(self) -> int:
        """kill -9 every sshd process serving a session: the client sees the link drop."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.drop_connections()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
