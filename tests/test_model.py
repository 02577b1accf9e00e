"""The model's structure: effects that must follow from the stages, not from fitted curves."""

import pytest

from edgeio.errors import UserError
from model import Params, Simulator, Workload, simulate, study
from model.machine import pi4
from model.params import GIB, KIB, MIB

GI = 1 << 30
PI = pi4()["machine"]
STUDY = study()


@pytest.fixture(scope="module")
def p():
    # the priors on the study's Pi 4: plausible values, none fitted (the structure must
    # not depend on a fit)
    return Params(machine=PI)


def pi_params(values):
    return Params(values, machine=PI)


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
    # its time is the block count times one block's write and fsync, plus one pass of the
    # probe's repetition loop (guest_rep_s) whatever the size
    rep = p["guest_rep_s"]
    one = per_op(p, "hvt", 512, "write_sync").per_op_s - rep
    assert per_op(p, "hvt", 4 * KIB, "write_sync").per_op_s - rep == pytest.approx(8 * one, rel=1e-6)
    assert per_op(p, "hvt", 4 * KIB, "write_sync").ledger.coef["guest_rep_s"] == 1
    # other flush policies: one fsync per call, or none
    assert per_op(p, "hvt", 4 * KIB, "write_sync", flush="each-write", blocks_per_call=8).ledger.coef["fsync_overhead_s"] == 1
    assert per_op(p, "hvt", 4 * KIB, "write_sync", flush="none").ledger.coef.get("fsync_overhead_s", 0) == 0


def test_hvt_1gib_write_sync_is_dominated_by_flushes(p):
    r = simulate(p, STUDY["hvt"], Workload(GI, "write_sync", 10))
    blocks = GI // 512
    assert r.ledger.coef["fsync_overhead_s"] == pytest.approx(blocks)
    flush_cost = p["fsync_overhead_s"] + p["dev_flush_s"]
    assert r.per_op_s > blocks * flush_cost


# -- page caches ---------------------------------------------------------------------------

@pytest.mark.parametrize("env", ["qemu", "xen"])
def test_1gib_reads_miss_a_small_guest_cache_and_go_to_the_card(p, env):
    r = simulate(p, STUDY[env], Workload(GI, "read", 10))
    # the device time is at least the bytes over the card's read bandwidth
    assert r.ledger.device_s >= GI / p["dev_read_bps"]
    assert r.per_op_s > 5 * simulate(p, STUDY["linux"], Workload(GI, "read", 10)).per_op_s
    # a guest with enough memory holds the file: no device time at all
    roomy = STUDY[env].replace(memory_bytes=int(3.5 * GIB))
    assert simulate(p, roomy, Workload(GI, "read", 10)).ledger.device_s == 0


def test_linux_1gib_read_hits_the_host_cache(p):
    assert simulate(p, STUDY["linux"], Workload(GI, "read", 10)).ledger.device_s == 0


def test_1gib_writes_are_bound_by_the_card_through_dirty_throttling(p):
    w = Workload(GI, "write", 10)
    r = simulate(p, STUDY["linux"], w)
    assert r.ledger.wait_s > 0 and not r.linear          # the writer was throttled
    device = GI / p["dev_write_bps"]
    assert 0.7 * device < r.per_op_s < 1.1 * device      # minus what stays dirty at the end
    faster_card = simulate(pi_params({"dev_write_bps": 2 * p["dev_write_bps"]}), STUDY["linux"], w).per_op_s
    assert faster_card == pytest.approx(r.per_op_s / 2, rel=0.05)
    cpu_x2 = pi_params({k: 2 * p[k] for k in ("syscall_s", "write_call_s", "write_s_per_byte",
                                             "dram_copy_s_per_byte", "page_dirtying_s")})
    assert simulate(cpu_x2, STUDY["linux"], w).per_op_s == pytest.approx(r.per_op_s, rel=0.02)
    # a small file is never throttled: it stays in the page cache
    assert simulate(p, STUDY["linux"], Workload(4 * KIB, "write", 1000)).ledger.wait_s == 0


def test_write_sync_writes_everything_back(p):
    sync = simulate(p, STUDY["linux"], Workload(GI, "write_sync", 10))
    assert sync.per_op_s >= GI / p["dev_write_bps"]
    assert sync.per_op_s > simulate(p, STUDY["linux"], Workload(GI, "write", 10)).per_op_s


