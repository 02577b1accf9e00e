"""The hvt environment's transports (--param transport=hvt|ring|mapped, batch=N): bad
input, real cells whose metadata records transport, batch and exact counters, and
`invoke measure` printing its table."""

import os
import subprocess
import sys

import pytest

from edgeio.errors import UserError
from measure.environments.hvt import HvtEnvironment
from measure.targets import LocalTarget
from tests.test_hvt import cell, env_factory, needs_kvm  # noqa: F401


@pytest.mark.parametrize("params,message", [
    ({"transport": "virtio"}, "transport='virtio'"),
    ({"batch": "8"}, "batch applies to transport=ring only"),
    ({"transport": "mapped", "batch": "8"}, "batch applies to transport=ring only"),
    ({"transport": "ring", "batch": "0"}, "batch=0"),
    ({"transport": "ring", "batch": "5000"}, "batch=5000"),
    ({"transport": "ring", "batch": "lots"}, "whole number"),
    ({"transport": "mapped", "flush": "each-write"}, "no write exits to flush after"),
    ({"transport": "ring", "tender": "solo5"}, "edgeio extension"),
])
def test_bad_transport_params(params, message):
    with pytest.raises(UserError, match=message):
        HvtEnvironment(LocalTarget(), params)


def test_ring_batch_defaults_to_64():
    assert HvtEnvironment(LocalTarget(), {"transport": "ring"}).batch == 64
    assert HvtEnvironment(LocalTarget(), {"transport": "mapped"}).batch == 1


@needs_kvm
def test_ring_cell(env_factory):
    env = env_factory(transport="ring", batch="3", flush="on-request", blocks_per_call="2")
    result = env.run(cell(op="write_sync", reps=5), timeout=120)
    m = result.metadata
    assert m["transport"] == "ring" and m["batch"] == 3 and m["blocks_per_call"] == 2
    assert result.probe["transport"] == "ring" and result.probe["batch"] == 3
    c = m["counters"]
    # 4096 B in 1 KiB requests: 4 per repetition = 2 notifications of <= 3, + 1 for the flush
    assert c["notifications"] == 5 * 3 and c["flush_exits"] == 5 and c["fsyncs"] == 5
    assert "--transport=ring" in result.log and "batch=3" in result.log
    config = env.effective_config(cell(op="write_sync", reps=5), result.probe, m)
    assert config["transport"] == "ring" and config["batch"] == 3 and config["blocks_per_call"] == 2


@needs_kvm
@pytest.mark.parametrize("op,size", [("call", 512), ("exit", 512), ("copy", 16), ("copy", 8192), ("ring", 512), ("rep", 512),
                                     ("flush", 512)])
def test_primitive_probes_count_exactly_and_cost_something(env_factory, op, size):
    """The calibration protocol's micro-probes (probe.c): exact exits and notifications,
    a positive finite cost per repetition, whatever transport the campaign's hvt has."""
    import math
    env = env_factory(transport="mapped", flush="on-request")       # a primitive runs on its own
    reps, batches = 640, 5
    result = env.run(cell(size=size, op=op, reps=reps, batches=batches), timeout=120)
    probe, c = result.probe, result.metadata["counters"]
    assert probe["batch_reps"] == [reps // batches] * batches and probe["errno"] == 0
    per_op = sum(probe["batch_seconds"]) / reps
    assert math.isfinite(per_op) and per_op > 0
    exits = c["exits"]
    assert exits["block_read"] == exits["block_write"] == exits["mapped_flush"] == 0
    assert exits["block_flush"] == (reps if op == "flush" else 0)    # a flush request each, no fsync
    assert c.get("fsyncs", 0) == 0
    assert exits["walltime"] == (reps if op == "exit" else 0)       # one bare exit per repetition
    if op == "ring":                      # 128 per batch, 64 per notification: 2 notifications each
        assert c["notifications"] == reps // 64 and c["ring_requests"] == reps and c.get("fsyncs", 0) == 0
        assert c["host_io_calls"] == reps  # one offset: nothing merges
    else:
        assert exits["ring_notify"] == 0
    config = env.effective_config(cell(size=size, op=op, reps=reps), probe, result.metadata)
    assert config["kind"] == "primitive" and config["flush"] == "none"
    assert config["transport"] == ("ring" if op == "ring" else "hvt")


def test_effective_config_of_a_ring_with_the_default_batch():
    env = HvtEnvironment(LocalTarget(), {"transport": "ring"})
    assert env.effective_config(cell())["batch"] == 64
    env = HvtEnvironment(LocalTarget(), {"transport": "mapped"})
    assert env.effective_config(cell())["batch"] == 1 and env.effective_config(cell())["transport"] == "mapped"


@needs_kvm
def test_mapped_cell_with_a_size_not_a_whole_page(env_factory):
    env = env_factory(transport="mapped", flush="on-request")
    result = env.run(cell(size=1536, op="write_sync", reps=4), timeout=120)   # disk rounded up to 4 KiB
    m = result.metadata
    assert m["transport"] == "mapped" and m["batch"] == 1
    c = m["counters"]
    assert c["block_exits"] == c["flush_exits"] == 4 and c["exits"]["block_write"] == 0
    assert c["notifications"] == 0 and c["fsyncs"] == 4


@needs_kvm
@pytest.mark.parametrize("params,label", [(["transport=ring", "batch=64"], "hvt[batch=64,transport=ring]"),
                                          (["transport=mapped"], "hvt[transport=mapped]")])
def test_invoke_measure_prints_the_table(tmp_path, params, label):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    envvars = {**os.environ, "EDGEIO_RESULTS": str(tmp_path / "results")}
    argv = [sys.executable, "-m", "invoke", "measure", "--env", "hvt", "--size", "4KiB", "--reps", "10"]
    for p in params:                                 # as the "done when" types them
        argv += ["--param", p]
    proc = subprocess.run(argv, cwd=root, env=envvars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert label in proc.stdout, proc.stdout
    for op in ("write_sync", "write", "read"):
        assert op in proc.stdout
