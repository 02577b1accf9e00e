"""What a campaign directory's files must look like (docs/formats.md), checked on read.

A campaign directory may have been copied, edited or handed over by someone else: a
record of the wrong shape must give one line naming the file and the field, never a
traceback deep in a report, and a cell id must never turn into a path outside the
directory. Pure functions, no I/O: the store reads, these judge.
"""

import re

from edgeio.errors import UserError
from edgeio.parse import Invalid, check_choice, check_dict, check_int, check_number, check_str, show  # noqa: F401

# A cell id becomes file names (cells/<id>.json), data file names on targets and
# container names: letters, digits, '_', '.', '-', starting with a letter or digit
# (so never '.', '..' or a hidden file), at most 128 characters, never a '/'.
CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ENV_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
OPS = ("write_sync", "write", "read")
# The calibration protocol's micro-probes ("primitive" cells, docs/formats.md): each
# repetition is, in hvt, one guest-side block call refused before its exit (call), one
# bare exit (exit), a copy of size_bytes in guest memory (copy), one ring request without
# I/O (ring), one pass of the probe's repetition loop with no call (rep), such a pass with
# write_sync's flush request and nothing to flush (flush); in a qemu guest, one trapped
# register access (trap).
PRIMITIVE_ENV = {"call": "hvt", "exit": "hvt", "copy": "hvt", "ring": "hvt", "rep": "hvt", "flush": "hvt",
                 "trap": "qemu"}
PRIMITIVES = tuple(PRIMITIVE_ENV)
KINDS = ("file", "primitive")
STATUSES = ("ok", "failed")


def valid_cell_id(cell_id) -> str:
    """The id itself, or UserError: it will name files and containers."""
    if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id):
        raise UserError(f"invalid cell id {str(cell_id)[:80]!r}: expected letters, digits, '_', '.', '-' "
                        "(at most 128, not starting with '.' or '-')")
    return cell_id


# -- field checks: edgeio/parse.py's (one home for how a file's value is judged) ----------
_number, _int, _str, _choice, _dict = check_number, check_int, check_str, check_choice, check_dict


# -- a cell (plan.json, and the "cell" of a record) ----------------------------------------
def check_cell(cell, where: str = "cell", planned: bool = False) -> None:
    """docs/formats.md 'A cell'; raises Invalid naming the field. planned (plan.json): the
    repetitions must be there (they drive the probe); a record's samples carry their own."""
    _dict(cell, where, optional=False)
    for key in ("cell_id", "env", "size_bytes", "op") + (("reps",) if planned else ()):
        if key not in cell:
            raise Invalid(f"{where}.{key}", "missing")
    if not isinstance(cell["cell_id"], str) or not CELL_ID.fullmatch(cell["cell_id"]):
        raise Invalid(f"{where}.cell_id", f"not a valid cell id ({show(cell['cell_id'])}): letters, digits, "
                      "'_', '.', '-', at most 128, no '/' or leading '.'")
    if not isinstance(cell["env"], str) or not ENV_NAME.fullmatch(cell["env"]):
        raise Invalid(f"{where}.env", f"not an environment name: {show(cell['env'])}")
    _str(cell.get("target"), f"{where}.target")
    _int(cell["size_bytes"], f"{where}.size_bytes", lo=1)
    _choice(cell.get("kind"), f"{where}.kind", KINDS)
    _choice(cell["op"], f"{where}.op", PRIMITIVES if cell.get("kind") == "primitive" else OPS, optional=False)
    _int(cell.get("reps"), f"{where}.reps", lo=1, optional=not planned)
    _int(cell.get("batches"), f"{where}.batches", lo=1, optional=True)
    _int(cell.get("index"), f"{where}.index", lo=0, optional=True)
    _int(cell.get("io_size_bytes"), f"{where}.io_size_bytes", lo=1, optional=True)
    _choice(cell.get("sync"), f"{where}.sync", ("fsync", "fdatasync"))
    _choice(cell.get("direct"), f"{where}.direct", (True, False))
    _choice(cell.get("cache"), f"{where}.cache", ("warm", "cold"))
    _str(cell.get("host"), f"{where}.host")
    _str(cell.get("arch"), f"{where}.arch")
    params = cell.get("params")
    _dict(params, f"{where}.params")
    for k, v in (params or {}).items():
        if not isinstance(v, str):
            raise Invalid(f"{where}.params.{k}", f"expected a string (as typed after --param), got {show(v)}")
    if cell.get("adaptive") is not None:
        _dict(cell["adaptive"], f"{where}.adaptive")
        _number(cell["adaptive"].get("ci"), f"{where}.adaptive.ci", lo=0)
        _number(cell["adaptive"].get("budget_s"), f"{where}.adaptive.budget_s", lo=0)


