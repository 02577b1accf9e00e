"""Assembling the report document from sources, a calibration and the model's scenarios."""

import math

import pandas as pd

from edgeio.units import format_size, format_time
from report import caveats, compare as cmp, data, plots, whatif
from report.document import Cell, Document, Figure, Paragraph, Section, Table, Warnings

_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))

# -- formatting --------------------------------------------------------------------

def unit_for(seconds: float) -> tuple[str, float]:
    """The unit format_time would pick for this value."""
    text = format_time(seconds)
    for unit, factor in _UNITS:
        if text.endswith(" " + unit):
            return unit, factor
    return "s", 1.0


def time_with_ci(mean: float, low: float | None = None, high: float | None = None) -> str:
    """'2.35 ms [2.30, 2.41]': the interval in the mean's unit, so it reads at a glance."""
    text = format_time(mean)
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return text
    unit, factor = unit_for(mean)
    return f"{text} [{_sig3(low / factor)}, {_sig3(high / factor)}]"


def _sig3(x: float) -> str:
    """Three significant digits without an exponent: 0.701, 88.3, 1240."""
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _num(x) -> str:
    return repr(float(x)) if x is not None and not (isinstance(x, float) and math.isnan(x)) else ""


def _caveated_headers(df, series, sources) -> dict:
    """series -> its column header with what qualifies its numbers: 'hvt (software KVM)'."""
    from report.verdict import env_caveats
    by_name = {s.name: s for s in sources}
    out = {}
    for s in series:
        row = df[df["series"] == s].iloc[0]
        src = by_name.get(row["source"])
        if src is None or src.kind != "campaign":
            continue
        cav = env_caveats(src.metadata, src.records, [row["env"]]).get(row["env"], "")
        short = "; ".join(part.split(":")[0] for part in cav.split("; ") if part)
        if short:
            out[s] = f"{s} ({short})"
    return out


def _panels(df) -> list[tuple[int, str]]:
    keys = df[["size_bytes", "op"]].drop_duplicates()
    return sorted(((int(s), o) for s, o in keys.itertuples(index=False)),
                  key=lambda k: (k[0], data.op_rank(k[1])))


# -- sections ----------------------------------------------------------------------

def warnings_section(warnings: list[str]) -> Section:
    """Read first: what makes figures of this report incomparable."""
    return Section("warnings", "Read first", [Warnings(warnings)], attrs={"count": len(warnings)})


def sources_section(sources) -> Section:
    from report import sources as _sources
    return _sources.section(sources)


def measured_section(df, samples, series, sources=()) -> Section:
    sec = Section("measured", "Measured time per operation")
    headers = _caveated_headers(df, series, sources)
    sec.add(Paragraph("Mean time per operation (total time over total repetitions) and its 95% "
                      "confidence interval over batches, in brackets in the same unit. Rows: "
                      "operation at a size; columns: environments (as the study's Tables 2 and 3)."))
    for size in sorted({int(s) for s in df["size_bytes"]}):
        at = df[df["size_bytes"] == size]
        cols = [s for s in series if s in set(at["series"])]
        rows = []
        for op in sorted(set(at["op"]), key=data.op_rank):
            row = [Cell(op, header=True)]
            for s in cols:
                hit = at[(at["op"] == op) & (at["series"] == s)]
                if not len(hit):
                    row.append(Cell("—", {"series": s, "size": size, "op": op, "missing": "yes"}))
                    continue
                r = hit.iloc[0]
                row.append(Cell(time_with_ci(r["mean_per_op_s"], r.get("ci95_low_s"), r.get("ci95_high_s")),
                                {"series": s, "env": r["env"], "source": r["source"], "size": size,
                                 "op": op, "mean": _num(r["mean_per_op_s"]),
                                 "ci-low": _num(r.get("ci95_low_s")), "ci-high": _num(r.get("ci95_high_s"))}))
            rows.append(row)
        sec.add(Table(f"{format_size(size)} per operation", ["op"] + [headers.get(c, c) for c in cols], rows,
                      kind="measured",
                      attrs={"size": size}))
    notes = df[df["warnings"].fillna("").astype(str) != ""] if "warnings" in df else df.iloc[0:0]
    if len(notes):
        rows = [[Cell(r.series), Cell(format_size(int(r.size_bytes))), Cell(r.op), Cell(r.warnings)]
                for r in notes.itertuples()]
        sec.add(Table("Cells with unstable batches", ["series", "size", "op", "note"], rows, kind="notes"))
    panels = _panels(df)
    sec.add(Figure("time-per-op", plots.time_per_op(df, panels, series),
                   "Time per operation per environment, log scale, 95% CI error bars; one panel per "
                   "(size, op).", kind="time-per-op", attrs={"panels": len(panels)}))
    if len(samples):
        sp = _panels(samples)
        sec.add(Figure("distributions", plots.distributions(samples, sp, series),
                       "Distribution of per-batch time per operation per cell (box: quartiles; dots: "
                       "batches).", kind="distributions", attrs={"panels": len(sp)}))
    return sec


