"""Which cells a results set lacks to pin the parameters of the environments it has.

A parameter is *needed* when it moves some cell of the study's matrix (4 KiB and 1 GiB x
write_sync, write, read) of an environment present in the results set; it is *pinned*
when it moves a cell the results set actually has. "Moves" means an elasticity
d log(time) / d log(value) of at least 1% at the priors: below that the fit cannot tell
the parameter from its prior (the same threshold the fit uses to name unidentified ones).
A needed parameter that nothing pins would silently stay at its prior, so `invoke
calibrate` refuses such a set unless the user allows priors.
"""

import math

from model.environments import OPS, STUDY, study_reps
from model.params import FITTED, GIB, KIB, priors
from model.simulate import Simulator, Workload

ELASTICITY = 0.01
STEP = 1.1                      # relative step of the finite difference
MATRIX_SIZES = (4 * KIB, 1 * GIB)


def _elasticities(sim, cfg, wl, base, names=FITTED) -> set[str]:
    """Which of `names` this cell's time moves with (at the priors)."""
    t0 = sim(base, cfg, wl).per_op_s
    out = set()
    for name in names:
        v = dict(base)
        v[name] = base[name] * STEP
        if name == "dirty_ratio":
            v[name] = min(1.0, v[name])
        t = sim(v, cfg, wl).per_op_s
        if abs(math.log(t / t0)) / math.log(STEP) >= ELASTICITY:
            out.add(name)
    return out


def missing_cells(cells) -> dict[str, list[tuple[str, int, str]]]:
    """For each needed parameter no cell of `cells` (calibration.fit.Cell) pins: the study
    cells (env, size_bytes, op) of the present environments that would pin it."""
    sim = Simulator()
    base = priors()
    pinned: set[str] = set()
    for c in cells:                 # only what is not pinned yet needs simulating
        pinned |= _elasticities(sim, c.cfg, c.workload, base, [n for n in FITTED if n not in pinned])
    have = {(c.env, c.size_bytes, c.op) for c in cells}
    would: dict[str, list] = {}
    for env in sorted({c.env for c in cells}, key=list(STUDY).index):
        for size in MATRIX_SIZES:
            for op in OPS:
                if (env, size, op) in have:
                    continue
                unpinned = [n for n in FITTED if n not in pinned]
                if not unpinned:
                    return {}
                wl = Workload(size, op, study_reps(size))
                for name in _elasticities(sim, STUDY[env], wl, base, unpinned):
                    would.setdefault(name, []).append((env, size, op))
    return {n: would[n] for n in FITTED if n in would}


def describe(missing: dict) -> str:
    """One line: each parameter and the cells that would pin it."""
    from edgeio.units import format_size
    parts = []
    for name, cells in missing.items():
        alts = " or ".join(f"{e} {format_size(s)} {op}" for e, s, op in cells)
        parts.append(f"{name} (needs {alts})")
    return "; ".join(parts)