# -- accounting and aggregation ------------------------------------------------------------

@pytest.mark.parametrize("env,size,op", [("linux", 4 * KIB, "write_sync"), ("qemu", GI, "read"),
                                         ("hvt", 4 * KIB, "write"), ("xen", GI, "write"),
                                         ("qemu", GI, "write_sync")])
def test_ledger_accounts_for_all_elapsed_time(p, env, size, op):
    r = simulate(p, STUDY[env], Workload(size, op, 10))
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
    ("hvt", {"memory_bytes": 16 * MIB, "blocks_per_call": 8, "flush": "each-write"}, 256 * KIB, "write_sync", 2),
    ("hvt", {"memory_bytes": 16 * MIB, "flush": "on-request"}, 64 * KIB, "write_sync", 2),
    ("hvt", {"memory_bytes": 16 * MIB, "transport": "mapped"}, 4 * MIB, "write", 3),
    ("linux", {"direct": True}, 1 * MIB, "write_sync", 3),
    ("linux", {"cold": True}, 1 * MIB, "read", 3),
    ("qemu", {"memory_bytes": 40 * MIB, "transport": "ide"}, 28 * MIB, "read", 2),
]


@pytest.mark.parametrize("env,cfg,size,op,reps", SMALL_CASES)
def test_aggregate_and_per_request_simulation_agree(env, cfg, size, op, reps):
    p = pi_params(SMALL)
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
    slower = dict(p, dev_write_bps=p["dev_write_bps"] / 2)
    assert sim(slower, STUDY["linux"], w).per_op_s == pytest.approx(
        simulate(pi_params(slower), STUDY["linux"], w).per_op_s)


# -- bad values ----------------------------------------------------------------------------

@pytest.mark.parametrize("values", [{"dev_read_bps": 0}, {"dev_write_bps": -1}, {"syscall_s": -1e-6},
                                    {"dirty_ratio": 1.5}, {"no_such_param": 1}])
def test_impossible_parameters_are_user_errors(values):
    with pytest.raises(UserError):
        pi_params(values)


@pytest.mark.parametrize("cfg", [{"memory_bytes": -1}, {"block_size": 3000}, {"blocks_per_call": 0},
                                 {"flush": "sometimes"}, {"batch": 0}])
def test_impossible_environments_are_user_errors(p, cfg):
    with pytest.raises(UserError):
        simulate(p, STUDY["hvt"].replace(**cfg), Workload(4096, "read", 1))


def test_a_guest_bigger_than_the_host_is_a_user_error(p):
    with pytest.raises(UserError, match="host no page cache"):
        simulate(p, STUDY["qemu"].replace(memory_bytes=4 * GIB), Workload(4096, "read", 1))


def test_campaign_configs_map_onto_the_model():
    from model.environments import config_for
    hvt = config_for("hvt", '{"flush":"each-write","blocks_per_call":"8","sector_size":"4096","mem":"256"}', PI)
    assert (hvt.flush, hvt.blocks_per_call, hvt.block_size, hvt.memory_bytes) == ("each-write", 8, 4096, 256 * MIB)
    assert config_for("hvt", '{"flush":"none"}', PI).flush == "none"
    assert config_for("qemu", '{"mem":"256","disk":"ide"}', PI).memory_bytes == 256 * MIB
    assert config_for("qemu", '{"disk":"ide"}', PI).transport == "ide"
    # the recorded keys (INTERFACES.md) and qemu's own cache= beside the probe's cache mode
    q = config_for("qemu", {"memory_bytes": 512 * MIB, "accel": "tcg", "cache_mode": "writeback",
                            "cache": "cold", "direct": True}, PI)
    assert (q.memory_bytes, q.cpu_factor, q.cold, q.direct) == (512 * MIB, "emulated_cpu_factor", True, True)
    assert config_for("qemu", {"accel": "kvm"}, PI).cpu_factor == "vm_cpu_factor"
    # the measurement side's defaults for what an old campaign did not record
    assert config_for("hvt", {}, PI).flush == "none" and config_for("hvt", {}, PI).memory_bytes == 512 * MIB
    assert config_for("linux", "{}", PI).memory_bytes == PI["memory_bytes"]
    # docker: the writable layer's fsync costs extra, a volume's does not
    assert config_for("docker", {}, PI).overlay and not config_for("docker", {"volume": "/srv/v"}, PI).overlay
    assert not config_for("docker", {"volume": True}, PI).overlay
    for bad in ('{"flush":"maybe"}', '{"blocks_per_call":"x"}', "[1]", "{not json", '{"transport":"pigeon"}'):
        with pytest.raises(UserError):
            config_for("hvt", bad, PI)
    with pytest.raises(UserError, match="no environment"):
        config_for("vmware", "{}", PI)


