"""Predictions for verify's cells, and predicted against measured (pure functions).

`predict_cells` is the one place the model is asked; `compare` joins predictions.csv
with a campaign's summary.csv; `summarize` gives the three figures a verify is judged by.
"""

import json
import math

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = ["env", "size_bytes", "op", "config", "role", "predicted_s", "low_s", "high_s",
                      "model_config", "predicted_at", "calibration"]
COMPARISON_COLUMNS = ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s",
                      "measured_s", "ci95_low_s", "ci95_high_s", "rel_error", "inside", "role"]
DRAWS = 24


def predict_cells(cal, cells: list[dict], draws: int = DRAWS) -> pd.DataFrame:
    """Predicted time per op (95% interval) of each cell {env, size_bytes, op, config, reps}.

    config is the cell's configuration as it will run (agreed keys, INTERFACES.md).
    This is the only call into the model: until model.predict.predict_cells exists it
    builds each cell with model.environments.config_for and simulates it the way
    model.predict.predict does (parameter draws plus the fit's residual spread)."""
    import model.predict as mp
    if hasattr(mp, "predict_cells"):
        given = [{k: c[k] for k in ("env", "size_bytes", "op", "config")} for c in cells]
        df = mp.predict_cells(cal, given, draws=draws)
        return df[["predicted_s", "low_s", "high_s"]].reset_index(drop=True)
    return _predict_with_config_for(cal, cells, draws)


def _legacy_config(cfg: dict) -> dict:
    """The agreed config keys -> the measuring side's --param names config_for reads."""
    out = {}
    if cfg.get("memory_bytes") and cfg["env"] != "linux" and cfg["env"] != "docker":
        out["mem"] = cfg["memory_bytes"] / (1 << 20)
    if cfg["env"] == "hvt":
        out.update(flush=cfg.get("flush", "none"), blocks_per_call=cfg.get("blocks_per_call", 1),
                   sector_size=cfg.get("block_size", 512))
    return out


def _predict_with_config_for(cal, cells, draws):
    from model.environments import config_for
    from model.simulate import Simulator, Workload
    values = cal.values()
    sim = Simulator()
    samples = cal.sample(draws) if draws else []
    sd = cal.residual_log_sd()
    rng = np.random.default_rng(1)
    rows = []
    for c in cells:
        cfg = config_for(c["env"], _legacy_config(c["config"]))
        wl = Workload(int(c["size_bytes"]), c["op"], int(c.get("reps") or 1), c["config"].get("io_size_bytes"))
        pred = sim(values, cfg, wl).per_op_s
        lo = hi = pred
        if samples:
            t = np.log([sim(s, cfg, wl).per_op_s for s in samples])[:, None]
            if sd > 0:
                t = t + rng.normal(0.0, sd, size=(len(t), 200))
            lo, hi = np.exp(np.percentile(t, [2.5, 97.5]))
        rows.append({"predicted_s": pred, "low_s": float(min(lo, pred)), "high_s": float(max(hi, pred))})
    return pd.DataFrame(rows, columns=["predicted_s", "low_s", "high_s"])


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

