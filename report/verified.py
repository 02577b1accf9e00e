"""The report's "Predicted before measured" section: verify campaigns (invoke verify).

A verify campaign holds predictions.csv (written before its first cell started),
the measured cells, and comparison.csv (predicted beside measured). Per campaign the
section shows the predicted band against the measured points with their intervals,
the error table, when the prediction was written against when measuring began, and
how well the calibration the prediction came from fits its own campaign, per env.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from edgeio import paths
from edgeio.errors import UserError
from edgeio.units import format_size, format_time
from report.document import Cell, Figure, Paragraph, Section, Table, Warnings
from verification import campaign as _campaign


@dataclass
class Verified:
    """A verify campaign (verification.campaign.Verification) and the calibration its
    predictions came from, if that can still be read."""
    verification: _campaign.Verification
    calibration: object = None

    def __getattr__(self, name):          # name, path, verify, comparison, summary, first_started...
        if name == "verification":
            raise AttributeError(name)
        return getattr(self.verification, name)


def is_verify_dir(path: Path) -> bool:
    return _campaign.is_verify_dir(path)


def find(root: Path | None = None) -> list[Path]:
    """Verify campaigns under results/verify, oldest first."""
    return _campaign.find(Path(root or paths.results_dir()) / "verify")


def load(path) -> Verified:
    """One verify campaign, its comparison recomputed from the cell records (a stored
    comparison.csv that differs is refused); an unfinished one is a UserError."""
    v = _campaign.load(path)
    cal = None
    where = v.verify.get("calibration")
    if where and Path(where).is_file():
        try:
            import calibration
            cal = calibration.load(where)
        except (UserError, ImportError):
            cal = None
    return Verified(v, cal)


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


def _x(v) -> str:
    return f"{v:.3g}x" if v == v else "n/a"


def section(verified: list) -> Section:
    from report.plots_verified import predicted_vs_measured
    sec = Section("verified", "Predicted before measured")
    sec.add(Paragraph("Each fix was predicted from a calibration, the prediction written into the "
                      "campaign directory (predictions.csv) before its first cell started, then the fix "
                      "was built and measured beside its baseline in the same run, and judged on the "
                      "speed-up (baseline / fix). Error = predicted / measured - 1; 'inside' = the measured "
                      "median lies in the 95% prediction interval. The comparison is recomputed here from "
                      "the cell records."))
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
        if v.predicted_late:
            sub.add(Warnings([f"{v.name}: a cell started before the predictions were written: this is "
                              "not a prediction"], title="Order"))
        comp = v.comparison
        if not len(comp):
            sub.add(Paragraph("No cell of this verify was measured."))
            continue
        s = v.summary
        sp = s["speedup"]
        fixes = comp[(comp["role"] == "fix") & comp["predicted_speedup"].notna()]
        if len(fixes):
            sub.add(Paragraph(f"Speed-up of the fix over the baseline measured beside it, {sp['cells']} fix cells: "
                              f"median |error| {sp['median_abs_rel_error']:.1%}, largest {sp['max_abs_rel_error']:.1%}, "
                              f"{sp['share_inside']:.0%} inside their 95% intervals (the model's, widened by the measured CI), "
                              f"{sp['wrong_direction']} the "
                              "wrong way (predicted faster, measured slower, or the reverse)."))
            sub.add(Table(f"{scen}: speed-up (baseline / fix), predicted (95% PI) against measured (95% CI)",
                          ["env", "size", "op", "config", "predicted", "measured", "expected (interval + CI)",
                           "error", "inside", "direction"],
                          [[Cell(r.env, header=True), Cell(format_size(int(r.size_bytes))), Cell(r.op),
                            Cell(r.config), Cell(f"{_x(r.predicted_speedup)} [{_x(r.speedup_low)}, {_x(r.speedup_high)}]"),
                            Cell(f"{_x(r.measured_speedup)} [{_x(r.measured_speedup_ci95_low)}, "
                                 f"{_x(r.measured_speedup_ci95_high)}]"),
                            Cell(f"[{_x(r.speedup_expected_low)}, {_x(r.speedup_expected_high)}]"),
                            Cell(f"{r.speedup_rel_error:+.1%}", {"rel-error": repr(float(r.speedup_rel_error))}),
                            Cell("yes" if str(r.speedup_inside) == "True" else "NO"),
                            Cell(f"{r.predicted_direction} / {r.measured_direction}"
                                 + ("" if str(r.direction_agrees) == "True" else " (differs)"))]
                           for r in fixes.itertuples(index=False)],
                          kind="verified-speedup", attrs={"scenario": scen}))
        if s["drift"]["line"]:
            sub.add(Warnings([s["drift"]["line"]], title="Drift"))
        sub.add(Paragraph(f"Time per op, {s['cells']} cells: median |error| {s['median_abs_rel_error']:.1%}, largest "
                          f"{s['max_abs_rel_error']:.1%}, {s['share_inside']:.0%} of measured values inside their "
                          "95% intervals."))
        sub.add(Figure(f"verified-{v.name}", predicted_vs_measured(comp, scen),
                       f"{scen}: predicted band (95% interval, shaded) and point (x) against the measured "
                       "median with its 95% CI (o, error bars); log scale where the cells span a decade.",
                       kind="verified", attrs={"scenario": scen, "campaign": v.name}))
        drifted = bool(s["drift"]["drifted"])
        rows = []
        for r in comp.itertuples(index=False):
            row = [Cell(r.env, header=True), Cell(format_size(int(r.size_bytes))), Cell(r.op),
                   Cell(str(r.role)), Cell(r.config),
                   Cell(f"{format_time(r.predicted_s)} [{format_time(r.low_s)}, {format_time(r.high_s)}]"),
                   Cell(f"{format_time(r.measured_s)} [{format_time(r.ci95_low_s)}, {format_time(r.ci95_high_s)}]"),
                   Cell(f"{r.rel_error:+.1%}", {"scenario": scen, "env": r.env, "size": int(r.size_bytes),
                                               "op": r.op, "rel-error": repr(float(r.rel_error))}),
                   Cell("yes" if r.inside else "NO", {"inside": "yes" if r.inside else "no"})]
            if drifted:
                row.append(Cell(f"{format_time(r.reanchored_s)} ({r.reanchored_rel_error:+.1%})"
                                if r.role == "fix" else f"drift {r.drift_ratio:.2f}x" if r.drift_ratio == r.drift_ratio else ""))
            rows.append(row)
        sub.add(Table(f"{scen}: predicted (95% PI) against measured (95% CI)",
                      ["env", "size", "op", "role", "config", "predicted", "measured", "error", "inside"]
                      + (["re-anchored on today's baseline"] if drifted else []),
                      rows, kind="verified", attrs={"scenario": scen, "campaign": v.name}))
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
