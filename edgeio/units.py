"""Sizes and times: bytes and seconds inside, KiB/GiB and µs/ms/s for humans."""

import math
import re

from edgeio.errors import UserError

_BINARY = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
           "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}
_DECIMAL = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(text) -> int:
    """'4KiB' -> 4096. K/M/G and KiB/MiB/GiB are binary, KB/MB/GB decimal (as fio)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        unit = m.group(2).lower() if m else None
        factor = _BINARY.get(unit) or _DECIMAL.get(unit) if m else None
        if not factor:
            raise UserError(f"malformed size {text!r}: use e.g. 512, 4KiB, 64MiB, 1GiB")
        value = int(m.group(1)) * factor
    if value <= 0:
        raise UserError(f"size must be positive, got {text!r}")
    return value


def parse_sizes(text) -> list[int]:
    return [parse_size(part) for part in str(text).split(",") if part.strip()]


def format_size(n: int) -> str:
    """4096 -> '4 KiB'; exact binary units only, else bytes."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


def format_time(seconds: float, digits: int = 3) -> str:
    """A time with the unit a person would pick: 1.61 µs, 2.35 ms, 36.1 s."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    a = abs(seconds)
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if a >= factor or unit == "ns":
            text = f"{seconds / factor:.{digits}g}"
            return f"{seconds / factor:.0f} {unit}" if "e" in text else f"{text} {unit}"
