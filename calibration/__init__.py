"""Calibration: fit the model's parameters to a results set, with uncertainty.

  load_results(source, machine) -> DataFrame   None = the study's Pi 4 figures (bundled),
                                      a campaign directory, or a CSV results set (with
                                      the machine profile it was measured on)
  results_set(df, profile) -> DataFrame   a DataFrame of cells as a results set of a machine
  fit(results) -> Calibration         WLS for per-call costs, simulation fit for the rest
  load(path) -> Calibration           read a saved calibration (JSON)
  matches(cal, facts) -> str | None   why a calibration is not of this machine (None: it is)
"""

import math
import time

import numpy as np
import pandas as pd
from scipy import stats as _st

from calibration.core import FIT_COLUMNS, Calibration, load, matches
from calibration.coverage import whatif_needs
from calibration.fit import Fitter, cells_from
from model.intervals import POOLED, regime_spreads
from model.ledger import regime_of
from calibration.results import load_results
from calibration.validate import validate as _validate
from model.params import SPECS, prior_sds, priors

__all__ = ["Calibration", "fit", "load", "load_results", "results_set", "matches", "validate"]


def results_set(df: pd.DataFrame, profile: dict, source: str = "results set given by the caller") -> pd.DataFrame:
    """A DataFrame of cells (env, size_bytes, op, mean_per_op_s[, reps, config, ...]) as a
    results set measured on the machine of `profile` (model.machine.load_profile)."""
    from calibration.results import _from_csv
    df = df.copy()
    df.attrs["source"] = source
    return _from_csv(df, source, profile)


def fit(results: pd.DataFrame, validate: bool = False, progress=None) -> Calibration:
    """Fit the model to a results set (load_results or results_set: its attrs carry the
    machine's facts)."""
    from calibration.results import _check
    source = results.attrs.get("source", "results set given by the caller")
    machine = results.attrs.get("machine")
    if not machine:
        from edgeio.errors import UserError
        raise UserError(f"{source}: no machine facts: load it with calibration.load_results or results_set")
    attrs = dict(results.attrs)
    results = _check(results, source)
    cells = cells_from(results, machine)
    t0 = time.perf_counter()
    prior, prior_sd = priors(machine), prior_sds(machine)
    measured = dict(results.attrs.get("measured_fixed") or {})   # e.g. the guest cache's capacity
    prior.update(measured)
    fitter = Fitter(cells, prior=prior, prior_sd=prior_sd)
    fr = fitter.fit(start=dict(prior))
    final = fitter.model(fr.values)
    modelled = [r.per_op_s for r in final]
    regimes = [regime_of(c.env, c.op, r) for c, r in zip(cells, final)]
    table = pd.DataFrame({
        "env": [c.env for c in cells], "size_bytes": [c.size_bytes for c in cells],
        "op": [c.op for c in cells], "measured_s": [c.measured_s for c in cells],
        "modelled_s": modelled,
    })
    table["rel_error"] = table["modelled_s"] / table["measured_s"] - 1
    table = table[FIT_COLUMNS]
    abs_err = table["rel_error"].abs()
    loo = fitter.loo_log_residuals()
    metadata = {
        "model": "edgeio SimPy I/O path model 2",
        "cells": len(cells),
        "machine": machine,
        "target": attrs.get("target"),
        "host": attrs.get("host") or machine.get("host", ""),
        "profile": attrs.get("profile"),
        "statistic": attrs.get("statistic", "mean_per_op_s"),
        "prior": {k: prior[k] for k in SPECS if k in prior},
        "prior_sd": prior_sd,
        "measured_fixed": measured,
        "environments": {f"{c.env} {c.config}": _cfg_dict(c.cfg) for c in cells},
        "workloads": [{"env": c.env, "size_bytes": c.size_bytes, "op": c.op, "reps": c.reps,
                       "io_size": c.io_size, "config": c.config, "rel_se": c.rel_se, "regime": g}
                      for c, g in zip(cells, regimes)],
        "fit": {"median_abs_rel_error": float(abs_err.median()), "max_abs_rel_error": float(abs_err.max()),
                "outer_iterations": fr.outer_iterations, "seconds": round(time.perf_counter() - t0, 2),
                "method": "statsmodels WLS (per-call costs) alternated with scipy least_squares "
                          "on relative errors, worst cells weighed more (nonlinear parameters, and per-call "
                          "costs only cells that waited carry: scanned, then searched), weak priors",
                "by_simulation": fr.nonlinear_names},
        "unidentified": fr.unidentified,
        # what a buildable what-if needs and no cell pins: its intervals carry the prior
        "whatif_unpinned": whatif_needs(cells, machine),
        "covariance": {
            "joint": {"names": fr.names, "matrix": np.asarray(fr.cov).tolist(), "df": fr.df,
                      "additive": [n for n in fr.names if Fitter.additive(n)],
                      "note": "joint covariance (Gauss-Newton) of relative changes d = dv/v; a draw d "
                              "maps to v*(1+d) for the additive (time) parameters, v*exp(d) for the others"},
            "wls": {"names": fr.linear_names, "matrix": np.asarray(fr.linear_cov).tolist(), "df": fr.linear_df,
                    "note": "statsmodels WLS covariance of the per-call costs, nonlinear parameters held"},
        },
        "residual_log_sd": float(np.sqrt(np.mean(np.log1p(table["rel_error"].to_numpy()) ** 2))),
        "structural_error": _structural(loo, table, len(fr.names or []), regimes,
                                        "leave-one-cell-out, linearised (PRESS residuals e/(1-h) "
                                        "of the joint Gauss-Newton fit)"),
    }
    cal = Calibration(_param_table(fr, prior, prior_sd, measured), table, source, metadata)
    if validate:
        cal.validation = _validate(cells, fr.values, progress=progress, sim=fitter.sim, prior=prior,
                                   prior_sd=prior_sd)
        _record_validation(cal)
    return cal


