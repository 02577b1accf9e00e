"""comparison.csv: each predicted cell beside what was measured, from the cells' batches.

Computed from predictions.csv and the campaign's per-batch samples (store.Campaign.samples,
derived from the cell records), never read back from a file: the command writes it, the
report recomputes it and refuses a stored one that differs (verification.campaign).

Per cell: the absolute prediction against the measured median per op (the statistic the
calibration fits, calibration/results.py) with its distribution-free interval. Per fix
cell: the speed-up over the baseline measured beside it, predicted (with its interval)
against measured (the ratio of the two cells' fastest batches, see SPEEDUP_STATISTIC,
with its interval across rounds and batches), and the direction.
Per baseline cell: the drift check against the calibration campaign's same cell; per fix
cell, the prediction re-anchored on today's baseline.
"""

import math

import numpy as np
import pandas as pd

from edgeio import stats
from verification import drift as _drift, speedup as _speedup

# The columns as they were before issue 18 first; a reader may rely on their order.
BASE_COLUMNS = ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s",
                "measured_s", "ci95_low_s", "ci95_high_s", "rel_error", "inside", "role"]
SPEEDUP_COLUMNS = ["predicted_speedup", "speedup_low", "speedup_high", "measured_speedup",
                   "measured_speedup_ci95_low", "measured_speedup_ci95_high", "speedup_rel_error",
                   "speedup_inside", "predicted_direction", "measured_direction", "direction_agrees"]
DRIFT_COLUMNS = ["calibration_measured_s", "calibration_low_s", "calibration_high_s", "drift_ratio",
                 "drift_ratio_low", "drift_ratio_high", "drifted",
                 "reanchored_s", "reanchored_low_s", "reanchored_high_s", "reanchored_rel_error"]
# Where the measured speed-up was expected, the model's interval widened by the
# measurement's own CI (verification.speedup.expected_interval): what speedup_inside judges
# by. A comparison stored before these columns existed judged by the model's interval alone.
EXPECTED_COLUMNS = ["speedup_expected_low", "speedup_expected_high"]
COLUMNS = (BASE_COLUMNS + ["cell_id", "n_batches"] + SPEEDUP_COLUMNS + DRIFT_COLUMNS + ["speedup_statistic"]
           + EXPECTED_COLUMNS)

# The measured speed-up is the ratio of the two cells' fastest batches (time per op). On a
# shared machine a neighbour only ever adds time, so the fastest of many batches is the
# estimate of what the code costs that a neighbour moves least (Chen & Revels, "Robust
# benchmarking in noisy environments", 2016; BenchmarkTools.jl judges a change on the
# minimum). With two busy loops beside (bv11), a baseline's batches took 366 or 735 us an
# op (a core of its own or half of one), its fix's 52 or 105: the ratio of medians read
# 3.55x when the baseline's median fell in one mode and the fix's in the other, where
# every pairing of like batches, and the quiet machine, give 7.0x. A comparison stored
# before this statistic was recorded was computed on medians and is recomputed so.
SPEEDUP_STATISTIC = "fastest"
STATISTICS = {"fastest": np.min, "median": np.median}
_RATIO_CI95 = {"fastest": stats.ratio_of_minima_ci95, "median": stats.ratio_of_medians_ci95}
BOOL_COLUMNS = ["inside", "speedup_inside", "direction_agrees", "drifted"]
KEYS = ["env", "size_bytes", "op"]


