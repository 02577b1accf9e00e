"""Primitives in the model, intervals that mean what they say, what-ifs as a tender runs them.

Pure statistics and model runs on synthetic data with a known truth: no measurement."""

import math

import numpy as np
import pandas as pd
import pytest

import calibration
from calibration.coverage import whatif_needs
from calibration.fit import cells_from
from model import Params, simulate
from model.environments import config_for
from model.intervals import POOLED, coverage, interval, ratio_log_sd, regime_spreads, spread_for, unshared
from model.machine import machine_prior_sds
from model.params import SPECS, prior_sds
from model.predict import predict_cells
from model.simulate import Workload

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# a machine like this one: a software KVM (guest code emulated)
HERE = {"host": "synthetic", "memory_bytes": 24 * GIB, "page_bytes": 4096, "cpus": 2, "arch": "x86_64",
        "kvm": "software", "emulated": False,
        "cpu_caches": {"l1d_bytes": 32 * KIB, "l2_bytes": 1 * MIB, "l3_bytes": 32 * MIB},
        "block_device": {"name": "vda", "kind": "virtual"}}
PROFILE = {"profile": "synthetic", "source": "tests/test_intervals.py", "machine": HERE}
# what the primitives measured here (issue 18): ~30 us per call or exit, ~70 us per ring
# request, ~400 ns per copied byte
TRUTH = {"hypercall_s": 25e-6, "guest_call_s": 35e-6, "ring_post_s": 70e-6, "guest_copy_s_per_byte": 400e-9,
         "guest_copy_call_s": 8e-6, "guest_flush_s": 14e-6, "syscall_s": 1.5e-6}
RING = '{"transport": "ring", "batch": 64}'


def _results(cells, truth=TRUTH, noise=0.02, seed=3):
    rng = np.random.default_rng(seed)
    p = Params(truth, machine=HERE)
    rows = []
    for env, size, op, config in cells:
        t = simulate(p, config_for(env, config, HERE), Workload(size, op, 20)).per_op_s
        rows.append({"env": env, "size_bytes": size, "op": op, "reps": 20, "config": config,
                     "mean_per_op_s": t * math.exp(rng.normal(0, noise))})
    return calibration.results_set(pd.DataFrame(rows), PROFILE)


HVT = [("hvt", 4 * KIB, op, "") for op in ("write_sync", "write", "read")] + \
      [("hvt", 1 * MIB, op, "") for op in ("write", "read")]
PRIMS = [("hvt", 512, "call", ""), ("hvt", 512, "exit", ""), ("hvt", 512, "ring", RING), ("hvt", 512, "flush", ""),
         ("hvt", 16, "copy", ""), ("hvt", 64 * KIB, "copy", "")]


def test_each_primitive_charges_exactly_the_cost_it_isolates():
    p = Params(TRUTH, machine=HERE)
    led = {op: simulate(p, config_for("hvt", RING if op == "ring" else "", HERE),
                        Workload(size, op, 10)).ledger.coef for _, size, op, _ in PRIMS if size != 16}
    assert {k: v for k, v in led["call"].items() if v} == {"guest_call_s": 1}
    assert {k: v for k, v in led["exit"].items() if v} == {"hypercall_s": 1}
    assert {k: v for k, v in led["flush"].items() if v} == {"guest_rep_s": 1, "guest_flush_s": 1, "hypercall_s": 1}
    assert {k: v for k, v in led["copy"].items() if v} == {"guest_copy_call_s": 1, "guest_copy_s_per_byte": 64 * KIB}
    assert {k: v for k, v in led["ring"].items() if v} == {"ring_post_s": 1, "hypercall_s": 1 / 64, "syscall_s": 1,
                                                           "cache_copy_s_per_byte": 512}
    trap = simulate(p, config_for("qemu", "", HERE), Workload(4 * KIB, "trap", 10)).ledger.coef
    assert {k: v for k, v in trap.items() if v} == {"trap_s": 1}
    # an ide request: QEMU's dispatch and completion as virtio's, plus its trapped accesses
    led = {d: simulate(p, config_for("qemu", {"disk": d}, HERE), Workload(64 * KIB, "write_sync", 3)).ledger.coef
           for d in ("virtio", "ide")}
    assert led["ide"]["virtio_exit_s"] == led["virtio"]["virtio_exit_s"] > 0
    assert led["ide"]["trap_s"] == pytest.approx(p["ide_exits_per_request"] * led["ide"]["virtio_exit_s"])


