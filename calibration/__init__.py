"""Calibration: fit the model's parameters to a results set, with uncertainty.

  load_results(source) -> DataFrame   None = the study's Pi 4 figures (bundled),
                                      a campaign directory, or a CSV results set
  fit(results) -> Calibration         WLS for per-call costs, simulation fit for the rest
  load(path) -> Calibration           read a saved calibration (JSON)
"""

import math
import time

import numpy as np
import pandas as pd
from scipy import stats as _st

from calibration.core import FIT_COLUMNS, Calibration, load
from calibration.fit import Fitter, cells_from
from calibration.results import load_results
from calibration.validate import validate as _validate
from model.environments import STUDY
from model.params import SPECS, priors

__all__ = ["Calibration", "fit", "load", "load_results", "validate"]


def fit(results: pd.DataFrame, validate: bool = False, progress=None) -> Calibration:
    """Fit the model to a results set (columns env, size_bytes, op, mean_per_op_s[, reps, config])."""
    from calibration.results import _check
    source = results.attrs.get("source", "results set given by the caller")
    fixed = dict(results.attrs.get("fixed") or {})
    results = _check(results, source)
    cells = cells_from(results)
    t0 = time.perf_counter()
    fitter = Fitter(cells)
    start = priors()
    start.update({k: float(v) for k, v in fixed.items() if SPECS.get(k) and SPECS[k].kind == "fixed"})
    fr = fitter.fit(start=start)
    modelled = [r.per_op_s for r in fitter.model(fr.values)]
    table = pd.DataFrame({
        "env": [c.env for c in cells], "size_bytes": [c.size_bytes for c in cells],
        "op": [c.op for c in cells], "measured_s": [c.measured_s for c in cells],
        "modelled_s": modelled,
    })
    table["rel_error"] = table["modelled_s"] / table["measured_s"] - 1
    table = table[FIT_COLUMNS]
    abs_err = table["rel_error"].abs()
    metadata = {
        "model": "edgeio SimPy I/O path model 1",
        "cells": len(cells),
        "machine": {k: v for k, v in fixed.items()},
        "environments": {e: _cfg_dict(STUDY[e]) for e in sorted({c.env for c in cells})},
        "workloads": [{"env": c.env, "size_bytes": c.size_bytes, "op": c.op, "reps": c.reps,
                       "io_size": c.io_size, "config": c.config} for c in cells],
        "fit": {"median_abs_rel_error": float(abs_err.median()), "max_abs_rel_error": float(abs_err.max()),
                "outer_iterations": fr.outer_iterations, "seconds": round(time.perf_counter() - t0, 2),
                "method": "statsmodels WLS (per-call costs) alternated with scipy least_squares "
                          "on relative errors, worst cells weighed more (nonlinear parameters), weak priors"},
        "unidentified": fr.unidentified,
        "covariance": {
            "joint": {"names": fr.names, "matrix": np.asarray(fr.cov).tolist(), "df": fr.df,
                      "additive": [n for n in fr.names if Fitter.additive(n)],
                      "note": "joint covariance (Gauss-Newton) of relative changes d = dv/v; a draw d "
                              "maps to v*(1+d) for the additive (time) parameters, v*exp(d) for the others"},
            "wls": {"names": fr.linear_names, "matrix": np.asarray(fr.linear_cov).tolist(), "df": fr.linear_df,
                    "note": "statsmodels WLS covariance of the per-call costs, nonlinear parameters held"},
        },
        "residual_log_sd": float(np.sqrt(np.mean(np.log1p(table["rel_error"].to_numpy()) ** 2))),
    }
    cal = Calibration(_param_table(fr), table, source, metadata)
    if validate:
        cal.validation = _validate(cells, fr.values, progress=progress, sim=fitter.sim)
        metadata["validation"] = summarize_validation(cal.validation)
    return cal


def validate(cal: Calibration, results: pd.DataFrame, progress=None, workers: int | None = None) -> pd.DataFrame:
    """Leave-one-cell-out and leave-one-env-out errors for a calibration of `results`
    (refits in `workers` processes; default one per usable core)."""
    cal.validation = _validate(cells_from(results), cal.values(), progress=progress, workers=workers)
    cal.metadata["validation"] = summarize_validation(cal.validation)
    return cal.validation


def summarize_validation(v: pd.DataFrame) -> dict:
    out = {}
    for kind, g in v.groupby("kind"):
        a = g["rel_error"].abs()
        out[kind] = {"median_abs_rel_error": float(a.median()), "max_abs_rel_error": float(a.max()),
                     "cells": int(len(g))}
    return out


def _cfg_dict(cfg) -> dict:
    import dataclasses
    return dataclasses.asdict(cfg)


def _param_table(fr) -> dict:
    """value, stderr and 95% interval per parameter: from the joint covariance (so the
    intervals carry the confounding between costs), Student t; times symmetric and cut
    at zero, the others log-symmetric; unidentified ones get their prior's spread."""
    out = {}
    v = fr.values
    idx = {n: i for i, n in enumerate(fr.names)}
    t = _st.t.ppf(0.975, max(fr.df, 1))
    for name, spec in SPECS.items():
        val = float(v[name])
        desc = spec.description
        if spec.kind == "fixed":
            se, lo, hi = 0.0, val, val
            desc += " [fixed]"
        elif name in idx:
            i = idx[name]
            rel = float(math.sqrt(max(fr.cov[i, i], 0)))
            se = val * rel
            if Fitter.additive(name):
                lo, hi = max(0.0, val - t * se), val + t * se
            else:
                lo, hi = val * math.exp(-t * rel), val * math.exp(t * rel)
        else:
            sd = spec.sd
            se = val * sd
            if Fitter.additive(name):
                lo, hi = max(0.0, val - 1.96 * se), val + 1.96 * se
            else:
                lo, hi = val * math.exp(-1.96 * sd), val * math.exp(1.96 * sd)
            desc += " [prior: no cell of this results set informs it]"
        out[name] = {"value": val, "stderr": se, "ci95_low": lo, "ci95_high": hi,
                     "unit": spec.unit, "description": desc}
    return out
