"""The figures a verify is judged by, from its comparison (pure functions).

`summarize` gives the JSON summary (comparison.json): the speed-up first (median and
largest error, share inside the predicted interval, wrong directions), absolute error
beside it, the drift check, and the re-anchored error. `drift_line` is the one line a
verify prints when a baseline moved since the calibration campaign.
"""

import math

import pandas as pd

from edgeio.units import format_size, format_time
from verification.compare import as_bool
from verification.speedup import wrong_way


def summarize(comparison: pd.DataFrame) -> dict:
    """cells, median and largest |relative error| (with the cell), share of measured values
    inside their intervals; then `speedup`, `drift` and `reanchored` records."""
    c = comparison
    out = {"cells": int(len(c)), "median_abs_rel_error": math.nan, "max_abs_rel_error": math.nan,
           "worst": "", "share_inside": math.nan}
    if len(c):
        a = c["rel_error"].astype(float).abs()
        out.update(median_abs_rel_error=float(a.median()), max_abs_rel_error=float(a.max()),
                   worst=_label(c.loc[a.idxmax()]), share_inside=float(as_bool(c["inside"]).mean()))
    fix = c[(c["role"] == "fix") & c["predicted_speedup"].astype(float).notna()] if len(c) else c
    sp = {"cells": int(len(fix)), "median_abs_rel_error": math.nan, "max_abs_rel_error": math.nan,
          "worst": "", "share_inside": math.nan, "wrong_direction": 0, "direction_agrees": 0,
          "wrong_direction_cells": []}
    if len(fix):
        a = fix["speedup_rel_error"].astype(float).abs()
        wrong = [_label(r) for _, r in fix.iterrows() if wrong_way(r["predicted_direction"], r["measured_direction"])]
        sp.update(median_abs_rel_error=float(a.median()), max_abs_rel_error=float(a.max()),
                  worst=_label(fix.loc[a.idxmax()]), share_inside=float(as_bool(fix["speedup_inside"]).mean()),
                  wrong_direction=len(wrong), wrong_direction_cells=wrong,
                  direction_agrees=int(as_bool(fix["direction_agrees"]).sum()))
    out["speedup"] = sp
    base = c[(c["role"] == "baseline")] if len(c) else c
    checked = base[base["calibration_measured_s"].astype(float).notna()] if len(base) else base
    moved = checked[as_bool(checked["drifted"])] if len(checked) else checked
    out["drift"] = {"checked": int(len(checked)), "drifted": [
        {"env": r["env"], "size_bytes": int(r["size_bytes"]), "op": r["op"], "measured_s": float(r["measured_s"]),
         "calibration_measured_s": float(r["calibration_measured_s"]),
         "calibration_low_s": float(r["calibration_low_s"]), "calibration_high_s": float(r["calibration_high_s"]),
         "ratio": float(r["drift_ratio"]), "ratio_low": float(r["drift_ratio_low"]),
         "ratio_high": float(r["drift_ratio_high"])} for _, r in moved.iterrows()],
        "line": drift_line(c)}
    re = fix["reanchored_rel_error"].astype(float).abs() if len(fix) else pd.Series(dtype=float)
    out["reanchored"] = {"cells": int(re.notna().sum()),
                         "median_abs_rel_error": float(re.median()) if re.notna().any() else math.nan,
                         "max_abs_rel_error": float(re.max()) if re.notna().any() else math.nan}
    return out


def drift_line(comparison: pd.DataFrame) -> str | None:
    """One line naming the baselines that moved beyond their interval since the calibration
    campaign (None if none did)."""
    c = comparison
    if not len(c):
        return None
    moved = c[(c["role"] == "baseline") & as_bool(c["drifted"])]
    if not len(moved):
        return None
    parts = [f"{r['env']} {format_size(int(r['size_bytes']))} {r['op']} {format_time(float(r['measured_s']))} now vs "
             f"{format_time(float(r['calibration_measured_s']))} [{format_time(float(r['calibration_low_s']))}, "
             f"{format_time(float(r['calibration_high_s']))}] then ({float(r['drift_ratio']):.2f}x)"
             for _, r in moved.iterrows()]
    return (f"drift: {len(moved)} of {int((c['role'] == 'baseline').sum())} baselines moved beyond their interval "
            f"since the calibration campaign: {'; '.join(parts)}; absolute predictions are shown raw and "
            "re-anchored on today's baseline")


def _label(r) -> str:
    return f"{r['env']} {format_size(int(r['size_bytes']))} {r['op']} ({r['role']})"


def jsonable(x):
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
