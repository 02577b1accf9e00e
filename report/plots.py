"""The report's plots, as PNG bytes (matplotlib's Agg canvas, no pyplot global state)."""

import contextlib
import contextvars
import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from edgeio.units import format_size, format_time

DPI = 100
# What every plot must say about where its figures come from (the machine, and whether its
# figures are an emulator's or a software KVM's): set for a whole report by `noted`.
_NOTE = contextvars.ContextVar("edgeio_plot_note", default="")


@contextlib.contextmanager
def noted(text: str):
    """Every PNG made inside carries `text` under its title (the machine and its caveats)."""
    token = _NOTE.set(text)
    try:
        yield
    finally:
        _NOTE.reset(token)
_time_axis = FuncFormatter(lambda y, _pos: format_time(y, 2) if y > 0 else "")


def _minor_label(y, _pos=None) -> str:
    """Label the 2x and 5x minor ticks of a log axis, so a short span still reads."""
    if y <= 0:
        return ""
    mantissa = round(y / 10 ** math.floor(math.log10(y)), 6)
    return format_time(y, 2) if mantissa in (2.0, 5.0) else ""


_minor_time_axis = FuncFormatter(_minor_label)


def _time_y(ax, axis: str = "y") -> None:
    """Time labels on a log axis; minor ticks labelled only when it spans under a decade."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    a.set_major_formatter(_time_axis)
    span = hi / lo if lo > 0 else math.inf
    minor = _time_axis if span < 10 else _minor_time_axis if span < 300 else NullFormatter()
    # Two significant digits can print one label on several ticks ("15 ms" four times):
    # label minor ticks only where every label differs from the others and the major ones.
    ticks = [t for t in list(a.get_majorticklocs()) + list(a.get_minorticklocs()) if lo <= t <= hi and t > 0]
    labels = [format_time(t, 2) for t in ticks]
    if len(set(labels)) < len(labels):
        minor = NullFormatter()
    a.set_minor_formatter(minor)


def _png(fig: Figure) -> bytes:
    note = _NOTE.get()
    if note:
        title = fig._suptitle.get_text() if fig._suptitle is not None else ""
        fig.suptitle(f"{title}\n{note}" if title else note, fontsize=9 if not title else 10,
                     color="0.25")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _grid(n: int, width: float = 4.2, height: float = 3.4, max_cols: int = 3):
    cols = min(max_cols, max(1, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _panel_title(size: int, op: str) -> str:
    return f"{op}, {format_size(int(size))}"


def env_color(env: str) -> str:
    """The same colour for an environment in every plot of every report."""
    from report.data import ENV_ORDER
    i = ENV_ORDER.index(env) if env in ENV_ORDER else len(ENV_ORDER) + sum(map(ord, env)) % 5
    return f"C{i % 10}"


def _series_style(df, series):
    """A colour per environment (as in every plot) and a marker per source."""
    first = df.drop_duplicates("series").set_index("series")
    sources = list(dict.fromkeys(first.loc[series, "source"]))
    colors = {s: env_color(first.at[s, "env"]) for s in series}
    markers = {s: "osD^v<>"[sources.index(first.at[s, "source"]) % 7] for s in series}
    return colors, markers


def time_per_op(df, panels, series) -> bytes:
    """Mean time per op per series on a log scale, 95% CI as error bars; a panel per (size, op)."""
    fig, axes = _grid(len(panels))
    colors, markers = _series_style(df, series)
    for ax, (size, op) in zip(axes, panels):
        cells = df[(df["size_bytes"] == size) & (df["op"] == op)]
        labels = [s for s in series if s in set(cells["series"])]
        for x, s in enumerate(labels):
            row = cells[cells["series"] == s].iloc[0]
            mean, lo, hi = row["mean_per_op_s"], row.get("ci95_low_s"), row.get("ci95_high_s")
            yerr = None
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                yerr = [[max(mean - max(lo, mean * 1e-3), 0)], [max(hi - mean, 0)]]
            ax.errorbar([x], [mean], yerr=yerr, fmt=markers[s], color=colors[s], capsize=4, markersize=6)
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        _time_y(ax)
        ax.set_title(_panel_title(size, op), fontsize=10)
        ax.set_ylabel("time per op")
        ax.grid(True, which="major", axis="y", alpha=0.3)
    with_ci = df[["ci95_low_s", "ci95_high_s"]].notna().all(axis=1).any() if "ci95_low_s" in df else False
    fig.suptitle("Mean time per operation" + (" (95% CI)" if with_ci else ""), fontsize=11)
    return _png(fig)


def distributions(samples, panels, series) -> bytes:
    """Per-batch time per op: a box per series with every batch drawn as a jittered dot."""
    fig, axes = _grid(len(panels))
    colors, _ = _series_style(samples, [s for s in series if s in set(samples["series"])])
    rng = np.random.default_rng(0)
    for ax, (size, op) in zip(axes, panels):
        cells = samples[(samples["size_bytes"] == size) & (samples["op"] == op)]
        labels = [s for s in series if s in set(cells["series"])]
        data = [cells.loc[cells["series"] == s, "per_op_s"].to_numpy(float) for s in labels]
        if data:
            ax.boxplot(data, positions=range(len(labels)), widths=0.5, showfliers=False)
            for x, values in enumerate(data):
                ax.plot(x + rng.uniform(-0.15, 0.15, values.size), values, ".",
                        color=colors[labels[x]], alpha=0.5, markersize=4)
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        _time_y(ax)
        ax.set_title(_panel_title(size, op), fontsize=10)
        ax.set_ylabel("time per op (per batch)")
        ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.suptitle("Distribution of batch samples", fontsize=11)
    return _png(fig)


def measured_vs_modelled(fit) -> bytes:
    """Left: modelled against measured, log-log, the diagonal a perfect fit, each point
    labelled with its relative error. Right: the relative error of every cell, readable
    where the points of the left panel crowd."""
    fig = Figure(figsize=(14, max(7.0, 0.22 * len(fit))), layout="constrained")
    ax, bars = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    envs = list(dict.fromkeys(fit["env"]))
    colors = {env: env_color(env) for env in envs}
    for env in envs:
        rows = fit[fit["env"] == env]
        ax.plot(rows["measured_s"], rows["modelled_s"], "o", color=colors[env], label=env)
        for r in rows.itertuples():
            ax.annotate(f"{r.rel_error:+.0%}", (r.measured_s, r.modelled_s), fontsize=7,
                        xytext=(4, -3), textcoords="offset points")
    values = np.concatenate([fit["measured_s"].to_numpy(float), fit["modelled_s"].to_numpy(float)])
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = (values.min() / 2, values.max() * 2) if values.size else (1e-6, 1.0)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="modelled = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    _time_y(ax, "x")
    _time_y(ax, "y")
    ax.set_xlabel("measured time per op")
    ax.set_ylabel("modelled time per op")
    ax.set_title("Measured vs modelled (labels: relative error)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")

    labels = [f"{r.env} {format_size(int(r.size_bytes))} {r.op}" for r in fit.itertuples()]
    y = np.arange(len(fit))[::-1]
    err = fit["rel_error"].to_numpy(float) * 100
    bars.barh(y, err, color=[colors[e] for e in fit["env"]])
    for yi, e in zip(y, err):
        bars.annotate(f"{e:+.1f}%", (e, yi), fontsize=7, va="center",
                      xytext=(3 if e >= 0 else -3, 0), textcoords="offset points",
                      ha="left" if e >= 0 else "right")
    bars.axvline(0, color="k", lw=1)
    bars.axvspan(-10, 10, color="0.9", zorder=0, label="±10%")
    bars.set_yticks(y, labels, fontsize=7)
    bars.margins(x=0.15)
    bars.set_xlabel("relative error of the model (%)")
    bars.set_title("Relative error per cell", fontsize=10)
    bars.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def whatif(pred, param: str, panels, linux_levels: dict, numeric: bool, loglog: bool,
           values_order: list | None = None, sizes: bool = False) -> bytes:
    """Predicted time per op against a scenario parameter, a panel per (size, op).

    Lines per environment with the 95% prediction interval shaded, the environment's
    calibrated baseline dashed, and the linux level (the native figure) dotted black.
    """
    fig, axes = _grid(len(panels), width=4.8, height=3.8)
    for ax, (size, op) in zip(axes, panels):
        cells = pred[(pred["size_bytes"] == size) & (pred["op"] == op)]
        for i, env in enumerate(dict.fromkeys(cells["env"])):
            rows = cells[cells["env"] == env]
            if numeric:
                rows = rows.sort_values("sweep_value")
                x = rows["sweep_value"].astype(float).to_numpy()
            else:
                order = values_order or list(dict.fromkeys(rows["sweep_value"]))
                rows = rows.assign(_pos=[order.index(v) for v in rows["sweep_value"]]).sort_values("_pos")
                x = rows["_pos"].to_numpy(float)
            y = rows["predicted_s"].to_numpy(float)
            low, high = rows["pi95_low_s"].to_numpy(float), rows["pi95_high_s"].to_numpy(float)
            color = env_color(env)
            if numeric:
                ax.plot(x, y, "o-", color=color, label=f"{env} predicted", markersize=4)
                ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)
            else:   # categories: no line between them; the interval as error bars
                ax.errorbar(x + 0.08 * i, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)],
                            fmt="o", color=color, capsize=4, label=f"{env} predicted")
            base = rows["baseline_s"].iloc[0]
            ax.axhline(base, color=color, ls="--", lw=1, label=f"{env} baseline")
        level = linux_levels.get((size, op))
        if level is not None and np.isfinite(level):
            ax.axhline(level, color="k", ls=":", lw=1.5, label="linux")
        ax.set_yscale("log")
        if numeric and loglog:
            ax.set_xscale("log", base=2)
        if numeric and sizes:       # byte counts: ticks at the swept values, in KiB/MiB/GiB
            ticks = sorted({float(v) for v in values_order or []})
            ax.set_xticks(ticks, [format_size(int(v)) for v in ticks], fontsize=7, rotation=30)
            ax.xaxis.set_minor_formatter(NullFormatter())
        if not numeric:
            order = values_order or list(dict.fromkeys(cells["sweep_value"]))
            ax.set_xticks(range(len(order)), [str(v) for v in order], fontsize=8)
        _time_y(ax)
        ax.set_xlabel(param)
        ax.set_ylabel("time per op")
        ax.set_title(_panel_title(size, op), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    _figure_legend(fig, axes)
    return _png(fig)


def _figure_legend(fig, axes) -> None:
    """One legend under all panels (a legend per panel placed "best" costs seconds)."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                   ncols=min(len(seen), 6), fontsize=8)


