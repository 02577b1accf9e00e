"""Predictions with intervals: a scenario against the calibrated baseline (`predict`), or
any cells as they will run (`predict_cells`, what `invoke verify` writes down before it
measures).

Intervals: log time per op is modelled as the model's value plus two independent
errors, (1) parameter uncertainty: parameter sets drawn from the calibration's joint
covariance, parameters no cell pinned drawn from their priors (Calibration.sample), and
(2) the model's structural error, measured out of sample on the calibration's own cells
(Calibration.structural_log_sd: leave-one-cell-out residuals) in the predicted cell's
regime (model/intervals.py: environment x primitive / device-bound / CPU). The 95%
interval is exp(log t +- q * sqrt(var_params + sd_struct^2)), q Student t's 97.5% point
with the regime's degrees of freedom.
"""

import json

import numpy as np
import pandas as pd

from edgeio.errors import UserError
from model.environments import assumes, config_for, effective_config, validate
from model.params import Params
from model.scenarios import get
from model.simulate import Simulator, Workload

N_DRAWS = 24   # parameter draws per prediction interval (a few seconds for the hvt cells)

COLUMNS = ["scenario", "env", "size_bytes", "op", "baseline_s", "predicted_s",
           "pi95_low_s", "pi95_high_s", "speedup", "speedup_low", "speedup_high", "assumes"]
CELL_COLUMNS = ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s"]


def _interval(sim, samples, cfg, wl, res, calibration):
    """(low, high) of the 95% prediction interval around the simulated `res`: parameter
    draws plus the structural error of the cell's regime (model/intervals.py)."""
    from model.intervals import interval
    from model.ledger import regime_of
    var = 0.0
    if samples:
        t = np.log([sim(s, cfg, wl).per_op_s for s in samples])
        var = float(np.var(t, ddof=1)) if len(t) > 1 else 0.0
    name = regime_of(cfg.name, wl.op, res)
    lo, hi = interval(res.per_op_s, var, calibration.structural_log_sd(name), calibration.structural_df(name))
    return float(lo), float(hi)


def _default_reps(size: int) -> int:
    # only how soon the simulation reaches its steady state depends on it
    return 100 if size <= (1 << 20) else 10


