"""Validation: refit without a cell (or without an environment) and predict what was left out.

The 35 refits of the Pi matrix are independent, so they run in worker processes (one per
core). Each refit is deterministic and the memo only ever returns a result computed for
exactly the same parameter values, so the table is the same, row for row, whatever the
number of workers or the order they finish in (a test checks it).
"""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from calibration.fit import Fitter
from model.params import FITTED, priors
from model.simulate import Simulator

KINDS = ("leave-one-cell-out", "leave-one-env-out")
COLUMNS = ["kind", "env", "size_bytes", "op", "measured_s", "predicted_s", "rel_error"]

_worker_sim: Simulator | None = None     # one memo per worker process, kept across refits


def refit_without(cells, left_out: list[int], start: dict, sim: Simulator, prior: dict,
                  prior_sd: dict | None = None) -> dict:
    """Parameter values fitted without the cells `left_out`, and without anything they
    alone carried: a parameter none of the kept cells reads, or that the refit finds no
    kept cell informs, goes back to its prior (so leaving out an environment leaves out
    what only it pinned, e.g. hvt's hypercall cost)."""
    out = set(left_out)
    keep = [c for i, c in enumerate(cells) if i not in out]
    fitter = Fitter(keep, sim, prior=prior, prior_sd=prior_sd)
    used = set().union(*(r.used for r in fitter.model(start))) if keep else set()
    s = dict(start)
    for n in FITTED:
        if n not in used:
            s[n] = prior[n]
    if not keep:
        return s
    # one backfitting round from the full fit: it moves little unless a parameter lost
    # the cells that informed it, and then the prior takes it where the fit would
    fr = fitter.fit(start=s, outer=1, max_nfev=60, covariance=False)
    values = dict(fr.values)
    for n in fr.unidentified:
        values[n] = prior[n]
    return values


def _holdout(cells, left_out: list[int], start: dict, sim: Simulator, kind: str, prior: dict,
             prior_sd: dict | None = None) -> list[dict]:
    values = refit_without(cells, left_out, start, sim, prior, prior_sd)
    rows = []
    for i in left_out:
        c = cells[i]
        pred = sim(values, c.cfg, c.workload).per_op_s
        rows.append({"kind": kind, "env": c.env, "size_bytes": c.size_bytes, "op": c.op,
                     "measured_s": c.measured_s, "predicted_s": pred,
                     "rel_error": pred / c.measured_s - 1})
    return rows


def _in_worker(cells, left_out, start, kind, prior, prior_sd=None):
    global _worker_sim
    if _worker_sim is None:
        _worker_sim = Simulator()
    return _holdout(cells, left_out, start, _worker_sim, kind, prior, prior_sd)


def _jobs(cells, kinds):
    if "leave-one-cell-out" in kinds:
        for i in range(len(cells)):
            yield "leave-one-cell-out", [i], f"leave-one-cell-out {i + 1}/{len(cells)}"
    if "leave-one-env-out" in kinds:
        envs = sorted({c.env for c in cells})
        if len(envs) > 1:
            for env in envs:
                yield ("leave-one-env-out", [i for i, c in enumerate(cells) if c.env == env],
                       f"leave-one-env-out {env}")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def validate(cells, start: dict, kinds=KINDS, progress=None, workers: int | None = None,
             sim: Simulator | None = None, prior: dict | None = None,
             prior_sd: dict | None = None) -> pd.DataFrame:
    """Leave-one-cell-out and leave-one-environment-out prediction errors.

    Each refit starts from the full fit's values (fewer iterations); a parameter that
    only the left-out cells informed falls back to its prior, which is the point: it
    shows how far the model predicts beyond what it was fitted on. `workers` processes
    (default: one per usable core; 1 = in this process). `sim`: the full fit's memoised
    simulator, whose results at `start` every refit begins with (forked workers inherit it)."""
    global _worker_sim
    prior = prior or priors()
    jobs = list(_jobs(cells, kinds))
    workers = min(default_workers() if workers is None else max(1, int(workers)), len(jobs) or 1)
    results: list[list[dict] | None] = [None] * len(jobs)
    if workers == 1:
        sim = sim or Simulator()
        for j, (kind, left_out, label) in enumerate(jobs):
            if progress:
                progress(label)
            results[j] = _holdout(cells, left_out, start, sim, kind, prior, prior_sd)
    else:
        # the leave-one-env-out refits are the longest: start them first so that no
        # worker is left with a long one at the end (rows stay in the table's order)
        order = sorted(range(len(jobs)), key=lambda j: jobs[j][0] != "leave-one-env-out")
        _worker_sim = sim                  # copied into each forked worker
        try:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {j: pool.submit(_in_worker, cells, jobs[j][1], start, jobs[j][0], prior, prior_sd)
                           for j in order}
                for n, j in enumerate(order, 1):
                    results[j] = futures[j].result()
                    if progress:
                        progress(f"{n}/{len(jobs)} refits ({workers} processes)")
        finally:
            _worker_sim = None
    rows = [r for rs in results for r in rs]
    return pd.DataFrame(rows, columns=COLUMNS)
