"""Plot of a verify campaign: the predicted band against the measured points."""

import numpy as np
from matplotlib.figure import Figure

from edgeio.units import format_size
from report.plots import _png, _time_y, env_color


def predicted_vs_measured(comp, scenario: str) -> bytes:
    """One column per cell: the 95% prediction interval as a shaded bar with the point
    prediction (x), the measured mean (o) with its 95% CI; log y if the cells span a decade."""
    n = len(comp)
    fig = Figure(figsize=(max(6.0, 0.9 * n + 2), 4.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    roles = comp["role"].astype(str).tolist() if "role" in comp else [""] * n
    colors = [("0.55" if role == "baseline" else env_color(env)) for env, role in zip(comp["env"], roles)]
    low, high = comp["low_s"].to_numpy(float), comp["high_s"].to_numpy(float)
    pred, meas = comp["predicted_s"].to_numpy(float), comp["measured_s"].to_numpy(float)
    clo, chi = comp["ci95_low_s"].to_numpy(float), comp["ci95_high_s"].to_numpy(float)
    ax.bar(x, high - low, bottom=low, width=0.6, color=colors, alpha=0.3, label="predicted 95% interval")
    ax.plot(x, pred, "x", color="k", ms=8, label="predicted")
    yerr = np.vstack([np.clip(meas - clo, 0, None), np.clip(chi - meas, 0, None)])
    ax.errorbar(x, meas, yerr=yerr, fmt="o", color="C3", capsize=4, label="measured (95% CI)")
    values = np.concatenate([low, high, meas, clo, chi])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() > 10:
        ax.set_yscale("log")
        _time_y(ax)
    else:
        from report.plots import _time_axis
        ax.yaxis.set_major_formatter(_time_axis)
        ax.set_ylim(bottom=0)
    labels = [f"{format_size(int(s))}\n{op}\n{role}" for s, op, role in zip(comp["size_bytes"], comp["op"], roles)]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("time per op")
    ax.set_title(f"{scenario}: predicted before measured", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
