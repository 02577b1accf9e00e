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
