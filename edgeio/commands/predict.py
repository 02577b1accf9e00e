"""`invoke predict`: what a proposed fix would do, with prediction intervals."""

import sys
from pathlib import Path

from edgeio import exports, paths
from edgeio.errors import UserError
from edgeio.parse import parse_params
from edgeio.units import format_size, format_time


def run(scenario: str | None, params: list[str], calibration: str | None = None,
        out: str | None = None, fmt: str | None = None) -> None:
    """Print the scenario's predicted time per op, as a table or in `fmt` (json, csv, md),
    and write it to `out` (format: `fmt`, else the file's extension, else CSV);
    'list' lists scenarios."""
    import model
    fmt = exports.parse_format(fmt)
    if scenario in (None, "", "list"):
        list_scenarios()
        return
    sc = model.scenarios.get(scenario)
    given = parse_params(params)
    sc.parse(given)                               # bad parameters fail before any fitting
    out_path = _out_path(out)
    file_fmt = exports.format_for_file(out_path, fmt) if out_path else None
    cal = _calibration(calibration, sc, given)
    df = model.predict(cal, sc.name, given)
    values = {k: _plain(df[k].iloc[0]) for k in sc.defaults} if len(df) else sc.parse(given)
    meta = {"scenario": sc.name, "description": sc.description, "params": values,
            "calibration": str(getattr(cal, "report_path", "") or ""),
            "calibration_source": str(cal.source)}
    if fmt:
        sys.stdout.write(exports.render("prediction", df, fmt, meta=meta))
    else:
        print_prediction(df, sc, cal)
    if out_path:
        from edgeio.store import write_atomic
        write_atomic(out_path, exports.render("prediction", df, file_fmt, meta=meta))
        print(f"Predictions ({file_fmt}) written to {out_path}", file=sys.stderr if fmt else sys.stdout)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _out_path(out):
    if not out:
        return None
    p = Path(out)
    if p.exists():
        raise UserError(f"{p} exists; predictions are never overwritten")
    if not p.parent.is_dir():
        raise UserError(f"--out {p}: directory {p.parent} does not exist")
    return p


def newest_calibration() -> Path | None:
    d = paths.results_dir() / "calibrations"
    files = sorted(d.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)) if d.is_dir() else []
    return files[-1] if files else None


def _calibration(path, sc, given):
    import calibration
    import model
    from model.environments import validate
    if path or newest_calibration():
        if not path:
            path = newest_calibration()
            print(f"Using calibration {path}", file=sys.stderr)
        cal = calibration.load(path)
        cal.report_path = str(path)
        return cal
    # impossible values on the study's machine fail before a minute of fitting on it
    values = sc.parse(given)
    for cfg in model.study().values():
        if cfg.name in sc.envs:
            validate(sc.apply(cfg, values))
    print(f"No calibration in {paths.results_dir() / 'calibrations'}: calibrating on the bundled "
          "Pi 4 figures now (run `invoke calibrate` to keep one)...", file=sys.stderr, flush=True)
    return calibration.fit(calibration.load_results(None))


def list_scenarios() -> None:
    import model
    print("Scenarios (invoke predict --scenario NAME [--param key=value ...]):")
    for sc in model.SCENARIOS.values():
        print(f"\n  {sc.name}  [{', '.join(sc.envs)}]")
        print(f"    {sc.description}")
        for k, v in sc.defaults.items():
            sweep = sc.sweep.get(k)
            print(f"    --param {k}=VALUE   default {v}" + (f"; report sweeps {', '.join(map(str, sweep))}" if sweep else ""))


def print_prediction(df, sc, cal) -> None:
    params = {k: df[k].iloc[0] for k in sc.defaults} if len(df) else {}
    desc = ", ".join(f"{k}={v}" for k, v in params.items())
    print(f"\nScenario {sc.name}{' (' + desc + ')' if desc else ''}: {sc.description}")
    print(f"Calibration: {cal.source}")
    print(f"  {'env':7s} {'size':>7s} {'op':11s} {'baseline':>10s} {'predicted':>10s} {'95% interval':>23s} {'speed-up [95%]':>20s}")
    for r in df.itertuples(index=False):
        pi = f"[{format_time(r.pi95_low_s)}, {format_time(r.pi95_high_s)}]"
        print(f"  {r.env:7s} {format_size(int(r.size_bytes)):>7s} {r.op:11s} {format_time(r.baseline_s):>10s} "
              f"{format_time(r.predicted_s):>10s} {pi:>23s} "
              f"{f'{r.speedup:.2f}x [{r.speedup_low:.2f}, {r.speedup_high:.2f}]':>20s}")
    for env, g in df.groupby("env", sort=False):
        print(f"  assumes ({env}): {'; '.join(dict.fromkeys(g['assumes']))}")
    slower = df[df["speedup"] < 1]
    for r in slower.itertuples(index=False):
        why = sc.explain or "the scenario removes something the baseline benefited from"
        print(f"  slower: {r.env} {format_size(int(r.size_bytes))} {r.op} ({r.speedup:.2f}x): {why}")
