"""The qemu environment on an SSH target (a real sshd on loopback): the guest is built
here, shipped with put, booted there, and its serial log read back."""

import pytest

from measure.environments.qemu import QemuEnvironment
from measure.reach import parse_target
from tests.conftest import HOST_ARCH


@pytest.fixture(scope="module")
def remote(sshd):
    target = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    yield target
    target.close()


@pytest.mark.slow
def test_qemu_guest_runs_on_an_ssh_target(remote):
    env = QemuEnvironment(remote, {"arch": HOST_ARCH, "mem": "256"})
    env.check()
    env.prepare()
    try:
        assert remote.run(["test", "-f", f"{env.remote}/kernel"]).returncode == 0
        result = env.run({"cell_id": "ssh-1", "size_bytes": 8192, "op": "write", "reps": 100,
                          "batches": 10, "sync": "fsync", "direct": False, "cache": "warm"})
        assert result.probe["size"] == 8192 and result.probe["errno"] == 0
        assert result.metadata["guest_block_device"] == "vda"
        assert result.metadata["boot_to_probe_seconds"] > 0
        assert "reboot: Power down" in result.log
    finally:
        workdir = env.remote
        env.teardown()
    assert remote.run(["test", "-e", workdir]).returncode != 0     # teardown removed it
