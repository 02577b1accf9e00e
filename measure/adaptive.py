"""Adaptive repetitions: run a cell's probe in rounds until its mean is known well enough.

`--reps auto --ci 2% --budget 10m`: the cell's own reps and batches are a pilot round;
when its batches are shorter than MIN_BATCH_S, the pilot only calibrates the
repetitions per batch (like pyperf's calibration, it is kept aside, not counted), so
every counted batch has the same size. After each round, the 95% confidence half-width of
the mean time per op (over all batches so far) is compared with the target; the cell
stops when it is under the target, or when the next round would not fit in the cell's
time budget. The rounds' batches are concatenated into one probe record.

The stopping rule (`decide`) is a pure function; the engine (measure/campaign.py) runs
the rounds.
"""

import math
from dataclasses import dataclass

from edgeio import stats
from edgeio.parse import parse_duration as _parse_duration, parse_percent
# A batch shorter than this measures the clock and the scheduler more than the op: the
# protocols' floor, one home (measure/protocol.py says why 20 ms).
from measure.protocol import MIN_BATCH_S

DEFAULT_CI = 0.02          # 2% of the mean
DEFAULT_BUDGET_S = 600.0   # 10 minutes per cell
MIN_ROUND_BATCHES = 10     # a round smaller than this costs more in start-up than it buys
MAX_ROUNDS = 50
# Enough batches for any sane interval; beyond this a cell only grows its files.
MAX_BATCHES = 5000
ROUND_SHARE = 0.5
# A round is stopped (and its batches lost) past this multiple of the budget left.
ROUND_TIMEOUT_FACTOR = 2.0


def parse_ci(text) -> float:
    """'2%' or '0.02' -> 0.02 (relative half-width of the 95% interval)."""
    return parse_percent(text, "--ci")


def parse_duration(text, what: str = "--budget") -> float:
    """'10m' -> 600.0, '90s' -> 90.0, '1.5h' -> 5400.0, '45' -> 45.0 seconds."""
    return _parse_duration(text, what)


def mark_plan(plan: list[dict], ci: float = DEFAULT_CI, budget_s: float = DEFAULT_BUDGET_S) -> list[dict]:
    """Make every cell adaptive; its reps/batches become the first (pilot) round."""
    for cell in plan:
        cell["adaptive"] = {"ci": float(ci), "budget_s": float(budget_s)}
    return plan


@dataclass(frozen=True)
class Decision:
    stop: bool
    reason: str               # 'ci reached', 'budget spent', 'max rounds', or '' when going on
    next_batches: int          # batches for the next round (0 when stopping)
    rel_halfwidth: float       # current 95% half-width / mean (nan with < 2 batches)


def rel_halfwidth(values) -> float:
    """95% CI half-width of the mean of `values`, relative to that mean."""
    mean = float(sum(values) / len(values)) if len(values) else math.nan
    half = stats.ci95_halfwidth(values)
    return half / mean if mean > 0 and not math.isnan(half) else math.nan


def decide(values, elapsed_s: float, seconds_per_batch: float, ci: float, budget_s: float,
           rounds: int = 1, round_batches: int = MIN_ROUND_BATCHES) -> Decision:
    """Go on or stop, after a round. values: time per op of every batch so far.

    The batches still needed follow from the current coefficient of variation:
    n ≈ (t · cv / ci)²; the next round asks for those, trimmed to what the
    remaining budget pays for, and at least MIN_ROUND_BATCHES.
    """
    values = [float(v) for v in values]
    n = len(values)
    rel = rel_halfwidth(values)
    if n >= 2 and rel <= ci:
        return Decision(True, "ci reached", 0, rel)
    if rounds >= MAX_ROUNDS:
        return Decision(True, "max rounds", 0, rel)
    if n >= MAX_BATCHES:
        return Decision(True, "max batches", 0, rel)
    remaining = budget_s - elapsed_s
    # A round plans for at most half of what is left: batch times drift (an fsync's cost
    # is heavy-tailed, a neighbour may start writing), and a round that runs long then
    # overshoots by a fraction of the budget, not by all of it.
    affordable = int(ROUND_SHARE * remaining / seconds_per_batch) if seconds_per_batch > 0 else round_batches
    smallest = max(1, min(MIN_ROUND_BATCHES, round_batches))
    if affordable < smallest:
        return Decision(True, "budget spent", 0, rel)
    if n >= 2 and not math.isnan(rel):
        # rel = t·sd/(mean·√n) = t·cv/√n  →  n_needed = n · (rel/ci)²
        needed = math.ceil(n * (rel / ci) ** 2) - n
        # Overshoot a little: the estimate of the spread is itself noisy.
        want = max(smallest, math.ceil(needed * 1.1))
    else:
        want = max(smallest, round_batches)
    return Decision(False, "", min(want, affordable, MAX_BATCHES - n), rel)


def warnings(values, ci: float, decision: Decision) -> list[str]:
    """pyperf-style stability warnings plus one when the target interval was not reached."""
    out = stats.stability_warnings(values)
    if decision.reason != "ci reached":
        got = "n/a" if math.isnan(decision.rel_halfwidth) else f"±{decision.rel_halfwidth:.1%}"
        out.append(f"{decision.reason}: 95% CI {got} of the mean, target ±{ci:.1%}")
    return out


def merge_probes(probes: list[dict]) -> dict:
    """The rounds' probe outputs as one probe record: batches concatenated, totals summed."""
    merged = dict(probes[0])
    merged["batch_reps"] = [r for p in probes for r in p.get("batch_reps", [])]
    merged["batch_seconds"] = [s for p in probes for s in p.get("batch_seconds", [])]
    merged["total_seconds"] = float(sum(merged["batch_seconds"]))
    merged["reps"] = int(sum(p.get("reps", 0) for p in probes))
    merged["rounds"] = len(probes)
    return merged


def pilot_batch_reps(cell: dict) -> int:
    return max(1, int(cell["reps"]) // max(1, int(cell.get("batches") or 1)))


def batch_reps(seconds_per_op: float, current: int, min_batch_s: float = MIN_BATCH_S) -> int:
    """Repetitions per batch so that a batch lasts at least min_batch_s (never fewer than now)."""
    if not seconds_per_op or seconds_per_op <= 0:
        return current
    return max(current, math.ceil(min_batch_s / seconds_per_op))


def round_cell(cell: dict, batches: int, per_batch: int | None = None) -> dict:
    """The cell as one round of `batches` batches of per_batch repetitions (default: the pilot's)."""
    per_batch = per_batch or pilot_batch_reps(cell)
    return dict(cell, reps=per_batch * batches, batches=batches)