def predict_cells(calibration, cells, draws: int = N_DRAWS) -> pd.DataFrame:
    """Predicted time per op of each cell as it will run, with its 95% prediction interval.

    cells: [{env, size_bytes, op, config}] with config the cell's effective configuration
    (INTERFACES.md keys; a JSON string or a dict; --param names such as mem (MiB) and
    sector_size are accepted too; absent keys take the measurement side's defaults). The
    machine is the calibration's (calibration.machine). Columns: env, size_bytes, op,
    config (JSON), predicted_s, low_s, high_s."""
    machine = calibration.machine
    values = calibration.values()
    Params(values)                          # impossible calibrated values -> UserError
    sim = Simulator()
    samples = calibration.sample(draws) if draws else []
    rows = []
    for i, c in enumerate(cells):
        try:
            env, size, op = str(c["env"]), int(c["size_bytes"]), str(c["op"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"cell {i + 1}: needs env, size_bytes and op, got {c!r}") from None
        if size <= 0:
            raise UserError(f"cell {i + 1}: size_bytes must be positive, got {size}")
        from edgeio.records import PRIMITIVE_ENV
        from model.environments import OPS
        if op not in OPS and PRIMITIVE_ENV.get(op) != env:
            raise UserError(f"cell {i + 1}: unknown op {op!r} for {env} (known: {', '.join(OPS)}; "
                            f"primitives {', '.join(f'{o} ({e})' for o, e in PRIMITIVE_ENV.items())})")
        config = c.get("config")
        if isinstance(config, str):
            try:
                config = json.loads(config) if config.strip() else {}
            except ValueError:
                raise UserError(f"cell {i + 1}: config {config!r} is not a JSON object") from None
        cfg = config_for(env, config, machine)
        io = (config or {}).get("io_size_bytes") if isinstance(config, dict) else None
        io = int(io) if io else None
        wl = Workload(size, op, int(c.get("reps") or _default_reps(size)), io)
        res = sim(values, cfg, wl)
        pred = res.per_op_s
        lo, hi = _interval(sim, samples, cfg, wl, res, calibration)
        rows.append({"env": env, "size_bytes": size, "op": op,
                     "config": json.dumps(config or {}, sort_keys=True, default=str),
                     "predicted_s": pred, "low_s": lo, "high_s": hi})
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


SPEEDUP_COLUMNS = ["env", "size_bytes", "op", "predicted_speedup", "low", "high"]


def _ratio_interval(sim, samples, base, fix, base_res, fix_res, calibration):
    """95% interval of baseline / fix time (base_res, fix_res: both cells simulated at the
    calibrated values): the ratio in every parameter draw (both cells at once) and the
    structural error of a ratio (see predict_speedups)."""
    from model.intervals import interval, ratio_log_sd, unshared
    from model.ledger import by_cost, regime_of
    (bc, bw), (fc, fw) = base, fix
    ratio = base_res.per_op_s / fix_res.per_op_s
    var = 0.0
    if len(samples) > 1:
        r = np.log([sim(s, bc, bw).per_op_s / sim(s, fc, fw).per_op_s for s in samples])
        var = float(np.var(r, ddof=1))
    name = regime_of(fc.name, fw.op, fix_res)
    within = calibration.structural_within_log_sd(name)
    if within is not None and regime_of(bc.name, bw.op, base_res) == name:
        # one regime: its level error is common to both cells and cancels in the ratio, as
        # does what both cells spend alike
        values = calibration.values()
        log_sd, df = ratio_log_sd(within[0], *unshared(by_cost(base_res, values), by_cost(fix_res, values))), within[1]
    else:
        log_sd, df = calibration.structural_log_sd(name), calibration.structural_df(name)
    lo, hi = interval(ratio, var, log_sd, df)
    return float(lo), float(hi)


def predict_speedups(calibration, pairs, draws: int = N_DRAWS) -> pd.DataFrame:
    """The speed-up a user sees, baseline time / fix time, of each pair of cells as they
    will run (pairs: [(baseline_cell, fix_cell)], cells as predict_cells takes them), with
    its 95% interval: parameter draws give both cells at once (a cost they share cancels
    in the ratio), plus the structural error of a ratio (model/intervals.py): where both
    cells fall in one regime, each cell's error around that regime's level, carried by
    the part of each cell's time the fix changed (a level error common to the regime,
    like the machine's load when the calibration campaign ran, cancels in a ratio
    measured in one run, and so does a cost both cells pay alike); where the fix moves
    to another regime, the fix regime's whole structural error, since nothing cancels.
    The interval is the model's: a measured ratio carries its own noise besides
    (verification.speedup.expected_interval)."""
    machine = calibration.machine
    values = calibration.values()
    Params(values)
    sim = Simulator()
    samples = calibration.sample(draws) if draws else []
    rows = []
    for base, fix in pairs:
        built = []
        for c in (base, fix):
            config = c.get("config")
            if isinstance(config, str):
                config = json.loads(config) if config.strip() else {}
            io = (config or {}).get("io_size_bytes")
            size = int(c["size_bytes"])
            built.append((config_for(str(c["env"]), config, machine),
                          Workload(size, str(c["op"]), int(c.get("reps") or _default_reps(size)),
                                   int(io) if io else None)))
        (bc, bw), (fc, fw) = built
        b, f = sim(values, bc, bw), sim(values, fc, fw)
        ratio = b.per_op_s / f.per_op_s
        lo, hi = _ratio_interval(sim, samples, (bc, bw), (fc, fw), b, f, calibration)
        rows.append({"env": fc.name, "size_bytes": fw.size_bytes, "op": fw.op,
                     "predicted_speedup": ratio, "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=SPEEDUP_COLUMNS)


def predict(calibration, scenario: str, params: dict | None = None, draws: int = N_DRAWS) -> pd.DataFrame:
    """Predicted time per op under `scenario` for each calibrated (env, size, op, config),
    against the calibrated baseline, with 95% prediction intervals (see the module doc)."""
    sc = get(scenario)
    p = sc.parse(dict(params or {}))
    wls = [w for w in calibration.workloads() if w["env"] in sc.envs]
    if not wls:
        have = sorted({w["env"] for w in calibration.workloads()}) or ["none"]
        raise UserError(f"scenario {sc.name} needs cells of {', '.join(sc.envs)}; the calibration "
                        f"({calibration.source}) has cells of {', '.join(have)} only")
    values = calibration.values()
    Params(values)                          # impossible calibrated values -> UserError
    machine = calibration.machine
    sim = Simulator()
    samples = calibration.sample(draws) if draws else []
    rows = []
    cfgs = {}
    for w in wls:
        key = (w["env"], _key(w.get("config")))
        if key not in cfgs:
            base_cfg = config_for(w["env"], w.get("config"), machine)
            cfg = sc.apply(base_cfg, p)
            validate(cfg)
            cfgs[key] = (base_cfg, cfg)
    for w in wls:
        base_cfg, cfg = cfgs[(w["env"], _key(w.get("config")))]
        wl = Workload(int(w["size_bytes"]), w["op"], int(w["reps"]), w.get("io_size"))
        base_res = sim(values, base_cfg, wl)
        base = base_res.per_op_s
        res = sim(values, cfg, wl)
        pred = res.per_op_s
        lo, hi = _interval(sim, samples, cfg, wl, res, calibration)
        rows.append({"scenario": sc.name, "env": w["env"], "size_bytes": wl.size_bytes, "op": wl.op,
                     "baseline_s": base, "predicted_s": pred, "pi95_low_s": lo,
                     "pi95_high_s": hi, "speedup": base / pred,
                     # the speed-up's own interval (predict_speedups: joint draws, the fix's regime)
                     **dict(zip(("speedup_low", "speedup_high"),
                                _ratio_interval(sim, samples, (base_cfg, wl), (cfg, wl), base_res, res, calibration))),
                     "assumes": assumes(cfg), **p})
    return pd.DataFrame(rows, columns=COLUMNS + list(p))


def _key(config) -> str:
    if isinstance(config, dict):
        return json.dumps(config, sort_keys=True, default=str)
    return str(config or "")


__all__ = ["predict", "predict_cells", "predict_speedups", "effective_config"]
