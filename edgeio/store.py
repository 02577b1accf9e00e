"""The results store: one directory per campaign, never overwritten.

Layout of a campaign directory:
  metadata.json        host, tools, git commit, start/end times, the plan's options
  plan.json            the ordered list of cells (written once, at creation)
  cells/<id>.json      one record per finished cell (ok or failed), written atomically:
                       the cell, the probe's raw JSON output, environment metadata
  cells/<id>.log       what the environment printed while running the cell
  samples.csv          derived: one row per batch, every finished cell
  summary.csv          derived: one row per cell (mean per op, median, MAD, 95% CI)

A cell's record appears whole or not at all (write to a temporary file, fsync,
rename), so a killed campaign loses at most the cell it was running, and a resumed
one never counts a sample twice.
"""

import datetime as _dt
import json
import os
import socket
from pathlib import Path

import pandas as pd

from edgeio import stats
from edgeio.errors import UserError

SAMPLE_COLUMNS = [
    "campaign", "cell_id", "env", "target", "host", "arch", "size_bytes", "op",
    "io_size_bytes", "config", "batch", "repetitions", "seconds", "run_config",
]
SUMMARY_KEYS = ["env", "target", "arch", "size_bytes", "op", "io_size_bytes", "config"]


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: temp file, fsync, rename, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt results file ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: corrupt results file (not a JSON object)")
    return data


def config_key(params: dict) -> str:
    """The environment configuration of a cell as one compact, sorted JSON string."""
    return json.dumps(params or {}, sort_keys=True, separators=(",", ":"))


