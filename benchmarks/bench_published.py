"""Published measurements the model never fitted, as a check (issue 18, item 5). Printed, not asserted.

  python benchmarks/bench_published.py                 every series under benchmarks/data/published/
  python benchmarks/bench_published.py --only NAME     one series (the file name without .csv)

Each series is a CSV of one host's published figures (benchmarks/data/published/NAME.csv:
`# key: value` lines naming the source, the table, what was read and how, then one row per
point) and a machine profile of that host (NAME.machine.json: the facts the source states,
the rest assumed and each named in "sources"). The model is calibrated on the smallest
points of the series (its `calibrate_on` line, per op: `N ...`, or `N ... at least T s` where
the source says its shortest runs are noise-dominated, then the N smallest of the points that
took at least T seconds; the shorter ones stay held out and are predicted like the rest)
through the calibration API with that profile, then predicts every point; the held-out points' errors are the check.
Target: each held-out point within 15%.
"""

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from edgeio.errors import UserError  # noqa: E402
from edgeio.units import format_size, format_time  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "published"
TARGET = 0.15
COLUMNS = ["env", "op", "size_bytes", "block_size", "io_size_bytes", "direct", "reps", "reported", "seconds"]


def load_series(path: Path) -> tuple[dict, pd.DataFrame]:
    """(header, points) of one series file; seconds filled from a reported throughput
    (`N MiB/s`: size / throughput) where the source printed a rate, not a time."""
    header, lines = {}, path.read_text().splitlines()
    for line in lines:
        if line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            header[key.strip()] = value.strip()
    from io import StringIO
    df = pd.read_csv(StringIO("\n".join(ln for ln in lines if not ln.startswith("#"))), dtype={"reported": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)}")
    for i, r in df.iterrows():
        if pd.isna(r["seconds"]):
            value, _, unit = str(r["reported"]).partition(" ")
            if unit != "MiB/s":
                raise UserError(f"{path}: row {i + 1}: no seconds and no 'N MiB/s' figure to derive them from")
            df.loc[i, "seconds"] = int(r["size_bytes"]) / (1 << 20) / float(value)
    for key in ("source", "calibrate_on", "machine"):
        if key not in header:
            raise UserError(f"{path}: no '# {key}:' line")
    return header, df


def config(r) -> dict:
    """The point's effective configuration, as a cell records it (INTERFACES.md keys)."""
    c = {}
    if not pd.isna(r["block_size"]):
        c["block_size"] = int(r["block_size"])
    if not pd.isna(r["io_size_bytes"]):
        c["io_size_bytes"] = int(r["io_size_bytes"])
    if str(r["direct"]).strip().lower() == "true":
        c["direct"] = True
    return c


def calibration_rule(header: dict) -> tuple[int, float]:
    """(n, min_seconds) of a series' `calibrate_on` line: `N ...` (min_seconds 0), or
    `N ... at least T s` (the n smallest of the points that took at least T seconds)."""
    text = header["calibrate_on"]
    try:
        n = int(text.split()[0])
    except (ValueError, IndexError):
        raise UserError(f"calibrate_on: {text!r} does not start with a number of points") from None
    m = re.search(r"\bat least ([0-9]+(?:\.[0-9]+)?) s\b", text)
    return n, float(m.group(1)) if m else 0.0


def calibration_points(df: pd.DataFrame, n: int, min_seconds: float = 0.0) -> pd.Index:
    """The n smallest points of each op: the smallest files, or the smallest blocks where
    the file size is fixed; with min_seconds, the n smallest of those that took at least
    that long (a source whose shortest runs are noise-dominated, in its own words)."""
    out = []
    for _, g in df.groupby("op", sort=False):
        g = g[g["seconds"] >= min_seconds]
        key = "size_bytes" if g["size_bytes"].nunique() > 1 else ("block_size" if g["block_size"].notna().any()
                                                                  else "io_size_bytes")
        out += list(g.sort_values(key).index[:n])
    return pd.Index(out)


def run_series(path: Path) -> pd.DataFrame:
    import calibration
    from model.machine import load_profile
    from model.predict import predict_cells
    header, df = load_series(path)
    profile = load_profile(path.parent / header["machine"])
    n, min_seconds = calibration_rule(header)
    fit_idx = calibration_points(df, n, min_seconds)
    cells = [{"env": r["env"], "size_bytes": int(r["size_bytes"]), "op": r["op"], "reps": int(r["reps"]),
              "config": config(r)} for _, r in df.iterrows()]
    given = pd.DataFrame([{**{k: c[k] for k in ("env", "size_bytes", "op", "reps")},
                           "config": json.dumps(c["config"]), "mean_per_op_s": float(df.loc[i, "seconds"])}
                          for i, c in zip(df.index, cells) if i in set(fit_idx)])
    results = calibration.results_set(given, profile, source=f"published: {header['source']}")
    cal = calibration.fit(results)
    pred = predict_cells(cal, cells)
    out = df[["env", "op", "size_bytes", "block_size", "io_size_bytes", "reported", "seconds"]].copy()
    out["predicted_s"], out["low_s"], out["high_s"] = pred["predicted_s"].to_numpy(), pred["low_s"].to_numpy(), \
        pred["high_s"].to_numpy()
    out["rel_error"] = out["predicted_s"] / out["seconds"] - 1
    out["role"] = ["calibrated" if i in set(fit_idx) else "held out" for i in df.index]
    out["line_rel_error"] = plain_line(df, fit_idx) / out["seconds"] - 1
    out["short"] = df["seconds"] < min_seconds
    out.attrs.update(header=header, min_seconds=min_seconds, unpinned=cal.prior_only() if hasattr(cal, "prior_only") else [])
    return out


