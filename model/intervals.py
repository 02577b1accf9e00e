"""The model's structural error per regime, and the prediction intervals built from it.

Pure statistics, no simulation. A *regime* is where a cell's time comes from: its
environment and whether it is a primitive (a micro-probe), waits mostly for its
device, or is CPU work (model.simulate's ledger tells). The structural error (sd of
log time that no parameter explains) is measured out of sample on the calibration's
own cells (leave-one-cell-out), per regime: pooled over every cell, the worst regime
(a docker write outrunning its dirty limit) would set every interval's width. Within a
regime the scale is robust (1.4826 x the median |error|, the sd for normal errors): on a
shared machine one cell measured while a neighbour ran a benchmark is off by 3x, and a
root-mean-square would let that one cell set every interval of its regime. A regime's
scale is shrunk towards the other regimes' (a random-effects mean of their log scales:
a thin regime most), so that one lucky cell cannot make an interval narrow and a quiet
regime is not given a noisy one's width; a regime no cell measured takes the pooled value.

  regime(env, op, device_share) -> str
  regime_spreads(residuals, regimes, within=False) -> {regime: {"log_sd", "n", "df"}, POOLED: ...}
  unshared(base, fix) -> (u_base, u_fix) shares of each cell's time the other does not have
  ratio_log_sd(within_sd, u_base, u_fix) -> log sd of a ratio of two cells of one regime
  interval(pred, var_params, log_sd, df) -> (low, high)      95%, Student t
  coverage(measured, low, high) -> share inside
"""

import math

import numpy as np
from scipy import stats as _st

POOLED = "pooled"
SHRINK = 3.0               # pseudo-cells added to each regime's df (its scale is shrunk, not known)
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


def regime_spreads(residuals, regimes, within: bool = False) -> dict:
    """Per-regime robust sd of out-of-sample log errors, shrunk towards the other regimes'.

    Shrinkage is on the log of the scale, as a random-effects mean (DerSimonian and Laird):
    each regime's log sd is pulled towards the regimes' common mean by its sampling
    variance (a MAD from k cells: about 1.35/k in log) against the spread between
    regimes. A thin regime is pulled most, so one lucky cell cannot make an interval
    narrow; a well-measured quiet regime (hvt here, 9 cells at 0.10) keeps its scale
    rather than taking the noisy ones' (qemu under TCG at 0.67), which a pooled target
    would give it. df: the regime's cells plus SHRINK pseudo-cells, as before.

    within: the spread of each regime's errors around the regime's own median error (the
    level it is off by, which a cell shares with every cell of its regime): what a ratio
    of two cells of one regime is left with, since that level cancels in it (see
    ratio_log_sd)."""
    e = np.asarray(residuals, float)
    regimes = list(regimes)
    if within:
        e = e.copy()
        for r in dict.fromkeys(regimes):
            idx = [i for i, x in enumerate(regimes) if x == r]
            e[idx] -= np.median(e[idx])
    n = len(e)
    pooled = robust_sd(e)
    out = {POOLED: {"log_sd": pooled, "n": n, "df": max(1, n - 1)}}
    own = {}
    for r in dict.fromkeys(regimes):
        mine = e[[i for i, x in enumerate(regimes) if x == r]]
        own[r] = (math.log(max(robust_sd(mine), SD_FLOOR)), LOG_MAD_VAR / len(mine), len(mine))
    # the regimes' common scale from those measured by a few cells (a lone cell's |error|,
    # 0 when the fit went through it, would be an outlier of the log scales)
    enough = [(lv, v) for lv, v, k in own.values() if k >= MIN_CELLS]
    mu, tau2 = _between_regimes(enough if len(enough) >= 2 else [(lv, v) for lv, v, _ in own.values()], pooled)
    for r, (lv, v, k) in own.items():
        shrunk = mu + tau2 / (tau2 + v) * (lv - mu)
        if k < MIN_CELLS:            # too few cells to be credited narrower than the common scale
            shrunk = max(shrunk, mu)
        out[r] = {"log_sd": math.exp(shrunk), "n": k, "df": max(1, int(round(k + SHRINK)) - 1)}
    return out


MIN_CELLS = 3
# Var(log MAD-based sd) from k normal errors: 1 / (2 x 0.37 k), 0.37 the MAD's efficiency.
LOG_MAD_VAR = 1.35
# The smallest scale a regime is credited with (1% in log): a lone cell fitted exactly
# says nothing about the next one.
SD_FLOOR = 0.01


def _between_regimes(regimes: list[tuple[float, float]], pooled: float) -> tuple[float, float]:
    """(mean, between-regime variance) of the regimes' log sds, DerSimonian-Laird; with
    fewer than two regimes, the pooled scale and no between-regime spread."""
    if len(regimes) < 2:
        return math.log(max(pooled, SD_FLOOR)), 0.0
    lv = np.array([x for x, _ in regimes])
    w = 1.0 / np.array([v for _, v in regimes])
    mean_fixed = float(np.sum(w * lv) / np.sum(w))
    q = float(np.sum(w * (lv - mean_fixed) ** 2))
    c = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    tau2 = max(0.0, (q - (len(regimes) - 1)) / c) if c > 0 else 0.0
    wr = 1.0 / (np.array([v for _, v in regimes]) + tau2)
    return float(np.sum(wr * lv) / np.sum(wr)), tau2


def unshared(base: dict, fix: dict) -> tuple[float, float]:
    """(u_base, u_fix): the share of each cell's modelled time that the other cell does not
    spend on the same cost (base, fix: {cost: seconds per op}, e.g. a ledger's parameter
    times its count, the device, the waits). What both spend alike is one computation of
    the model, off by the same amount in both, and cancels in their ratio; what the fix
    changed is where the ratio can be wrong. A fix that changes nothing gives (0, 0), one
    that shares nothing (1, 1)."""
    tb, tf = sum(base.values()), sum(fix.values())
    if not (tb > 0 and tf > 0):
        return 1.0, 1.0
    same = sum(min(base.get(k, 0.0), fix.get(k, 0.0)) for k in set(base) | set(fix))
    return max(0.0, 1 - same / tb), max(0.0, 1 - same / tf)


def ratio_log_sd(within_sd: float, u_base: float = 1.0, u_fix: float = 1.0) -> float:
    """The structural error of a ratio of two cells of one regime: each cell's own error
    around the regime's level, carried by the part of its time the other cell does not
    share (unshared), the two independent; the level cancels, and so does what both cells
    spend alike. Two cells sharing nothing: sqrt 2 x within_sd. A fix is measured beside
    its baseline, so a level error of the calibration campaign (measured at another
    time, under another load) cancels too."""
    return within_sd * math.sqrt(u_base ** 2 + u_fix ** 2)


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
