"""Where environments run: this machine, or (see measure/ssh.py) a remote one over SSH.

An environment never calls subprocess itself: it asks its target to run an argv
(never a shell string built from user input), to copy a file there, or for facts.
"""

import os
import platform
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from edgeio.errors import UserError


# An emulated testbed board (measure/testbed writes it into the board's rootfs) says so here.
TESTBED_MARKER = "/etc/edgeio-testbed.json"


def target_slug(name: str) -> str:
    """A short form of a target name safe in file and container names ([A-Za-z0-9_.-]):
    'local', 'pi_pi1', 'root_127.0.0.1_2222', 'raspberrypi'."""
    text = name[len("ssh://"):] if name.startswith("ssh://") else name
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text).strip("_") or "target"


def emulation_facts(target) -> dict:
    """An emulated testbed board says so in its marker file: record it (else nothing)."""
    import json
    try:
        marker = json.loads(target.read_text(TESTBED_MARKER) or "null")
    except ValueError:
        return {}
    if not isinstance(marker, dict) or not marker.get("emulated"):
        return {}
    return {"emulated": True, "testbed": {k: marker[k] for k in ("board", "cpu", "missing") if k in marker}}


class Target:
    """Interface shared by LocalTarget and SshTarget."""

    name = "target"

    def run(self, argv: list[str], timeout: float | None = None, input: bytes | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        """Run argv; stdout/stderr come back as bytes. check=True raises UserError on failure."""
        raise NotImplementedError

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def mkdtemp(self, prefix: str = "edgeio-") -> str:
        raise NotImplementedError

    def which(self, program: str) -> str | None:
        raise NotImplementedError

    def read_text(self, path: str) -> str | None:
        raise NotImplementedError

    def facts(self) -> dict:
        """Machine facts for metadata: host, arch, kernel, os, cpu, memory, KVM kind."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _check(proc: subprocess.CompletedProcess, argv: list[str]) -> None:
    if proc.returncode != 0:
        tail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise UserError(f"{argv[0]} failed (exit {proc.returncode}): {tail[0]}")


class LocalTarget(Target):
    name = "local"

    def run(self, argv, timeout=None, input=None, check=False):
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise UserError(f"{argv[0]}: not found on this machine") from None
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"{argv[0]} timed out after {timeout:g} s") from e
        if check:
            _check(proc, argv)
        return proc

    def put(self, local, remote, mode=0o644):
        if Path(local).resolve() != Path(remote).resolve():
            shutil.copyfile(local, remote)
        os.chmod(remote, mode)

    def get(self, remote, local):
        shutil.copyfile(remote, local)

    def mkdtemp(self, prefix="edgeio-"):
        return tempfile.mkdtemp(prefix=prefix)

    def which(self, program):
        return shutil.which(program)

    def read_text(self, path):
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def facts(self):
        return machine_facts(self)


def kvm_kind(cpuinfo: str | None, arch: str, kvm_present: bool) -> str:
    """'hardware', 'software' (a /dev/kvm without VT-x/AMD-V: guest kernel code emulated) or 'absent'."""
    if not kvm_present:
        return "absent"
    if arch in ("x86_64", "i686"):
        flags = set()
        for line in (cpuinfo or "").splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
        return "hardware" if flags & {"vmx", "svm"} else "software"
    # On arm64 KVM exists only where the CPU has EL2 virtualization: it is hardware.
    return "hardware"


def _cpu_model(cpuinfo: str) -> str:
    """x86 'model name'; on a Pi the board's 'Model' line, else 'Hardware' (the SoC)."""
    fields = {}
    for line in cpuinfo.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields.setdefault(key.strip(), value.strip())
    return fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""


def _meminfo_total(text: str | None) -> int | None:
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


# Where the probes write unless told otherwise (linux, hvt and qemu all default to it).
PROBE_DIR = "/var/tmp"
FACT_TIMEOUT_S = 120      # per fact command (uname, nproc, test -c /dev/kvm...)


def _cpus(nproc: str, cpuinfo: str) -> int:
    """CPUs the probe may run on (nproc); where nproc gave nothing (a command lost on a
    loaded SSH link), the processors /proc/cpuinfo lists, rather than a silent 0."""
    if nproc.isdigit() and int(nproc) > 0:
        return int(nproc)
    return sum(1 for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor")


def machine_facts(target: Target, path: str = PROBE_DIR, sys_root: str = "") -> dict:
    """Facts gathered through the target's own interface (so it works over SSH too).

    path: the directory the probe writes in (its filesystem and block device are recorded).
    sys_root: a prefix for the /sys and /proc files read (a test's fake sysfs).
    Keys: docs/formats.md, "Machine facts".
    """
    from measure.facts import gather
    # Generous timeouts: they only bound a failure, and a command cut short on a slow target
    # (an emulated board on a loaded machine) silently gives a wrong fact (the local arch).
    def out(argv):
        try:
            p = target.run(argv, timeout=FACT_TIMEOUT_S)
            return p.stdout.decode(errors="replace").strip() if p.returncode == 0 else ""
        except (UserError, TimeoutError):
            return ""

    arch = out(["uname", "-m"])
    cpuinfo = target.read_text("/proc/cpuinfo")
    model = _cpu_model(cpuinfo or "")
    os_release = target.read_text("/etc/os-release") or ""
    pretty = next((ln.split("=", 1)[1].strip('"') for ln in os_release.splitlines()
                   if ln.startswith("PRETTY_NAME=")), "")
    try:
        kvm_present = target.run(["test", "-c", "/dev/kvm"], timeout=FACT_TIMEOUT_S).returncode == 0
    except (UserError, TimeoutError):
        kvm_present = False
    return {
        "host": out(["uname", "-n"]) or socket.gethostname(),
        "arch": arch or platform.machine(),
        "kernel": out(["uname", "-r"]),
        "os": pretty,
        "cpu_model": model,
        "cpus": _cpus(out(["nproc"]), cpuinfo or ""),
        "memory_bytes": _meminfo_total(target.read_text("/proc/meminfo")),
        "kvm": kvm_kind(cpuinfo, arch, kvm_present),
        **gather(target, path, out, cpuinfo or "", arch or platform.machine(), sys_root),
    }
