"""Protocols and the plan of a campaign: the ordered list of cells to measure."""

import random

from edgeio.errors import UserError
from edgeio.parse import parse_choices, parse_int, parse_params, parse_size, parse_sizes  # noqa: F401  (commands use planning.parse_*)
from edgeio.units import GIB, KIB, format_size

OPS = ("write_sync", "write", "read")

# The study's protocol (DESIGN.md §1): 4 KiB x 100000 and 1 GiB x 10.
PAPER = {4 * KIB: 100_000, 1 * GIB: 10}
# `invoke measure` with no arguments: small sizes, a few minutes on a laptop.
QUICK_SIZES = (4 * KIB, 1 << 20)
QUICK_REPS = {4 * KIB: 1000, 1 << 20: 50}
MAX_REPS = 100_000_000      # the study's largest is 100000; past this a cell never ends


def parse_ops(text: str, what: str = "--op") -> list[str]:
    """'write,read' -> ops; 'all' = every one; an op twice is refused (measured once)."""
    return parse_choices(what, text, OPS)


def reps_for(size: int, reps: str | int | None, quick: bool) -> int:
    """Repetitions for one size: a number, 'paper' (the study's N), or the quick default."""
    if reps in (None, "", "quick"):
        return QUICK_REPS.get(size, max(3, min(1000, (64 << 20) // size)))
    if reps == "paper":
        if size in PAPER:
            return PAPER[size]
        # The study only ran 4 KiB and 1 GiB; other sizes scale between its two points.
        return max(10, min(100_000, (4 << 30) // (size * 10) * 10 // 10))
    try:
        return parse_int("--reps", reps, lo=1, hi=MAX_REPS)
    except UserError as e:
        raise UserError(f"{e} (repetitions: a whole number, 'paper' or 'auto')") from None


def make_plan(envs: list[str], sizes: list[int], ops: list[str], reps, target: str = "local",
              params: dict[str, dict] | None = None, order: str = "random", seed: int = 0,
              batches: int = 100, io_size: int | None = None, sync: str = "fsync",
              direct: bool = False, cache: str = "warm") -> list[dict]:
    """Every (env, size, op) cell, interleaved so no environment runs all in a row.

    params maps an environment name to its --param values.
    """
    if order not in ("random", "interleaved"):
        raise UserError(f"unknown order {order!r}: random or interleaved")
    if sync not in ("fsync", "fdatasync"):
        raise UserError(f"unknown sync {sync!r}: fsync or fdatasync")
    if cache not in ("warm", "cold"):
        raise UserError(f"unknown cache mode {cache!r}: warm or cold")
    cells = []
    # Interleaved: size-major, then op, then env, so consecutive cells switch environment.
    for size in sizes:
        for op in ops:
            for env in envs:
                cells.append({
                    "env": env, "target": target, "size_bytes": size, "op": op,
                    "reps": reps_for(size, reps, quick=reps is None),
                    "io_size_bytes": io_size, "batches": batches, "sync": sync,
                    "direct": direct, "cache": cache, "params": dict((params or {}).get(env, {})),
                })
    if order == "random":
        random.Random(seed).shuffle(cells)
    for i, cell in enumerate(cells):
        cell["index"] = i
        cell["cell_id"] = f"{i:04d}-{cell['env']}-{format_size(cell['size_bytes']).replace(' ', '')}-{cell['op']}"
    return cells


def plan_from_specs(specs: list[dict], target: str = "local", params: dict[str, dict] | None = None,
                    order: str = "random", seed: int = 0, io_size: int | None = None,
                    sync: str = "fsync", direct: bool = False) -> list[dict]:
    """A protocol's cells (measure/protocol.py: env, size_bytes, op, cache, reps, batches,
    reason, estimates) as a plan, in the same cell format and order rules as make_plan. A
    spec with "rounds": R becomes R cells (round 1..R, cell ids ending -rN), its batches
    and repetitions split between them, each its own run (boot) at its own place in the
    order; the campaign's summary pools them (one summary key)."""
    if order not in ("random", "interleaved"):
        raise UserError(f"unknown order {order!r}: random or interleaved")
    cells = []
    for s in specs:
        rounds = max(1, int(s.get("rounds") or 1))
        batches = max(1, -(-int(s["batches"]) // rounds)) if rounds > 1 else s["batches"]
        per_batch = max(1, int(s["reps"]) // max(1, int(s["batches"])))
        for r in range(rounds):
            cell = {"env": s["env"], "target": target, "size_bytes": int(s["size_bytes"]), "op": s["op"],
                    "io_size_bytes": io_size, "sync": sync, "direct": direct,
                    "params": dict((params or {}).get(s["env"], {})), **s}
            if rounds > 1:
                cell.update(batches=batches, reps=per_batch * batches, round=r + 1, rounds=1)
                if "per_op_estimate_s" in cell and "start_estimate_s" in cell:
                    cell["estimate_s"] = round(cell["start_estimate_s"] + cell["reps"] * cell["per_op_estimate_s"], 3)
            cells.append(cell)
    if order == "random":
        random.Random(seed).shuffle(cells)
    for i, cell in enumerate(cells):
        cell["index"] = i
        cell["cell_id"] = (f"{i:04d}-{cell['env']}-{format_size(cell['size_bytes']).replace(' ', '')}-{cell['op']}"
                           + ("-cold" if cell.get("cache") == "cold" else "")
                           + (f"-r{cell['round']}" if cell.get("round") else ""))
    return cells


__all__ = ["OPS", "PAPER", "make_plan", "plan_from_specs", "parse_ops", "parse_params", "parse_sizes", "parse_size", "reps_for"]
