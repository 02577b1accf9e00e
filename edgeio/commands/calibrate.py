"""`invoke calibrate`: fit the model to a results set, print the fit, save the parameter set."""

import datetime as _dt
from pathlib import Path

from edgeio import paths
from edgeio.errors import UserError
from edgeio.units import format_size, format_time


def run(source: str | None = None, out: str | None = None, validate: bool = False,
        allow_priors: bool = False, machine: str | None = None) -> Path:
    """Fit, print the fit table (and validation tables), save JSON; returns the saved file.

    `machine`: a machine profile file (the machine a CSV results set was measured on; for
    a campaign it replaces the facts its metadata recorded). A results set that lacks the
    cells pinning a parameter of one of its environments is a UserError naming them,
    unless `allow_priors` keeps such parameters at their priors."""
    import calibration
    target = _output_path(out)          # bad --out fails before a minute of fitting
    results = calibration.load_results(source, machine=machine)
    if not allow_priors:
        _require_coverage(results)
    m = results.attrs["machine"]
    for note in results.attrs.get("notes") or []:
        print(f"note: {note}", flush=True)
    print(f"Calibrating the model on {results.attrs.get('source', source)} ({len(results)} cells, "
          f"{results.attrs.get('statistic', 'mean_per_op_s')}) for {m.get('host') or 'a machine'} "
          f"({m.get('arch') or '?'}, {m['memory_bytes'] / 2 ** 30:.1f} GiB, kvm {m.get('kvm') or '?'}, "
          f"device {(m.get('block_device') or {}).get('kind') or 'unknown'})...", flush=True)
    from measure.progress import StatusLine
    status = StatusLine("  validation: ")       # quiet off a terminal: no '\r' in logs
    cal = calibration.fit(results, validate=validate, progress=status if validate else None)
    status.clear()
    print_parameters(cal)
    print_fit(cal)
    if cal.validation is not None:
        print_validation(cal.validation)
    whatifs = cal.metadata.get("whatif_unpinned") or {}
    if whatifs:
        print("\nWhat-ifs that need a parameter no cell pins (their intervals carry its prior's width): "
              + "; ".join(f"{n} ({', '.join(s)})" for n, s in whatifs.items()))
    path = cal.save(target)
    print(f"\nParameter set written to {path}")
    return path


def _require_coverage(results) -> None:
    from calibration.coverage import describe, missing_cells
    from calibration.fit import cells_from
    missing = missing_cells(cells_from(results), results.attrs["machine"])
    if missing:
        where = results.attrs.get("source", "the results set")
        raise UserError(f"{where} lacks cells that pin {len(missing)} parameter(s) of its environments: "
                        f"{describe(missing)}; measure them, or pass --allow-priors to keep those "
                        "parameters at their priors")


def _output_path(out: str | None) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if out:
        p = Path(out)
        if p.is_dir():
            return _fresh(p, stamp)
        if p.exists():
            raise UserError(f"{p} exists; calibrations are never overwritten (give a new file or a directory)")
        if p.suffix != ".json":
            raise UserError(f"--out {p}: give a .json file or an existing directory")
        return p
    return _fresh(paths.results_dir() / "calibrations", stamp)


def _fresh(directory: Path, stamp: str) -> Path:
    for i in range(1000):
        p = directory / (f"{stamp}.json" if i == 0 else f"{stamp}-{i}.json")
        if not p.exists():
            return p
    raise UserError(f"{directory}: too many calibrations named {stamp}*")


def _fmt_value(v: float, unit: str) -> str:
    if unit == "s":
        return format_time(v)
    if unit == "s/B":
        return f"{v * 1e9:.3g} ns/B"
    if unit == "B/s":
        return f"{v / 1e6:.3g} MB/s"
    if unit == "B":
        return format_size(int(v))
    return f"{v:.3g}"


def print_parameters(cal) -> None:
    from model.params import INFORMED_BY
    print("\nParameters (value, 95% interval)")
    for name, p in cal.params.items():
        if p["description"].endswith("[fixed]"):
            continue
        flag = "  (prior)" if "[prior" in p["description"] else ""
        print(f"  {name:24s} {_fmt_value(p['value'], p['unit']):>12s}   "
              f"[{_fmt_value(p['ci95_low'], p['unit'])}, {_fmt_value(p['ci95_high'], p['unit'])}]{flag}")
    prior = [n for n, p in cal.params.items() if "[prior" in p["description"]]
    if prior:
        print("  (prior) no cell of this results set informs it; predictions that need it carry its prior:")
        for n in prior:
            print(f"      {n}: add {INFORMED_BY.get(n, 'cells that use it')}")


def print_fit(cal) -> None:
    t = cal.fit_table
    print("\nFit: time per operation, measured vs modelled")
    print(f"  {'env':7s} {'size':>7s} {'op':11s} {'measured':>10s} {'modelled':>10s} {'error':>7s}")
    for r in t.itertuples(index=False):
        print(f"  {r.env:7s} {format_size(int(r.size_bytes)):>7s} {r.op:11s} {format_time(r.measured_s):>10s} "
              f"{format_time(r.modelled_s):>10s} {r.rel_error:+7.1%}")
    a = t["rel_error"].abs()
    print(f"  median |error| {a.median():.1%}, largest {a.max():.1%} "
          f"({t.loc[a.idxmax(), 'env']} {format_size(int(t.loc[a.idxmax(), 'size_bytes']))} {t.loc[a.idxmax(), 'op']})")


def print_validation(v) -> None:
    for kind, g in v.groupby("kind", sort=False):
        print(f"\nValidation, {kind}: predicted without the left-out data")
        print(f"  {'env':7s} {'size':>7s} {'op':11s} {'measured':>10s} {'predicted':>10s} {'error':>7s}")
        for r in g.itertuples(index=False):
            print(f"  {r.env:7s} {format_size(int(r.size_bytes)):>7s} {r.op:11s} {format_time(r.measured_s):>10s} "
                  f"{format_time(r.predicted_s):>10s} {r.rel_error:+7.1%}")
        a = g["rel_error"].abs()
        print(f"  {kind}: median |error| {a.median():.1%}, largest {a.max():.1%}")
