"""Running a scenario's sweep through the model, and picking what its plot shows."""

import multiprocessing
import numbers
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgeio.errors import UserError

# A cell is "changed" by a scenario when its prediction moves by more than this fraction.
CHANGED = 1e-6
# Parameter draws per predicted point (None: the model's default). Each draw is one more
# simulation of every cell, so a sweep of 40 points costs about 40 x DRAWS simulations.
DRAWS = None
# The parameter name under which a scenario without a sweep is reported.
DEFAULTS = "(defaults)"


class ScenarioFailed(Exception):
    """The model refused the scenario for this calibration (e.g. cells it needs are missing)."""


@dataclass
class Sweep:
    param: str
    values: list
    frame: pd.DataFrame      # every predicted row, with `sweep_value`
    rows: pd.DataFrame       # only the cells the scenario changes
    numeric: bool
    loglog: bool


def is_size_param(param: str, values) -> bool:
    """Parameters that are byte counts (guest memory, block size): shown as KiB/MiB/GiB."""
    return (any(w in param.lower() for w in ("memory", "size", "bytes"))
            and all(_is_number(v) and v >= 1 for v in values))


def format_value(param: str, value, values) -> str:
    from edgeio.units import format_size
    return format_size(int(value)) if is_size_param(param, values) and value == int(value) else str(value)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def changed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the (env, size, op) cells whose prediction differs from the baseline anywhere."""
    moved = (frame["predicted_s"] - frame["baseline_s"]).abs() > CHANGED * frame["baseline_s"].abs()
    keys = frame.loc[moved, ["env", "size_bytes", "op"]].drop_duplicates()
    return frame.merge(keys, on=["env", "size_bytes", "op"], how="inner")


def _grid(scenario) -> dict:
    return dict(getattr(scenario, "sweep", None) or {}) or {DEFAULTS: [None]}


def _predict_point(task):
    """One predicted point, run in a worker process: (scenario, params) -> frame or error."""
    import model
    calibration, name, params, draws = task
    extra = {} if draws is None else {"draws": draws}
    try:
        return model.predict(calibration, name, params, **extra)
    except UserError as e:
        return ScenarioFailed(str(e))


def predict_many(calibration, wanted: list[tuple[str, dict]]) -> list:
    """model.predict of each (scenario, params), on every core: frames or ScenarioFailed."""
    return _run_points([(calibration, name, dict(params), DRAWS) for name, params in wanted])


def _run_points(tasks: list) -> list:
    """Predict every point, on every core when there are several: a report sweeps ~40
    points of a few seconds each. Falls back to one process if workers cannot start."""
    workers = min(len(tasks), os.cpu_count() or 1)
    if workers > 1:
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                return list(pool.map(_predict_point, tasks))
        except (OSError, BrokenProcessPool, pickle.PicklingError):
            pass
    return [_predict_point(t) for t in tasks]


def sweep_all(calibration, scenarios: dict) -> dict:
    """Every scenario's sweeps: name -> list[Sweep], or the ScenarioFailed the model gave."""
    tasks, where = [], []
    for name, scenario in scenarios.items():
        for param, values in _grid(scenario).items():
            for v in values:
                tasks.append((calibration, scenario.name, {} if v is None else {param: v}, DRAWS))
                where.append((name, param, v))
    results = _run_points(tasks)
    frames: dict = {}
    failed: dict = {}
    for (name, param, v), res in zip(where, results):
        if isinstance(res, ScenarioFailed):
            failed.setdefault(name, res)
            continue
        # object dtype: the value is shown as given (0 and 0.5 stay "0" and "0.5")
        value = v if v is not None else "default"
        frames.setdefault(name, {}).setdefault(param, []).append(
            res.assign(sweep_value=pd.Series([value] * len(res), index=res.index, dtype=object)))
    out = {}
    for name, scenario in scenarios.items():
        if name in failed:
            out[name] = failed[name]
            continue
        out[name] = []
        for param, values in _grid(scenario).items():
            frame = pd.concat(frames[name][param], ignore_index=True)
            values = [v if v is not None else "default" for v in values]
            numeric = all(_is_number(v) for v in values)
            loglog = numeric and min(values) > 0 and max(values) / min(values) >= 8
            rows = frame if param == DEFAULTS else changed_cells(frame)
            out[name].append(Sweep(param, values, frame, rows, numeric, loglog))
    return out


def sweep(calibration, scenario) -> list[Sweep]:
    """Predict every value of each swept parameter of one scenario (others at their defaults)."""
    res = sweep_all(calibration, {scenario.name: scenario})[scenario.name]
    if isinstance(res, ScenarioFailed):
        raise res
    return res


def linux_levels(frame: pd.DataFrame, calibration) -> dict:
    """The native figure per (size, op): the model's linux baseline, else the fit table's."""
    levels = {}
    linux = frame[frame["env"] == "linux"]
    for r in linux.itertuples():
        levels.setdefault((int(r.size_bytes), r.op), float(r.baseline_s))
    fit = getattr(calibration, "fit_table", None)
    if fit is not None and len(fit):
        for r in fit[fit["env"] == "linux"].itertuples():
            value = r.modelled_s if np.isfinite(r.modelled_s) else r.measured_s
            levels.setdefault((int(r.size_bytes), r.op), float(value))
    return levels


# Two predictions of a cell that differ by less than this are one row of a table.
SAME = 0.005


def distinct_rows(rows: pd.DataFrame, values: list) -> list[dict]:
    """The rows of a sweep's table: per (env, size), one row per run of consecutive swept
    values whose predictions (and intervals) agree within SAME for every op, listing the
    values (`sweep_values`) and each op's record (`ops`); a run at the baseline for every
    op (speed-up 1 within SAME) is left out. The plot shows every value."""
    order = {str(v): i for i, v in enumerate(values)}
    out = []
    for (env, size), g in rows.groupby(["env", "size_bytes"], sort=False):
        by_value = {}
        for r in g.to_dict("records"):
            by_value.setdefault(str(r["sweep_value"]), {})[r["op"]] = r
        run, first = [], None
        for v in sorted(by_value, key=lambda v: order.get(v, len(order))):
            ops = by_value[v]
            if first is not None and _same(first, ops):
                run.append(ops)
                continue
            if run:
                out.append(_merged(env, size, run))
            run, first = [ops], ops
        if run:
            out.append(_merged(env, size, run))
    return [r for r in out if any(abs(o["predicted_s"] / o["baseline_s"] - 1) > SAME
                                  for o in r["ops"].values() if o["baseline_s"])]


def _same(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    return all(abs(b[op][c] / a[op][c] - 1) <= SAME for op in a
               for c in ("predicted_s", "pi95_low_s", "pi95_high_s") if a[op][c])


def _merged(env, size, run: list[dict]) -> dict:
    return {"env": env, "size_bytes": int(size), "ops": run[0],
            "sweep_values": [next(iter(ops.values()))["sweep_value"] for ops in run]}
