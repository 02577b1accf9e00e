"""The model's structural error per regime, and the prediction intervals built from it.

Pure statistics, no simulation. A *regime* is where a cell's time comes from: its
environment and whether it is a primitive (a micro-probe), waits mostly for its
device, or is CPU work (model.simulate's ledger tells). The structural error (sd of
log time that no parameter explains) is measured out of sample on the calibration's
own cells (leave-one-cell-out), per regime: pooled over every cell, the worst regime
(a docker write outrunning its dirty limit) would set every interval's width. Within a
regime the scale is robust (1.4826 x the median |error|, the sd for normal errors): on a
shared machine one cell measured while a neighbour ran a benchmark is off by 3x, and a
root-mean-square would let that one cell set every interval of its regime. A regime
with few cells is shrunk towards the pooled estimate, as SHRINK pseudo-cells would
(empirical Bayes in its simplest form), so that one lucky cell cannot make an interval
narrow; a regime no cell measured takes the pooled value.

  regime(env, op, device_share) -> str
  regime_spreads(residuals, regimes) -> {regime: {"log_sd", "n", "df"}, POOLED: ...}
  interval(pred, var_params, log_sd, df) -> (low, high)      95%, Student t
  coverage(measured, low, high) -> share inside
"""

import math

import numpy as np
from scipy import stats as _st

POOLED = "pooled"
SHRINK = 3.0               # pseudo-cells of the pooled estimate in each regime's
DEVICE_BOUND = 0.5         # share of a cell's time spent waiting for its device


def regime(env: str, op: str, device_share: float) -> str:
    from edgeio.records import PRIMITIVES
    if op in PRIMITIVES:
        return f"{env} primitive"
    return f"{env} {'device' if device_share >= DEVICE_BOUND else 'cpu'}"


MAD_SD = 1.4826


def robust_sd(e) -> float:
    """1.4826 x median |e|: the sd of normal errors centred on zero, robust to outliers."""
    e = np.abs(np.asarray(e, float))
    return float(MAD_SD * np.median(e)) if e.size else 0.0


def regime_spreads(residuals, regimes) -> dict:
    """Per-regime robust sd of out-of-sample log errors, shrunk towards the pooled one."""
    e = np.asarray(residuals, float)
    regimes = list(regimes)
    n = len(e)
    pooled = robust_sd(e)
    out = {POOLED: {"log_sd": pooled, "n": n, "df": max(1, n - 1)}}
    for r in dict.fromkeys(regimes):
        mine = e[[i for i, x in enumerate(regimes) if x == r]]
        k = len(mine)
        var = (k * robust_sd(mine) ** 2 + SHRINK * pooled ** 2) / (k + SHRINK)
        out[r] = {"log_sd": math.sqrt(var), "n": k, "df": max(1, int(round(k + SHRINK)) - 1)}
    return out


def spread_for(spreads: dict, name: str) -> tuple[float, int]:
    """(log_sd, df) of a regime, the pooled one if no cell measured it."""
    s = spreads.get(name) or spreads.get(POOLED) or {"log_sd": 0.0, "df": 1}
    return float(s["log_sd"]), int(s["df"])


def interval(pred: float, var_params: float, log_sd: float, df: int, level: float = 0.95) -> tuple[float, float]:
    """exp(log pred +- t_{df} x sqrt(var_params + log_sd^2))."""
    q = float(_st.t.ppf(0.5 + level / 2, max(int(df), 1)))
    half = q * math.sqrt(max(var_params, 0.0) + log_sd ** 2)
    return pred * math.exp(-half), pred * math.exp(half)


def coverage(measured, low, high) -> float:
    m, lo, hi = (np.asarray(x, float) for x in (measured, low, high))
    return float(np.mean((lo <= m) & (m <= hi))) if m.size else float("nan")
