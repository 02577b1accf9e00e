"""The report's "Predicted before measured" section: verify campaigns (invoke verify).

A verify campaign holds predictions.csv (written before its first cell started),
the measured cells, and comparison.csv (predicted beside measured). Per campaign the
section shows the predicted band against the measured points with their intervals,
the error table, when the prediction was written against when measuring began, and
how well the calibration the prediction came from fits its own campaign, per env.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from edgeio import paths, store
from edgeio.stats import speedups
from edgeio.errors import UserError
from edgeio.units import format_size, format_time
from report.document import Cell, Figure, Paragraph, Section, Table, Warnings

COLUMNS = ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s", "measured_s",
           "ci95_low_s", "ci95_high_s", "rel_error", "inside"]


@dataclass
class Verified:
    name: str
    path: Path
    verify: dict                 # metadata.json["verify"]
    comparison: pd.DataFrame
    first_started: str           # the earliest `started` of its cells ("" if none ran)
    calibration: object = None   # the calibration the predictions came from, if it can be read


def is_verify_dir(path: Path) -> bool:
    try:
        return "verify" in store.Campaign.open(path).metadata()
    except UserError:
        return False


def find(root: Path | None = None) -> list[Path]:
    """Verify campaigns under results/verify, oldest first."""
    folder = Path(root or paths.results_dir()) / "verify"
    found = [p.parent for p in folder.glob("*/plan.json")] if folder.is_dir() else []
    return sorted((p for p in found if is_verify_dir(p)), key=lambda p: (p / "plan.json").stat().st_mtime)


def load(path) -> Verified:
    """One verify campaign; a campaign without a verify record or comparison is a UserError."""
    path = Path(path)
    campaign = store.Campaign.open(path)
    meta = campaign.metadata()
    v = meta.get("verify")
    if not isinstance(v, dict):
        raise UserError(f"{path}: not a verify campaign (no verify record in metadata.json)")
    files = sorted(path.glob("comparison*.csv"))
    if not files:
        raise UserError(f"{path}: no comparison.csv (the verify did not finish: invoke verify --resume {path})")
    try:
        comp = pd.read_csv(files[-1], keep_default_na=False, dtype={"config": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{files[-1]}: corrupt comparison file ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in comp.columns]
    if missing:
        raise UserError(f"{files[-1]}: corrupt comparison file (no column {', '.join(missing)})")
    comp["inside"] = comp["inside"].astype(str).str.lower().isin(("true", "1", "yes"))
    started = sorted(r.get("started", "") for r in campaign.records().values() if r.get("started"))
    cal = None
    if v.get("calibration") and Path(v["calibration"]).is_file():
        try:
            import calibration
            cal = calibration.load(v["calibration"])
        except (UserError, ImportError):
            cal = None
    return Verified(path.name, path, v, comp, started[0] if started else "", cal)


def summary(comp: pd.DataFrame) -> dict:
    a = comp["rel_error"].abs()
    return {"cells": len(comp), "median": float(a.median()) if len(a) else math.nan,
            "largest": float(a.max()) if len(a) else math.nan,
            "inside": float(comp["inside"].mean()) if len(comp) else math.nan}


def env_fit(cal) -> pd.DataFrame:
    """Per environment: the calibration's fit on its own cells (median and largest |error|)."""
    fit = cal.fit_table
    rows = []
    for env, g in fit.groupby("env", sort=False):
        a = g["rel_error"].abs()
        worst = g.loc[a.idxmax()]
        rows.append({"env": env, "cells": len(g), "median": float(a.median()), "largest": float(a.max()),
                     "worst": f"{format_size(int(worst['size_bytes']))} {worst['op']}"})
    return pd.DataFrame(rows)


def _label(r) -> str:
    return f"{r.env} {format_size(int(r.size_bytes))} {r.op} ({r.role if 'role' in r._fields else r.config})"


