"""What a verify builds: a scenario's fix as environment parameters, and the cells.

A scenario (model/scenarios.py) says what a fix changes in the model and which --param
values of the measuring environments build it (Scenario.env_params); this module checks
the environments of this checkout take them and can run them at each size, and makes the
fix cells beside the baseline cells they are compared against. Pure functions except
`source_plan`, which reads the calibration campaign's plan.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from edgeio import store
from edgeio.errors import UserError
from edgeio.store import config_key
from edgeio.units import format_size



@dataclass(frozen=True)
class Build:
    """The environment parameters that build a scenario's fix, per environment."""
    scenario: str
    values: dict                 # the scenario's parameters, parsed (defaults filled in)
    fix: dict                    # env -> {--param: value (str)} added to the baseline's
    unbuildable: dict            # env -> why the fix cannot be built for it here


def build(sc, params: dict, specs: dict) -> Build:
    """The fix of scenario `sc` (model/scenarios.py: its `env_params` says which --param
    values build it) with the given --param values; specs: env -> that env's params_spec.

    Environments of the scenario that cannot build the fix here (no scenario build, no
    such --param in this checkout's environment, or nothing changed) are listed in
    `unbuildable` with the reason, never silently dropped."""
    values = sc.parse(dict(params))
    wanted = sc.env_params(params)
    fix, bad = {}, {}
    if wanted is None:
        bad = {e: sc.unbuildable or "no environment builds this scenario" for e in sc.envs}
    else:
        for env in sc.envs:
            if env not in wanted:
                bad[env] = sc.unbuildable or f"the scenario builds nothing for {env}"
        for env, p in wanted.items():
            if env not in specs:
                continue
            missing = sorted(set(p) - set(specs[env]))
            if missing:
                bad[env] = f"env {env} of this checkout has no --param {', '.join(missing)}"
            elif not p:
                bad[env] = f"scenario {sc.name} changes nothing: there is no fix to measure"
            else:
                fix[env] = dict(p)
    return Build(sc.name, values, fix, {e: why for e, why in bad.items() if e in specs})


def check_buildable(b: Build, size: int, env: str, params: dict, spec: dict) -> None:
    """UserError (before anything is measured) if the fix cannot run at this size.

    hvt: a file must be a whole number of calls of blocks_per_call sectors, i.e. 64
    blocks per call do not exist on a 4 KiB file (8 blocks of 512 B)."""
    if env != "hvt":
        return
    p = {**spec, **params}
    try:
        sector, k = int(p.get("sector_size", 512)), int(p.get("blocks_per_call", 1))
    except ValueError:
        return     # the environment's own check names the bad value
    if size % sector:
        raise UserError(f"{b.scenario}: a {format_size(size)} file is not a whole number of "
                        f"{sector} B sectors: cannot build sector_size={sector} for it")
    blocks = size // sector
    if k > blocks or blocks % k:
        raise UserError(f"{b.scenario}: {k} blocks per call cannot be built on a {format_size(size)} file "
                        f"({blocks} blocks of {sector} B); choose sizes with --size (a multiple of "
                        f"{format_size(k * sector)})")


# Runs (boots, for a guest) per cell and role: pyperf spawns many worker processes for
# the same reason. Batches inside one boot share that boot's luck (where the guest's
# memory landed, the TCG translation cache), and one boot per cell made a TCG guest's
# cached read "1.3x faster" on an IDE disk it never touched.
ROUNDS = 3
MAX_ROUNDS = 100               # each round is one boot per cell and role