def test_model_defaults_are_the_measurement_sides_defaults():
    """For campaigns without a recorded config the model assumes what measure runs."""
    from measure.environments.docker import DockerEnvironment as Docker
    from measure.environments.hvt import HvtEnvironment as Hvt
    from measure.environments.qemu import QemuEnvironment as Qemu
    from model.environments import ENV_DEFAULTS
    assert Hvt.params_spec["flush"] == ENV_DEFAULTS["hvt"]["flush"]
    assert int(Hvt.params_spec["blocks_per_call"]) == ENV_DEFAULTS["hvt"]["blocks_per_call"]
    assert int(Hvt.params_spec["sector_size"]) == ENV_DEFAULTS["hvt"]["block_size"]
    assert int(Hvt.params_spec["mem"]) * MIB == ENV_DEFAULTS["hvt"]["memory_bytes"]
    assert int(Qemu.params_spec["mem"]) * MIB == ENV_DEFAULTS["qemu"]["memory_bytes"]
    assert Qemu.params_spec["disk"] == ENV_DEFAULTS["qemu"]["disk"]
    assert int(Docker.params_spec["mem"]) * MIB == ENV_DEFAULTS["docker"]["memory_bytes"]
    assert Hvt.params_spec["transport"] == ENV_DEFAULTS["hvt"]["transport"]
    from model.environments import config_for
    assert config_for("hvt", {"transport": "ring", "batch": ""}, PI).batch == 64    # the tender's default
    assert config_for("hvt", {"transport": "ring", "batch": "8"}, PI).batch == 8


# -- a cell is modelled as it ran ----------------------------------------------------------

def test_hvt_with_the_tenders_default_flush_is_modelled_without_fsyncs(p):
    """The edgeio tender's default (flush=none) never fsyncs: a write_sync repetition is
    the writes plus one flush hypercall, nothing else (issue 10: the model used to keep
    the study's fsync per block)."""
    from model.environments import config_for
    cfg = config_for("hvt", {}, PI)                  # a campaign cell with no --param
    r = simulate(p, cfg, Workload(4 * KIB, "write_sync", 10))
    assert r.ledger.coef.get("fsync_overhead_s", 0) == 0 and r.ledger.device_s == 0
    assert r.ledger.coef["hypercall_s"] == pytest.approx(8 + 1)   # 8 block writes, 1 flush request
    # the flush request's guest side is a flush's (the primitive flush), not a block call's
    assert r.ledger.coef["guest_flush_s"] == 1 and r.ledger.coef["guest_call_s"] == 8
    w = simulate(p, cfg, Workload(4 * KIB, "write", 10))
    assert r.per_op_s == pytest.approx(w.per_op_s + p["hypercall_s"] + p["guest_flush_s"], rel=1e-9)
    # the policies that do sync: per write call, or once at the flush request
    each = simulate(p, config_for("hvt", {"flush": "each-write"}, PI), Workload(4 * KIB, "write_sync", 10))
    assert each.ledger.coef["fsync_overhead_s"] == pytest.approx(8)
    req = simulate(p, config_for("hvt", {"flush": "on-request", "blocks_per_call": 8}, PI),
                   Workload(4 * KIB, "write_sync", 10))
    assert req.ledger.coef["fsync_overhead_s"] == pytest.approx(1)
    assert each.per_op_s > 5 * req.per_op_s > 5 * r.per_op_s


