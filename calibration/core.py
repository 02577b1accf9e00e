"""A calibration: fitted parameter values with their uncertainty, and the fit table."""

import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from edgeio.errors import UserError
from edgeio.identity import differences
from edgeio.parse import Invalid, check_choice, check_dict, check_int, check_list, check_number, check_str
from model.params import FITTED, SPECS

FORMAT = "edgeio-calibration/1"
FIT_COLUMNS = ["env", "size_bytes", "op", "measured_s", "modelled_s", "rel_error"]
VALIDATION_COLUMNS = ["kind", "env", "size_bytes", "op", "measured_s", "predicted_s", "rel_error"]
PARAM_KEYS = ("value", "stderr", "ci95_low", "ci95_high", "unit", "description")


class Calibration:
    """Fitted parameters (`params`), per-cell fit (`fit_table`), where the data came from
    (`source`), how the fit went (`metadata`), and optional `validation`."""

    def __init__(self, params: dict, fit_table: pd.DataFrame, source: str, metadata: dict,
                 validation: pd.DataFrame | None = None, created: str | None = None):
        self.params = params
        self.fit_table = fit_table
        self.source = source
        self.metadata = metadata
        self.validation = validation
        self.created = created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    # -- the machine ------------------------------------------------------------------------
    @property
    def machine(self) -> dict:
        """The facts of the machine this calibration was fitted for."""
        m = self.metadata.get("machine")
        if not isinstance(m, dict) or not m:
            raise UserError(f"calibration of {self.source} records no machine facts (made by an older "
                            "edgeio): calibrate again")
        return m

    @property
    def target(self) -> str:
        return str(self.metadata.get("target") or "")

    @property
    def host(self) -> str:
        return str(self.metadata.get("host") or self.machine.get("host") or "")

    # -- values and their uncertainty -----------------------------------------------------
    def values(self) -> dict[str, float]:
        return {k: float(v["value"]) for k, v in self.params.items()}

    def workloads(self) -> list[dict]:
        """The cells the calibration was fitted on (env, size_bytes, op, reps, io_size)."""
        return list(self.metadata.get("workloads", []))

    def residual_log_sd(self) -> float:
        """Spread of the model's log error on its own cells (in sample)."""
        e = np.log1p(self.fit_table["rel_error"].to_numpy(float))
        return float(np.sqrt(np.mean(e ** 2))) if e.size else 0.0

    def structural_log_sd(self, regime: str | None = None) -> float:
        """The model's structural error (sd of log time per op) measured out of sample:
        leave-one-cell-out residuals (refits when validated, else linearised); of the
        cell's regime (model/intervals.py) when given and measured."""
        s = self.metadata.get("structural_error") or {}
        per = (s.get("regimes") or {}).get(regime) if regime else None
        if per and isinstance(per.get("log_sd"), (int, float)) and math.isfinite(per["log_sd"]):
            return float(per["log_sd"])
        v = s.get("log_sd")
        if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0:
            return float(v)
        n = len(self.fit_table)
        return self.residual_log_sd() * math.sqrt(n / max(1, n - 1)) if n else 0.0

    def structural_within_log_sd(self, regime: str) -> tuple[float, int] | None:
        """(log sd, df) of the regime's errors around its own level (model/intervals.py
        regime_spreads within=True); None for a calibration from before it was recorded."""
        s = self.metadata.get("structural_error") or {}
        per = (s.get("within_regimes") or {}).get(regime)
        if per and isinstance(per.get("log_sd"), (int, float)) and math.isfinite(per["log_sd"]) and per.get("df"):
            return float(per["log_sd"]), int(per["df"])
        return None

    def structural_df(self, regime: str | None = None) -> int:
        s = self.metadata.get("structural_error") or {}
        per = (s.get("regimes") or {}).get(regime) if regime else None
        if per and per.get("df"):
            return int(per["df"])
        return int(s.get("df") or max(1, len(self.fit_table) - 1))

    def prior_only(self) -> list[str]:
        """Fitted parameters no cell of the calibration pinned (they kept their priors)."""
        cov = set(((self.metadata.get("covariance") or {}).get("joint") or {}).get("names") or [])
        return [n for n in FITTED if n not in cov]

    def sample(self, n: int, seed: int = 0) -> list[dict]:
        """Parameter sets drawn from the fit's uncertainty: relative changes d from the
        joint covariance, v*(1+d) for times (kept above 5% of the value), v*exp(d) for
        bandwidths, ratios, factors and counts (fractions at most 1, flushes at least 1)."""
        rng = np.random.default_rng(seed)
        base = self.values()
        draws = [dict(base) for _ in range(n)]
        # parameters no cell pinned are as uncertain as their priors (log-normal)
        widened = self.metadata.get("prior_sd") or {}
        for k in self.prior_only():
            spread = float(widened.get(k, SPECS[k].sd))
            sd = spread if SPECS[k].kind != "linear" else math.log1p(spread)
            z = rng.normal(0.0, sd, size=n)
            for draw, zk in zip(draws, z.tolist()):
                v = base[k] * math.exp(zk)
                draw[k] = _clamp(k, v)
        cov = (self.metadata.get("covariance") or {}).get("joint") or {}
        if cov.get("names"):
            names, C = cov["names"], np.array(cov["matrix"], float)
            additive = set(cov.get("additive", []))
            d = rng.multivariate_normal(np.zeros(len(names)), _psd(C), size=n, method="eigh")
            for draw, row in zip(draws, d):
                for k, dk in zip(names, row.tolist()):
                    v = base[k]
                    v = max(v * (1 + dk), 0.05 * v) if k in additive else v * float(np.exp(dk))
                    draw[k] = _clamp(k, v)
        return draws

    # -- files ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "created": self.created,
            "source": self.source,
            "machine": self.metadata.get("machine"),
            "target": self.metadata.get("target"),
            "host": self.metadata.get("host"),
            "metadata": self.metadata,
            "params": self.params,
            "fit": _records(self.fit_table),
            "validation": None if self.validation is None else _records(self.validation),
        }

    def save(self, path) -> Path:
        from edgeio.store import write_atomic
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {path.parent}: {e.strerror}") from None
        write_atomic(path, json.dumps(self.to_json(), indent=1, default=_jsonable))
        return path


