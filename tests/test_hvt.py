"""The hvt environment: parameters and bad input, availability, and real cells
on /dev/kvm through the environment interface and `invoke measure`."""

import os
import subprocess
import sys

import pytest

from edgeio.errors import UserError
from measure.environments.base import CellFailed, Unavailable
from measure.environments.hvt import HvtEnvironment
from measure.targets import LocalTarget
from tests.conftest import have_kvm

needs_kvm = pytest.mark.skipif(not have_kvm(), reason="/dev/kvm absent or not accessible: "
                               "hvt cells need KVM")


def cell(size=4096, op="write", reps=20, **kw):
    return {"cell_id": f"t-{op}-{size}", "size_bytes": size, "op": op, "reps": reps, "batches": 5,
            "io_size_bytes": None, "sync": "fsync", "direct": False, "cache": "warm", **kw}


class NoKvmTarget(LocalTarget):
    """A local target that reports no /dev/kvm."""

    def run(self, argv, timeout=None, input=None, check=False):
        if argv[:2] == ["test", "-c"] and argv[2] == "/dev/kvm":
            return subprocess.CompletedProcess(argv, 1, b"", b"")
        return super().run(argv, timeout=timeout, input=input, check=check)


# -- parameters and bad input (no KVM needed) ------------------------------------------

@pytest.mark.parametrize("params,message", [
    ({"flush": "sometimes"}, "flush='sometimes'"),
    ({"tender": "qemu"}, "use edgeio or solo5"),
    ({"blocks_per_call": "0"}, "blocks_per_call=0"),
    ({"blocks_per_call": "many"}, "whole number"),
    ({"sector_size": "1000"}, "power of two"),
    ({"mem": "2"}, "too small for the probe unikernel"),
    ({"tender": "solo5", "flush": "each-write"}, "never flushes"),
    ({"colour": "blue"}, "unknown --param colour"),
])
def test_bad_params(params, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        HvtEnvironment(LocalTarget(), params)


def test_memory_limit_is_the_targets_arch(monkeypatch):
    """Stock solo5-hvt's limits: 1 GiB for an x86_64 guest, 4 GiB for aarch64."""
    env = HvtEnvironment(LocalTarget(), {"mem": "2048"})
    monkeypatch.setattr(env, "_facts", lambda: {"arch": "x86_64", "kvm": "software"})
    with pytest.raises(UserError, match="at most 1024 MiB"):
        env.check()
    with pytest.raises(UserError, match="mem=4098"):
        HvtEnvironment(LocalTarget(), {"mem": "4098"})


def test_unavailable_without_kvm():
    with pytest.raises(Unavailable, match="/dev/kvm is absent"):
        HvtEnvironment(NoKvmTarget()).check()


def test_unavailable_without_stock_solo5(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    env = HvtEnvironment(LocalTarget(), {"tender": "solo5"})
    env._host = {"arch": "x86_64", "kvm": "hardware"}      # past the KVM check
    monkeypatch.setattr(env.target, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, b"", b""))
    with pytest.raises(Unavailable, match="no solo5-hvt on the PATH"):
        env.check()


@pytest.mark.parametrize("cells,params,message", [
    ([cell(size=1000)], {}, "not a multiple of sector_size x blocks_per_call"),
    ([cell(size=4096)], {"blocks_per_call": "16"}, r"512 x 16"),
    ([cell(io_size_bytes=700)], {}, "not a whole number of 512 B sectors"),
    ([cell(cache="cold")], {}, "--cold and --direct do not apply"),
    ([cell()], {"unikernel": "/nonexistent/probe.hvt"}, "unikernel /nonexistent/probe.hvt not found"),
    ([cell()], {"disk": "/nonexistent/disk.img"}, "disk /nonexistent/disk.img not found"),
])
def test_preflight_refuses_bad_cells(cells, params, message):
    with pytest.raises(UserError, match=message):
        HvtEnvironment(LocalTarget(), params).preflight(cells)


@pytest.mark.parametrize("size,message", [(1000, "not a multiple of the 512 B sector size"),
                                          (2048, "smaller than the 4096 B cell")])
def test_preflight_refuses_bad_disk_files(tmp_path, size, message):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * size)
    with pytest.raises(UserError, match=message):
        HvtEnvironment(LocalTarget(), {"disk": str(disk)}).preflight([cell()])


# -- real cells ----------------------------------------------------------------------

@pytest.fixture
def env_factory(tmp_path):
    made = []

    def make(**params):
        env = HvtEnvironment(LocalTarget(), {"dir": str(tmp_path), **params})
        env.check()
        env.prepare()
        made.append(env)
        return env
    yield make
    for env in made:
        env.teardown()


@needs_kvm
def test_cell_runs_and_records_metadata(env_factory, tmp_path):
    env = env_factory()
    result = env.run(cell(op="write_sync", reps=10), timeout=120)
    p = result.probe
    assert p["probe"] == "edgeio-solo5-probe" and p["op"] == "write_sync" and p["size"] == 4096
    assert p["io_size"] == 512 and p["blocks_per_call"] == 1 and sum(p["batch_reps"]) == 10
    m = result.metadata
    assert m["tender"] == "edgeio" and m["flush"] == "none" and m["blocks_per_call"] == 1
    assert m["sector_size"] == 512 and m["mem_mib"] == 512
    assert m["kvm"] in ("software", "hardware")
    assert m["counters"]["exits"]["block_write"] == 10 * 8 and m["counters"]["fsyncs"] == 0
    assert m["seccomp"] is True and m["counters"]["exit"] == {"by": "guest", "status": 0}
    assert "--flush=none" in result.log
    assert not list(tmp_path.glob("edgeio-hvt.*/disk-*.img"))      # the cell's image is gone
    assert env.metadata()["kvm"] == m["kvm"]


@needs_kvm
def test_multi_block_each_write_cell(env_factory):
    env = env_factory(blocks_per_call="8", flush="each-write")
    m = env.run(cell(op="write_sync", reps=6), timeout=120).metadata
    assert m["blocks_per_call"] == 8
    assert m["counters"]["exits"]["block_write"] == 6 and m["counters"]["fsyncs"] == 6


@needs_kvm
def test_io_size_picks_blocks_per_call(env_factory):
    env = env_factory()
    result = env.run(cell(op="read", reps=4, io_size_bytes=2048), timeout=120)
    assert result.probe["io_size"] == 2048 and result.metadata["blocks_per_call"] == 4
    assert result.metadata["counters"]["exits"]["block_read"] == 4 * 2


@needs_kvm
def test_misbehaving_guest_is_a_failed_cell(env_factory):
    env = env_factory()
    with pytest.raises(CellFailed, match="probe: op must be"):
        env.run(cell(op="append"), timeout=60)


@needs_kvm
def test_timeout_is_a_failed_cell(env_factory):
    env = env_factory()
    with pytest.raises(CellFailed, match="timed out"):
        env.run(cell(size=65536, op="write", reps=100000), timeout=1.5)


@needs_kvm
def test_invoke_measure_prints_the_table(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    envvars = {**os.environ, "EDGEIO_RESULTS": str(tmp_path / "results")}
    proc = subprocess.run([sys.executable, "-m", "invoke", "measure", "--env", "hvt", "--size", "4KiB",
                           "--reps", "20", "--param", "blocks_per_call=8", "--param", "flush=each-write"],
                          cwd=root, env=envvars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hvt[blocks_per_call=8,flush=each-write]" in proc.stdout
    for op in ("write_sync", "write", "read"):
        assert op in proc.stdout