def model_section(cal) -> Section:
    sec = Section("model", "Calibration: measured vs modelled")
    sec.add(Paragraph(f"Calibration fitted on: {cal.source}."))
    prior = set(cal.prior_only()) if hasattr(cal, "prior_only") else set()
    rows = []
    for name, p in (cal.params or {}).items():
        value, unit = p.get("value"), str(p.get("unit", ""))
        status = _param_status(name, p, prior)
        low, high = p.get("ci95_low", math.nan), p.get("ci95_high", math.nan)
        ci = ("—" if status.startswith("fixed") else
              f"[{param_value(low, unit)}, {param_value(high, unit)}]")
        meaning = str(p.get("description", "")).split(" [")[0]
        rows.append([Cell(name, {"param": name}, header=True),
                     Cell(param_value(value, unit), {"value": _num(value), "unit": unit}),
                     Cell(ci), Cell(status, {"status": status.split(" ")[0]}), Cell(meaning)])
    sec.add(Paragraph("Values in the units a person reads; the interval is the fit's 95% interval, or the "
                      "prior's where no cell of the results set pins the parameter ('not pinned (prior)': "
                      "the data say nothing about it, and predictions that need it carry the prior's width)."))
    sec.add(Table("Model parameters (95% interval)", ["parameter", "value", "95% interval", "status", "meaning"],
                  rows, kind="params"))
    fit = cal.fit_table
    if fit is not None and len(fit):
        fit = fit.copy()
        rows = [[Cell(r.env, header=True), Cell(format_size(int(r.size_bytes))), Cell(r.op),
                 Cell(format_time(r.measured_s)), Cell(format_time(r.modelled_s)),
                 Cell(f"{r.rel_error:+.1%}", {"env": r.env, "size": int(r.size_bytes), "op": r.op,
                                              "rel-error": _num(r.rel_error)})]
                for r in fit.itertuples()]
        abs_err = fit["rel_error"].abs()
        sec.add(Paragraph(f"Median absolute relative error {abs_err.median():.1%}, largest "
                          f"{abs_err.max():.1%} over {len(fit)} cells."))
        sec.add(Table("Fit per cell", ["env", "size", "op", "measured", "modelled", "relative error"],
                      rows, kind="fit"))
        sec.add(Figure("measured-vs-modelled", plots.measured_vs_modelled(fit),
                       "Modelled against measured time per operation (log-log); points on the "
                       "diagonal are explained exactly; labels give the relative error.",
                       kind="measured-vs-modelled"))
    val = getattr(cal, "validation", None)
    if isinstance(val, pd.DataFrame) and len(val):
        cols = list(val.columns)
        if "kind" in val and "rel_error" in val:
            for kind, g in val.groupby("kind", sort=False):
                a = g["rel_error"].abs()
                sec.add(Paragraph(f"Validation, {kind}: median absolute prediction error {a.median():.1%}, "
                                  f"largest {a.max():.1%} over {len(g)} held-out cells."))
        rows = [[Cell(_fmt_any(c, v)) for c, v in zip(cols, r)] for r in val.itertuples(index=False)]
        sec.add(Table("Validation (held-out prediction errors)", cols, rows, kind="validation"))
    return sec


