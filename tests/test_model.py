"""The model's structure: effects that must follow from the stages, not from fitted curves."""

import pytest

from edgeio.errors import UserError
from model import STUDY, Params, Simulator, Workload, simulate
from model.params import GIB, KIB, MIB

GI = 1 << 30


@pytest.fixture(scope="module")
def p():
    # the priors: plausible values, none fitted (the structure must not depend on a fit)
    return Params()


def per_op(p, env, size, op, reps=3, **cfg):
    cfg_obj = STUDY[env].replace(**cfg) if cfg else STUDY[env]
    return simulate(p, cfg_obj, Workload(size, op, reps))


# -- hvt: one hypercall and one host call per block ----------------------------------------

@pytest.mark.parametrize("op", ["read", "write"])
def test_hvt_time_is_proportional_to_the_number_of_blocks(p, op):
    sizes = [64 * KIB, 256 * KIB, 1 * MIB]           # one copy regime (fits the CPU cache)
    per_block = [per_op(p, "hvt", s, op).per_op_s / (s // 512) for s in sizes]
    assert max(per_block) / min(per_block) < 1.01
    big = [per_op(p, "hvt", s, op).per_op_s / (s // 512) for s in (4 * MIB, 64 * MIB)]
    assert max(big) / min(big) < 1.01
    # and the hypercalls are there: one per block
    r = per_op(p, "hvt", 64 * KIB, op)
    assert r.ledger.coef["hypercall_s"] == pytest.approx(128)


def test_hvt_write_sync_is_one_flush_per_block(p):
    for size in (4 * KIB, 64 * KIB):
        r = per_op(p, "hvt", size, "write_sync")
        assert r.ledger.coef["fsync_overhead_s"] == pytest.approx(size // 512)
    # its time is the block count times one block's write and fsync
    one = per_op(p, "hvt", 512, "write_sync").per_op_s
    assert per_op(p, "hvt", 4 * KIB, "write_sync").per_op_s == pytest.approx(8 * one, rel=1e-6)
    # other flush policies: one fsync per call, or none
    assert per_op(p, "hvt", 4 * KIB, "write_sync", flush="call", blocks_per_call=8).ledger.coef["fsync_overhead_s"] == 1
    assert per_op(p, "hvt", 4 * KIB, "write_sync", flush="none").ledger.coef.get("fsync_overhead_s", 0) == 0


def test_hvt_1gib_write_sync_is_dominated_by_flushes(p):
    r = simulate(p, "hvt", Workload(GI, "write_sync", 10))
    blocks = GI // 512
    assert r.ledger.coef["fsync_overhead_s"] == pytest.approx(blocks)
    flush_cost = p["fsync_overhead_s"] + p["sd_flush_s"]
    assert r.per_op_s > blocks * flush_cost


# -- page caches ---------------------------------------------------------------------------

@pytest.mark.parametrize("env", ["qemu", "xen"])
def test_1gib_reads_miss_a_small_guest_cache_and_go_to_the_card(p, env):
    r = simulate(p, env, Workload(GI, "read", 10))
    # the device time is at least the bytes over the card's read bandwidth
    assert r.ledger.device_s >= GI / p["sd_read_bps"]
    assert r.per_op_s > 5 * simulate(p, "linux", Workload(GI, "read", 10)).per_op_s
    # a guest with enough memory holds the file: no device time at all
    roomy = STUDY[env].replace(memory_bytes=int(3.5 * GIB))
    assert simulate(p, roomy, Workload(GI, "read", 10)).ledger.device_s == 0


def test_linux_1gib_read_hits_the_host_cache(p):
    assert simulate(p, "linux", Workload(GI, "read", 10)).ledger.device_s == 0


def test_1gib_writes_are_bound_by_the_card_through_dirty_throttling(p):
    w = Workload(GI, "write", 10)
    r = simulate(p, "linux", w)
    assert r.ledger.wait_s > 0 and not r.linear          # the writer was throttled
    device = GI / p["sd_write_bps"]
    assert 0.7 * device < r.per_op_s < 1.1 * device      # minus what stays dirty at the end
    faster_card = simulate(Params({"sd_write_bps": 2 * p["sd_write_bps"]}), "linux", w).per_op_s
    assert faster_card == pytest.approx(r.per_op_s / 2, rel=0.05)
    cpu_x2 = Params({k: 2 * p[k] for k in ("syscall_s", "write_call_s", "write_s_per_byte",
                                             "dram_copy_s_per_byte", "page_dirtying_s")})
    assert simulate(cpu_x2, "linux", w).per_op_s == pytest.approx(r.per_op_s, rel=0.02)
    # a small file is never throttled: it stays in the page cache
    assert simulate(p, "linux", Workload(4 * KIB, "write", 1000)).ledger.wait_s == 0


def test_write_sync_writes_everything_back(p):
    sync = simulate(p, "linux", Workload(GI, "write_sync", 10))
    assert sync.per_op_s >= GI / p["sd_write_bps"]
    assert sync.per_op_s > simulate(p, "linux", Workload(GI, "write", 10)).per_op_s


# -- accounting and aggregation ------------------------------------------------------------

@pytest.mark.parametrize("env,size,op", [("linux", 4 * KIB, "write_sync"), ("qemu", GI, "read"),
                                         ("hvt", 4 * KIB, "write"), ("xen", GI, "write"),
                                         ("qemu", GI, "write_sync")])
def test_ledger_accounts_for_all_elapsed_time(p, env, size, op):
    r = simulate(p, env, Workload(size, op, 10))
    total = r.linear_part(p) + r.ledger.device_s + r.ledger.wait_s
    assert total == pytest.approx(r.per_op_s, rel=1e-9)


SMALL = {"host_memory_bytes": 96 * MIB, "kernel_reserve_bytes": 16 * MIB}
SMALL_CASES = [
    ("linux", {}, 24 * MIB, "write", 4),          # throttled: bigger than the dirty limit
    ("linux", {}, 24 * MIB, "write_sync", 3),
    ("docker", {}, 256 * KIB, "read", 5),
    ("qemu", {"memory_bytes": 40 * MIB}, 20 * MIB, "read", 3),   # misses the guest cache (LRU), hits the host's
    ("qemu", {"memory_bytes": 40 * MIB}, 28 * MIB, "read", 3),   # misses both: the card
    ("xen", {"memory_bytes": 40 * MIB}, 20 * MIB, "read", 3),
    ("qemu", {"memory_bytes": 40 * MIB}, 20 * MIB, "write_sync", 2),
    ("xen", {"memory_bytes": 40 * MIB}, 12 * MIB, "write", 3),
    ("hvt", {"memory_bytes": 16 * MIB}, 64 * KIB, "write_sync", 3),
    ("hvt", {"memory_bytes": 16 * MIB}, 4 * MIB, "write", 3),
    ("hvt", {"memory_bytes": 16 * MIB, "blocks_per_call": 8, "flush": "call"}, 256 * KIB, "write_sync", 2),
]


@pytest.mark.parametrize("env,cfg,size,op,reps", SMALL_CASES)
def test_aggregate_and_per_request_simulation_agree(env, cfg, size, op, reps):
    p = Params(SMALL)
    c = STUDY[env].replace(**cfg)
    w = Workload(size, op, reps, io_size=64 * KIB if size > 64 * KIB else None)
    agg = simulate(p, c, w, mode="aggregate")
    req = simulate(p, c, w, mode="request")
    assert agg.per_op_s == pytest.approx(req.per_op_s, rel=0.01)
    if req.linear:    # nothing overlapped: the device time the probe waited for agrees too
        assert agg.ledger.device_s == pytest.approx(req.ledger.device_s, rel=0.01, abs=1e-12)


def test_memoised_simulation_is_the_same_simulation(p):
    sim = Simulator()
    w = Workload(GI, "write", 10)
    a = sim(dict(p), STUDY["linux"], w)
    assert sim(dict(p), STUDY["linux"], w) is a                   # a hit
    other = dict(p, hypercall_s=2 * p["hypercall_s"])             # linux never reads it
    assert sim(other, STUDY["linux"], w) is a
    slower = dict(p, sd_write_bps=p["sd_write_bps"] / 2)
    assert sim(slower, STUDY["linux"], w).per_op_s == pytest.approx(simulate(Params(slower), "linux", w).per_op_s)


# -- bad values ----------------------------------------------------------------------------

@pytest.mark.parametrize("values", [{"sd_read_bps": 0}, {"sd_write_bps": -1}, {"syscall_s": -1e-6},
                                    {"dirty_ratio": 1.5}, {"no_such_param": 1}])
def test_impossible_parameters_are_user_errors(values):
    with pytest.raises(UserError):
        Params(values)


@pytest.mark.parametrize("cfg", [{"memory_bytes": -1}, {"block_size": 3000}, {"blocks_per_call": 0},
                                 {"flush": "sometimes"}])
def test_impossible_environments_are_user_errors(p, cfg):
    with pytest.raises(UserError):
        simulate(p, STUDY["hvt"].replace(**cfg), Workload(4096, "read", 1))


def test_a_guest_bigger_than_the_host_is_a_user_error(p):
    with pytest.raises(UserError, match="host no page cache"):
        simulate(p, STUDY["qemu"].replace(memory_bytes=4 * GIB), Workload(4096, "read", 1))


def test_campaign_configs_map_onto_the_model():
    from model.environments import config_for
    hvt = config_for("hvt", '{"flush":"each-write","blocks_per_call":"8","sector_size":"4096","mem":"256"}')
    assert (hvt.flush, hvt.blocks_per_call, hvt.block_size, hvt.memory_bytes) == ("block", 8, 4096, 256 * MIB)
    assert config_for("hvt", '{"flush":"none"}').flush == "none"
    assert config_for("qemu", '{"mem":"256","disk":"virtio"}').memory_bytes == 256 * MIB
    assert config_for("linux", "{}") == STUDY["linux"]
    for bad in ('{"flush":"maybe"}', '{"blocks_per_call":"x"}', "[1]", "{not json"):
        with pytest.raises(UserError):
            config_for("hvt", bad)
    with pytest.raises(UserError, match="no environment"):
        config_for("vmware", "{}")
