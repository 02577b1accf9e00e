"""Running a scenario's sweep through the model, and picking what its plot shows."""

import numbers
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


def sweep(calibration, scenario) -> list[Sweep]:
    """Predict every value of each swept parameter (the others at their defaults)."""
    import model
    grid = dict(getattr(scenario, "sweep", None) or {})
    if not grid:
        grid = {DEFAULTS: [None]}
    extra = {} if DRAWS is None else {"draws": DRAWS}
    out = []
    for param, values in grid.items():
        frames = []
        for v in values:
            try:
                df = model.predict(calibration, scenario.name, {} if v is None else {param: v}, **extra)
            except UserError as e:
                raise ScenarioFailed(str(e)) from None
            # object dtype: the value is shown as given (0 and 0.5 stay "0" and "0.5")
            frames.append(df.assign(sweep_value=pd.Series([v if v is not None else "default"] * len(df),
                                                          index=df.index, dtype=object)))
        frame = pd.concat(frames, ignore_index=True)
        values = [v if v is not None else "default" for v in values]
        numeric = all(_is_number(v) for v in values)
        loglog = numeric and min(values) > 0 and max(values) / min(values) >= 8
        rows = frame if param == DEFAULTS else changed_cells(frame)
        out.append(Sweep(param, values, frame, rows, numeric, loglog))
    return out


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
