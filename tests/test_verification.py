"""verification/ as a domain package: the speed-up and its intervals, the drift check, the
plan and comparison checks a resume and the report rely on, and where the package sits
(below the commands and the report). Pure functions on synthetic samples: no cells run."""

import ast
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeio import stats
from edgeio.errors import UserError
from verification import campaign as vcampaign, compare as vc, drift, predictions as vpred, speedup
from verification import summary as vs

ROOT = Path(__file__).resolve().parent.parent


# -- where the package sits ---------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_nothing_in_verification_imports_upward():
    files = sorted((ROOT / "verification").glob("*.py"))
    assert len(files) >= 6
    for f in files:
        up = [m for m in _imports(f) if m == "report" or m.startswith(("report.", "edgeio.commands", "tasks"))]
        assert not up, f"{f.name} imports {up}"
    # and both users go through it: the command and the report keep no comparison of their own
    assert "verification.campaign" in _imports(ROOT / "report" / "verified.py")
    assert not (ROOT / "edgeio" / "commands" / "_verify_compare.py").exists()
    text = (ROOT / "report" / "verified.py").read_text()
    assert "COLUMNS" not in text and "def summary" not in text


# -- the speed-up ------------------------------------------------------------------------

def test_ratio_of_medians_interval_covers_the_true_ratio():
    """Synthetic batches with a known ratio of medians (2.0): the 95% interval holds it in
    about 95% of repeated experiments, and is honest about too few batches."""
    rng = np.random.default_rng(7)
    hits, widths = 0, []
    trials = 300
    for _ in range(trials):
        base = 2e-3 * rng.lognormal(0.0, 0.2, size=60)       # median 2 ms
        fix = 1e-3 * rng.lognormal(0.0, 0.2, size=60)        # median 1 ms
        lo, hi = stats.ratio_of_medians_ci95(base, fix, resamples=1000)
        hits += lo <= 2.0 <= hi
        widths.append(hi / lo)
    assert 0.88 <= hits / trials <= 0.995, hits / trials
    assert 1.05 < np.median(widths) < 1.6
    assert all(math.isnan(x) for x in stats.ratio_of_medians_ci95([1.0] * 5, [1.0] * 60))
    assert all(math.isnan(x) for x in stats.ratio_of_medians_ci95([1.0] * 60, [1.0] * 3))


def test_ratio_across_runs_covers_a_ratio_that_each_boot_shifts():
    """Each run (a boot) multiplies both cells' level by its own luck (sd 0.2 in log) and
    the fix's by an independent one too; batches inside a run cannot see that, the
    interval across runs does: about 95% of repeated 3-run experiments hold the true 2.0."""
    rng = np.random.default_rng(11)
    hits, trials = 0, 400
    for _ in range(trials):
        base = 2e-3 * np.exp(rng.normal(0, 0.2, 3))
        fix = 1e-3 * np.exp(rng.normal(0, 0.2, 3))
        lo, hi = stats.ratio_across_runs_ci95(base, fix)
        hits += lo <= 2.0 <= hi
    assert 0.90 <= hits / trials <= 0.99, hits / trials
    assert all(math.isnan(x) for x in stats.ratio_across_runs_ci95([1.0], [2.0]))
    assert all(math.isnan(x) for x in stats.ratio_across_runs_ci95([1.0, 0.0], [2.0, 1.0]))


def test_predicted_ratio_interval_and_direction():
    # cells 4 ms [2, 8] and 1 ms [0.5, 2]: log half-widths ln 2 each, ratio 4x +- sqrt(2) ln 2
    r, lo, hi = speedup.predicted_ratio((4e-3, 2e-3, 8e-3), (1e-3, 0.5e-3, 2e-3))
    assert r == pytest.approx(4.0)
    assert lo == pytest.approx(4.0 / 2 ** math.sqrt(2)) and hi == pytest.approx(4.0 * 2 ** math.sqrt(2))
    assert speedup.direction(1.5) == "faster" and speedup.direction(0.5) == "slower"
    assert speedup.direction(1.05) == "same" and speedup.direction(0.95) == "same"
    # a measured change whose interval holds 1 is no change
    assert speedup.direction(1.3, 0.9, 1.8) == "same" and speedup.direction(1.3, 1.1, 1.5) == "faster"
    assert speedup.wrong_way("faster", "slower") and not speedup.wrong_way("faster", "same")