def section(verified: list) -> Section:
    from report.plots_verified import predicted_vs_measured
    sec = Section("verified", "Predicted before measured")
    sec.add(Paragraph("Each fix was predicted from a calibration, the prediction written into the "
                      "campaign directory (predictions.csv) before its first cell started, then the fix "
                      "was built and measured beside its baseline in the same run. Error = predicted / "
                      "measured - 1; 'inside' = the measured mean lies in the 95% prediction interval."))
    if not verified:
        sec.add(Paragraph("No verify campaign found (run `invoke verify --scenario NAME`)."))
        return sec
    fits_shown = set()
    for v in verified:
        scen = v.verify.get("scenario", "?")
        values = ", ".join(f"{k}={x}" for k, x in (v.verify.get("values") or {}).items())
        sub = sec.add(Section(f"verified-{v.name}", f"{scen}" + (f" ({values})" if values else ""),
                              level=3, attrs={"scenario": scen, "campaign": v.name}))
        pred = v.verify.get("predictions") or {}
        fix = "; ".join(f"{e}: " + ", ".join(f"{k}={x}" for k, x in p.items())
                        for e, p in (v.verify.get("fix") or {}).items())
        sub.add(Paragraph(f"Campaign {v.path}. Fix built as {fix or '?'}. Predictions written at "
                          f"{pred.get('written_at', '?')} (sha256 {str(pred.get('sha256', ''))[:12]}…); first "
                          f"cell started at {v.first_started or 'never'}. Calibration: "
                          f"{v.verify.get('calibration', '?')} (fitted on {v.verify.get('calibration_source', '?')})."))
        if pred.get("written_at") and v.first_started and v.first_started < pred["written_at"]:
            sub.add(Warnings([f"{v.name}: a cell started before the predictions were written: this is "
                              "not a prediction"], title="Order"))
        comp = v.comparison
        if not len(comp):
            sub.add(Paragraph("No cell of this verify was measured."))
            continue
        s = summary(comp)
        sub.add(Paragraph(f"{s['cells']} cells: median |error| {s['median']:.1%}, largest {s['largest']:.1%}, "
                          f"{s['inside']:.0%} of measured values inside their 95% intervals."))
        sub.add(Figure(f"verified-{v.name}", predicted_vs_measured(comp, scen),
                       f"{scen}: predicted band (95% interval, shaded) and point (x) against the measured "
                       "mean with its 95% CI (o, error bars); log scale where the cells span a decade.",
                       kind="verified", attrs={"scenario": scen, "campaign": v.name}))
        rows = []
        for r in comp.itertuples(index=False):
            rows.append([Cell(r.env, header=True), Cell(format_size(int(r.size_bytes))), Cell(r.op),
                         Cell(str(getattr(r, "role", ""))), Cell(r.config),
                         Cell(f"{format_time(r.predicted_s)} [{format_time(r.low_s)}, {format_time(r.high_s)}]"),
                         Cell(f"{format_time(r.measured_s)} [{format_time(r.ci95_low_s)}, {format_time(r.ci95_high_s)}]"),
                         Cell(f"{r.rel_error:+.1%}", {"scenario": scen, "env": r.env, "size": int(r.size_bytes),
                                                     "op": r.op, "rel-error": repr(float(r.rel_error))}),
                         Cell("yes" if r.inside else "NO", {"inside": "yes" if r.inside else "no"})])
        sub.add(Table(f"{scen}: predicted (95% PI) against measured (95% CI)",
                      ["env", "size", "op", "role", "config", "predicted", "measured", "error", "inside"],
                      rows, kind="verified", attrs={"scenario": scen, "campaign": v.name}))
        sp = speedups(comp) if "role" in comp else comp.iloc[0:0]
        if len(sp):
            a = sp["rel_error"].abs()
            sub.add(Paragraph(f"Speed-up of the fix over the baseline measured beside it (one run, so "
                              f"immune to drift of the machine between campaigns): median |error| of the "
                              f"predicted speed-up {a.median():.1%}, largest {a.max():.1%}."))
            sub.add(Table(f"{scen}: speed-up (baseline / fix), predicted against measured",
                          ["env", "size", "op", "config", "predicted", "measured", "error"],
                          [[Cell(r.env, header=True), Cell(format_size(int(r.size_bytes))), Cell(r.op),
                            Cell(r.config), Cell(f"{r.predicted_speedup:.3g}x"), Cell(f"{r.measured_speedup:.3g}x"),
                            Cell(f"{r.rel_error:+.1%}")] for r in sp.itertuples(index=False)],
                          kind="verified-speedup", attrs={"scenario": scen}))
        key = v.verify.get("calibration")
        if v.calibration is not None and key not in fits_shown:
            fits_shown.add(key)
            fit = env_fit(v.calibration)
            sub.add(Table(f"Fit of the calibration on its own campaign, per environment ({key})",
                          ["env", "cells", "median |error|", "largest |error|", "worst cell"],
                          [[Cell(r.env, header=True), Cell(str(r.cells)), Cell(f"{r.median:.1%}"),
                            Cell(f"{r.largest:.1%}"), Cell(r.worst)] for r in fit.itertuples(index=False)],
                          kind="verified-fit", attrs={"calibration": str(key)}))
            from report.plots import measured_vs_modelled
            sub.add(Figure(f"verified-fit-{v.name}", measured_vs_modelled(v.calibration.fit_table),
                           f"The calibration behind these predictions: modelled against measured on its own "
                           f"campaign ({v.calibration.source}).", kind="verified-fit"))
    return sec