def verdict(designs, workloads, large: dict) -> bytes:
    """Ratio to native per design, a panel per workload, log x; 1x (native) a black line.

    Environments as measured are solid bars with their 95% CI; fixes as predicted are
    hatched bars with their 95% prediction interval; a fix measured by a verify campaign
    is a black diamond."""
    shown = [d for d in designs if d.kind != "native"]
    fig, axes = _grid(len(workloads), width=4.6, height=max(2.6, 0.34 * len(shown) + 1.2))
    for ax, wl in zip(axes, workloads):
        labels = []
        for y, d in enumerate(reversed(shown)):
            labels.append(d.label if len(d.label) <= 34 else d.label[:33] + "…")
            c = d.cells.get(wl)
            if c is None or not np.isfinite(c.get("ratio", math.nan)):
                if c is not None and np.isfinite(c.get("measured", math.nan)):
                    ax.plot([c["measured"]], [y], "D", color="k", ms=5)
                continue
            r, lo, hi = c["ratio"], c.get("low", math.nan), c.get("high", math.nan)
            err = None
            if np.isfinite(lo) and np.isfinite(hi):
                err = [[max(r - lo, 0)], [max(hi - r, 0)]]
            color = env_color(d.env)
            ax.barh(y, r, color=color, alpha=0.35 if d.kind == "fix" else 0.85,
                    hatch="//" if d.kind == "fix" else None, edgecolor=color, xerr=err,
                    error_kw={"ecolor": "0.2", "capsize": 3, "lw": 1})
            from report.verdict import format_ratio
            ax.annotate(format_ratio(r, 2), (hi if np.isfinite(hi) else r, y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7)
            if np.isfinite(c.get("measured", math.nan)):
                ax.plot([c["measured"]], [y], "D", color="k", ms=5)
        ax.axvline(1.0, color="k", lw=1.2)
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("ratio to native (log; 1× = native)", fontsize=8)
        size, op = wl
        ax.set_title(f"{op}, {format_size(int(size))}" + (" (large file)" if large.get(wl) else ""), fontsize=10)
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.margins(x=0.25)
    fig.suptitle("Ratio to native per workload", fontsize=11)
    return _png(fig)
