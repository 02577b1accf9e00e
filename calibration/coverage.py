"""Which cells a results set lacks to pin the parameters of the environments it has.

Judged against the results set's own machine and environments, not the study's matrix.
The *reference cells* of a set are, for every environment configuration it has, each op
at each of: 4 KiB (per-call costs), 4x the machine's last-level cache (the DRAM copy
regime; model/machine.py) and every size the set measured in any environment. A
parameter is *needed* when it moves a reference cell and *pinned* when it moves a cell
the set actually has. "Moves" means an elasticity d log(time) / d log(value) of at least
1% at the machine's priors: below that the fit cannot tell the parameter from its prior
(the same threshold the fit uses to name unidentified ones). A needed parameter that
nothing pins would silently stay at its prior, so `invoke calibrate` refuses such a set
unless the user allows priors.
"""

import math

from model.environments import OPS
from model.machine import llc_bytes
from model.params import FITTED, KIB, priors
from model.simulate import Simulator, Workload

ELASTICITY = 0.01
STEP = 1.1                      # relative step of the finite difference


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


def reference_sizes(cells, machine) -> list[int]:
    sizes = {4 * KIB, int(4 * llc_bytes(machine))} | {c.size_bytes for c in cells}
    return sorted(sizes)


def _reps(size):
    return 1000 if size <= (1 << 20) else 10


def pinned_by(cells, machine: dict, sim=None) -> set[str]:
    """The parameters some cell of `cells` moves (primitives and probe cells alike)."""
    sim = sim or Simulator()
    base = priors(machine)
    pinned: set[str] = set()
    for c in cells:                 # only what is not pinned yet needs simulating
        pinned |= _elasticities(sim, c.cfg, c.workload, base, [n for n in FITTED if n not in pinned])
    return pinned


WHATIF_SIZES = (4 * KIB, 1 << 20)


def whatif_needs(cells, machine: dict) -> dict[str, list[str]]:
    """For each parameter a buildable what-if needs on this target (it moves one of the
    what-if's cells at 4 KiB or 1 MiB, configured from the set's own environments) and
    no cell of `cells` pins: the scenarios that need it. The what-ifs themselves are
    never calibration cells (the model is checked on what it has not seen): what they
    need must come from primitives or baseline cells, else it keeps its prior."""
    from model.scenarios import SCENARIOS
    sim = Simulator()
    base = priors(machine)
    pinned = pinned_by(cells, machine, sim)
    configs = {}
    for c in cells:
        if c.op in OPS:
            configs.setdefault((c.env, c.config), c.cfg)
    out: dict[str, list[str]] = {}
    for sc in SCENARIOS.values():
        if sc.name == "baseline" or sc.env_params() is None:
            continue
        p = sc.parse({})
        for (env, _), cfg in configs.items():
            if env not in sc.envs or env not in (sc.env_params() or {}):
                continue
            fixed = sc.apply(cfg, p)
            for size in WHATIF_SIZES:
                for op in OPS:
                    left = [n for n in FITTED if n not in pinned and sc.name not in out.get(n, [])]
                    for name in _elasticities(sim, fixed, Workload(size, op, _reps(size)), base, left):
                        out.setdefault(name, []).append(sc.name)
    return {n: out[n] for n in FITTED if n in out}


def missing_cells(cells, machine: dict) -> dict[str, list[tuple[str, int, str]]]:
    """For each needed parameter no cell of `cells` (calibration.fit.Cell) pins: the
    reference cells (env, size_bytes, op) that would pin it."""
    sim = Simulator()
    base = priors(machine)
    pinned = pinned_by(cells, machine, sim)
    have = {(c.env, c.size_bytes, c.op) for c in cells}
    configs = {}
    for c in cells:
        if c.op in OPS:             # a primitive's configuration is its own, not a reference
            configs.setdefault((c.env, c.config), c.cfg)
    would: dict[str, list] = {}
    for (env, _), cfg in configs.items():
        for size in reference_sizes(cells, machine):
            for op in OPS:
                if (env, size, op) in have:
                    continue
                unpinned = [n for n in FITTED if n not in pinned]
                if not unpinned:
                    return {}
                for name in _elasticities(sim, cfg, Workload(size, op, _reps(size)), base, unpinned):
                    if (env, size, op) not in would.setdefault(name, []):
                        would[name].append((env, size, op))
    return {n: would[n] for n in FITTED if n in would}


def describe(missing: dict) -> str:
    """One line: each parameter and the cells that would pin it."""
    from edgeio.units import format_size
    parts = []
    for name, cells in missing.items():
        alts = " or ".join(f"{e} {format_size(s)} {op}" for e, s, op in cells[:4])
        more = f" (or {len(cells) - 4} more)" if len(cells) > 4 else ""
        parts.append(f"{name} (needs {alts}{more})")
    return "; ".join(parts)
