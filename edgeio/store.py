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

A campaign directory may come from elsewhere (copied from another machine, handed
over to be resumed), so nothing read from it is trusted: plan.json and every record
are checked against docs/formats.md (edgeio/records.py), cell ids follow one fixed
pattern and every path derived from them stays inside the directory, and a directory
written by a newer format version is refused. One writer at a time: `locked()`.
"""

import contextlib
import datetime as _dt
import errno as _errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

import pandas as pd

from edgeio import records as _records, stats
from edgeio.errors import UserError
from edgeio.records import valid_cell_id

# The version of the campaign directory layout this code writes and understands.
FORMAT_VERSION = 1
LOCK_FILE = ".lock"

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


def _read_json(path: Path, what: str = "results file"):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except IsADirectoryError:
        raise UserError(f"{path}: corrupt {what} (a directory)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt {what} ({e}){_how_to_go_on(path)}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


def _how_to_go_on(path: Path) -> str:
    """What a user can do about a bad file: a record can be moved aside and measured again."""
    path = Path(path)
    if path.parent.name == "cells" and path.suffix == ".json":
        return (f"; to measure that cell again, resume with --retry-failed (which sets the record "
                f"aside in cells/retried/) or move the file aside yourself (mv {path} {path}.bad)")
    return "; the cells/ records are untouched, but this campaign cannot be resumed until it is restored"


def _invalid(path: Path, e: _records.Invalid) -> UserError:
    return UserError(f"{path}: corrupt results file: field {e.field}: {e.why}{_how_to_go_on(path)}")


def _inside(root: Path, path: Path) -> Path:
    """path, if it resolves (symlinks followed) inside root; else UserError."""
    real_root, real = Path(root).resolve(), Path(path).resolve()
    if real != real_root and real_root not in real.parents:
        raise UserError(f"{path} points outside the campaign directory {root} (to {real}): refused")
    return path


def config_key(params: dict) -> str:
    """The environment configuration of a cell as one compact, sorted JSON string."""
    return json.dumps(params or {}, sort_keys=True, separators=(",", ":"))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def new_resource_tag(name: str) -> str:
    """What names everything a campaign creates on its targets (dirs, containers, images):
    its name, shortened, and a random part, so two campaigns never share one."""
    return f"{_slug(name)[:40].strip('-') or 'campaign'}-{uuid.uuid4().hex[:8]}"


class Campaign:
    """A campaign directory: create it, record finished cells, derive the tables."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.cells_dir = self.path / "cells"
        self._lock_fd = None
        self._lock_depth = 0

    # -- creation and opening ---------------------------------------------------
    @classmethod
    def create(cls, parent: Path, metadata: dict, plan: list[dict], name: str | None = None):
        """A new directory under parent, whole or not at all: a full disk leaves nothing behind."""
        parent = Path(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output directory {parent}: {e.strerror}") from None
        if not os.access(parent, os.W_OK):
            raise UserError(f"output directory {parent} is not writable")
        for cell in plan:
            valid_cell_id(cell.get("cell_id"))
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
        metadata = dict(metadata, campaign=path.name, format=FORMAT_VERSION,
                        resource_tag=metadata.get("resource_tag") or new_resource_tag(path.name),
                        start_time=now_iso())
        try:
            campaign.cells_dir.mkdir()
            (path / LOCK_FILE).touch()
            # plan.json first: a directory with metadata.json but no plan is no campaign
            write_atomic(path / "plan.json", json.dumps(plan, indent=2))
            write_atomic(path / "metadata.json", json.dumps(metadata, indent=2, default=str))
        except (UserError, OSError) as e:
            shutil.rmtree(path, ignore_errors=True)    # no stub that cannot be resumed
            msg = str(e) if isinstance(e, UserError) else f"cannot create {path}: {e.strerror or e}"
            raise UserError(f"{msg} (nothing was kept)") from None
        return campaign

    @classmethod
    def open(cls, path: Path):
        path = Path(path)
        if not (path / "metadata.json").is_file() or not (path / "plan.json").is_file():
            inside = sorted(p.parent for p in path.glob("*/plan.json")) if path.is_dir() else []
            if inside:
                shown = ", ".join(p.name for p in inside[:8]) + (", …" if len(inside) > 8 else "")
                raise UserError(f"{path} is not a campaign directory but holds {len(inside)} "
                                f"campaign(s): {shown}; resume one, e.g. --resume {inside[-1]}")
            raise UserError(f"{path} is not a campaign directory (no metadata.json/plan.json)")
        campaign = cls(path)
        for sub in (campaign.cells_dir, path / "metadata.json", path / "plan.json"):
            if sub.exists() or sub.is_symlink():
                _inside(path, sub)
        if campaign.cells_dir.is_symlink() or (campaign.cells_dir.exists() and not campaign.cells_dir.is_dir()):
            raise UserError(f"{campaign.cells_dir} is not a directory of the campaign: refused")
        campaign.metadata()
        campaign.plan()
        return campaign

    # -- reading ---------------------------------------------------------------
    def metadata(self) -> dict:
        path = self.path / "metadata.json"
        meta = _read_json(path)
        try:
            _records.check_metadata(meta, FORMAT_VERSION)
        except _records.Invalid as e:
            raise UserError(f"{path}: field {e.field}: {e.why}") from None
        return meta

    def resource_tag(self) -> str:
        """metadata's resource_tag; campaigns from before it get one derived from their path."""
        tag = self.metadata().get("resource_tag")
        if tag:
            return tag
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:8]
        return f"{_slug(self.path.name)[:40].strip('-') or 'campaign'}-{digest}"

    def plan(self) -> list[dict]:
        path = self.path / "plan.json"
        plan = _read_json(path)
        try:
            _records.check_plan(plan)
        except _records.Invalid as e:
            raise UserError(f"{path}: corrupt results file: field {e.field}: {e.why}{_how_to_go_on(path)}") from None
        return plan

    def _record_files(self) -> list[Path]:
        if not self.cells_dir.is_dir():
            return []
        _inside(self.path, self.cells_dir)
        return sorted(self.cells_dir.glob("*.json"))

    def records(self, set_aside_invalid: bool = False) -> dict[str, dict]:
        """Every finished cell's record, by cell id, each checked (docs/formats.md): a bad one
        is named with its field, and the message says how to go on.

        set_aside_invalid (resume --retry-failed): move bad records to cells/retried/
        instead, so their cells are measured again.
        """
        out = {}
        for p in self._record_files():
            try:
                _inside(self.cells_dir, p)
                rec = _read_json(p)
                try:
                    _records.check_record(rec, p.stem)
                except _records.Invalid as e:
                    raise _invalid(p, e) from None
            except UserError:
                if not set_aside_invalid:
                    raise
                self.set_aside(p.stem)
                continue
            out[rec["cell"]["cell_id"]] = rec
        return out

    def set_aside(self, stem: str) -> None:
        """Move cells/<stem>.json and .log to cells/retried/<stem>.<n>.*, the json last
        (it is what marks a cell as done); nothing is deleted."""
        aside = self.cells_dir / "retried"
        if aside.is_symlink():
            raise UserError(f"{aside} is a symbolic link: refused")
        aside.mkdir(exist_ok=True)
        n = 1
        while (aside / f"{stem}.{n}.json").exists() or (aside / f"{stem}.{n}.json").is_symlink():
            n += 1
        for ext in ("log", "json"):
            src = self.cells_dir / f"{stem}.{ext}"
            if src.exists() or src.is_symlink():
                os.replace(src, aside / f"{stem}.{n}.{ext}")

    # -- one writer at a time ---------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Hold the campaign's exclusive lock (flock on .lock); re-entrant for this object.

        A second writer (another measure or resume of the same directory) gets one line
        naming the holder's pid and start time.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        path = self.path / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise UserError(f"cannot open the campaign's lock file {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            if e.errno not in (_errno.EWOULDBLOCK, _errno.EAGAIN, _errno.EACCES):
                raise UserError(f"cannot lock {path}: {e.strerror or e}") from None
            info = dict(item.split("=", 1) for item in holder if "=" in item)
            raise UserError(f"{self.path} is in use by another edgeio run (pid {info.get('pid', '?')} on "
                            f"{info.get('host', '?')}, started {info.get('started', '?')}): wait for it to "
                            "finish or stop it, then resume") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()} host={socket.gethostname()} started={now_iso()}\n".encode(), 0)
        except OSError:
            pass     # the lock holds anyway; only the holder's description is missing
        self._lock_fd, self._lock_depth = fd, 1
        try:
            yield self
        finally:
            self._lock_depth = 0
            self._lock_fd = None
            os.close(fd)     # releases the flock

    def remove_stale_temporaries(self) -> list[str]:
        """Temporary files of writes cut off by a kill (never renamed into place)."""
        gone = []
        for d in (self.path, self.cells_dir):
            for p in d.glob(".*.tmp*"):
                if p.is_file() and not p.is_symlink():
                    p.unlink(missing_ok=True)
                    gone.append(str(p.relative_to(self.path)))
        return gone

    # -- writing ---------------------------------------------------------------
    def record_cell(self, cell: dict, status: str, probe: dict | None, env_metadata: dict,
                    log: str = "", error: str = "", started: str = "", **extra) -> dict:
        """Store one finished cell atomically; the log is written first."""
        cell_id = valid_cell_id(cell.get("cell_id"))
        log_name = f"{cell_id}.log"
        write_atomic(self.cells_dir / log_name, log or "")
        record = {
            "cell": cell, "status": status, "error": error, "probe": probe,
            "env_metadata": env_metadata, "started": started, "ended": now_iso(),
            "log": f"cells/{log_name}", **extra,
        }
        write_atomic(self.cells_dir / f"{cell_id}.json", json.dumps(record, indent=1, default=str))
        return record

    def update_metadata(self, **fields) -> None:
        meta = self.metadata()
        meta.update(fields)
        write_atomic(self.path / "metadata.json", json.dumps(meta, indent=2, default=str))

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
