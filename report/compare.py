"""Comparing two sets of batches: ratio of mean time per op with a 95% CI, and tests.

Pure functions on arrays. The figure compared is the study's: total seconds over
total repetitions. Its interval comes from a percentile bootstrap that resamples
whole batches of each side independently (batches are the independent units; the
repetitions inside a batch are not). The tests compare per-batch per-op values:
Mann-Whitney (no normality assumed; the headline) and Welch's t (for reference).
"""

import math
import warnings

import numpy as np
from scipy import stats as _st

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 4000
MIN_BATCHES = 3   # below this on either side, no interval and no test is meaningful


def ratio_of_means(seconds_a, reps_a, seconds_b, reps_b) -> float:
    """(mean per op of B) / (mean per op of A)."""
    a = np.sum(seconds_a) / np.sum(reps_a)
    b = np.sum(seconds_b) / np.sum(reps_b)
    return float(b / a) if a > 0 else math.nan


def bootstrap_ratio_ci(seconds_a, reps_a, seconds_b, reps_b, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ratio_of_means, resampling batches of each side."""
    sa, ra = np.asarray(seconds_a, float), np.asarray(reps_a, float)
    sb, rb = np.asarray(seconds_b, float), np.asarray(reps_b, float)
    if min(sa.size, sb.size) < MIN_BATCHES:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, sa.size, size=(resamples, sa.size))
    ib = rng.integers(0, sb.size, size=(resamples, sb.size))
    mean_a = sa[ia].sum(axis=1) / ra[ia].sum(axis=1)
    mean_b = sb[ib].sum(axis=1) / rb[ib].sum(axis=1)
    ratios = mean_b / mean_a
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def significance(per_op_a, per_op_b) -> dict:
    """Two-sided Mann-Whitney U and Welch t p-values on per-batch per-op values."""
    a, b = np.asarray(per_op_a, float), np.asarray(per_op_b, float)
    if min(a.size, b.size) < MIN_BATCHES:
        return {"mannwhitney_p": math.nan, "welch_p": math.nan}
    mw = _st.mannwhitneyu(a, b, alternative="two-sided")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        welch = 0.0 if a[0] != b[0] else 1.0     # t is undefined with no spread at all
    else:
        with warnings.catch_warnings():   # near-constant samples: scipy warns, p is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            welch = float(_st.ttest_ind(a, b, equal_var=False).pvalue)
    return {"mannwhitney_p": float(mw.pvalue), "welch_p": welch}


def compare(seconds_a, reps_a, seconds_b, reps_b, seed: int = 0) -> dict:
    """Everything a comparison row shows: ratio B/A, its 95% CI, the tests, a verdict.

    `significant` is True/False from Mann-Whitney at ALPHA, or None when either side
    has fewer than MIN_BATCHES batches (or none: published means only).
    """
    sa, ra = np.asarray(seconds_a, float), np.asarray(reps_a, float)
    sb, rb = np.asarray(seconds_b, float), np.asarray(reps_b, float)
    ratio = ratio_of_means(sa, ra, sb, rb) if sa.size and sb.size else math.nan
    low, high = bootstrap_ratio_ci(sa, ra, sb, rb, seed=seed)
    tests = significance(sa / ra if sa.size else sa, sb / rb if sb.size else sb)
    p = tests["mannwhitney_p"]
    return {
        "ratio": ratio, "ci95_low": low, "ci95_high": high, **tests,
        "n_a": int(sa.size), "n_b": int(sb.size),
        "significant": None if math.isnan(p) else bool(p < ALPHA),
    }
