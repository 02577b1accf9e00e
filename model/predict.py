"""Predict a scenario: time per op for each calibrated (env, size, op), with intervals."""

import numpy as np
import pandas as pd

from edgeio.errors import UserError
from model.environments import config_for, validate
from model.params import Params
from model.scenarios import get
from model.simulate import Simulator, Workload

N_DRAWS = 24   # parameter draws per prediction interval (a few seconds for the hvt cells)

COLUMNS = ["scenario", "env", "size_bytes", "op", "baseline_s", "predicted_s",
           "pi95_low_s", "pi95_high_s", "speedup"]


def predict(calibration, scenario: str, params: dict | None = None, draws: int = N_DRAWS) -> pd.DataFrame:
    """Predicted time per op under `scenario` against the calibrated baseline.

    The 95% prediction interval carries the calibration's uncertainty (parameter sets
    drawn from the fit's covariance) and the model's own error on the cells it was
    fitted on (log-normal, the fit's residual spread)."""
    sc = get(scenario)
    p = sc.parse(dict(params or {}))
    wls = [w for w in calibration.workloads() if w["env"] in sc.envs]
    if not wls:
        have = sorted({w["env"] for w in calibration.workloads()}) or ["none"]
        raise UserError(f"scenario {sc.name} needs cells of {', '.join(sc.envs)}; the calibration "
                        f"({calibration.source}) has cells of {', '.join(have)} only")
    values = calibration.values()
    Params(values)                          # impossible calibrated values -> UserError
    sim = Simulator()
    samples = calibration.sample(draws) if draws else []
    sd = calibration.residual_log_sd()
    rng = np.random.default_rng(1)
    rows = []
    cfgs = {}
    for w in wls:
        key = (w["env"], w.get("config") or "")
        if key not in cfgs:
            base_cfg = config_for(*key)
            cfg = sc.apply(base_cfg, p)
            validate(cfg)
            cfgs[key] = (base_cfg, cfg)
    for w in wls:
        base_cfg, cfg = cfgs[(w["env"], w.get("config") or "")]
        wl = Workload(int(w["size_bytes"]), w["op"], int(w["reps"]), w.get("io_size"))
        base = sim(values, base_cfg, wl).per_op_s
        pred = sim(values, cfg, wl).per_op_s
        lo = hi = pred
        if samples:
            t = np.array([sim(s, cfg, wl).per_op_s for s in samples])
            t = np.log(t)[:, None] + rng.normal(0.0, sd, size=(len(t), 200)) if sd > 0 else np.log(t)[:, None]
            lo, hi = np.exp(np.percentile(t, [2.5, 97.5]))
        rows.append({"scenario": sc.name, "env": w["env"], "size_bytes": wl.size_bytes, "op": wl.op,
                     "baseline_s": base, "predicted_s": pred, "pi95_low_s": float(min(lo, pred)),
                     "pi95_high_s": float(max(hi, pred)), "speedup": base / pred, **p})
    return pd.DataFrame(rows, columns=COLUMNS + list(p))
