"""Drift: has the baseline moved since the calibration campaign measured it? Pure functions.

A prediction is anchored on the calibration campaign's levels; if the machine is slower
or faster today (load, thermal state, another kernel), every absolute prediction is off
by that factor while the speed-up is not. The check compares the baseline measured now
with the calibration campaign's same cell, each with its 95% interval.
"""

import math

# Moved means: the interval of the ratio now / then lies wholly beyond this change. Two
# campaigns on one shared machine differ by a few percent with nothing wrong; a 100-batch
# median's interval is narrower than that, so an interval alone would cry wolf each run.
DRIFT_MARGIN = 0.10


def drift(now: tuple, then: tuple, margin: float = DRIFT_MARGIN) -> dict:
    """now, then: (median, ci95_low, ci95_high) of the baseline measured now and in the
    calibration campaign (a missing interval counts as the point). Returns ratio (now /
    then), its conservative interval [now_low / then_high, now_high / then_low], and
    drifted: the whole interval beyond 1 +- margin. No reference: ratio nan, not drifted."""
    m, lo, hi = (_f(x) for x in now)
    r, rlo, rhi = (_f(x) for x in then)
    if not (m > 0 and r > 0):
        return {"ratio": math.nan, "ratio_low": math.nan, "ratio_high": math.nan, "drifted": False}
    lo, hi = (lo if lo > 0 else m), (hi if hi > 0 else m)
    rlo, rhi = (rlo if rlo > 0 else r), (rhi if rhi > 0 else r)
    low, high = lo / rhi, hi / rlo
    return {"ratio": m / r, "ratio_low": low, "ratio_high": high,
            "drifted": bool(low > 1 + margin or high < 1 / (1 + margin))}


def reanchored(predicted: tuple, predicted_baseline: float, measured_baseline: float) -> tuple:
    """A fix cell's (predicted, low, high) re-anchored on today's baseline:
    prediction x measured_baseline_now / predicted_baseline."""
    pb, mb = _f(predicted_baseline), _f(measured_baseline)
    if not (pb > 0 and mb > 0):
        return (math.nan,) * 3
    return tuple(_f(x) * mb / pb for x in predicted)


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
