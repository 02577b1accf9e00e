"""Tables a command prints or saves for another program: --format json|csv|md.

Like fio's --output-format and hyperfine's exports: one table of rows, written as JSON
(an object with the table's kind, the edgeio version, the columns and the rows; its
schema is in docs/formats.md), CSV (a header and the rows) or Markdown (a pipe table).
Numbers are written as they are (seconds, bytes, ratios); a missing one is null / empty.
"""

import json
import math
from pathlib import Path

from edgeio.errors import UserError

FORMATS = ("json", "csv", "md")
_EXTENSIONS = {".json": "json", ".csv": "csv", ".md": "md", ".markdown": "md"}
SCHEMA_VERSION = 1


def parse_format(fmt) -> str | None:
    """None (the command's own human table) or one of FORMATS; anything else is a user error."""
    if fmt in (None, ""):
        return None
    text = str(fmt).strip().lower()
    if text not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return text


def format_for_file(path, fmt: str | None, default: str = "csv") -> str:
    """The format of a file to write: --format if given, else the file's extension (else
    `default`); a --format that contradicts the extension (CSV into p.json) is refused."""
    suffix = Path(path).suffix.lower()
    implied = _EXTENSIONS.get(suffix)
    if fmt and implied and implied != fmt:
        raise UserError(f"--out {path}: the extension says {implied} but --format is {fmt} "
                        f"(name the file .{fmt} or drop --format)")
    return fmt or implied or default


def _plain(v):
    """A JSON-ready value: numpy scalars unwrapped, NaN/inf as None."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def records(frame, columns=None) -> tuple[list[str], list[dict]]:
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    rows = [{c: _plain(v) for c, v in zip(cols, r)} for r in frame[cols].itertuples(index=False)]
    return cols, rows


def render(kind: str, frame, fmt: str, columns=None, meta: dict | None = None) -> str:
    """The table `frame` (a DataFrame) as text in `fmt`; `meta` goes into the JSON object only."""
    from edgeio import __version__
    cols, rows = records(frame, columns)
    if fmt == "json":
        doc = {"kind": kind, "schema_version": SCHEMA_VERSION, "edgeio_version": __version__,
               **{k: _plain(v) for k, v in (meta or {}).items()}, "columns": cols, "rows": rows}
        return json.dumps(doc, indent=2, default=str) + "\n"
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in cols])
        return buf.getvalue()
    if fmt == "md":
        def cell(v):
            if v is None:
                return ""
            if isinstance(v, float):
                return f"{v:.6g}"
            return str(v).replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
