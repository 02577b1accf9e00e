"""Statistics on batch samples: pure functions, no I/O."""

import math

import numpy as np
from scipy import stats as _st

# pyperf warns above 10% relative standard deviation; we do the same.
CV_WARN = 0.10
# An outlier lies more than this many scaled MADs from the median (Hampel filter).
OUTLIER_MADS = 3.0


def per_op(seconds, repetitions) -> np.ndarray:
    return np.asarray(seconds, float) / np.asarray(repetitions, float)


def mean_per_op(seconds, repetitions) -> float:
    """The study's figure: total time over total repetitions."""
    return float(np.sum(seconds) / np.sum(repetitions))


def ci95_halfwidth(values) -> float:
    """Half-width of the Student-t 95% interval of the mean of `values`."""
    v = np.asarray(values, float)
    if v.size < 2:
        return math.nan
    return float(_st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def mad(values) -> float:
    """Median absolute deviation, scaled to estimate a standard deviation."""
    v = np.asarray(values, float)
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else math.nan


# Resamples for the bootstrap interval; fixed seed so a summary is reproducible.
BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci95(seconds, repetitions, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of total time / total repetitions, over batches.

    Batch times on a shared machine are heavy-tailed (a stray slow batch): a Student-t
    interval can then reach below zero, a bootstrap of the ratio cannot.
    """
    sec = np.asarray(seconds, float)
    reps = np.asarray(repetitions, float)
    if sec.size < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(0).integers(0, sec.size, size=(resamples, sec.size))
    ratios = sec[idx].sum(axis=1) / reps[idx].sum(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def median_ci95(values) -> tuple[float, float]:
    """Distribution-free 95% interval of the median: the order statistics whose ranks
    bracket n/2 with binomial(n, 1/2) probability >= 95% (no assumption on the tails,
    which a shared machine makes heavy). Fewer than 6 values cannot give one."""
    v = np.sort(np.asarray(values, float))
    n = v.size
    if n < 6:
        return math.nan, math.nan
    # The largest k with P(X <= k-1) <= 2.5%, X ~ binomial(n, 1/2): then the median
    # lies between the k-th smallest and the k-th largest with probability >= 95%.
    k = max(int(_st.binom.ppf(0.025, n, 0.5)), 1)
    while _st.binom.cdf(k, n, 0.5) <= 0.025:
        k += 1
    while k > 1 and _st.binom.cdf(k - 1, n, 0.5) > 0.025:
        k -= 1
    return float(v[k - 1]), float(v[n - k])


def summarize(seconds, repetitions) -> dict:
    """Summary of one cell from its batches (seconds per batch, repetitions per batch)."""
    values = per_op(seconds, repetitions)
    mean = mean_per_op(seconds, repetitions)
    low, high = bootstrap_ci95(seconds, repetitions)
    med_low, med_high = median_ci95(values)
    sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
    cv = sd / float(values.mean()) if values.size > 1 and values.mean() > 0 else math.nan
    return {
        "n_batches": int(values.size),
        "repetitions": int(np.sum(repetitions)),
        "mean_per_op_s": mean,
        "median_per_op_s": float(np.median(values)) if values.size else math.nan,
        "mad_per_op_s": mad(values),
        "ci95_low_s": low,
        "ci95_high_s": high,
        "median_ci95_low_s": med_low,
        "median_ci95_high_s": med_high,
        "cv": cv,
        "warnings": "; ".join(stability_warnings(values)),
    }


def stability_warnings(values) -> list[str]:
    """pyperf-style warnings: unstable (high CV) and outliers by MAD."""
    v = np.asarray(values, float)
    out = []
    if v.size < 2:
        return ["fewer than 2 batches: no interval"] if v.size else ["no samples"]
    cv = v.std(ddof=1) / v.mean() if v.mean() > 0 else 0.0
    if cv > CV_WARN:
        out.append(f"unstable: coefficient of variation {cv:.0%} > {CV_WARN:.0%}")
    m = mad(v)
    if m > 0:
        n_out = int(np.sum(np.abs(v - np.median(v)) > OUTLIER_MADS * m))
        if n_out:
            out.append(f"{n_out} of {v.size} batches are outliers (> {OUTLIER_MADS:g} MAD)")
    return out


def ratio_of_medians_ci95(numerator, denominator, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of median(numerator) / median(denominator), two
    independent samples (e.g. a baseline's and a fix's per-op times over their batches),
    each resampled on its own. Fewer than 6 values on either side: (nan, nan), as
    median_ci95 (an interval from so few batches means nothing)."""
    return _ratio_bootstrap_ci95(numerator, denominator, np.median, resamples)


def ratio_of_minima_ci95(numerator, denominator, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """As ratio_of_medians_ci95, of min(numerator) / min(denominator): the fastest batch
    of each sample. A resampled minimum is never below the sample's, so the interval is
    lopsided and says little on its own; across rounds (ratio_across_runs_ci95 of each
    round's minimum) is the spread that counts."""
    return _ratio_bootstrap_ci95(numerator, denominator, np.min, resamples)


def _ratio_bootstrap_ci95(numerator, denominator, statistic, resamples: int) -> tuple[float, float]:
    a, b = np.asarray(numerator, float), np.asarray(denominator, float)
    if a.size < 6 or b.size < 6:
        return math.nan, math.nan
    rng = np.random.default_rng(0)
    ma = statistic(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    mb = statistic(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    low, high = np.percentile(ma / mb, [2.5, 97.5])
    return float(low), float(high)


def ratio_across_runs_ci95(numerators, denominators) -> tuple[float, float]:
    """Student-t 95% interval of a ratio measured in several paired runs (round r's
    numerator median over round r's denominator median, e.g. a baseline's and a fix's,
    each run a fresh process or boot): the geometric mean of the per-run ratios +-
    t_{n-1} x their log sd / sqrt(n). What batches inside one boot cannot show, the
    boot-to-boot spread (a TCG guest's cached read differs by 0.8-1.3x from one boot to
    the next here), is what this interval holds. Fewer than 2 runs: (nan, nan)."""
    a, b = np.asarray(numerators, float), np.asarray(denominators, float)
    n = min(a.size, b.size)
    if n < 2 or not (np.all(a[:n] > 0) and np.all(b[:n] > 0)):
        return math.nan, math.nan
    r = np.log(a[:n] / b[:n])
    half = float(_st.t.ppf(0.975, n - 1) * r.std(ddof=1) / math.sqrt(n))
    centre = float(r.mean())
    return math.exp(centre - half), math.exp(centre + half)