def _structural(loo, table, p, regimes, method) -> dict:
    """The model's structural error (sd of log time) measured out of sample, per regime."""
    n = len(table)
    if loo is None or not len(loo):
        e = np.log1p(table["rel_error"].to_numpy(float))
        loo = e * math.sqrt(n / max(1, n - p))
        method = "in-sample residuals inflated by n/(n-p) (no Jacobian)"
    spreads = regime_spreads(loo, regimes)
    return {"log_sd": spreads[POOLED]["log_sd"], "df": spreads[POOLED]["df"], "method": method,
            "regimes": spreads, "within_regimes": regime_spreads(loo, regimes, within=True)}


def _record_validation(cal) -> None:
    cal.metadata["validation"] = summarize_validation(cal.validation)
    loo = cal.validation[cal.validation["kind"] == "leave-one-cell-out"]
    regimes = [w.get("regime") or POOLED for w in cal.workloads()]
    if len(loo) and len(loo) == len(regimes):
        e = np.log1p(loo["rel_error"].to_numpy(float))
        spreads = regime_spreads(e, regimes)
        cal.metadata["structural_error"] = {
            "log_sd": spreads[POOLED]["log_sd"], "df": spreads[POOLED]["df"], "regimes": spreads,
            "within_regimes": regime_spreads(e, regimes, within=True),
            "method": "leave-one-cell-out refits (invoke calibrate --validate)"}


def validate(cal: Calibration, results: pd.DataFrame, progress=None, workers: int | None = None) -> pd.DataFrame:
    """Leave-one-cell-out and leave-one-env-out errors for a calibration of `results`
    (refits in `workers` processes; default one per usable core)."""
    machine = results.attrs.get("machine") or cal.machine
    cal.validation = _validate(cells_from(results, machine), cal.values(), progress=progress, workers=workers,
                               prior=priors(machine), prior_sd=prior_sds(machine))
    _record_validation(cal)
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


def _param_table(fr, prior, prior_sd, measured=None) -> dict:
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
            desc += " [measured]" if name in (measured or {}) else " [fixed]"
        elif name in idx:
            i = idx[name]
            rel = float(math.sqrt(max(fr.cov[i, i], 0)))
            se = val * rel
            if Fitter.additive(name):
                lo, hi = max(0.0, val - t * se), val + t * se
            else:
                lo, hi = val * math.exp(-t * rel), val * math.exp(t * rel)
        else:
            sd = prior_sd.get(name, spec.sd)
            se = val * sd
            if Fitter.additive(name):
                lo, hi = max(0.0, val - 1.96 * se), val + 1.96 * se
            else:
                lo, hi = val * math.exp(-1.96 * sd), val * math.exp(1.96 * sd)
            desc += " [prior: no cell of this results set informs it]"
        out[name] = {"value": val, "stderr": se, "ci95_low": lo, "ci95_high": hi,
                     "unit": spec.unit, "description": desc}
    return out