def test_primitives_pin_what_the_fixes_need_and_calibrate_names_what_is_not():
    full = cells_from(_results(HVT + PRIMS))
    assert not {"ring_post_s", "guest_copy_s_per_byte", "guest_copy_call_s", "guest_call_s", "hypercall_s"} & \
        set(whatif_needs(full, HERE))
    without = cells_from(_results(HVT + [c for c in PRIMS if c[2] not in ("ring", "copy")]))
    needs = whatif_needs(without, HERE)
    assert "hvt-ring" in needs["ring_post_s"] and needs["guest_copy_s_per_byte"] == ["hvt-mapped"]
    assert needs["guest_copy_call_s"] == ["hvt-mapped"]


def test_primitives_recover_the_guest_costs(tmp_path):
    cal = calibration.fit(_results(HVT + PRIMS))
    back = calibration.load(cal.save(tmp_path / "cal.json"))     # primitives and regimes pass its checks
    assert back.structural_log_sd("hvt cpu") == cal.structural_log_sd("hvt cpu")
    assert back.metadata["prior_sd"]["guest_copy_s_per_byte"] > 2
    v = cal.values()
    for name in ("hypercall_s", "guest_call_s", "ring_post_s", "guest_copy_s_per_byte"):
        assert v[name] == pytest.approx(TRUTH[name], rel=0.1), name
    # differences of two primitives, each measured to 2%: a copy's call is ~55% of the
    # 16 B copy, a flush's guest side ~35% of the flush primitive (2 sigma ~ 7-12%)
    for name in ("guest_copy_call_s", "guest_flush_s"):
        assert v[name] == pytest.approx(TRUTH[name], rel=0.2), name


def test_an_unpinned_parameter_gives_an_interval_at_least_as_wide_as_its_prior():
    # no copy primitive: the mapped transport's copy keeps the software KVM's wide prior
    cal = calibration.fit(_results(HVT + [c for c in PRIMS if c[2] != "copy"]))
    assert "guest_copy_s_per_byte" in cal.prior_only()
    sd = prior_sds(HERE)["guest_copy_s_per_byte"]
    assert sd > SPECS["guest_copy_s_per_byte"].sd == machine_prior_sds({"kvm": "hardware"}).get(
        "guest_copy_s_per_byte", SPECS["guest_copy_s_per_byte"].sd)
    cell = {"env": "hvt", "size_bytes": 1 * MIB, "op": "read", "config": {"transport": "mapped"}}
    df = predict_cells(cal, [cell], draws=400)
    width = math.log(df["high_s"][0] / df["low_s"][0])
    # the copy is much of a mapped read: the time's 95% range is the prior's, in proportion
    prior_width = 2 * 1.96 * math.log1p(sd)
    values = cal.values()
    t0 = simulate(Params(values, machine=HERE), config_for("hvt", {"transport": "mapped"}, HERE),
                  Workload(MIB, "read", 100)).per_op_s
    values["guest_copy_s_per_byte"] *= 1.01
    t1 = simulate(Params(values, machine=HERE), config_for("hvt", {"transport": "mapped"}, HERE),
                  Workload(MIB, "read", 100)).per_op_s
    elasticity = math.log(t1 / t0) / math.log(1.01)
    assert elasticity > 0.3
    assert width >= 0.9 * elasticity * prior_width
    # pinned by its primitive, the same prediction is narrow
    pinned = calibration.fit(_results(HVT + PRIMS))
    df = predict_cells(pinned, [cell], draws=100)
    assert math.log(df["high_s"][0] / df["low_s"][0]) < width / 3


def test_coverage_with_a_known_truth_lands_between_90_and_99_percent():
    """Per-regime structural errors estimated from out-of-sample residuals of one set of
    cells, intervals built from them, judged on fresh cells of the same regimes."""
    rng = np.random.default_rng(11)
    truth = {"linux cpu": (0.05, 12), "qemu cpu": (0.15, 8), "hvt cpu": (0.30, 6), "qemu device": (0.10, 4)}
    inside = []
    for _ in range(400):
        regimes, resid = [], []
        for name, (sd, n) in truth.items():
            regimes += [name] * n
            resid += list(rng.normal(0, sd, n))
        spreads = regime_spreads(resid, regimes)
        for name, (sd, n) in truth.items():
            log_sd, df = spread_for(spreads, name)
            new = np.exp(rng.normal(0, sd, 5))              # measured / predicted, fresh cells
            lo, hi = interval(1.0, 0.0, log_sd, df)
            inside += list((lo <= new) & (new <= hi))
    share = float(np.mean(inside))
    assert 0.90 <= share <= 0.99, share
    assert coverage([1, 2, 3], [0, 0, 0], [1.5, 1.5, 4]) == pytest.approx(2 / 3)
    # pooled over every cell (root mean square: the worst cells), the quiet regime's
    # intervals would be far too wide
    rms = float(np.sqrt(np.mean(np.square(resid))))
    assert spread_for(spreads, "linux cpu")[0] < 0.6 * rms
    assert spread_for(spreads, "no such regime")[0] == regime_spreads(resid, regimes)[POOLED]["log_sd"]


