"""predictions.csv: what the model said before anything was measured, and what it was said for.

`predict_cells` is the one place the model is asked; `prediction_table` writes each cell
down with its whole configuration (so a resume can check plan.json against it) and, for
the baseline cells, the calibration campaign's measurement of the same cell (what the
drift check compares today's baseline with); `load` reads the file back only if its
digest is the one metadata.json recorded; `check_plan` refuses a plan edited since.
"""

import hashlib
import io
import json
import math
from pathlib import Path

import pandas as pd

from edgeio import store
from edgeio.errors import UserError
from verification.plan import cell_key, source_campaign

FILE = "predictions.csv"
COLUMNS = ["env", "size_bytes", "op", "config", "role", "predicted_s", "low_s", "high_s",
           "model_config", "predicted_at", "calibration",
           "cell_id", "reps", "cell",
           "calibration_measured_s", "calibration_low_s", "calibration_high_s",
           "predicted_speedup", "speedup_low", "speedup_high"]
DRAWS = 24
# A cell's fields that decide what is measured: a plan cell differing in one of them from
# the cell its prediction was made for measures something else.
_CELL_FIELDS = ("env", "target", "size_bytes", "op", "reps", "params", "role", "round", "batches",
                "io_size_bytes", "sync", "direct", "cache")


def predict_cells(cal, cells: list[dict], draws: int = DRAWS) -> pd.DataFrame:
    """Predicted time per op (95% interval) of each cell {env, size_bytes, op, reps, config},
    config the cell's configuration as it will run (agreed keys, INTERFACES.md): the only
    call into the model (model.predict.predict_cells). Rows in the cells' order."""
    from model.predict import predict_cells as model_predict
    given = [{k: c[k] for k in ("env", "size_bytes", "op", "reps", "config")} for c in cells]
    df = model_predict(cal, given, draws=draws)
    return df[["predicted_s", "low_s", "high_s"]].reset_index(drop=True)


def predict_speedups(cal, cells: list[dict], draws: int = DRAWS) -> list[tuple]:
    """Per cell, the speed-up baseline / fix predicted for a fix cell (ratio, 95% low,
    high) by the model's joint draws of both cells (model.predict.predict_speedups: a cost
    they share cancels in the ratio, what remains is the fix regime's structural error);
    NaNs for a baseline cell or a fix without its baseline. cells as predict_cells takes them."""
    from model.predict import predict_speedups as model_speedups
    nan3 = (math.nan,) * 3
    given = [{k: c[k] for k in ("env", "size_bytes", "op", "reps", "config")} for c in cells]
    base = {(c["env"], int(c["size_bytes"]), c["op"]): g
            for c, g in zip(cells, given) if c.get("role") == "baseline"}
    pairs, where = [], []
    for i, (c, g) in enumerate(zip(cells, given)):
        b = base.get((c["env"], int(c["size_bytes"]), c["op"]))
        if c.get("role") == "fix" and b is not None:
            pairs.append((b, g))
            where.append(i)
    out = [nan3] * len(cells)
    if pairs:
        df = model_speedups(cal, pairs, draws=draws)
        for i, r in zip(where, df.itertuples(index=False)):
            out[i] = (float(r.predicted_speedup), float(r.low), float(r.high))
    return out


def prediction_table(cells: list[dict], predicted: pd.DataFrame, model_configs: list[dict],
                     stamp: str, calibration: str, reference: list[tuple] | None = None,
                     speedups: list[tuple] | None = None) -> pd.DataFrame:
    """predictions.csv: one row per cell, in plan order. reference: per cell, the
    calibration campaign's (median, low, high) of the same cell (NaNs where none);
    speedups: per cell, predict_speedups' (ratio, low, high)."""
    nan3 = (math.nan,) * 3
    ref = reference or [nan3] * len(cells)
    sp = speedups or [nan3] * len(cells)
    df = pd.DataFrame({
        "env": [c["env"] for c in cells], "size_bytes": [int(c["size_bytes"]) for c in cells],
        "op": [c["op"] for c in cells], "config": [cell_key(c) for c in cells],
        "role": [c["role"] for c in cells],
        "predicted_s": predicted["predicted_s"].to_numpy(float),
        "low_s": predicted["low_s"].to_numpy(float), "high_s": predicted["high_s"].to_numpy(float),
        "model_config": [_json(m) for m in model_configs],
        "predicted_at": stamp, "calibration": calibration,
        "cell_id": [c["cell_id"] for c in cells], "reps": [int(c["reps"]) for c in cells],
        "cell": [_json(c) for c in cells],
        "calibration_measured_s": [r[0] for r in ref], "calibration_low_s": [r[1] for r in ref],
        "calibration_high_s": [r[2] for r in ref],
        "predicted_speedup": [s[0] for s in sp], "speedup_low": [s[1] for s in sp],
        "speedup_high": [s[2] for s in sp],
    })
    return df[COLUMNS]


