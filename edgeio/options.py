"""Command-line values shared by the commands."""

from edgeio.errors import UserError


def parse_params(items, example: str = "blocks=8") -> dict:
    """['blocks_per_call=8', 'flush=each-write'] -> dict; bad shapes are user errors."""
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"--param {item!r}: use key=value, e.g. {example}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_int(option: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """An integer option ('--batches', '100'); a user error names the option and the value.

    The tasks hand values over as typed (invoke's own int() conversion would end in a
    traceback), so this is where '--batches abc' becomes one line.
    """
    if isinstance(value, bool):
        raise UserError(f"{option} takes a whole number")
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip()
        try:
            n = int(text)
        except ValueError:
            raise UserError(f"{option} {text!r}: expected a whole number") from None
    if lo is not None and n < lo:
        raise UserError(f"{option} {n}: must be at least {lo}")
    if hi is not None and n > hi:
        raise UserError(f"{option} {n}: must be at most {hi}")
    return n