def _param_status(name: str, p: dict, prior: set) -> str:
    desc = str(p.get("description", ""))
    if desc.endswith("[fixed]") or (p.get("stderr") == 0 and p.get("ci95_low") == p.get("ci95_high")):
        return "fixed (machine fact or Linux default)"
    if name in prior or "[prior" in desc:
        return "not pinned (prior)"
    return "fitted"


def _sig(x: float, digits: int = 3) -> str:
    """Three significant digits, no exponent: 0.0275, 27.5, 388, 1990."""
    from report.verdict import _num
    return _num(x, digits)


def param_value(value, unit: str) -> str:
    """A model parameter in the unit a person reads: 1.5 µs, 28.8 µs/MiB, 388 MB/s, 1.99 GB/s,
    32 MiB, 20%, 1.5×."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "n/a"
    if unit == "s":
        return format_time(v) if v > 0 else "0 s"
    if unit == "s/B":           # per MiB: 2.75e-11 s/B reads as 28.8 µs/MiB
        return (format_time(v * (1 << 20)) if v > 0 else "0 s") + "/MiB"
    if unit == "B/s":
        for name, f in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
            if v >= f:
                return f"{_sig(v / f)} {name}"
        return f"{_sig(v)} B/s"
    if unit == "B":
        if v >= 1 and v == int(v) and int(v) & (int(v) - 1) == 0:
            return format_size(int(v))
        for name, f in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if v >= f:
                return f"{_sig(v / f)} {name}"
        return f"{_sig(v)} B"
    if unit == "fraction":
        return f"{_sig(v * 100)}%"
    if unit == "x":
        return f"{_sig(v)}×"
    return _sig(v)


def _fmt_any(col: str, v) -> str:
    if col == "size_bytes" and isinstance(v, (int, float)) and v == v:
        return format_size(int(v))
    if isinstance(v, float):
        if col.endswith("_s"):
            return format_time(v)
        if "error" in col:
            return f"{v:+.1%}"
        return f"{v:.4g}"
    return str(v)


def speedup_text(r: dict) -> str:
    """'7.2× [3.1, 15]': the speed-up over the calibrated baseline with its 95% interval."""
    from report.verdict import _interval, format_ratio
    low, high = r.get("speedup_low"), r.get("speedup_high")
    return format_ratio(r["speedup"]) + (_interval(low, high) if low is not None else "")


def _held(scenario, param: str) -> str:
    held = {k: v for k, v in scenario.defaults.items() if k != param}
    return ", ".join(f"{k}={v}" for k, v in held.items())


def _baseline_config(cal, envs) -> str:
    """The calibrated configuration of each environment a scenario changes (what 1× means)."""
    import json
    boring = {"env", "cache", "direct", "io_size_bytes", "memory_bytes", "sync", "tender"}
    parts = []
    for env in envs:
        for w in cal.workloads():
            if w["env"] != env:
                continue
            try:
                cfg = json.loads(w.get("config") or "{}") if isinstance(w.get("config"), str) else dict(w.get("config") or {})
            except ValueError:
                cfg = {}
            shown = ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()) if k not in boring)
            parts.append(f"{env}" + (f" ({shown})" if shown else ""))
            break
    return "; ".join(parts)


def _values_text(param, values, all_values) -> str:
    texts = [whatif.format_value(param, v, all_values) for v in values]
    return texts[0] if len(texts) == 1 else f"{texts[0]} … {texts[-1]}"


def whatif_section(cal, scenarios: dict) -> Section:
    sec = Section("whatif", "What-if: the proposed fixes, predicted")
    if not scenarios:
        sec.add(Paragraph("The model package offers no scenarios in this checkout."))
        return sec
    shown = {n: sc for n, sc in scenarios.items() if n != "baseline"}
    sec.add(Paragraph("Each scenario against the calibrated baseline (speed-up 1×): its sweep as a plot "
                      "(baseline dashed, 95% prediction intervals shaded, the linux level dotted), and a "
                      "table of the predictions that differ: consecutive values with the same prediction "
                      "are one row, and values that leave a cell at its baseline are left out. Speed-ups "
                      "carry their 95% interval. Every scenario names the parameters it holds."))
    predicted = whatif.sweep_all(cal, shown)
    for name, scenario in shown.items():
        sub = sec.add(Section(f"whatif-{name}", f"Scenario {name}", level=3,
                              attrs={"scenario": name}))
        desc = getattr(scenario, "description", "")
        if desc:
            sub.add(Paragraph(desc))
        sweeps = predicted[name]
        if isinstance(sweeps, whatif.ScenarioFailed):
            sub.add(Warnings([f"scenario {name} cannot be predicted from this calibration: {sweeps}"],
                             title="Not predicted"))
            continue
        base = _baseline_config(cal, scenario.envs)
        for sw in sweeps:
            held = _held(scenario, sw.param)
            swept = "" if sw.param == whatif.DEFAULTS else f"Sweeps {sw.param}. "
            sub.add(Paragraph(f"{swept}Holds: {held or 'nothing else'}. Baseline (1×): "
                              f"{base or 'the calibrated environments'}."))
            if not len(sw.rows):
                sub.add(Paragraph(f"{sw.param}: no cell changes under this scenario."))
                continue
            panels = _panels(sw.rows)
            levels = whatif.linux_levels(sw.frame, cal)
            if sw.param != whatif.DEFAULTS:
                sub.add(Figure(f"whatif-{name}-{sw.param}", plots.whatif(
                    sw.rows, sw.param, panels, levels, sw.numeric, sw.loglog, sw.values,
                    sizes=whatif.is_size_param(sw.param, sw.values)),
                    f"{name}: predicted time per op against {sw.param}"
                    + (f", holding {held}" if held else "")
                    + (" (log-log)" if sw.numeric and sw.loglog else ""), kind="whatif",
                    attrs={"scenario": name, "param": sw.param}))
            distinct = whatif.distinct_rows(sw.rows, sw.values)
            ops = sorted(set(sw.rows["op"]), key=data.op_rank)
            distinct.sort(key=lambda r: (data.env_rank(r["env"]), r["size_bytes"]))
            rows = []
            for r in distinct:
                values = r["sweep_values"]
                row = [Cell(r["env"], header=True), Cell(format_size(r["size_bytes"])),
                       Cell(_values_text(sw.param, values, sw.values))]
                for op in ops:
                    o = r["ops"].get(op)
                    if o is None:
                        row.append(Cell("—"))
                        continue
                    row.append(Cell(f"{speedup_text(o)} · {time_with_ci(o['predicted_s'], o['pi95_low_s'], o['pi95_high_s'])}",
                                    {"scenario": name, "env": r["env"], "size": r["size_bytes"], "op": op,
                                     "param": sw.param, "value": values[0],
                                     "values": ",".join(str(v) for v in values),
                                     "predicted": _num(o["predicted_s"]), "speedup": _num(o["speedup"])}))
                rows.append(row)
            by = "" if sw.param == whatif.DEFAULTS else f" by {sw.param}"
            hold = f", holding {held}" if held else ""
            if rows:
                sub.add(Table(f"{name}: speed-up over the baseline [95% interval] · predicted time per op "
                              f"[95% prediction interval]{by}{hold}",
                              ["env", "size", sw.param] + ops, rows, kind="whatif",
                              attrs={"scenario": name, "param": sw.param}))
            else:
                sub.add(Paragraph(f"{sw.param}: every prediction stays within {whatif.SAME:.1%} of its baseline."))
    return sec


def _sort_key(col):
    if col.name == "op":
        return col.map(lambda o: data.op_rank(o)[0])
    if col.name == "env":
        return col.map(lambda e: data.env_rank(e)[0])
    return col


def compare_section(rows: list[dict], label_a: str, label_b: str) -> Section:
    sec = Section("compare", f"Comparison: {label_b} / {label_a}",
                  attrs={"a": label_a, "b": label_b})
    sec.add(Paragraph(f"Ratio of mean time per operation, {label_b} over {label_a} (above 1: "
                      f"{label_b} is slower), with a 95% bootstrap interval over batches; "
                      f"p-values of Mann-Whitney U (the verdict, α = {cmp.ALPHA}) and Welch's t on "
                      "per-batch time per op. Differences that are not significant are flagged."))
    if not rows:
        sec.add(Paragraph("No cell was measured on both sides."))
        return sec
    table_rows = []
    n_not = 0
    for r in rows:
        sig = r["significant"]
        verdict = "significant" if sig else ("NOT significant" if sig is False else
                                             "no test (fewer than 3 batches or published means)")
        n_not += sig is False
        ci = ("" if math.isnan(r["ci95_low"]) else f"[{r['ci95_low']:.3g}, {r['ci95_high']:.3g}]")
        p = lambda x: "" if math.isnan(x) else f"{x:.3g}"
        attrs = {"size": r["size_bytes"], "op": r["op"], "a": r["series_a"], "b": r["series_b"],
                 "ratio": _num(r["ratio"]), "significant": {True: "yes", False: "no", None: "n/a"}[sig]}
        table_rows.append([Cell(format_size(int(r["size_bytes"])), header=True), Cell(r["op"]),
                           Cell(r["series_a"]), Cell(r["series_b"]),
                           Cell(format_time(r["mean_a"])), Cell(format_time(r["mean_b"])),
                           Cell(f"{r['ratio']:.3g}", attrs), Cell(ci), Cell(p(r["mannwhitney_p"])),
                           Cell(p(r["welch_p"])), Cell(verdict, {"significant": attrs["significant"]})])
    if n_not:
        sec.add(Warnings([f"{n_not} of {len(rows)} differences are not significant at α = {cmp.ALPHA} "
                          "(Mann-Whitney): do not read a difference into those ratios."],
                         title="Not significant"))
    sec.add(Table(f"{label_b} / {label_a}", ["size", "op", "A", "B", "A mean", "B mean", "ratio B/A",
                                           "95% CI", "Mann-Whitney p", "Welch p", "verdict"],
                  table_rows, kind="compare"))
    return sec


def failed_cells(sources):
    """Cells a campaign recorded as failed: what failed, and where its log is."""
    rows = []
    for s in sources:
        for cell_id, rec in sorted((s.records or {}).items()):
            if rec.get("status") == "ok":
                continue
            cell = rec.get("cell") or {}
            size = cell.get("size_bytes")
            rows.append([Cell(s.name, header=True), Cell(str(cell_id)), Cell(str(cell.get("env", ""))),
                         Cell(format_size(int(size)) if isinstance(size, int) else str(size)),
                         Cell(str(cell.get("op", ""))), Cell(str(rec.get("error", ""))[:300]),
                         Cell(str(s.path / rec["log"]) if s.path and rec.get("log") else "")])
    if not rows:
        return None
    return Table("Cells that failed", ["source", "cell", "env", "size", "op", "error", "log"], rows,
                 kind="failed")


# -- the whole document ------------------------------------------------------------

def document(sources, cal=None, scenarios=None, comparison=None, verified=None) -> Document:
    """The report: sources (+ warnings), measured, model, what-if, predicted before
    measured (verify campaigns), comparison."""
    df = data.measured(sources)
    series = data.series_order(df) if len(df) else []
    samples = data.per_op_samples(sources, df)
    warnings = []
    for s in sources:
        envs = set(s.summary["env"]) if len(s.summary) else set()
        if s.kind == "campaign":
            warnings += caveats.source_warnings(s.name, s.metadata, envs, s.records)
            warnings += caveats.target_warnings(s.name, s.metadata)
            warnings += caveats.emulated_warnings(s.name, s.metadata)
            warnings += caveats.stability_warnings(s.name, s.summary)
    warnings += caveats.cross_warnings([(s.name, s.metadata) for s in sources])
    if cal is not None:
        camps = [s for s in sources if s.kind == "campaign"]
        warnings += caveats.calibration_warning(str(cal.source), [s.name for s in camps],
                                                [str(s.path) for s in camps])
    for s in sources:
        bad = [r for r in (s.records or {}).values() if r.get("status") != "ok"]
        if bad:
            warnings.append(f"{s.name}: {len(bad)} cell(s) failed and are missing from the tables "
                            "(see 'Cells that failed').")
    if any(s.kind == "reference" for s in sources):
        warnings.append("study: published means only (no batches): no intervals, distributions or tests.")

    from report import verdict
    note = verdict.machine_note(sources)
    with plots.noted(note):
        return _document(sources, cal, scenarios, comparison, verified, df, series, samples, warnings)


def _document(sources, cal, scenarios, comparison, verified, df, series, samples, warnings) -> Document:
    from report import verdict
    names = ", ".join(s.name for s in sources)
    cal_path = getattr(cal, "report_path", None)
    doc = Document(f"edgeio report: {names}", [
        f"Sources: {names}." + (f" Calibration: {cal_path or ''} (fitted on {cal.source})." if cal is not None
                                else " No calibration (run `invoke calibrate` or pass --calibration FILE "
                                     "for the model sections)."),
        "Times are per operation (one whole-file write, write+fsync or read).",
    ])
    first = verdict.section(sources, df, samples, cal, scenarios, verified, plots=plots.verdict)
    if first is not None:
        doc.sections.append(first)
    if warnings:
        doc.sections.append(warnings_section(warnings))
    if len(df):
        doc.sections.append(measured_section(df, samples, series, sources))
    else:
        doc.sections.append(Section("measured", "Measured time per operation",
                                    [Paragraph("No finished cell with samples in these sources.")]))
    failed = failed_cells(sources)
    if failed is not None:
        doc.sections[-1].add(failed)
    if comparison is not None:
        doc.sections.append(compare_section(*comparison_rows(df, samples, sources, comparison)))
    if cal is not None:
        doc.sections.append(model_section(cal))
        doc.sections.append(whatif_section(cal, scenarios or {}))
    if verified:
        from report import verified as _verified
        doc.sections.append(_verified.section(verified))
    doc.sections.append(sources_section(sources))
    return doc


def comparison_rows(df, samples, sources, comparison):
    """Rows of the comparison: ("env", a, b) within each source, or ("source", a, b) per cell."""
    kind, a, b = comparison
    rows = []
    cell = ["size_bytes", "op"]
    if kind == "env":
        pairs = []
        for src in dict.fromkeys(df["source"]):
            left = df[(df["source"] == src) & (df["env"] == a)]
            right = df[(df["source"] == src) & (df["env"] == b)]
            pairs.append(left.merge(right, on=cell, suffixes=("_a", "_b")))
        matched = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()
    else:
        keys = ["env", "target", "arch", "config", "io_size_bytes"] + cell
        left, right = df[df["source"] == a], df[df["source"] == b]
        matched = left.merge(right, on=keys, suffixes=("_a", "_b"))
        if not len(matched):   # different targets/arches: match on the environment alone
            matched = left.merge(right, on=["env"] + cell, suffixes=("_a", "_b"))
    for r in matched.to_dict("records"):
        sa = samples[(samples["series"] == r["series_a"]) & (samples["size_bytes"] == r["size_bytes"])
                     & (samples["op"] == r["op"])] if len(samples) else samples
        sb = samples[(samples["series"] == r["series_b"]) & (samples["size_bytes"] == r["size_bytes"])
                     & (samples["op"] == r["op"])] if len(samples) else samples
        res = cmp.compare(sa["seconds"] if len(sa) else [], sa["repetitions"] if len(sa) else [],
                          sb["seconds"] if len(sb) else [], sb["repetitions"] if len(sb) else [])
        if math.isnan(res["ratio"]):   # published means on a side: the ratio of means, no more
            res["ratio"] = r["mean_per_op_s_b"] / r["mean_per_op_s_a"]
        rows.append({**res, "size_bytes": r["size_bytes"], "op": r["op"], "series_a": r["series_a"],
                     "series_b": r["series_b"], "mean_a": r["mean_per_op_s_a"], "mean_b": r["mean_per_op_s_b"]})
    rows.sort(key=lambda r: (r["size_bytes"], data.op_rank(r["op"]), r["series_a"], r["series_b"]))
    return rows, a, b
