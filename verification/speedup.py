"""The speed-up a user sees (baseline / fix, measured beside each other in one run) and its
direction: pure functions.

A ratio measured in one run is immune to what drifted on the machine since the
calibration campaign (the load of a shared host); absolute levels are not, so a verify
is judged on the speed-up first and on absolute error beside it.
"""

import math

# A change smaller than this is "the same": the noise of a shared machine between two
# interleaved cells, and the margin issue 18 judges a wrong direction by.
SAME_MARGIN = 0.10


def predicted_ratio(base: tuple, fix: tuple) -> tuple[float, float, float]:
    """(ratio, low, high) of the predicted speed-up from the two cells' (predicted, low, high).

    Each cell's 95% interval is symmetric in log time (model.predict); the ratio's is taken
    with the two cells' log errors as independent: where they share a cause (the same
    fitted parameters), the true interval is narrower, so this one errs wide, never narrow."""
    (pb, lb, hb), (pf, lf, hf) = base, fix
    if not (pb > 0 and pf > 0):
        return math.nan, math.nan, math.nan
    r = pb / pf
    half = math.sqrt(_half_log(lb, hb) ** 2 + _half_log(lf, hf) ** 2)
    if not math.isfinite(half):
        return r, math.nan, math.nan
    return r, r * math.exp(-half), r * math.exp(half)


def expected_interval(ratio: float, low: float, high: float, measured_low: float, measured_high: float) -> tuple[float, float]:
    """Where a measured speed-up is expected to fall: the model's 95% interval of the true
    ratio (ratio, low, high), widened by the measurement's own 95% CI in quadrature (in
    log). The model's interval is about the code; a ratio measured in one run adds its
    batches' and boots' luck, which can be told only once it ran (a quiet ratio of two
    unchanged cells varies by 1-2% here, a loaded one by 5-10%), so a prediction is judged
    against what it and that measurement can tell apart. Without a measured CI: the
    model's interval."""
    hm = _half_log(measured_low, measured_high)
    if not (math.isfinite(hm) and ratio > 0):
        return low, high
    half = math.sqrt(_half_log(low, high) ** 2 + hm ** 2)
    if not math.isfinite(half):
        return low, high
    return ratio * math.exp(-half), ratio * math.exp(half)


def judge(ratio: float, low: float, high: float, measured: float, measured_low: float,
          measured_high: float) -> tuple[float, float, bool, str, str]:
    """(expected low, expected high, inside, predicted direction, measured direction) of a
    predicted speed-up (ratio, its 95% interval) against a measured one (with its CI): the
    measured ratio inside the expected interval, and each direction one its own interval
    holds."""
    elo, ehi = expected_interval(ratio, low, high, measured_low, measured_high)
    return (elo, ehi, bool(elo <= measured <= ehi), direction(ratio, low, high),
            direction(measured, measured_low, measured_high))


def _half_log(low, high) -> float:
    if not (low > 0 and high > 0):
        return math.nan
    return (math.log(high) - math.log(low)) / 2


def direction(ratio: float, low: float = math.nan, high: float = math.nan) -> str:
    """faster / slower / same for a speed-up (baseline / fix): a change beyond SAME_MARGIN,
    and, where the ratio has an interval, one that excludes no change at all."""
    if not math.isfinite(ratio):
        return ""
    if ratio >= 1 + SAME_MARGIN and not low <= 1:
        return "faster"
    if ratio <= 1 / (1 + SAME_MARGIN) and not high >= 1:
        return "slower"
    return "same"


def wrong_way(predicted: str, measured: str) -> bool:
    """Predicted faster and measured slower, or the reverse (issue 18's "wrong direction")."""
    return {predicted, measured} == {"faster", "slower"}