def load(path) -> Calibration:
    """Read a calibration file; a corrupt or foreign file is a UserError naming it."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such calibration file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a calibration file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt calibration file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an {FORMAT} calibration file")
    try:
        check_file(data)
    except Invalid as e:
        raise UserError(f"{path}: {e.field}: {e.why}") from None
    if data.get("machine") is not None:
        from model.machine import check as check_machine
        check_machine(data["machine"], str(path), "machine.")
    try:
        params = data["params"]
        # every parameter the model has, fixed ones too: a file written before the model
        # gained one would fail deep inside a simulation (KeyError) instead of here
        missing = [k for k in SPECS if k not in params]
        if missing and len(missing) < len(SPECS):
            raise UserError(f"{path}: calibration made by an older model (no value for {', '.join(missing)}): "
                            "calibrate again")
        if missing:
            raise UserError(f"{path}: corrupt calibration file (no value for {', '.join(missing)})")
        for k, v in params.items():
            if k not in SPECS:
                raise UserError(f"{path}: corrupt calibration file (unknown parameter {k})")
            if not all(key in v for key in PARAM_KEYS) or not math.isfinite(float(v["value"])):
                raise UserError(f"{path}: corrupt calibration file (parameter {k})")
        fit = pd.DataFrame(data["fit"], columns=FIT_COLUMNS)
        val = data.get("validation")
        val = None if val is None else pd.DataFrame(val, columns=VALIDATION_COLUMNS)
        meta = dict(data.get("metadata") or {})
        for k in ("machine", "target", "host"):
            if data.get(k) is not None:
                meta[k] = data[k]
        cal = Calibration(params, fit, str(data["source"]), meta, val, data.get("created"))
    except UserError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: corrupt calibration file ({type(e).__name__}: {e})") from None
    from model.params import check
    try:
        check(cal.values())
    except UserError as e:
        raise UserError(f"{path}: corrupt calibration file ({e})") from None
    return cal


def check_file(data: dict) -> None:
    """The fields of a calibration file (what `to_json` writes), each of the right type and
    finite; raises Invalid(field, why). The machine facts are model.machine.check's."""
    from edgeio.records import PRIMITIVES
    from model.environments import ENVS, OPS
    OPS = OPS + PRIMITIVES          # a calibration's cells include the protocol's primitives

    def cell_key(row, where: str) -> None:
        """A fit row or a workload names one cell: env, size_bytes, op."""
        check_dict(row, where, optional=False)
        check_choice(row.get("env"), f"{where}.env", ENVS, optional=False)
        check_int(row.get("size_bytes"), f"{where}.size_bytes", lo=1)
        check_choice(row.get("op"), f"{where}.op", OPS, optional=False)

    check_str(data.get("source"), "source", optional=False)
    for key in ("created", "target", "host"):
        check_str(data.get(key), key)
    check_dict(data.get("machine"), "machine")
    params = data.get("params")
    check_dict(params, "params", optional=False)
    for name, p in params.items():
        check_choice(name, f"params.{name}", tuple(SPECS))
        check_dict(p, f"params.{name}", optional=False)
        for key in ("value", "stderr", "ci95_low", "ci95_high"):
            check_number(p.get(key), f"params.{name}.{key}", optional=key != "value")
        check_str(p.get("unit"), f"params.{name}.unit")
        check_str(p.get("description"), f"params.{name}.description")
    for table, columns in (("fit", FIT_COLUMNS), ("validation", VALIDATION_COLUMNS)):
        rows = data.get(table)
        check_list(rows, table, optional=table == "validation")
        for i, row in enumerate(rows or []):
            where = f"{table}[{i}]"
            cell_key(row, where)
            check_str(row.get("kind"), f"{where}.kind", optional=table == "fit")
            for key in columns[3:] if table == "fit" else columns[4:]:
                check_number(row.get(key), f"{where}.{key}", optional=True)
    meta = data.get("metadata")
    check_dict(meta, "metadata")
    meta = meta or {}
    workloads = meta.get("workloads")
    check_list(workloads, "metadata.workloads")
    for i, w in enumerate(workloads or []):
        where = f"metadata.workloads[{i}]"
        cell_key(w, where)
        check_int(w.get("reps"), f"{where}.reps", lo=0, optional=True)
        check_int(w.get("io_size"), f"{where}.io_size", lo=1, optional=True)
    s = meta.get("structural_error")
    check_dict(s, "metadata.structural_error")
    check_number((s or {}).get("log_sd"), "metadata.structural_error.log_sd", lo=0, optional=True)
    check_int((s or {}).get("df"), "metadata.structural_error.df", lo=0, optional=True)
    for field in ("regimes", "within_regimes"):
        regimes = (s or {}).get(field)
        check_dict(regimes, f"metadata.structural_error.{field}")
        for name, r in (regimes or {}).items():
            check_dict(r, f"metadata.structural_error.{field}.{name}", optional=False)
            check_number(r.get("log_sd"), f"metadata.structural_error.{field}.{name}.log_sd", lo=0)
            check_int(r.get("df"), f"metadata.structural_error.{field}.{name}.df", lo=1)
    check_dict(meta.get("prior_sd"), "metadata.prior_sd")
    for name, v in (meta.get("prior_sd") or {}).items():
        check_number(v, f"metadata.prior_sd.{name}", lo=0)
    cov = meta.get("covariance")
    check_dict(cov, "metadata.covariance")
    for kind in ("joint", "wls"):
        c = (cov or {}).get(kind)
        check_dict(c, f"metadata.covariance.{kind}")
        if not c:
            continue
        names, matrix = c.get("names") or [], c.get("matrix") or []
        check_list(names, f"metadata.covariance.{kind}.names")
        for j, n in enumerate(names):
            check_choice(n, f"metadata.covariance.{kind}.names[{j}]", tuple(SPECS))
        check_list(c.get("additive"), f"metadata.covariance.{kind}.additive")
        check_list(matrix, f"metadata.covariance.{kind}.matrix")
        if len(matrix) != len(names):
            raise Invalid(f"metadata.covariance.{kind}.matrix", f"{len(matrix)} rows for {len(names)} names")
        for j, row in enumerate(matrix):
            if not isinstance(row, list) or len(row) != len(names):
                raise Invalid(f"metadata.covariance.{kind}.matrix[{j}]", f"expected a row of {len(names)} numbers")
            for k, x in enumerate(row):
                check_number(x, f"metadata.covariance.{kind}.matrix[{j}][{k}]")


def _clamp(k: str, v: float) -> float:
    if SPECS[k].unit == "fraction":
        v = min(v, 1.0)
    if SPECS[k].unit == "count" or SPECS[k].unit == "x":
        v = max(v, 1.0)
    return v


def matches(cal: "Calibration", facts: dict) -> str | None:
    """None if `cal` was fitted for the machine of `facts`; else why not, one line."""
    try:
        mine = cal.machine
    except UserError as e:
        return str(e)
    diffs = differences(mine, facts)
    if diffs:
        return (f"calibration {cal.source} was fitted for another machine ({'; '.join(diffs)}; "
                "calibration vs this target)")
    return None


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        v = float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _psd(C: np.ndarray) -> np.ndarray:
    """The nearest positive semi-definite matrix (clip negative eigenvalues from pinv noise)."""
    C = (C + C.T) / 2
    w, V = np.linalg.eigh(C)
    return (V * np.maximum(w, 0)) @ V.T