def _json(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


def calibration_reference(cal, cells: list[dict]) -> list[tuple]:
    """Per cell, the calibration campaign's measurement of the same cell (env, size, op,
    configuration) as (median per op, 95% CI low, high), for the baseline cells only (the
    calibration never ran a fix). From the campaign's records while it is there, else from
    the calibration's fit table (its measured value, interval from its standard error)."""
    nan3 = (math.nan,) * 3
    summary = _source_summary(cal)
    fit = _fit_reference(cal)
    out = []
    for c in cells:
        if c.get("role") != "baseline":
            out.append(nan3)
            continue
        key = (c["env"], int(c["size_bytes"]), c["op"])
        found = nan3
        if summary is not None:
            s = summary[(summary["env"] == key[0]) & (summary["size_bytes"] == key[1])
                        & (summary["op"] == key[2]) & (summary["config"] == cell_key(c))]
            if len(s):
                r = s.iloc[0]
                found = (float(r["median_per_op_s"]), float(r["median_ci95_low_s"]),
                         float(r["median_ci95_high_s"]))
        if not math.isfinite(found[0]) and key in fit:
            found = fit[key]
        out.append(found)
    return out


def _source_summary(cal):
    path = source_campaign(cal)
    if path is None or not path.is_dir():
        return None
    try:
        s = store.Campaign.open(path).summary()
    except UserError:
        return None
    s["size_bytes"] = s["size_bytes"].astype("int64")
    s["config"] = s["config"].fillna("{}").astype(str)
    return s


def _fit_reference(cal) -> dict:
    """(env, size, op) -> (measured, low, high) of the fit table, where one cell has that key
    (two configurations under one key are not the same cell: neither is taken)."""
    fit, wls = cal.fit_table, cal.workloads()
    out, count = {}, {}
    for i, r in enumerate(fit.itertuples(index=False)):
        key = (r.env, int(r.size_bytes), r.op)
        half = 1.96 * float((wls[i] if i < len(wls) else {}).get("rel_se") or 0.0)
        m = float(r.measured_s)
        out[key] = (m, m * math.exp(-half), m * math.exp(half))
        count[key] = count.get(key, 0) + 1
    return {k: v for k, v in out.items() if count[k] == 1}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load(path: Path, verify_meta: dict) -> pd.DataFrame:
    """predictions.csv of a verify campaign, checked against the digest metadata.json recorded."""
    try:
        rec = verify_meta["predictions"]
        p = Path(path) / rec["file"]
    except (KeyError, TypeError):
        raise UserError(f"{Path(path) / 'metadata.json'}: field verify.predictions: missing or not a record") from None
    if Path(rec["file"]).name != rec["file"]:
        raise UserError(f"{Path(path) / 'metadata.json'}: field verify.predictions.file: not a file name")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read the predictions ({getattr(e, 'strerror', None) or e})") from None
    if digest(text) != rec.get("sha256"):
        raise UserError(f"{p}: the predictions differ from what was written before measuring "
                        "(digest in metadata.json): refusing to compare against them")
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"config": str, "cell": str, "cell_id": str,
                                                    "model_config": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{p}: corrupt predictions file ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS[:8] if c not in df.columns]
    if missing:
        raise UserError(f"{p}: corrupt predictions file (no column {', '.join(missing)})")
    df["config"] = df["config"].fillna("{}")
    try:
        df["size_bytes"] = df["size_bytes"].astype("int64")
        for c in ("predicted_s", "low_s", "high_s"):
            df[c] = df[c].astype(float)
    except (TypeError, ValueError) as e:
        raise UserError(f"{p}: corrupt predictions file ({str(e).splitlines()[0]})") from None
    for c in ("calibration_measured_s", "calibration_low_s", "calibration_high_s",
              "predicted_speedup", "speedup_low", "speedup_high"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def check_plan(plan: list[dict], predictions: pd.DataFrame, where: Path) -> None:
    """Every cell of plan.json is the cell its prediction was made for (UserError naming the
    first that is not): an edited plan would measure something the model was not asked."""
    p = Path(where) / "plan.json"
    if "cell" not in predictions.columns:          # predictions from before cells were recorded
        if len(plan) != len(predictions):
            raise UserError(f"{p}: {len(plan)} cells, but {len(predictions)} were predicted: refusing")
        for cell, row in zip(plan, predictions.itertuples(index=False)):
            for field, have, want in (("env", cell.get("env"), row.env), ("size_bytes", cell.get("size_bytes"), row.size_bytes),
                                      ("op", cell.get("op"), row.op), ("role", cell.get("role"), row.role),
                                      ("params", cell_key(cell), row.config)):
                if str(have) != str(want):
                    raise UserError(f"{p}: cell {cell.get('cell_id')} {field} is {have} where its prediction "
                                    f"was made for {want}: refusing to measure what was not predicted")
        return
    made_for = {}
    for r in predictions.itertuples(index=False):
        try:
            made_for[str(r.cell_id)] = json.loads(r.cell)
        except (TypeError, ValueError):
            raise UserError(f"{Path(where) / FILE}: cell {r.cell_id}: corrupt cell record") from None
    ids = [c.get("cell_id") for c in plan]
    if set(ids) != set(made_for) or len(ids) != len(made_for):
        extra = sorted(set(ids) - set(made_for)) or sorted(set(made_for) - set(ids))
        raise UserError(f"{p}: the cells differ from those predicted (e.g. {extra[0] if extra else 'a duplicate'}): refusing")
    for cell in plan:
        want = made_for[cell["cell_id"]]
        have = json.loads(_json(cell))
        for field in _CELL_FIELDS + tuple(sorted(set(want) | set(have))):
            if have.get(field) != want.get(field):
                raise UserError(f"{p}: cell {cell['cell_id']}: {_difference(field, have.get(field), want.get(field))}: "
                                "refusing to measure what was not predicted")


def _difference(field, have, want) -> str:
    if isinstance(have, dict) and isinstance(want, dict):
        for k in sorted(set(have) | set(want)):
            if have.get(k) != want.get(k):
                field, have, want = f"{field}.{k}", have.get(k), want.get(k)
                break
    return f"{field} is {have!r} but its prediction was made for {want!r}"