def test_a_ratio_within_one_regime_is_not_charged_its_level_error():
    """Known truth: each campaign puts all cells of a regime off by a common level (sd 0.3 in
    log: the load when it ran) plus each cell's own error (sd 0.05). A ratio of two cells
    of one regime sees only the own errors: intervals from the within-regime spread cover
    90-99% of fresh ratios and are far narrower than the absolute ones, which the level
    inflates."""
    rng = np.random.default_rng(3)
    inside, widths, abs_widths = [], [], []
    for _ in range(300):
        regimes, resid = [], []
        for name, n in (("hvt cpu", 9), ("qemu cpu", 11), ("linux cpu", 10)):
            level = rng.normal(0, 0.3)
            regimes += [name] * n
            resid += list(level + rng.normal(0, 0.05, n))
        within = regime_spreads(resid, regimes, within=True)
        absolute = regime_spreads(resid, regimes)
        for name in ("hvt cpu", "qemu cpu", "linux cpu"):
            sd, df = spread_for(within, name)
            lo, hi = interval(1.0, 0.0, ratio_log_sd(sd), df)
            level = rng.normal(0, 0.3)                   # a fresh campaign's level, common to both
            fresh = np.exp((level + rng.normal(0, 0.05, 4)) - (level + rng.normal(0, 0.05, 4)))
            inside += list((lo <= fresh) & (fresh <= hi))
            widths.append(hi / lo)
            abs_widths.append(np.exp(2 * 1.96 * spread_for(absolute, name)[0]))
    share = float(np.mean(inside))
    assert 0.90 <= share <= 0.99, share
    assert np.median(widths) < 1.5 < np.median(abs_widths)


def test_a_ratio_is_charged_the_error_of_what_the_fix_changed_only():
    """Known truth: a cell's own error (sd 0.05 in log) lives in the part of its time the
    model computes for it alone; a cost the fix left as it was (a shared amount) is the
    same computation in both cells and errs alike. Intervals from unshared() cover 90-99%
    of fresh ratios of pairs sharing 0-90% of their time, and are narrower than the
    share-nothing sqrt 2 ones wherever a cost is shared."""
    assert unshared({"a": 1.0, "b": 3.0}, {"a": 1.0, "c": 0.5}) == pytest.approx((0.75, 1 / 3))
    assert unshared({"a": 2.0, "b": 1.0}, {"a": 2.0, "b": 1.0}) == (0.0, 0.0)
    assert unshared({"a": 2.0}, {"b": 1.0}) == (1.0, 1.0)
    assert unshared({"a": 8.0}, {"a": 1.0}) == pytest.approx((7 / 8, 0.0))   # 8 calls become 1
    assert ratio_log_sd(0.1) == pytest.approx(0.1 * math.sqrt(2))
    rng = np.random.default_rng(5)
    inside, narrower = [], []
    for _ in range(300):
        regimes = ["hvt cpu"] * 10
        resid = list(rng.normal(0, 0.3) + rng.normal(0, 0.05, 10))     # whole cells: level + own error
        sd, df = spread_for(regime_spreads(resid, regimes, within=True), "hvt cpu")
        for _ in range(4):
            shared, b, f = rng.uniform(0, 9), rng.uniform(0.5, 2), rng.uniform(0.2, 2)
            base, fix = {"shared": shared, "b": b}, {"shared": shared, "f": f}
            lo, hi = interval(1.0, 0.0, ratio_log_sd(sd, *unshared(base, fix)), df)
            level = np.exp(rng.normal(0, 0.3))                        # common to both: cancels
            tb = level * (shared + b * np.exp(rng.normal(0, 0.05)))
            tf = level * (shared + f * np.exp(rng.normal(0, 0.05)))
            truth = (tb / tf) / ((shared + b) / (shared + f))
            inside.append(lo <= truth <= hi)
            narrower.append(hi / lo < math.exp(2 * 2.3 * ratio_log_sd(sd)))
    share = float(np.mean(inside))
    assert 0.90 <= share <= 0.99, share
    assert all(narrower)