def test_io_size_sync_direct_and_cold_reach_the_model(p):
    from model.environments import config_for
    linux = config_for("linux", {}, PI)
    small_io = simulate(p, linux, Workload(1 * MIB, "write", 10, io_size=4 * KIB))
    big_io = simulate(p, linux, Workload(1 * MIB, "write", 10, io_size=1 * MIB))
    assert small_io.ledger.coef["syscall_s"] == pytest.approx(256)
    assert big_io.ledger.coef["syscall_s"] == pytest.approx(1)
    assert small_io.per_op_s > big_io.per_op_s
    # O_DIRECT skips the page cache: every write goes to the device, nothing is dirtied
    direct = simulate(p, config_for("linux", {"direct": True}, PI), Workload(1 * MIB, "write", 10))
    assert direct.ledger.coef.get("page_dirtying_s", 0) == 0
    assert direct.ledger.device_s >= MIB / p["dev_write_bps"]
    assert simulate(p, linux, Workload(1 * MIB, "write", 10)).ledger.device_s == 0
    # a cold read reads from the device, a warm one from the cache
    cold = simulate(p, config_for("linux", {"cache": "cold"}, PI), Workload(1 * MIB, "read", 10))
    assert cold.ledger.device_s >= MIB / p["dev_read_bps"]
    assert simulate(p, linux, Workload(1 * MIB, "read", 10)).ledger.device_s == 0
    # fdatasync of a rewrite in place commits no journal
    fd = simulate(p, config_for("linux", {"sync": "fdatasync"}, PI), Workload(4 * KIB, "write_sync", 10))
    fs = simulate(p, linux, Workload(4 * KIB, "write_sync", 10))
    assert fd.ledger.coef.get("fsync_overhead_s", 0) == 0 and fs.ledger.coef["fsync_overhead_s"] == 1


def test_qemu_disk_transports(p):
    """ide and ahci trap several register accesses per request (fitted counts) besides the
    dispatch and completion every request has (virtio's notification is its one exit)."""
    from model.environments import config_for
    w = Workload(256 * MIB, "read", 3)
    small = {"memory_bytes": 64 * MIB}
    t = {d: simulate(p, config_for("qemu", dict(small, disk=d), PI), w) for d in ("virtio", "ide", "ahci")}
    n = t["virtio"].ledger.coef["virtio_exit_s"]
    assert n > 0
    assert t["ide"].ledger.coef["virtio_exit_s"] == t["ahci"].ledger.coef["virtio_exit_s"] == n
    assert t["ide"].ledger.coef["trap_s"] == pytest.approx(n * p["ide_exits_per_request"])
    assert t["ahci"].ledger.coef["trap_s"] == pytest.approx(n * p["ahci_exits_per_request"])
    assert t["virtio"].per_op_s < t["ahci"].per_op_s < t["ide"].per_op_s


def test_hvt_transports(p):
    from model.environments import config_for
    w = Workload(64 * KIB, "read", 10)
    hvt = simulate(p, config_for("hvt", {}, PI), w)
    ring = simulate(p, config_for("hvt", {"transport": "ring", "batch": 16}, PI), w)
    mapped = simulate(p, config_for("hvt", {"transport": "mapped"}, PI), w)
    assert hvt.ledger.coef["hypercall_s"] == 128
    assert ring.ledger.coef["hypercall_s"] == 8 and ring.ledger.coef["ring_post_s"] == 128
    assert hvt.ledger.coef["guest_call_s"] == 128 and mapped.ledger.coef["guest_call_s"] == 128
    assert ring.ledger.coef["syscall_s"] == 8          # one preadv per notification (issue 14)
    assert hvt.ledger.coef["syscall_s"] == 128
    assert mapped.ledger.coef.get("hypercall_s", 0) == 0 and mapped.ledger.coef.get("syscall_s", 0) == 0
    assert mapped.ledger.coef["guest_copy_s_per_byte"] == 64 * KIB
    assert mapped.ledger.coef["guest_copy_call_s"] == 128         # one copy per block call


def test_structure_comes_from_the_machine_facts():
    """Two machines, same model code: their facts give the structure."""
    from model.machine import structure
    other = dict(PI, memory_bytes=16 * GIB, cpu_caches={"l2_bytes": 2 * MIB, "l3_bytes": 32 * MIB},
                 block_device={"kind": "nvme", "readahead_bytes": 256 * KIB, "max_request_bytes": 124 * KIB})
    s = structure(other)
    assert (s["host_memory_bytes"], s["cpu_cache_bytes"], s["readahead_bytes"], s["writeback_request_bytes"]) == \
        (16 * GIB, 32 * MIB, 256 * KIB, 124 * KIB)
    assert structure(PI)["cpu_cache_bytes"] == 1 * MIB
    # a 4 MiB file fits the other machine's LLC, not the Pi's
    w = Workload(4 * MIB, "read", 10)
    assert simulate(Params(machine=other), "linux", w).ledger.coef.get("cache_copy_s_per_byte", 0) > 0
    assert simulate(Params(machine=PI), STUDY["linux"], w).ledger.coef.get("dram_copy_s_per_byte", 0) > 0
    # no machine: the machine-only constants are missing, and that is said
    with pytest.raises(UserError, match="machine facts"):
        Params()


