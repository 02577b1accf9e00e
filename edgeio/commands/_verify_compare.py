"""Predictions for verify's cells, and predicted against measured (pure functions).

`predict_cells` is the one place the model is asked; `compare` joins predictions.csv
with a campaign's summary.csv; `summarize` gives the three figures a verify is judged by.
"""

import json
import math

import pandas as pd

PREDICTION_COLUMNS = ["env", "size_bytes", "op", "config", "role", "predicted_s", "low_s", "high_s",
                      "model_config", "predicted_at", "calibration"]
COMPARISON_COLUMNS = ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s",
                      "measured_s", "ci95_low_s", "ci95_high_s", "rel_error", "inside", "role"]
DRAWS = 24


def predict_cells(cal, cells: list[dict], draws: int = DRAWS) -> pd.DataFrame:
    """Predicted time per op (95% interval) of each cell {env, size_bytes, op, reps, config},
    config the cell's configuration as it will run (agreed keys, INTERFACES.md): the only
    call into the model (model.predict.predict_cells). Rows in the cells' order."""
    from model.predict import predict_cells as model_predict
    given = [{k: c[k] for k in ("env", "size_bytes", "op", "reps", "config")} for c in cells]
    df = model_predict(cal, given, draws=draws)
    return df[["predicted_s", "low_s", "high_s"]].reset_index(drop=True)


def prediction_table(cells: list[dict], predicted: pd.DataFrame, keys: list[str], model_configs: list[dict],
                     stamp: str, calibration: str) -> pd.DataFrame:
    """predictions.csv: one row per cell, in plan order."""
    df = pd.DataFrame({
        "env": [c["env"] for c in cells], "size_bytes": [int(c["size_bytes"]) for c in cells],
        "op": [c["op"] for c in cells], "config": keys, "role": [c["role"] for c in cells],
        "predicted_s": predicted["predicted_s"].to_numpy(float),
        "low_s": predicted["low_s"].to_numpy(float), "high_s": predicted["high_s"].to_numpy(float),
        "model_config": [json.dumps(m, sort_keys=True, separators=(",", ":")) for m in model_configs],
        "predicted_at": stamp, "calibration": calibration,
    })
    return df[PREDICTION_COLUMNS]


def compare(predictions: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv: each predicted cell beside what was measured (a cell not measured
    yet has no row). rel_error = predicted / measured - 1; inside: measured in [low, high]."""
    keys = ["env", "size_bytes", "op", "config"]
    s = summary[keys + ["mean_per_op_s", "ci95_low_s", "ci95_high_s"]].copy()
    s["size_bytes"] = s["size_bytes"].astype("int64")
    p = predictions.copy()
    p["size_bytes"] = p["size_bytes"].astype("int64")
    m = p.merge(s, on=keys, how="inner").rename(columns={"mean_per_op_s": "measured_s"})
    m["rel_error"] = m["predicted_s"] / m["measured_s"] - 1
    m["inside"] = (m["low_s"] <= m["measured_s"]) & (m["measured_s"] <= m["high_s"])
    return m[COMPARISON_COLUMNS].reset_index(drop=True)


def summarize(comparison: pd.DataFrame) -> dict:
    """median and largest |relative error| (with the cell), share of measured values inside."""
    if not len(comparison):
        return {"cells": 0, "median_abs_rel_error": math.nan, "max_abs_rel_error": math.nan,
                "worst": "", "share_inside": math.nan}
    a = comparison["rel_error"].abs()
    w = comparison.loc[a.idxmax()]
    return {"cells": int(len(comparison)), "median_abs_rel_error": float(a.median()),
            "max_abs_rel_error": float(a.max()),
            "worst": f"{w['env']} {int(w['size_bytes'])} B {w['op']} ({w['role']})",
            "share_inside": float(comparison["inside"].mean())}