# -- the drift check -----------------------------------------------------------------------

def test_drift_fires_on_a_baseline_shifted_twofold_and_stays_silent_otherwise():
    then = (1.0e-3, 0.97e-3, 1.03e-3)
    assert drift.drift((2.0e-3, 1.95e-3, 2.06e-3), then)["drifted"]
    assert drift.drift((0.5e-3, 0.48e-3, 0.52e-3), then)["drifted"]
    same = drift.drift((1.02e-3, 0.99e-3, 1.05e-3), then)
    assert not same["drifted"] and same["ratio"] == pytest.approx(1.02)
    # a wide interval now: a 2x point that might be 1.05x is not called drift
    assert not drift.drift((2.0e-3, 1.05e-3, 3e-3), then)["drifted"]
    # no reference (the calibration never measured this cell): silent
    assert not drift.drift((2.0e-3, 1.9e-3, 2.1e-3), (math.nan,) * 3)["drifted"]
    # re-anchored on today's baseline: prediction x measured baseline / predicted baseline
    assert drift.reanchored((1e-3, 5e-4, 2e-3), 4e-3, 8e-3) == pytest.approx((2e-3, 1e-3, 4e-3))


def _pred(ref=(1e-3, 0.98e-3, 1.02e-3)):
    return pd.DataFrame({
        "env": ["hvt", "hvt"], "size_bytes": [4096, 4096], "op": ["read", "read"],
        "config": ["{}", '{"blocks_per_call":"8"}'], "role": ["baseline", "fix"],
        "predicted_s": [1e-3, 2.5e-4], "low_s": [0.8e-3, 2e-4], "high_s": [1.25e-3, 3.125e-4],
        "cell_id": ["0000-hvt-4KiB-read-baseline", "0001-hvt-4KiB-read-fix"],
        "calibration_measured_s": [ref[0], math.nan], "calibration_low_s": [ref[1], math.nan],
        "calibration_high_s": [ref[2], math.nan]})