@pytest.mark.parametrize("drop", ["memory_bytes", "cpu_caches"])
def test_a_profile_missing_a_fact_is_a_user_error(tmp_path, drop):
    import json
    from model.machine import load_profile, pi4_profile_path
    prof = json.loads(pi4_profile_path().read_text())
    del prof["machine"][drop]
    f = tmp_path / "m.json"
    f.write_text(json.dumps(prof))
    with pytest.raises(UserError, match=f"lack {drop}") as e:
        load_profile(f)
    assert "\n" not in str(e.value)


def test_an_emulated_board_s_guest_code_is_emulated_whatever_its_kvm_fact():
    """The emulated Pi board says kvm: hardware (its EL2 is QEMU's): its guests' code is
    emulated all the same, in the priors (hence the fit's bounds) and the qemu model."""
    from model.environments import config_for
    from model.machine import guest_code, machine_priors
    board = dict(PI, kvm="hardware", emulated=True)
    assert guest_code(board) == "emulated" and guest_code(dict(PI, kvm="hardware", emulated=False)) == "hardware"
    assert guest_code(dict(PI, kvm="software")) == "emulated" and guest_code(dict(PI, kvm="absent")) == "none"
    assert machine_priors(board)["hypercall_s"] == machine_priors(dict(PI, kvm="software"))["hypercall_s"]
    assert "hypercall_s" not in machine_priors(dict(PI, kvm="hardware", emulated=False))
    assert config_for("qemu", {"accel": "kvm"}, board).cpu_factor == "emulated_cpu_factor"
    assert config_for("qemu", {"accel": "kvm"}, dict(PI, emulated=False)).cpu_factor == "vm_cpu_factor"
    # its own kernel's code runs through the emulator too: CPU-bound priors scaled, devices not
    from model.machine import EMULATED_MACHINE_SLOWDOWN
    from model.params import priors
    native, emulated = priors(dict(PI, emulated=False)), priors(board)
    assert emulated["syscall_s"] == pytest.approx(EMULATED_MACHINE_SLOWDOWN * native["syscall_s"])
    assert emulated["dram_copy_s_per_byte"] == pytest.approx(EMULATED_MACHINE_SLOWDOWN * native["dram_copy_s_per_byte"])
    assert emulated["dev_write_bps"] == native["dev_write_bps"]


def test_a_campaign_without_cache_sizes_falls_back_with_its_source_said():
    from model.machine import FALLBACK_LLC_BYTES, campaign_cache_fallback, check
    facts = dict(PI, cpu_caches={"l1d_bytes": None, "l2_bytes": None, "l3_bytes": None,
                                 "source": {"l2_bytes": "none: the pointer-chase sweep failed: x"}})
    fixed, note = campaign_cache_fallback(facts)
    check(fixed)
    assert fixed["cpu_caches"]["l2_bytes"] == FALLBACK_LLC_BYTES
    assert fixed["cpu_caches"]["source"]["l2_bytes"].startswith("assumed: 1 MiB") and "sweep failed: x" in note
    assert campaign_cache_fallback(PI) == (PI, None)


def test_ledger_by_stage_adds_up_and_names_every_cost():
    """model/ledger.py: where a cell's time goes, summed by stage, is the cell's time."""
    import calibration
    from model.ledger import STAGES, cell_ledger, sentence
    from model.params import SPECS
    assert {n for n, s in SPECS.items() if s.kind == "linear"} <= set(STAGES)
    results = calibration.load_results(None)
    cal = calibration.fit(results[results["size_bytes"] == 4096].copy())
    total, stages = cell_ledger(cal, "hvt", 4096, "write")
    assert sum(stages.values()) == pytest.approx(total, rel=1e-6)
    assert next(iter(stages)) == "hypercalls (VM exits)"       # the study's hvt: 8 exits per 4 KiB
    assert sentence(stages, total).startswith(f"{next(iter(stages.values())) / total:.0%} hypercalls")
