"""Every value a person or a file hands edgeio, parsed one way.

Commands (measure, calibrate, predict, verify, report, testbed, main) parse their options
and --param values here, and the readers of files (plan, records, metadata, calibration,
machine profile) check their fields here. What comes back is finite and bounded; what
does not parse is a UserError of one line naming the option (or file field) and the value.

  parse_size('4k') -> 4096        k, kb, KiB = 1024; m, mb, MiB; g, gb, GiB; t, tb, TiB
                                  (as fio reads them: its kb_base is 1024); no suffix = bytes
  parse_sizes('4KiB,1MiB')        a list; a size given twice is refused (never measured twice)
  parse_int, parse_float          whole numbers / finite numbers (nan and inf refused), in bounds
  parse_duration('10m') -> 600.0  ms, s, m (min), h; no unit = seconds
  parse_percent('2%') -> 0.02
  parse_choice, parse_choices     one of a set / a list of them ('all' = every one); a name
                                  given twice is refused
  parse_params(['k=v', ...])      --param key=value; a key given twice is refused

File fields (JSON values, not text): check_number, check_int, check_str, check_choice,
check_dict, check_list raise Invalid(field, why); the reader adds the file's name.
"""

import math
import re

from edgeio.errors import UserError
from edgeio.units import SIZE_UNITS, format_size

MAX_SIZE = 1 << 50           # 1 PiB: past any file, memory or disk edgeio handles
MAX_INT = (1 << 63) - 1      # what JSON readers and numpy keep exactly
MAX_DURATION_S = 366 * 86400.0
SIZE_HELP = "e.g. 512, 4k, 4KiB, 64MiB, 1GiB (k, kb and KiB are 1024 bytes, as fio reads them)"

_SIZE_RE = re.compile(r"\s*([0-9]{1,20})\s*([a-zA-Z]{0,3})\s*")
_INT_RE = re.compile(r"[+-]?[0-9]{1,20}")
_DURATION_RE = re.compile(r"\s*([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*(ms|s|sec|m|min|h|hr)?\s*")
_DURATION_UNITS = {None: 1.0, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0,
                   "h": 3600.0, "hr": 3600.0}


def _named(what: str, value) -> str:
    """'--batches 'abc'' for an option, "hvt: --param blocks_per_call='abc'" for a key=."""
    shown = show(value)
    return f"{what}{shown}" if what.endswith("=") else f"{what} {shown}"


def one_line(text) -> str:
    """`text` with its control characters (a newline in a file's key, a path) escaped, so
    that an error about it stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def show(value) -> str:
    """A value as a message shows it: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _bounds(what, n, lo, hi, shown=None):
    shown = n if shown is None else shown
    label = f"{what}{shown}" if what.endswith("=") else f"{what} {shown}"
    if lo is not None and hi is not None and not lo <= n <= hi:
        raise UserError(f"{label}: expected {lo} to {hi}")
    if lo is not None and n < lo:
        raise UserError(f"{label}: must be at least {lo}")
    if hi is not None and n > hi:
        raise UserError(f"{label}: must be at most {hi}")


# -- sizes ----------------------------------------------------------------------------------
def parse_size(value, what: str = "size", lo: int = 1, hi: int = MAX_SIZE) -> int:
    """'4KiB' -> 4096; see the module doc for the suffixes. An int passes through (bounds
    still checked); a bool, a float or a negative size does not."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{_named(what, value)}: malformed size: use {SIZE_HELP}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE_RE.fullmatch(value)
        factor = SIZE_UNITS.get(m.group(2).lower()) if m else None
        if factor is None:
            raise UserError(f"{_named(what, value)}: malformed size: use {SIZE_HELP}")
        n = int(m.group(1)) * factor
    if not lo <= n <= hi:
        raise UserError(f"{_named(what, value)}: expected {format_size(lo)} to {format_size(hi)}")
    return n


def parse_sizes(text, what: str = "--size", lo: int = 1, hi: int = MAX_SIZE) -> list[int]:
    """'4KiB,1MiB' -> [4096, 1048576] in the order given; the same size twice (4k,4096) is
    refused: a cell is measured once."""
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [p for p in str(text).split(",") if p.strip()]
    out = [parse_size(p, what, lo, hi) for p in parts]
    _no_duplicates(what, text, out)
    return out


# -- numbers --------------------------------------------------------------------------------
def parse_int(what: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number ('100', 100) in [lo, hi]; '1.5', '1e3', '0x10', 'nan' are refused."""
    if isinstance(value, bool):
        raise UserError(f"{_named(what, value)}: expected a whole number")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and math.isfinite(value) and value == int(value):
        n = int(value)
    elif isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        n = int(value.strip())
    else:
        raise UserError(f"{_named(what, value)}: expected a whole number")
    _bounds(what, n, lo, hi)
    if abs(n) > MAX_INT:
        raise UserError(f"{_named(what, value)}: too large")
    return n