def _samples(base, fix, reps=10):
    rows = []
    for cid, cfg, values in (("0000-hvt-4KiB-read-baseline", "{}", base),
                             ("0001-hvt-4KiB-read-fix", '{"blocks_per_call":"8"}', fix)):
        rows += [{"cell_id": cid, "env": "hvt", "size_bytes": 4096, "op": "read", "config": cfg, "batch": i,
                  "repetitions": reps, "seconds": v * reps} for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_comparison_drift_and_reanchoring_from_the_batches():
    rng = np.random.default_rng(1)
    noise = lambda n: rng.lognormal(0, 0.02, n)          # noqa: E731
    # today's baseline is 2x the calibration campaign's; the fix keeps the predicted 4x
    comp = vc.compare(_pred(), _samples(2e-3 * noise(40), 5e-4 * noise(40)))
    base, fix = comp.iloc[0], comp.iloc[1]
    assert base["drifted"] is True and base["drift_ratio"] == pytest.approx(2.0, rel=0.02)
    assert fix["measured_speedup"] == pytest.approx(4.0, rel=0.03) and fix["predicted_speedup"] == pytest.approx(4.0)
    assert fix["measured_speedup_ci95_low"] < fix["measured_speedup"] < fix["measured_speedup_ci95_high"]
    assert str(fix["speedup_inside"]) == "True" and fix["direction_agrees"] is True
    assert fix["rel_error"] == pytest.approx(-0.5, abs=0.02)           # raw: half the time measured
    assert fix["reanchored_s"] == pytest.approx(5e-4, rel=0.02)          # re-anchored: right
    assert abs(fix["reanchored_rel_error"]) < 0.03
    s = vs.summarize(comp)
    assert len(s["drift"]["drifted"]) == 1 and "1 of 1 baselines moved" in s["drift"]["line"]
    json.dumps(vs.jsonable(s), allow_nan=False)
    # the same baseline as the calibration's: silent
    calm = vc.compare(_pred(), _samples(1e-3 * noise(40), 2.5e-4 * noise(40)))
    assert calm.iloc[0]["drifted"] is False and vs.drift_line(calm) is None


def test_the_speedup_holds_when_a_neighbour_halves_some_batches(tmp_path):
    """Two busy loops beside: each batch ran on a core of its own or on half of one (2x),
    in proportions that differ from cell to cell (bv11). The fix is 4x in either mode; the
    fastest batches say so, the medians (one cell mostly shared, the other mostly not) do
    not. A comparison stored on medians, before the column said which, is recomputed on
    medians and accepted; the same file against today's statistic is refused."""
    rng = np.random.default_rng(3)
    def mixed(per_op, shared, n=60):
        return per_op * np.where(rng.random(n) < shared, 2.0, 1.0) * rng.lognormal(0, 0.01, n)
    samples = _samples(mixed(1e-3, 0.7), mixed(2.5e-4, 0.2))
    comp = vc.compare(_pred(), samples)
    fix = comp.iloc[1]
    assert fix["measured_speedup"] == pytest.approx(4.0, rel=0.05) and fix["speedup_statistic"] == "fastest"
    assert fix["measured_speedup_ci95_low"] <= fix["measured_speedup"] <= fix["measured_speedup_ci95_high"]
    assert str(fix["speedup_inside"]) == "True"
    by_median = vc.compare(_pred(), samples, "median")
    assert by_median.iloc[1]["measured_speedup"] > 6.0          # 2 ms / 0.25 ms: the modes crossed
    old = by_median.drop(columns=["speedup_statistic"])
    p = tmp_path / "comparison.csv"
    p.write_text(old.to_csv(index=False))
    assert vcampaign._statistic_of(vcampaign._stored_head(p)) == "median"
    vcampaign.check_stored(p, by_median)
    with pytest.raises(UserError, match="measured_speedup"):
        vcampaign.check_stored(p, comp)


def test_a_measured_speedup_is_judged_with_its_own_noise(tmp_path):
    """The model's interval is of the true ratio; a ratio measured in one run carries its
    batches' luck besides. A fix the model says changes nothing (interval a point, 1.0x)
    measured at 1.02x with a CI of +-3% is inside the expected interval (the two in
    quadrature), not inside the model's own; measured at 1.2x it is outside both. A
    comparison stored before the expected interval existed is recomputed on the model's
    interval and accepted; against today's judgement it is refused."""
    lo, hi = speedup.expected_interval(2.0, 2.0 / math.e ** 0.03, 2.0 * math.e ** 0.03,
                                       1.9 / math.e ** 0.04, 1.9 * math.e ** 0.04)
    assert (lo, hi) == (pytest.approx(2.0 / math.e ** 0.05), pytest.approx(2.0 * math.e ** 0.05))
    assert speedup.expected_interval(2.0, 1.8, 2.2, math.nan, math.nan) == (1.8, 2.2)
    assert all(math.isnan(x) for x in speedup.expected_interval(2.0, math.nan, math.nan, 1.9, 2.1))
    rng = np.random.default_rng(4)
    same = _pred().assign(predicted_s=[1e-3, 1e-3], low_s=[0.8e-3, 0.8e-3], high_s=[1.25e-3, 1.25e-3],
                          predicted_speedup=[math.nan, 1.0], speedup_low=[math.nan, 1.0], speedup_high=[math.nan, 1.0])
    noisy = lambda n: rng.lognormal(0, 0.03, n)          # noqa: E731
    near = _samples(1.02e-3 * noisy(40), 1e-3 * noisy(40))
    comp = vc.compare(same, near)
    fix = comp.iloc[1]
    assert fix["speedup_low"] == fix["speedup_high"] == 1.0
    assert fix["speedup_expected_low"] < fix["measured_speedup"] < fix["speedup_expected_high"]
    assert str(fix["speedup_inside"]) == "True"
    assert str(vc.compare(same, near, judged_today=False).iloc[1]["speedup_inside"]) == "False"
    far = vc.compare(same, _samples(1.2e-3 * noisy(40), 1e-3 * noisy(40))).iloc[1]
    assert str(far["speedup_inside"]) == "False" and far["speedup_expected_high"] < far["measured_speedup"]
    old = vc.compare(same, near, judged_today=False).drop(columns=vc.EXPECTED_COLUMNS)
    p = tmp_path / "comparison.csv"
    p.write_text(old.to_csv(index=False))
    assert vcampaign._judged_today(vcampaign._stored_head(p)) is False
    vcampaign.check_stored(p, vc.compare(same, near, judged_today=False))
    with pytest.raises(UserError, match="speedup_inside"):
        vcampaign.check_stored(p, comp)


def test_a_prediction_whose_interval_holds_no_change_claims_no_direction():
    """1.2x [0.8x, 1.8x] predicts no direction (as a measured ratio whose CI holds 1 has
    none), so a measured 0.85x is not the wrong way; 1.2x [1.12x, 1.3x] predicts faster
    and is. A comparison stored before took the point alone."""
    rng = np.random.default_rng(6)
    slower = _samples(1e-3 * rng.lognormal(0, 0.01, 30), 1.18e-3 * rng.lognormal(0, 0.01, 30))
    wide = _pred().assign(predicted_speedup=[math.nan, 1.2], speedup_low=[math.nan, 0.8], speedup_high=[math.nan, 1.8])
    fix = vc.compare(wide, slower).iloc[1]
    assert fix["predicted_direction"] == "same" and fix["measured_direction"] == "slower"
    assert vs.summarize(vc.compare(wide, slower))["speedup"]["wrong_direction"] == 0
    assert vc.compare(wide, slower, judged_today=False).iloc[1]["predicted_direction"] == "faster"
    sure = wide.assign(speedup_low=[math.nan, 1.12], speedup_high=[math.nan, 1.3])
    assert vs.summarize(vc.compare(sure, slower))["speedup"]["wrong_direction"] == 1


def test_wrong_direction_is_counted():
    comp = vc.compare(_pred(), _samples([1e-3] * 20, [2e-3] * 20))      # predicted 4x faster, measured 2x slower
    fix = comp.iloc[1]
    assert fix["predicted_direction"] == "faster" and fix["measured_direction"] == "slower"
    s = vs.summarize(comp)
    assert s["speedup"]["wrong_direction"] == 1 and s["speedup"]["direction_agrees"] == 0


def test_few_batches_leave_the_intervals_blank_and_nothing_breaks(tmp_path):
    comp = vc.compare(_pred(), _samples([1e-3] * 3, [3e-4] * 3))
    assert comp["ci95_low_s"].isna().all() and comp["measured_speedup_ci95_low"].isna().all()
    assert comp.iloc[1]["measured_direction"] == "faster"           # the point still says which way
    p = tmp_path / "comparison.csv"
    p.write_text(comp.to_csv(index=False))
    vcampaign.check_stored(p, comp)                                  # blank columns read back as the same
    s = vs.summarize(comp)
    assert s["cells"] == 2 and s["speedup"]["cells"] == 1


def test_a_stored_comparison_that_differs_from_the_records_is_refused(tmp_path):
    comp = vc.compare(_pred(), _samples([1e-3] * 10, [3e-4] * 10))
    p = tmp_path / "comparison.csv"
    p.write_text(comp.to_csv(index=False))
    vcampaign.check_stored(p, comp)
    forged = comp.copy()
    forged.loc[1, "measured_s"] = 2.6e-4                              # a better-looking fix
    p.write_text(forged.to_csv(index=False))
    with pytest.raises(UserError, match=r"measured_s is .* but the cell records give"):
        vcampaign.check_stored(p, comp)
    p.write_text(comp.iloc[:1].to_csv(index=False))                   # a cell dropped
    with pytest.raises(UserError, match="1 cells, but the cell records give 2"):
        vcampaign.check_stored(p, comp)
    flipped = comp.copy()
    flipped.loc[1, "inside"] = not comp.loc[1, "inside"]
    p.write_text(flipped.to_csv(index=False))
    with pytest.raises(UserError, match="inside is"):
        vcampaign.check_stored(p, comp)


# -- the plan a resume measures -------------------------------------------------------------

def _cells():
    from verification.plan import cells, Build
    b = Build("hvt-multiblock", {"blocks": 8}, {"hvt": {"blocks_per_call": "8"}}, {})
    return cells(b, {"hvt": [(4096, "read", 20), (65536, "read", 5)]}, {"hvt": {}}, "local", rounds=1)


def test_plan_is_checked_against_the_cells_predicted():
    cells = _cells()
    n = len(cells)
    pred = pd.DataFrame({"predicted_s": [1.0] * n, "low_s": [0.5] * n, "high_s": [2.0] * n})
    table = vpred.prediction_table(cells, pred, [{}] * n, "t", "cal.json")
    vpred.check_plan(json.loads(json.dumps(cells)), table, Path("/x"))
    edited = json.loads(json.dumps(cells))
    edited[3]["params"]["blocks_per_call"] = "64"
    with pytest.raises(UserError, match=r"cell 0003-hvt-64KiB-read-fix: params.blocks_per_call is '64' but "
                                        r"its prediction was made for '8'"):
        vpred.check_plan(edited, table, Path("/x"))
    edited = json.loads(json.dumps(cells))
    edited[0]["reps"] = 2000
    with pytest.raises(UserError, match="reps is 2000"):
        vpred.check_plan(edited, table, Path("/x"))
    with pytest.raises(UserError, match="differ from those predicted"):
        vpred.check_plan(cells[:-1], table, Path("/x"))


def test_a_corrupt_predictions_file_with_its_digest_is_one_line(tmp_path):
    """Even a file whose digest was forged with it: a value that is no number is named."""
    text = "env,size_bytes,op,config,role,predicted_s,low_s,high_s\nhvt,4k,read,{},baseline,1,0.5,2\n"
    (tmp_path / "predictions.csv").write_text(text)
    meta = {"predictions": {"file": "predictions.csv", "sha256": vpred.digest(text)}}
    with pytest.raises(UserError, match="corrupt predictions file"):
        vpred.load(tmp_path, meta)
    with pytest.raises(UserError, match="not a file name"):
        vpred.load(tmp_path, {"predictions": {"file": "../x.csv", "sha256": ""}})


def test_the_speedup_recorded_before_measuring_is_the_one_judged():
    """A fix's speed-up interval written into predictions.csv (the model's joint draws) is
    what the comparison judges against; without it (an older verify) the two cells'
    intervals are combined as independent."""
    rng = np.random.default_rng(2)
    samples = _samples(1e-3 * rng.lognormal(0, 0.02, 30), 2.5e-4 * rng.lognormal(0, 0.02, 30))
    recorded = _pred().assign(predicted_speedup=[math.nan, 3.9], speedup_low=[math.nan, 3.5],
                              speedup_high=[math.nan, 4.3])
    fix = vc.compare(recorded, samples).iloc[1]
    assert (fix["predicted_speedup"], fix["speedup_low"], fix["speedup_high"]) == (3.9, 3.5, 4.3)
    assert str(fix["speedup_inside"]) == "True"
    older = vc.compare(_pred(), samples).iloc[1]
    assert older["predicted_speedup"] == pytest.approx(4.0)
    assert older["speedup_high"] / older["speedup_low"] > 4.3 / 3.5      # independent: wider here


def test_predictions_record_the_models_speedup_for_fix_cells_only():
    """predict_speedups pairs each fix with the baseline of the same env, size and op, and
    asks the model once for both; a baseline, or a fix with no baseline, gets none."""
    import calibration
    cal = calibration.fit(calibration.load_results(None))      # the study's Pi 4 figures
    cells = [{"env": "hvt", "size_bytes": 4096, "op": "read", "reps": 100, "role": "baseline",
              "config": {"blocks_per_call": 1}},
             {"env": "hvt", "size_bytes": 4096, "op": "read", "reps": 100, "role": "fix",
              "config": {"blocks_per_call": 8}},
             {"env": "hvt", "size_bytes": 8192, "op": "read", "reps": 100, "role": "fix",
              "config": {"blocks_per_call": 8}}]
    (b, f, orphan) = vpred.predict_speedups(cal, cells, draws=8)
    assert all(math.isnan(v) for v in b + orphan)
    ratio, low, high = f
    assert 1.5 < ratio and low < ratio < high and math.isfinite(high)


def test_a_baseline_batch_lasts_as_long_as_the_protocols():
    """verification.plan.long_enough: a baseline whose batches would last 0.4 ms at what it
    measured grows to MIN_BATCH_S batches; one already long enough, a fix, and a cell with
    no time per op keep their reps; growth is capped at MAX_REPS_GROWTH; pure."""
    from measure.protocol import MIN_BATCH_S
    from verification import plan as vp
    def cell(role, reps=34, batches=34):
        return {"env": "qemu", "size_bytes": 1 << 20, "op": "read", "role": role, "round": 1,
                "reps": reps, "batches": batches}
    cells = [cell("baseline"), cell("baseline", reps=3400), cell("fix"), cell("baseline"),
             cell("baseline", reps=1)]
    per_op = [0.4e-3, 0.4e-3, 0.4e-3, float("nan"), 1e-9]
    out = vp.long_enough(cells, per_op)
    per_batch = out[0]["reps"] // 34
    assert per_batch * 0.4e-3 >= MIN_BATCH_S > (per_batch - 1) * 0.4e-3
    assert [c["reps"] for c in out[1:]] == [3400, 34, 34, vp.MAX_REPS_GROWTH]
    assert cells[0]["reps"] == 34


def test_a_fix_runs_as_long_as_its_baseline():
    """verification.plan.equal_durations: a fix predicted 8x faster gets 8x the reps (so its
    batches last as long as its baseline's on a shared machine), one 2x slower half, never
    fewer than its batches, at most MAX_REPS_SCALE times; baselines and unpaired cells keep theirs."""
    from verification import plan as vp
    def cell(role, op="read", rnd=1, reps=100, size=4096, batches=34):
        return {"env": "hvt", "size_bytes": size, "op": op, "role": role, "round": rnd, "reps": reps,
                "batches": batches}
    cells = [cell("baseline"), cell("fix"),                              # fix 8x faster
             cell("baseline", rnd=2), cell("fix", rnd=2),                # round 2: its own baseline
             cell("baseline", "write"), cell("fix", "write"),            # fix 2x slower
             cell("baseline", "write_sync"), cell("fix", "write_sync"),  # 1000x faster: capped
             cell("baseline", "read", size=8192, batches=80), cell("fix", "read", size=8192, batches=80),
             cell("fix", "read", size=1 << 20)]                          # no baseline: unchanged
    pred = [8e-3, 1e-3, 4e-3, 1e-3, 1e-3, 2e-3, 1.0, 1e-3, 1e-3, 2e-3, 5e-3]
    out = vp.equal_durations(cells, pred)
    assert [c["reps"] for c in out] == [100, 800, 100, 400, 100, 50, 100, 100 * vp.MAX_REPS_SCALE, 100, 80, 100]
    assert cells[1]["reps"] == 100                                      # pure: the input is untouched
    assert all(o == c for o, c in zip(out, cells) if c["role"] == "baseline")
