"""A remote target's arch picks the probe build: an aarch64 'Pi' gets the aarch64 probe.

The 'Pi' is this machine behind a second loopback sshd whose sessions see a `uname`
that answers the other arch (sshd's SetEnv puts a directory first on PATH): aarch64 on
an x86_64 host, x86_64 on an aarch64 one. The shipped binary is then checked to be an
ELF of that arch on the remote side.
"""

import os
import struct

import pytest

from measure.environments.linux import LinuxEnvironment
from measure.reach import parse_target
from sshd import Sshd
from tests.conftest import ELF_MACHINE, FOREIGN_ARCH, HOST_ARCH, needs_cross_gcc


@pytest.fixture(scope="module")
def pi(tmp_path_factory):
    root = tmp_path_factory.mktemp("pi")
    shim = root / "bin"
    shim.mkdir()
    (shim / "uname").write_text('#!/bin/sh\n[ "$1" = -m ] && { echo %s; exit 0; }\nexec /usr/bin/uname "$@"\n' % FOREIGN_ARCH)
    os.chmod(shim / "uname", 0o755)
    server = Sshd(root / "sshd", extra_config=[f"SetEnv PATH={shim}:/usr/sbin:/usr/bin:/sbin:/bin"]).start()
    target = parse_target(server.url, identity=str(server.identity), known_hosts=str(server.known_hosts))
    yield target
    target.close()
    server.stop()


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return struct.unpack_from("<H", data, 18)[0]


@needs_cross_gcc(FOREIGN_ARCH)
def test_other_arch_target_gets_its_probe(pi, tmp_path):
    assert pi.facts()["arch"] == FOREIGN_ARCH
    env = LinuxEnvironment(pi, {"dir": str(tmp_path)})
    env.check()
    env.prepare()
    try:
        local = tmp_path / "fetched"
        pi.get(env.probe, local)
        assert elf_machine(local.read_bytes()) == ELF_MACHINE[FOREIGN_ARCH]
    finally:
        env.teardown()


def test_same_arch_target_gets_this_hosts_probe(sshd, tmp_path):
    target = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    try:
        env = LinuxEnvironment(target, {"dir": str(tmp_path)})
        env.prepare()
        local = tmp_path / "fetched"
        target.get(env.probe, local)
        assert elf_machine(local.read_bytes()) == ELF_MACHINE[HOST_ARCH]
        env.teardown()
    finally:
        target.close()
