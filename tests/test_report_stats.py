"""Pure parts of the report: comparison statistics, incomparability warnings, formatting."""

import math

import numpy as np
import pytest

from report import caveats, compare
from report.build import time_with_ci


def batches(rng, n, per_op, cv=0.05, reps=100):
    """n batches of `reps` repetitions each, per-op time ~ normal(per_op, cv)."""
    per = rng.normal(per_op, cv * per_op, n).clip(min=per_op * 0.1)
    return per * reps, np.full(n, reps)


def test_a_real_difference_is_found_and_its_ratio_covered():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(40):
        sa, ra = batches(rng, 20, 1e-3)
        sb, rb = batches(rng, 20, 2e-3)
        res = compare.compare(sa, ra, sb, rb, seed=int(rng.integers(1 << 30)))
        assert res["significant"] is True
        assert res["ci95_low"] < res["ratio"] < res["ci95_high"]
        hits += res["ci95_low"] <= 2.0 <= res["ci95_high"]
    assert hits >= 34        # a 95% interval covers the true ratio about 38 times in 40


def test_no_difference_is_mostly_not_significant():
    rng = np.random.default_rng(2)
    flagged = []
    for _ in range(40):
        sa, ra = batches(rng, 15, 5e-6, cv=0.2)
        sb, rb = batches(rng, 15, 5e-6, cv=0.2)
        res = compare.compare(sa, ra, sb, rb)
        flagged.append(res["significant"])
        assert res["ci95_low"] < res["ratio"] < res["ci95_high"]
    assert sum(f is False for f in flagged) >= 34


def test_ratio_is_total_time_over_total_repetitions():
    res = compare.compare([1.0, 3.0, 2.0], [10, 10, 20], [4.0, 4.0, 4.0], [10, 10, 10])
    assert res["ratio"] == pytest.approx((12.0 / 30) / (6.0 / 40))


def test_too_few_batches_give_no_test_and_no_interval():
    res = compare.compare([1.0, 2.0], [1, 1], [1.0, 2.0, 3.0], [1, 1, 1])
    assert res["significant"] is None
    assert math.isnan(res["ci95_low"]) and math.isnan(res["mannwhitney_p"])
    assert res["ratio"] == pytest.approx(2.0 / 1.5)


def test_software_kvm_and_tcg_are_warned_only_for_virtualized_environments():
    meta = {"host": "vm", "kvm": "software", "environments": {"qemu@local": {"accel": "tcg"}}}
    w = caveats.source_warnings("c1", meta, {"linux", "qemu"})
    assert any("software hypervisor" in x and "qemu" in x for x in w)
    assert any("TCG" in x for x in w)
    assert caveats.source_warnings("c1", meta, {"linux", "docker"}) == []
    hw = {"kvm": "hardware", "environments": {"qemu": {"accel": "kvm"}}}
    assert caveats.source_warnings("c2", hw, {"qemu", "hvt"}) == []
    # the accelerator recorded per cell counts too
    recs = {"x": {"cell": {"env": "qemu"}, "env_metadata": {"accel": "tcg"}}}
    assert any("TCG" in x for x in caveats.source_warnings("c3", {"kvm": "hardware"}, {"qemu"}, recs))


def test_cross_source_differences_are_named():
    a = {"host": "pi", "arch": "aarch64", "block_devices": {"linux@local": "/dev/mmcblk0p2"}}
    b = {"host": "pi", "arch": "aarch64", "block_devices": {"linux@local": "/dev/sda1"}}
    w = caveats.cross_warnings([("a", a), ("b", b)])
    assert len(w) == 1 and "block device" in w[0] and "/dev/sda1" in w[0]
    assert caveats.cross_warnings([("a", a), ("a2", dict(a))]) == []


def test_interval_is_written_in_the_unit_of_its_mean():
    assert time_with_ci(2.35e-3, 2.30e-3, 2.41e-3) == "2.35 ms [2.3, 2.41]"
    assert time_with_ci(998e-6, 0.5e-3, 1.5e-3) == "998 µs [500, 1500]"
    assert time_with_ci(36.05) == "36 s"
    assert time_with_ci(1.61e-6, float("nan"), float("nan")) == "1.61 µs"


def _summary(source, rows):
    import pandas as pd
    base = dict(target="local", arch="x86_64", io_size_bytes=0, config="{}", mean_per_op_s=1e-3,
                ci95_low_s=0.9e-3, ci95_high_s=1.1e-3, warnings="")
    return pd.DataFrame([dict(base, source=source, **r) for r in rows])


def test_series_labels_tell_apart_only_what_differs():
    from report.data import Source, measured, series_order
    cells = [dict(env="hvt", size_bytes=4096, op="read", config='{"blocks":"1"}'),
             dict(env="hvt", size_bytes=4096, op="read", config='{"blocks":"8"}'),
             dict(env="linux", size_bytes=4096, op="read"),
             dict(env="linux", size_bytes=4096, op="write")]
    one = Source("c1", "campaign", {}, None, _summary("c1", cells))
    df = measured([one])
    assert set(df["series"]) == {"hvt (blocks=1)", "hvt (blocks=8)", "linux"}
    assert series_order(df) == ["linux", "hvt (blocks=1)", "hvt (blocks=8)"]
    two = Source("c2", "campaign", {}, None, _summary("c2", cells[2:]))
    df = measured([one, two])
    assert {"linux [c1]", "linux [c2]", "hvt (blocks=8) [c1]"} <= set(df["series"])
    # one series measured at two I/O sizes for the same cell: one column per I/O size
    io = [dict(env="linux", size_bytes=1 << 20, op="read", io_size_bytes=4096),
          dict(env="linux", size_bytes=1 << 20, op="read", io_size_bytes=1 << 20)]
    df = measured([Source("c3", "campaign", {}, None, _summary("c3", io))])
    assert set(df["series"]) == {"linux io=4 KiB", "linux io=1 MiB"}


def test_median_interval_covers_the_median_of_heavy_tailed_batches_about_95_percent():
    from edgeio.stats import median_ci95
    rng = np.random.default_rng(7)
    for n in (6, 12, 40):
        hits = sum(lo <= 1.0 <= hi for lo, hi in (median_ci95(rng.lognormal(0, 1, n)) for _ in range(2000)))
        assert 0.94 <= hits / 2000 <= 0.995, (n, hits)      # lognormal(0, 1): median exactly 1
    lo, hi = median_ci95(np.arange(20.0))
    assert 0 < lo < 9.5 < hi < 19                           # neither the extremes nor a point
    assert all(math.isnan(x) for x in median_ci95([1.0] * 5))
