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


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on loopback (own host key, own authorized key, a free port), one per run."""
    from sshd import Sshd
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()