def plain_line(df: pd.DataFrame, fit_idx) -> "pd.Series":
    """A reference, not the model: time = a x calls + b x bytes (or a + b x bytes where the
    calls grow with the bytes, as at a fixed block size), least squares on the same
    calibration points, per op. How far the data are from the simplest cost structure."""
    import numpy as np
    out = pd.Series(np.nan, index=df.index)
    calls = df["size_bytes"] / df["block_size"].fillna(df["io_size_bytes"]).fillna(df["size_bytes"])
    for _, g in df.groupby("op", sort=False):
        fit = [i for i in g.index if i in set(fit_idx)]
        x = np.column_stack([calls[g.index], g["size_bytes"]]).astype(float)
        ratio = x[[g.index.get_loc(i) for i in fit], 0] / x[[g.index.get_loc(i) for i in fit], 1]
        if np.ptp(ratio) <= 1e-12 * ratio.max():
            x[:, 0] = 1.0                      # calls proportional to bytes: a per-op constant instead
        rows = [g.index.get_loc(i) for i in fit]
        coef, *_ = np.linalg.lstsq(x[rows], g["seconds"].to_numpy(float)[rows], rcond=None)
        out[g.index] = x @ coef
    return out


def _knob(r) -> str:
    if not pd.isna(r["block_size"]):
        return f"block {format_size(int(r['block_size']))}"
    return f"io {format_size(int(r['io_size_bytes']))}" if not pd.isna(r["io_size_bytes"]) else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="one series (file name without .csv)")
    args = ap.parse_args()
    files = sorted(DATA.glob("*.csv"))
    if args.only:
        files = [f for f in files if f.stem == args.only]
        if not files:
            print(f"no series {args.only!r} in {DATA}", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    summary = []
    for path in files:
        try:
            out = run_series(path)
        except UserError as e:
            print(f"{path.name}: not checked: {e}")
            continue
        h = out.attrs["header"]
        print(f"\n== {path.stem}: {h.get('series', '')}")
        print(f"   source: {h['source']}")
        print(f"   read from: {h.get('read_from', '?')}; host: {h.get('host (stated)', '?')}")
        print(f"   calibrated on the {h['calibrate_on']}; profile {h['machine']} (assumed facts named in its sources)")
        if out.attrs["unpinned"]:
            print(f"   parameters at their priors (no calibrated point pins them): {', '.join(out.attrs['unpinned'])}")
        print(f"   {'env':5s} {'op':10s} {'size':>8s} {'knob':>12s} {'published':>11s} {'measured':>9s} "
              f"{'predicted':>9s} {'95% interval':>21s} {'error':>8s}  role")
        for r in out.itertuples(index=False):
            print(f"   {r.env:5s} {r.op:10s} {format_size(int(r.size_bytes)):>8s} {_knob(r._asdict()):>12s} "
                  f"{r.reported:>11s} {format_time(r.seconds):>9s} {format_time(r.predicted_s):>9s} "
                  f"{'[' + format_time(r.low_s) + ', ' + format_time(r.high_s) + ']':>21s} {r.rel_error:+8.1%}  {r.role}")
        held = out[out["role"] == "held out"]
        a = held["rel_error"].abs()
        within = int((a <= TARGET).sum())
        print(f"   held out: {len(held)} points, median |error| {a.median():.1%}, largest {a.max():.1%}; "
              f"{within}/{len(held)} within {TARGET:.0%} ({'ok' if within == len(held) else 'MISSED'})")
        sa, la = a[held["short"]], a[~held["short"]]      # shorter than the calibration points, the rest
        if len(sa):
            print(f"   of which {len(sa)} took less than {out.attrs['min_seconds']:g} s (shorter than the calibration "
                  f"points; the source calls them noise-dominated): median |error| {sa.median():.1%}, "
                  f"{int((sa <= TARGET).sum())}/{len(sa)} within {TARGET:.0%}; the other {len(la)}: "
                  f"median |error| {la.median():.1%}, largest {la.max():.1%}, "
                  f"{int((la <= TARGET).sum())}/{len(la)} within {TARGET:.0%}")
        line = held["line_rel_error"].abs()
        print(f"   reference, not the model: a plain line (per call + per byte) fitted on the same points misses "
              f"the held-out points by median {line.median():.1%}, largest {line.max():.1%}")
        summary.append((path.stem, len(held), within, float(a.median()) if len(a) else math.nan,
                        float(a.max()) if len(a) else math.nan, float(line.median()) if len(line) else math.nan))
    if summary:
        print(f"\n{'series':28s} {'held out':>8s} {'within 15%':>10s} {'median':>8s} {'largest':>8s} "
              f"{'plain line (median)':>20s}")
        for name, n, w, med, mx, ln in summary:
            print(f"{name:28s} {n:8d} {w:10d} {med:8.1%} {mx:8.1%} {ln:20.1%}")
    print(f"\ntotal {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
