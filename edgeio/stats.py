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


def summarize(seconds, repetitions) -> dict:
    """Summary of one cell from its batches (seconds per batch, repetitions per batch)."""
    values = per_op(seconds, repetitions)
    mean = mean_per_op(seconds, repetitions)
    low, high = bootstrap_ci95(seconds, repetitions)
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


def speedups(comparison):
    """Each fix row of a verify comparison (edgeio/commands/verify.py) against the baseline
    row measured beside it (same env, size_bytes, op): predicted and measured speed-up
    (baseline / fix) and the relative error of the predicted one. A ratio measured in one
    run is immune to what drifted on the machine since the calibration campaign (the load
    of a shared host); absolute levels are not."""
    keys = ["env", "size_bytes", "op"]
    base = comparison[comparison["role"] == "baseline"]
    m = comparison[comparison["role"] == "fix"].merge(base, on=keys, suffixes=("", "_base"))
    out = m[keys + ["config"]].copy()
    out["predicted_speedup"] = m["predicted_s_base"] / m["predicted_s"]
    out["measured_speedup"] = m["measured_s_base"] / m["measured_s"]
    out["rel_error"] = out["predicted_speedup"] / out["measured_speedup"] - 1
    return out.reset_index(drop=True)
