"""Shared fixtures."""

import os
import shutil

import pytest


@pytest.fixture
def results_tmp(tmp_path, monkeypatch):
    """A private results and cache root per test, so tests never touch the user's results."""
    monkeypatch.setenv("EDGEIO_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def have_kvm() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def docker_running() -> bool:
    import subprocess
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(autouse=True)
def _empty_ssh_config(monkeypatch, tmp_path_factory):
    """The runner's ~/.ssh/config plays no part in tests: SSH targets read an empty
    ssh_config ($EDGEIO_SSH_CONFIG) unless a test points it at its own."""
    empty = tmp_path_factory.getbasetemp() / "empty_ssh_config"
    empty.touch()
    monkeypatch.setenv("EDGEIO_SSH_CONFIG", str(empty))


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on loopback (own host key, own authorized key, a free port), one per run."""
    from sshd import Sshd
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


# -- the host's arch: tests run on x86_64 and on arm64 (a Pi) --------------------------
from measure.probe_build import host_arch  # noqa: E402

HOST_ARCH = host_arch()                                     # x86_64 | aarch64
FOREIGN_ARCH = {"x86_64": "aarch64", "aarch64": "x86_64"}.get(HOST_ARCH, "x86_64")
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}


def needs_host_arch(arch: str, why: str):
    """Skip unless this machine is `arch` (uname -m), saying which arch and why."""
    return pytest.mark.skipif(HOST_ARCH != arch, reason=f"needs an {arch} host ({why}); this one is {HOST_ARCH}")


def needs_cross_gcc(arch: str):
    """Skip unless the C compiler for `arch` is here: native gcc, or its Debian cross gcc
    (scripts/install installs the aarch64 one on amd64, no x86_64 one on arm64)."""
    cc = f"{arch}-linux-gnu-gcc"
    return pytest.mark.skipif(not shutil.which(cc), reason=f"needs {cc} (the {arch} toolchain) on this "
                              f"{HOST_ARCH} host: apt-get install gcc-{arch.replace('_', '-')}-linux-gnu")
