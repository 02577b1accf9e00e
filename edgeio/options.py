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