def compare(predictions: pd.DataFrame, samples: pd.DataFrame, statistic: str = SPEEDUP_STATISTIC,
            judged_today: bool = True) -> pd.DataFrame:
    """One row per predicted cell that has batches (a cell not measured yet has none), in
    plan order; a cell run in rounds (verification.plan.ROUNDS) is one row, its rounds'
    batches pooled, named by its first round's cell_id. rel_error = predicted / measured
    - 1; inside: measured in [low, high]. statistic: of each cell's batches, what the
    measured speed-up is a ratio of ("fastest", or "median" as comparisons stored before
    the column speedup_statistic were). judged_today: a speed-up is inside when the measured
    ratio is in its expected interval (EXPECTED_COLUMNS), and a predicted direction is one
    the model's interval holds (as a measured one is the CI's); False (a comparison stored
    before those columns): inside the model's interval alone, the point's direction."""
    of = STATISTICS[statistic]
    preds = _with_cell_ids(predictions, samples).to_dict("records")
    batches = {str(cid): (g["seconds"].to_numpy(float), g["repetitions"].to_numpy(float))
               for cid, g in samples.groupby("cell_id", sort=False)}
    rounds = {}                     # first round's cell_id -> its rounds' cell_ids, in plan order
    first = {}
    for p in preds:
        key = (p["env"], int(p["size_bytes"]), p["op"], p["role"], str(p["config"]))
        first.setdefault(key, p["cell_id"])
        rounds.setdefault(first[key], []).append(p["cell_id"])
    per_op, per_round = {}, {}
    for cid, members in rounds.items():
        measured = [m for m in members if m in batches]
        if measured:
            per_op[cid] = np.concatenate([stats.per_op(*batches[m]) for m in measured])
            per_round[cid] = [float(of(stats.per_op(*batches[m]))) for m in measured]
    rows = []
    said = {p["cell_id"]: tuple(p.get(c, math.nan) for c in ("predicted_speedup", "speedup_low", "speedup_high"))
            for p in preds}
    for p in preds:
        cid = p["cell_id"]
        if cid not in per_op:
            continue
        measured = [m for m in rounds[cid] if m in batches]
        s = stats.summarize(np.concatenate([batches[m][0] for m in measured]),
                            np.concatenate([batches[m][1] for m in measured]))
        m = s["median_per_op_s"]
        row = dict.fromkeys(COLUMNS, math.nan)
        row.update({k: p[k] for k in ("env", "size_bytes", "op", "config", "role", "predicted_s", "low_s", "high_s")})
        row.update(measured_s=m, ci95_low_s=s["median_ci95_low_s"], ci95_high_s=s["median_ci95_high_s"],
                   rel_error=p["predicted_s"] / m - 1, inside=bool(p["low_s"] <= m <= p["high_s"]),
                   cell_id=cid, n_batches=s["n_batches"], speedup_inside="", direction_agrees="",
                   predicted_direction="", measured_direction="", drifted="")
        if p["role"] == "baseline":
            row.update(zip(DRIFT_COLUMNS[:7], _drift_of(row, p)))
        rows.append(row)
    for row in rows:
        base = next((b for b in rows if b["role"] == "baseline" and all(b[k] == row[k] for k in KEYS)), None)
        if row["role"] != "fix" or base is None:
            continue
        row.update(zip(SPEEDUP_COLUMNS + EXPECTED_COLUMNS,
                       _speedup_of(base, row, per_op, per_round, said[row["cell_id"]], statistic, judged_today)))
        row["speedup_statistic"] = statistic
        re = _drift.reanchored((row["predicted_s"], row["low_s"], row["high_s"]), base["predicted_s"], base["measured_s"])
        row.update(zip(DRIFT_COLUMNS[7:], [*re, re[0] / row["measured_s"] - 1]))
    return pd.DataFrame(rows, columns=COLUMNS)


def _with_cell_ids(predictions: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Predictions made before cell ids were recorded find their cell by env, size, op, config."""
    p = predictions.copy()
    if "cell_id" in p.columns and not p["cell_id"].isna().any():
        p["cell_id"] = p["cell_id"].astype(str)
        return p
    ids = {(r.env, int(r.size_bytes), r.op, str(r.config)): str(r.cell_id)
           for r in samples.drop_duplicates("cell_id").itertuples(index=False)}
    p["cell_id"] = [ids.get((r.env, int(r.size_bytes), r.op, str(r.config)), "") for r in p.itertuples(index=False)]
    return p


def _speedup_of(base, fix, per_op: dict, per_round: dict, said: tuple, statistic: str, judged_today: bool) -> list:
    """said: the speed-up predictions.csv recorded for the fix (the model's joint draws);
    a verify from before it was recorded gets the two cells' intervals combined. The
    measured ratio (of `statistic` over each cell's batches) has a CI spanning both the
    batches' bootstrap and, with two or more rounds, the spread between rounds (a boot's
    own luck, which batches inside it cannot show)."""
    if all(isinstance(v, float) and math.isfinite(v) for v in said):
        r, lo, hi = said
    else:
        r, lo, hi = _speedup.predicted_ratio((base["predicted_s"], base["low_s"], base["high_s"]),
                                             (fix["predicted_s"], fix["low_s"], fix["high_s"]))
    b, f = per_op[base["cell_id"]], per_op[fix["cell_id"]]
    of = STATISTICS[statistic]
    measured = float(of(b) / of(f))
    mlo, mhi = _RATIO_CI95[statistic](b, f)
    rlo, rhi = stats.ratio_across_runs_ci95(per_round[base["cell_id"]], per_round[fix["cell_id"]])
    if math.isfinite(rlo):
        mlo, mhi = (rlo, rhi) if not math.isfinite(mlo) else (min(mlo, rlo), max(mhi, rhi))
    if judged_today:
        elo, ehi, inside, pdir, mdir = _speedup.judge(r, lo, hi, measured, mlo, mhi)
    else:                           # as judged before the expected interval existed
        elo, ehi, inside = math.nan, math.nan, bool(lo <= measured <= hi)
        pdir, mdir = _speedup.direction(r), _speedup.direction(measured, mlo, mhi)
    return [r, lo, hi, measured, mlo, mhi, r / measured - 1, inside, pdir, mdir, pdir == mdir, elo, ehi]


def _drift_of(base, pred: dict) -> list:
    then = tuple(pred.get(c, math.nan) for c in ("calibration_measured_s", "calibration_low_s", "calibration_high_s"))
    d = _drift.drift((base["measured_s"], base["ci95_low_s"], base["ci95_high_s"]), then)
    return [*then, d["ratio"], d["ratio_low"], d["ratio_high"], d["drifted"]]


def as_bool(series: pd.Series) -> pd.Series:
    """A boolean column read back from CSV (True/False/blank)."""
    return series.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


