"""A verify campaign read back: its predictions (checked against their digest), its plan
(checked against the cells predicted), and its comparison recomputed from the cell records.

comparison.csv is what the verify printed; it is never trusted: `load` recomputes the
comparison from the records and refuses a stored file that says otherwise.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edgeio import store
from edgeio.errors import UserError
from verification import predictions as _pred
from verification.compare import BOOL_COLUMNS, COLUMNS, EXPECTED_COLUMNS, SPEEDUP_STATISTIC, STATISTICS, compare
from verification.summary import jsonable, summarize

COMPARISON = "comparison.csv"
SUMMARY = "comparison.json"


class Unfinished(UserError):
    """A verify that has not written its comparison yet (killed, or still running)."""


@dataclass
class Verification:
    path: Path
    verify: dict                 # metadata.json["verify"]
    predictions: pd.DataFrame
    comparison: pd.DataFrame     # recomputed from the cell records
    first_started: str           # the earliest `started` of its cells ("" if none ran)
    summary: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def predicted_late(self) -> bool:
        """A cell started before the predictions were written: then it is no prediction."""
        written = (self.verify.get("predictions") or {}).get("written_at")
        return bool(written and self.first_started and self.first_started < written)


def is_verify_dir(path: Path) -> bool:
    try:
        return "verify" in store.Campaign.open(path).metadata()
    except UserError:
        return False


def find(folder: Path) -> list[Path]:
    """Verify campaigns directly under `folder`, oldest first."""
    folder = Path(folder)
    found = [p.parent for p in folder.glob("*/plan.json")] if folder.is_dir() else []
    return sorted((p for p in found if is_verify_dir(p)), key=lambda p: (p / "plan.json").stat().st_mtime)


def open_campaign(path) -> tuple:
    """(campaign, verify record, predictions): the predictions checked against their digest
    and the plan against the cells they were made for."""
    path = Path(path)
    campaign = store.Campaign.open(path)
    v = campaign.metadata().get("verify")
    if not isinstance(v, dict) or "predictions" not in v:
        raise UserError(f"{path}: not a verify campaign (no verify record in metadata.json)")
    predictions = _pred.load(path, v)
    _pred.check_plan(campaign.plan(), predictions, path)
    return campaign, v, predictions


def load(path, require_comparison: bool = True) -> Verification:
    """One verify campaign with its comparison recomputed from the records. A stored
    comparison file that differs from it is refused (UserError, one line); none stored:
    Unfinished, unless require_comparison is False."""
    path = Path(path)
    campaign, v, predictions = open_campaign(path)
    stored = stored_comparison(path)
    head = _stored_head(stored)
    comparison = compare(predictions, campaign.samples(), _statistic_of(head), _judged_today(head))
    if stored is None and require_comparison:
        raise Unfinished(f"{path}: no {COMPARISON} (the verify did not finish: invoke verify --resume {path})")
    if stored is not None:
        check_stored(stored, comparison)
    started = sorted(r.get("started", "") for r in campaign.records().values() if r.get("started"))
    return Verification(path, v, predictions, comparison, started[0] if started else "", summarize(comparison))


def stored_comparison(path: Path) -> Path | None:
    """The newest comparison file: a resumed verify writes comparison-<time>.csv beside the first."""
    stamped = sorted(Path(path).glob("comparison-*.csv"))
    if stamped:
        return stamped[-1]
    p = Path(path) / COMPARISON
    return p if p.is_file() else None


def _stored_head(stored: Path | None) -> pd.DataFrame | None:
    """The first rows of a stored comparison, read once to tell how it was judged; None
    when none is stored or it cannot be read (check_stored says what is wrong with it)."""
    if stored is None:
        return None
    try:
        return pd.read_csv(stored, nrows=50, dtype=str)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def _statistic_of(head: pd.DataFrame | None) -> str:
    """What a stored comparison's speed-ups are ratios of: its speedup_statistic column,
    or medians for a file written before that column existed; none stored: today's."""
    if head is None:
        return SPEEDUP_STATISTIC
    if "speedup_statistic" not in head.columns:
        return "median"
    said = set(head["speedup_statistic"].dropna()) & set(STATISTICS)
    return said.pop() if len(said) == 1 else SPEEDUP_STATISTIC


def _judged_today(head: pd.DataFrame | None) -> bool:
    """Whether a stored comparison judged its speed-ups as today (the measurement's noise
    in the expected interval, a predicted direction the model's interval holds): it has
    the expected interval's columns (none stored: today's way)."""
    return head is None or all(c in head.columns for c in EXPECTED_COLUMNS)


def check_stored(file: Path, comparison: pd.DataFrame) -> None:
    """UserError naming the first cell and column where `file` differs from `comparison`
    (the columns both have: a file from before a column existed is checked on the rest)."""
    try:
        stored = pd.read_csv(file, dtype={"config": str, "cell_id": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{file}: corrupt comparison file ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS[:12] if c not in stored.columns]
    if missing:
        raise UserError(f"{file}: corrupt comparison file (no column {', '.join(missing)})")
    if len(stored) != len(comparison):
        raise UserError(f"{file}: {len(stored)} cells, but the cell records give {len(comparison)}: "
                        "the file is not what this campaign measured; refusing it")
    for i in range(len(stored)):
        s, c = stored.iloc[i], comparison.iloc[i]
        for col in [k for k in COLUMNS if k in stored.columns]:
            if not _same(s[col], c[col], col in BOOL_COLUMNS):
                raise UserError(f"{file}: cell {i + 1} ({c['env']} {int(c['size_bytes'])} B {c['op']} {c['role']}) "
                                f"{col} is {s[col]!r} but the cell records give {c[col]!r}: the file is not what "
                                "this campaign measured; refusing it")


def _same(a, b, boolean: bool) -> bool:
    if boolean:
        return _truth(a) == _truth(b)
    if _blank(a) or _blank(b):
        return _blank(a) and _blank(b)
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    except (TypeError, ValueError):
        return str(a) == str(b)


def _truth(x) -> str:
    return "" if _blank(x) else str(str(x).strip().lower() in ("true", "1"))


def _blank(x) -> bool:
    if x is None or (isinstance(x, str) and x.strip() == ""):
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def write(path: Path, comparison: pd.DataFrame) -> tuple[Path, Path]:
    """comparison.csv and its JSON summary (comparison.json); a resumed verify adds
    comparison-<time>.csv/.json beside the first, never rewriting them."""
    csv = Path(path) / COMPARISON
    if csv.exists():
        csv = Path(path) / f"comparison-{store.now_iso().replace(':', '')}.csv"
    store.write_atomic(csv, comparison.to_csv(index=False))
    js = csv.with_suffix(".json")
    store.write_atomic(js, json.dumps(jsonable(summarize(comparison)), indent=2))
    return csv, js
