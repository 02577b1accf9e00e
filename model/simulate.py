"""Simulate cells: one (environment, size, op) workload, or a whole matrix, memoised."""

from dataclasses import dataclass

from model.engine import Ledger, Sim
from model.environments import EnvConfig, app, build, config_for, default_io_size, study_reps
from model.params import Params


@dataclass
class Workload:
    size_bytes: int
    op: str
    reps: int
    io_size: int | None = None     # bytes per call; None = the probe's default


@dataclass
class CellResult:
    per_op_s: float
    ledger: Ledger          # per operation
    linear: bool            # the app never waited behind another process
    used: frozenset         # parameter names the simulation read

    def linear_part(self, values) -> float:
        return self.ledger.linear_time(values)


def simulate(params, cfg: EnvConfig | str, workload: Workload, mode: str = "aggregate") -> CellResult:
    """Time per operation of one workload in one environment."""
    if not isinstance(params, Params):
        params = Params(params)
    if isinstance(cfg, str):
        cfg = config_for(cfg)
    params.used = set()
    sim = Sim(params, mode)
    envmodel = build(sim, cfg)
    envmodel.open(workload.size_bytes)
    io = workload.io_size or default_io_size(workload.size_bytes)
    ctx, run = app(sim, envmodel, workload.op, workload.size_bytes, io, workload.reps)
    proc = sim.env.process(run())
    sim.env.run(until=proc)
    used = frozenset(params.used)
    params.used = None
    n = workload.reps
    return CellResult(sim.now / n, ctx.ledger.scaled(1.0 / n), ctx.ledger.wait_s == 0.0, used)


class Simulator:
    """Memoised simulation: a cell's result is keyed by the values of exactly the
    parameters its last run read. The run is deterministic and every branch it takes
    depends only on values it read, so equal values mean an identical run."""

    def __init__(self):
        self._memo: dict = {}

    def __call__(self, values: dict, cfg: EnvConfig, workload: Workload) -> CellResult:
        key = (cfg, workload.size_bytes, workload.op, workload.reps, workload.io_size)
        entry = self._memo.get(key)
        if entry is not None:
            used, table = entry
            hit = table.get(tuple(values[n] for n in used))
            if hit is not None:
                return hit
        res = simulate(Params(values), cfg, workload)
        used = tuple(sorted(res.used))
        if entry is None or entry[0] != used:
            entry = (used, {})
            self._memo[key] = entry
        entry[1][tuple(values[n] for n in used)] = res
        return res


def study_workload(size: int, op: str, reps: int | None = None) -> Workload:
    return Workload(int(size), op, int(reps) if reps else study_reps(size))
