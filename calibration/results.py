"""Results sets for calibration: the bundled Pi 4 figures, a campaign directory, or a CSV."""

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from edgeio.errors import UserError
from model.environments import OPS, STUDY

REQUIRED = ["env", "size_bytes", "op", "mean_per_op_s"]
OPTIONAL = ["reps", "config", "io_size_bytes"]
BUNDLED = "pi4_file_access.csv"


def bundled_path() -> Path:
    return Path(str(resources.files("calibration") / "data" / BUNDLED))


def load_results(source: str | None = None) -> pd.DataFrame:
    """None: the study's Pi 4 figures; a directory: a campaign; a file: a CSV results set."""
    if source is None:
        df = _read_csv(bundled_path())
        df.attrs["source"] = f"bundled: study's Raspberry Pi 4 figures (calibration/data/{BUNDLED})"
        return _check(df, "bundled Pi 4 figures")
    path = Path(source)
    if path.is_dir():
        from edgeio import store
        summary = store.load_summary(path)
        if summary.empty:
            raise UserError(f"{path}: campaign has no successful cells to calibrate on")
        summary = summary.rename(columns={"repetitions": "reps"})
        df = summary[[c for c in REQUIRED + OPTIONAL if c in summary.columns]].copy()
        df.attrs["source"] = f"campaign: {path.resolve()}"
        df = _check(df, str(path))
        # the machine the campaign ran on, for the model's structural constants
        mem = store.Campaign.open(path).metadata().get("memory_bytes")
        if isinstance(mem, (int, float)) and mem > 0:
            df.attrs["fixed"] = {"host_memory_bytes": float(mem)}
        return df
    if not path.exists():
        raise UserError(f"{path}: no such results file or campaign directory")
    df = _read_csv(path)
    df.attrs["source"] = f"csv: {path.resolve()}"
    return _check(df, str(path))


def _read_csv(path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a results CSV ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def _check(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Columns present, sizes and times positive, environments and ops the model knows."""
    source = df.attrs.get("source", where)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{where}: results set lacks column(s) {', '.join(missing)} "
                        f"(need {','.join(REQUIRED)}; optional {','.join(OPTIONAL)})")
    if df.empty:
        raise UserError(f"{where}: results set has no rows")
    df = df.copy()
    df["env"] = df["env"].astype(str).str.strip()
    df["op"] = df["op"].astype(str).str.strip()
    for col in ("size_bytes", "mean_per_op_s") + (("reps",) if "reps" in df.columns else ()):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    bad = df[~(df["size_bytes"] > 0) | ~(df["mean_per_op_s"] > 0) | ~np.isfinite(df["mean_per_op_s"])]
    if len(bad):
        r = bad.iloc[0]
        raise UserError(f"{where}: row {bad.index[0] + 2}: size_bytes and mean_per_op_s must be positive numbers "
                        f"(got {r['size_bytes']!r}, {r['mean_per_op_s']!r})")
    unknown = sorted(set(df["env"]) - set(STUDY))
    if unknown:
        raise UserError(f"{where}: the model has no environment {', '.join(unknown)} (known: {', '.join(STUDY)})")
    badops = sorted(set(df["op"]) - set(OPS))
    if badops:
        raise UserError(f"{where}: unknown op {', '.join(badops)} (known: {', '.join(OPS)})")
    df["size_bytes"] = df["size_bytes"].astype("int64")
    df.attrs["source"] = source
    df.attrs["fixed"] = dict(df.attrs.get("fixed") or {})
    return df.reset_index(drop=True)