class Campaign:
    """A campaign directory: create it, record finished cells, derive the tables."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.cells_dir = self.path / "cells"

    # -- creation and opening ---------------------------------------------------
    @classmethod
    def create(cls, parent: Path, metadata: dict, plan: list[dict], name: str | None = None):
        parent = Path(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output directory {parent}: {e.strerror}") from None
        if not os.access(parent, os.W_OK):
            raise UserError(f"output directory {parent} is not writable")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = name or f"{stamp}-{socket.gethostname()}"
        for i in range(1000):
            path = parent / (base if i == 0 else f"{base}-{i}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise UserError(f"cannot create campaign directory {path}: {e.strerror}") from None
        campaign = cls(path)
        campaign.cells_dir.mkdir()
        metadata = dict(metadata, campaign=path.name, start_time=now_iso())
        write_atomic(path / "metadata.json", json.dumps(metadata, indent=2, default=str))
        write_atomic(path / "plan.json", json.dumps(plan, indent=2))
        return campaign

    @classmethod
    def open(cls, path: Path):
        path = Path(path)
        if not (path / "metadata.json").is_file() or not (path / "plan.json").is_file():
            raise UserError(f"{path} is not a campaign directory (no metadata.json/plan.json)")
        campaign = cls(path)
        campaign.metadata()
        campaign.plan()
        return campaign

    # -- reading ---------------------------------------------------------------
    def metadata(self) -> dict:
        return _read_json(self.path / "metadata.json")

    def plan(self) -> list[dict]:
        try:
            with open(self.path / "plan.json") as f:
                plan = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path / 'plan.json'}: corrupt results file ({e})") from None
        if not isinstance(plan, list):
            raise UserError(f"{self.path / 'plan.json'}: corrupt results file (not a list)")
        return plan

    def records(self) -> dict[str, dict]:
        """Every finished cell's record, by cell id (corrupt files named in the error)."""
        out = {}
        for p in sorted(self.cells_dir.glob("*.json")):
            rec = _read_json(p)
            if "cell" not in rec or "status" not in rec:
                raise UserError(f"{p}: corrupt results file (no cell/status)")
            out[rec["cell"]["cell_id"]] = rec
        return out

    # -- writing ---------------------------------------------------------------
    def record_cell(self, cell: dict, status: str, probe: dict | None, env_metadata: dict,
                    log: str = "", error: str = "", started: str = "", **extra) -> dict:
        """Store one finished cell atomically; the log is written first."""
        cell_id = cell["cell_id"]
        log_name = f"{cell_id}.log"
        write_atomic(self.cells_dir / log_name, log or "")
        record = {
            "cell": cell, "status": status, "error": error, "probe": probe,
            "env_metadata": env_metadata, "started": started, "ended": now_iso(),
            "log": f"cells/{log_name}", **extra,
        }
        write_atomic(self.cells_dir / f"{cell_id}.json", json.dumps(record, indent=1, default=str))
        return record

    def finish(self, **end_metadata) -> None:
        """Derive samples.csv and summary.csv; add end time to the metadata."""
        meta = self.metadata()
        meta.update(end_metadata, end_time=now_iso())
        write_atomic(self.path / "metadata.json", json.dumps(meta, indent=2, default=str))
        samples = self.samples()
        write_atomic(self.path / "samples.csv", samples.to_csv(index=False))
        write_atomic(self.path / "summary.csv", self.summary(samples).to_csv(index=False))

    def summary(self, samples: pd.DataFrame | None = None) -> pd.DataFrame:
        """summarize() of the samples, with the warnings each cell's record carries."""
        records = self.records()
        warnings = {cid: (rec.get("adaptive") or {}).get("warnings", []) for cid, rec in records.items()}
        return summarize(self.samples() if samples is None else samples, warnings)

    def samples(self) -> pd.DataFrame:
        rows = []
        campaign = self.path.name
        for rec in self.records().values():
            rows.extend(sample_rows(campaign, rec))
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def sample_rows(campaign: str, record: dict) -> list[dict]:
    """One row per batch of a finished, successful cell."""
    if record.get("status") != "ok" or not record.get("probe"):
        return []
    cell, probe = record["cell"], record["probe"]
    reps, secs = probe.get("batch_reps", []), probe.get("batch_seconds", [])
    if len(reps) != len(secs):
        raise UserError(f"cell {cell.get('cell_id')}: corrupt results file (batch lists differ)")
    base = {
        "campaign": campaign, "cell_id": cell["cell_id"], "env": cell["env"],
        "target": cell.get("target", "local"),
        "host": cell.get("host") or record.get("env_metadata", {}).get("host", ""),
        "arch": cell.get("arch") or record.get("env_metadata", {}).get("arch", ""),
        "size_bytes": int(cell["size_bytes"]), "op": cell["op"],
        "io_size_bytes": int(probe.get("io_size", cell.get("io_size_bytes") or 0)),
        "config": config_key(cell.get("params", {})),
        # the configuration as run, defaults filled in (the record's "config"; {} in older records)
        "run_config": config_key(record.get("config") or {}),
    }
    return [dict(base, batch=i, repetitions=int(r), seconds=float(s))
            for i, (r, s) in enumerate(zip(reps, secs))]


def summarize(samples: pd.DataFrame, cell_warnings: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per (env, target, arch, size, op, io size, config).

    cell_warnings: warnings recorded with a cell (e.g. an adaptive cell whose budget ran
    out before its interval was narrow enough), added to the row's own.
    """
    rows = []
    for key, group in samples.groupby(SUMMARY_KEYS, sort=False):
        row = dict(zip(SUMMARY_KEYS, key), **stats.summarize(group["seconds"], group["repetitions"]))
        if "run_config" in group:     # cells that ran differently under one key: no single config
            configs = set(group["run_config"].fillna("{}").astype(str))
            row["run_config"] = configs.pop() if len(configs) == 1 else ""
        extra = [w for cid in dict.fromkeys(group["cell_id"]) for w in (cell_warnings or {}).get(cid, [])]
        own = [w for w in row["warnings"].split("; ") if w]
        row["warnings"] = "; ".join(dict.fromkeys(own + [w for w in extra if w not in own]))
        rows.append(row)
    cols = SUMMARY_KEYS + list(stats.summarize([1.0, 1.0], [1, 1]).keys())
    if "run_config" in samples:
        cols.append("run_config")
    return pd.DataFrame(rows, columns=cols)


def load_samples(path) -> pd.DataFrame:
    """Samples of one campaign directory (derived from cell records, so always complete)."""
    return Campaign.open(path).samples()


def load_summary(path) -> pd.DataFrame:
    return Campaign.open(path).summary()