def test_a_fix_that_changes_nothing_of_a_cell_predicts_no_structural_error():
    """predict_speedups: the same hvt cell with more guest memory (nothing of its modelled
    time changes) gets a point; the mapped transport (the copies are new, the calls stay)
    an interval, narrower than if the two cells shared nothing."""
    from model.predict import predict_speedups
    cal = calibration.fit(_results(HVT + PRIMS))
    base = {"env": "hvt", "size_bytes": 4 * KIB, "op": "read", "reps": 100, "config": {}}
    same, mapped = predict_speedups(cal, [(base, {**base, "config": {"memory_bytes": GIB}}),
                                          (base, {**base, "config": {"transport": "mapped"}})], draws=0
                                    ).to_dict("records")
    assert same["low"] == pytest.approx(1.0) == same["high"]
    sd, df = cal.structural_within_log_sd("hvt cpu")
    lo, hi = interval(1.0, 0.0, ratio_log_sd(sd), df)
    assert 1.0 < mapped["high"] / mapped["low"] < hi / lo


def test_a_quiet_regime_keeps_its_scale_beside_noisy_ones_and_a_lone_cell_does_not():
    """This machine's calibration, in shape (|errors| of leave-one-cell-out): hvt 9 cells at
    0.07, qemu under TCG 11 at 0.45, linux 11 at 0.24, docker 11 at 0.14. hvt keeps about
    its own scale (shrunk towards the pooled one it took 0.20, its speed-ups 2.3x wide); a
    regime of one cell the fit went through is not credited with its 0."""
    regimes, resid = [], []
    for name, size, n in (("hvt cpu", 0.07, 9), ("qemu cpu", 0.45, 11), ("linux cpu", 0.24, 11),
                          ("docker cpu", 0.14, 11)):
        regimes += [name] * n
        resid += [size * (-1) ** i for i in range(n)]
    regimes.append("docker device")
    resid.append(0.0)
    spreads = regime_spreads(resid, regimes)
    hvt, qemu = spread_for(spreads, "hvt cpu")[0], spread_for(spreads, "qemu cpu")[0]
    assert 0.07 * 1.4826 <= hvt < 0.15 and qemu > 0.5
    assert spread_for(spreads, "docker device")[0] > 0.2


@pytest.mark.parametrize("k", [1, 8, 64])
def test_multiblock_under_the_studys_flush_fsyncs_per_call(k):
    """The study's tender fsynced per hypercall: with k blocks per call, once per call."""
    from model.machine import pi4
    pi = pi4()
    cfg = config_for("hvt", {"tender": "study", "flush": "each-block", "blocks_per_call": k}, pi["machine"])
    led = simulate(Params({}, machine=pi["machine"]), cfg, Workload(256 * KIB, "write_sync", 5)).ledger
    calls = 256 * KIB // 512 // k
    assert led.coef["fsync_overhead_s"] == pytest.approx(calls)
    assert led.coef["hypercall_s"] == pytest.approx(calls)


def test_a_measured_guest_cache_decides_whether_a_file_fits():
    """The guest page cache's capacity as the guest reported it (Cached after reading a
    file beyond its memory) replaces the generic share x (memory - reserve)."""
    from calibration.results import guest_cache
    rec = {"cell": {"env": "qemu", "op": "read", "size_bytes": 384 * MIB},
           "config": {"memory_bytes": 256 * MIB},
           "metadata": {"guest_mem_total_bytes": 208 * MIB, "guest_cached_bytes": 156 * MIB}}
    m = guest_cache([rec, {**rec, "cell": {"env": "qemu", "op": "read", "size_bytes": 4 * KIB}}])
    assert m == {"guest_cache_share": 0.75, "guest_kernel_reserve": 48 * MIB}
    assert guest_cache([{**rec, "cell": {"env": "linux", "op": "read", "size_bytes": 384 * MIB}}]) == {}
    cfg = config_for("qemu", {"mem": "256"}, HERE)
    w = Workload(128 * MIB, "read", 3)
    generic = simulate(Params({}, machine=HERE), cfg, w)       # 0.5 x (256 - 128) MiB: misses
    measured = simulate(Params(m, machine=HERE), cfg, w)        # 0.75 x 208 MiB = 156 MiB: fits
    assert generic.ledger.coef["page_io_s"] > 0 and measured.ledger.coef.get("page_io_s", 0) == 0
    assert measured.per_op_s < 0.7 * generic.per_op_s
