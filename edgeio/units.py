"""Sizes and times: bytes and seconds inside, KiB/GiB and µs/ms/s for humans.

The one home of the binary units; edgeio/parse.py reads sizes with SIZE_UNITS.
"""

import math

KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# Size suffixes as fio reads them (its default kb_base=1024): k, kb and KiB all mean 1024.
SIZE_UNITS = {"": 1, "b": 1,
              "k": KIB, "kb": KIB, "kib": KIB,
              "m": MIB, "mb": MIB, "mib": MIB,
              "g": GIB, "gb": GIB, "gib": GIB,
              "t": TIB, "tb": TIB, "tib": TIB}


def format_size(n: int) -> str:
    """4096 -> '4 KiB'; exact binary units only, else bytes."""
    for unit, factor in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
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