def check_plan(plan) -> None:
    if not isinstance(plan, list):
        raise Invalid("(top level)", "expected a list of cells")
    seen = set()
    for i, cell in enumerate(plan):
        check_cell(cell, f"[{i}]", planned=True)
        if cell["cell_id"] in seen:
            raise Invalid(f"[{i}].cell_id", f"{cell['cell_id']} appears twice")
        seen.add(cell["cell_id"])


# -- a record (cells/<id>.json) -------------------------------------------------------------
def check_probe(probe, where: str = "probe") -> None:
    _dict(probe, where, optional=False)
    reps, secs = probe.get("batch_reps"), probe.get("batch_seconds")
    for name, value in (("batch_reps", reps), ("batch_seconds", secs)):
        if not isinstance(value, list):
            raise Invalid(f"{where}.{name}", f"expected a list, got {show(value)}")
    if len(reps) != len(secs):
        raise Invalid(f"{where}.batch_seconds", f"{len(secs)} batches but {len(reps)} in batch_reps")
    for i, r in enumerate(reps):
        _int(r, f"{where}.batch_reps[{i}]", lo=1)
    for i, s in enumerate(secs):
        _number(s, f"{where}.batch_seconds[{i}]", lo=0)     # a negative time is no measurement
    _number(probe.get("total_seconds"), f"{where}.total_seconds", lo=0, optional=True)
    _int(probe.get("io_size"), f"{where}.io_size", lo=1, optional=True)
    _int(probe.get("reps"), f"{where}.reps", lo=0, optional=True)
    _int(probe.get("size"), f"{where}.size", lo=1, optional=True)


def check_record(record, cell_id: str) -> None:
    """A cell record, stored as cells/<cell_id>.json; raises Invalid naming the field."""
    _dict(record, "(top level)", optional=False)
    for key in ("cell", "status"):
        if key not in record:
            raise Invalid(key, "missing")
    check_cell(record["cell"])
    if record["cell"]["cell_id"] != cell_id:
        raise Invalid("cell.cell_id", f"{show(record['cell']['cell_id'])} does not match the file name")
    _choice(record["status"], "status", STATUSES, optional=False)
    _str(record.get("error"), "error")
    _dict(record.get("env_metadata"), "env_metadata")
    _str(record.get("started"), "started")
    _str(record.get("ended"), "ended")
    log = record.get("log")
    if log not in (None, "", f"cells/{cell_id}.log"):
        raise Invalid("log", f"expected cells/{cell_id}.log, got {show(log)}")
    if record["status"] == "ok":
        check_probe(record.get("probe"))
    elif record.get("probe") is not None:
        _dict(record["probe"], "probe")
    _number(record.get("wall_seconds"), "wall_seconds", lo=0, optional=True)
    _int(record.get("attempts"), "attempts", lo=1, optional=True)
    if record.get("adaptive") is not None:
        _dict(record["adaptive"], "adaptive")
        warnings = record["adaptive"].get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise Invalid("adaptive.warnings", "expected a list of strings")


def check_metadata(meta, known_version: int) -> None:
    _dict(meta, "(top level)", optional=False)
    version = meta.get("format", 1)      # campaigns from before the field: version 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid("format", f"unknown format version {show(version)}")
    if version > known_version:
        raise Invalid("format", f"written by a newer edgeio (format {version}; this one reads up to "
                      f"{known_version}): update edgeio to read it")
    _dict(meta.get("targets"), "targets")        # what a resume checks its machine against
    for name, facts in (meta.get("targets") or {}).items():
        _dict(facts, f"targets.{name}", optional=False)
    _str(meta.get("resource_tag"), "resource_tag")
    if meta.get("resource_tag") is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", meta["resource_tag"]):
        raise Invalid("resource_tag", f"expected lower-case letters, digits and '-', got {show(meta['resource_tag'])}")