def cells(b: Build, workloads: dict, baselines: dict, target: str, batches: int = 100,
          rounds: int = ROUNDS) -> list[dict]:
    """Baseline and fix cells, interleaved (baseline, fix, baseline, fix...) so drift on a
    shared machine falls on both alike, each in `rounds` runs of batches/rounds batches
    (round r of the baseline beside round r of the fix; verification.compare pools a
    cell's rounds). workloads: env -> [(size, op, reps)]; baselines: env -> the
    baseline's --param dict (what the calibration campaign ran)."""
    out = []
    per_round = max(1, -(-int(batches) // int(rounds)))
    for env in sorted(b.fix):
        base = dict(baselines.get(env) or {})
        fixed = {**base, **b.fix[env]}
        roles = [("baseline", base)] + ([("fix", fixed)] if fixed != base else [])
        for size, op, reps in workloads.get(env, []):
            for r in range(int(rounds)):
                for role, params in roles:
                    out.append({"env": env, "target": target, "size_bytes": int(size), "op": op,
                                "reps": int(reps), "io_size_bytes": None, "batches": per_round,
                                "sync": "fsync", "direct": False, "cache": "warm",
                                "params": dict(params), "role": role, "round": r + 1})
    for i, cell in enumerate(out):
        cell["index"] = i
        cell["cell_id"] = (f"{i:04d}-{cell['env']}-{format_size(cell['size_bytes']).replace(' ', '')}"
                           f"-{cell['op']}-{cell['role']}" + (f"-r{cell['round']}" if rounds > 1 else ""))
    return out


# A verify cell's batches last at least as long as the protocol's (measure.protocol
# MIN_BATCH_S) by what its baseline measured at calibration, else by the prediction. The
# campaign's reps were sized from priors, and a qemu TCG guest's 1 MiB reads ran in
# 0.4 ms batches (its 4 KiB fsyncs in 2.5 ms ones) whose medians moved 1.9x between
# rounds of one cell (bv12), where a 20 ms batch averages over a neighbour's burst.
MAX_REPS_GROWTH = 256          # a cell grows at most this many times its campaign's reps


def long_enough(cells: list[dict], per_op_s: list[float], min_batch_s: float | None = None) -> list[dict]:
    """cells with each baseline cell's reps raised so that each of its batches lasts at
    least min_batch_s at per_op_s (that cell's time per op: measured at calibration, else
    predicted), by at most MAX_REPS_GROWTH times; other cells unchanged. Pure."""
    from measure.protocol import MIN_BATCH_S
    floor = MIN_BATCH_S if min_batch_s is None else min_batch_s
    out = []
    for c, t in zip(cells, per_op_s):
        if c.get("role") == "baseline" and t and math.isfinite(t) and t > 0:
            batches = max(1, int(c.get("batches") or 1))
            want = math.ceil(floor / t) * batches
            c = dict(c, reps=max(int(c["reps"]), min(want, int(c["reps"]) * MAX_REPS_GROWTH)))
        out.append(c)
    return out


# A fix's repetitions are scaled so that its batches last as long as its baseline's, by
# the prediction (within 1/MAX_REPS_SCALE..MAX_REPS_SCALE times the baseline's reps). On
# a shared machine a short cell and a long one are not measured alike: with two busy
# loops beside, hvt multiblock's 4 KiB fix cells (8x shorter than their baselines) ran
# at the quiet speed in every round, 53 us per op, while their baselines were
# time-shared in some rounds (0.36 ms per op in one, 0.87 ms in the next), and the
# speed-up read 11.4x where one call for eight allows 8x.
MAX_REPS_SCALE = 16


def equal_durations(cells: list[dict], predicted_s: list[float]) -> list[dict]:
    """cells with each fix cell's reps set to its baseline's (same env, size, op and
    round) scaled by the baseline's predicted time per op over its own, never below its
    batch count where the baseline had that many; a fix without a baseline unchanged. Pure."""
    base = {(c["env"], c["size_bytes"], c["op"], c.get("round")): (p, int(c["reps"]))
            for c, p in zip(cells, predicted_s) if c.get("role") == "baseline"}
    out = []
    for c, p in zip(cells, predicted_s):
        b, base_reps = base.get((c["env"], c["size_bytes"], c["op"], c.get("round")), (None, 0))
        if c.get("role") == "fix" and b and p and p > 0 and math.isfinite(b / p):
            scale = min(MAX_REPS_SCALE, max(1 / MAX_REPS_SCALE, b / p))
            reps = max(1, round(base_reps * scale), min(base_reps, int(c.get("batches") or 1)))
            c = dict(c, reps=reps)
        out.append(c)
    return out


def cell_key(cell: dict) -> str:
    """How summary.csv names a cell's configuration (edgeio.store.config_key of its params)."""
    return config_key(cell.get("params") or {})


def baseline_params(plan: list[dict], env: str) -> dict:
    """The --param values the calibration campaign ran `env` with (its most common), from
    that campaign's plan cells; {} (the environment's defaults) if it has none."""
    configs = [config_key(c.get("params") or {}) for c in plan if c.get("env") == env]
    if not configs:
        return {}
    return {str(k): str(v) for k, v in json.loads(max(dict.fromkeys(configs), key=configs.count)).items()}


def reasons(unbuildable: dict) -> str:
    """{env: why} as one clause per distinct reason."""
    by_reason = {}
    for e, r in sorted(unbuildable.items()):
        by_reason.setdefault(r, []).append(e)
    return "; ".join(f"{', '.join(es)}: {r}" for r, es in by_reason.items()) or "nothing to build"


def source_plan(cal) -> list[dict]:
    """The plan of the campaign the calibration was fitted on ([] for a CSV or the bundled
    figures, or a campaign no longer there: the baseline is then the environments' defaults)."""
    path = source_campaign(cal)
    if path is None:
        return []
    try:
        return store.Campaign.open(path).plan()
    except UserError:
        return []


def source_campaign(cal) -> Path | None:
    """The directory of the campaign a calibration was fitted on (None: not a campaign)."""
    src = str(cal.source)
    return Path(src[len("campaign: "):]) if src.startswith("campaign: ") else None


def workloads(cal, env, sizes, ops, reps) -> list[tuple]:
    """(size, op, reps) of `env`: the calibration's cells, or the --size/--op given."""
    from measure.plan import reps_for
    have = {(int(w["size_bytes"]), w["op"]): int(w.get("reps") or 0) for w in cal.workloads() if w["env"] == env}
    sizes = sizes or sorted({s for s, _ in have})
    ops = ops or [o for o in ("write_sync", "write", "read") if any(op == o for _, op in have)]
    out = []
    for s in sizes:
        for o in ops:
            n = reps_for(s, reps, quick=reps is None) if reps else (have.get((s, o)) or reps_for(s, None, quick=True))
            out.append((s, o, n))
    return out