def parse_float(what: str, value, lo: float | None = None, hi: float | None = None,
                above: float | None = None) -> float:
    """A finite number in [lo, hi] (`above`: strictly greater); nan and inf are refused."""
    if isinstance(value, bool):
        raise UserError(f"{_named(what, value)}: expected a number")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{_named(what, value)}: expected a number") from None
    if not math.isfinite(x):
        raise UserError(f"{_named(what, value)}: expected a finite number")
    if above is not None and not x > above:
        raise UserError(f"{_named(what, value)}: must be more than {above:g}")
    _bounds(what, x, lo, hi, shown=show(value) if isinstance(value, str) else x)
    return x


def parse_duration(value, what: str = "duration", hi: float = MAX_DURATION_S) -> float:
    """'10m' -> 600.0, '90s', '1.5h', '250ms', '45' (seconds); positive and finite."""
    if isinstance(value, bool):
        raise UserError(f"{_named(what, value)}: expected a duration such as 90s, 10m, 2h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION_RE.fullmatch(str(value).lower())
        if not m:
            raise UserError(f"{_named(what, value)}: expected a duration such as 90s, 10m, 2h")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{_named(what, value)}: a duration must be positive")
    if seconds > hi:
        raise UserError(f"{_named(what, value)}: must be at most {hi:g} s")
    return seconds


def parse_percent(value, what: str = "value") -> float:
    """'2%' or '0.02' -> 0.02, strictly between 0 and 1."""
    s = str(value).strip()
    scale = 100.0 if s.endswith("%") else 1.0
    x = parse_float(what, s[:-1] if scale == 100.0 else s) / scale if s else None
    if x is None or not 0 < x < 1:
        raise UserError(f"{_named(what, value)}: expected a share between 0% and 100%, e.g. 2% or 0.02")
    return x


# -- names ----------------------------------------------------------------------------------
def parse_choice(what: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"{_named(what, value)}: use {', '.join(map(str, choices))}")
    return value


def parse_choices(what: str, text, choices, all_word: str | None = "all") -> list[str]:
    """'read,write' -> ['read', 'write']; `all_word` (or nothing) = every choice; a name
    given twice is refused."""
    if text is None or (all_word and str(text).strip() in ("", all_word)):
        return list(choices)
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    for n in names:
        if n not in choices and n != all_word:
            extra = f" or {all_word}" if all_word else ""
            raise UserError(f"{what} {n!r}: unknown; choose from {', '.join(choices)}{extra}")
    if all_word and all_word in names:
        if len(names) > 1:
            raise UserError(f"{what} {text!r}: {all_word} already names every one")
        return list(choices)
    _no_duplicates(what, text, names)
    return names


def _no_duplicates(what, text, values) -> None:
    seen = set()
    for v in values:
        if v in seen:
            shown = f"{v} B" if isinstance(v, int) else repr(v)
            raise UserError(f"{what} {str(text)!r}: {shown} given twice (each is measured once)")
        seen.add(v)


def parse_params(items, example: str = "blocks=8", what: str = "--param") -> dict:
    """['blocks_per_call=8', 'flush=each-write'] -> dict of strings; a key twice is refused."""
    out = {}
    for item in items or []:
        item = str(item)
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"{what} {item!r}: use key=value, e.g. {example}")
        k, v = item.split("=", 1)
        k = k.strip()
        if k in out:
            raise UserError(f"{what} {k}: given twice ({k}={out[k]} and {k}={v.strip()})")
        out[k] = v.strip()
    return out


# -- fields of files (JSON values) ------------------------------------------------------------
class Invalid(Exception):
    """One field of a file is wrong: (field, why). The reader names the file."""

    def __init__(self, field: str, why: str):
        field, why = one_line(field), one_line(why)
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def check_number(value, field, lo=None, hi=None, optional=False, whole=False, above=None):
    if value is None and optional:
        return
    kinds = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise Invalid(field, f"expected a {'whole' if whole else 'finite'} number, got {show(value)}")
    if above is not None and not value > above:
        raise Invalid(field, f"expected more than {above}, got {value}")
    if lo is not None and value < lo:
        raise Invalid(field, f"expected at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise Invalid(field, f"expected at most {hi}, got {value}")


def check_int(value, field, lo=None, hi=MAX_INT, optional=False):
    check_number(value, field, lo, hi, optional, whole=True)


def check_str(value, field, optional=True):
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise Invalid(field, f"expected a string, got {show(value)}")


def check_choice(value, field, choices, optional=True):
    if value is None and optional:
        return
    if isinstance(value, (dict, list)) or value not in choices:
        raise Invalid(field, f"expected one of {', '.join(map(str, choices))}, got {show(value)}")


def check_dict(value, field, optional=True):
    if value is None and optional:
        return
    if not isinstance(value, dict):
        raise Invalid(field, f"expected an object, got {show(value)}")


def check_list(value, field, optional=True):
    if value is None and optional:
        return
    if not isinstance(value, list):
        raise Invalid(field, f"expected a list, got {show(value)}")
