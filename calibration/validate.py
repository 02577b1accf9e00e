"""Validation: refit without a cell (or without an environment) and predict what was left out."""

import pandas as pd

from calibration.fit import Fitter
from model.simulate import Simulator

KINDS = ("leave-one-cell-out", "leave-one-env-out")


def _holdout(cells, left_out: list[int], start: dict, sim: Simulator, kind: str) -> list[dict]:
    keep = [c for i, c in enumerate(cells) if i not in set(left_out)]
    # one backfitting round from the full fit: it moves little unless a parameter lost
    # the cells that informed it, and then the prior takes it where the fit would
    fr = Fitter(keep, sim).fit(start=start, outer=1, max_nfev=60, covariance=False)
    rows = []
    for i in left_out:
        c = cells[i]
        pred = sim(fr.values, c.cfg, c.workload).per_op_s
        rows.append({"kind": kind, "env": c.env, "size_bytes": c.size_bytes, "op": c.op,
                     "measured_s": c.measured_s, "predicted_s": pred,
                     "rel_error": pred / c.measured_s - 1})
    return rows


def validate(cells, start: dict, kinds=KINDS, progress=None) -> pd.DataFrame:
    """Leave-one-cell-out and leave-one-environment-out prediction errors.

    Each refit starts from the full fit's values (fewer iterations); a parameter that
    only the left-out cells informed falls back to its prior, which is the point: it
    shows how far the model predicts beyond what it was fitted on."""
    sim = Simulator()
    rows = []
    if "leave-one-cell-out" in kinds:
        for i in range(len(cells)):
            if progress:
                progress(f"leave-one-cell-out {i + 1}/{len(cells)}")
            rows += _holdout(cells, [i], start, sim, "leave-one-cell-out")
    if "leave-one-env-out" in kinds:
        envs = sorted({c.env for c in cells})
        if len(envs) > 1:
            for env in envs:
                if progress:
                    progress(f"leave-one-env-out {env}")
                rows += _holdout(cells, [i for i, c in enumerate(cells) if c.env == env], start, sim,
                                 "leave-one-env-out")
    return pd.DataFrame(rows, columns=["kind", "env", "size_bytes", "op", "measured_s", "predicted_s", "rel_error"])
