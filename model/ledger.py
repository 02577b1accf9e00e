"""Where a cell's time goes: the simulation's cost ledger, summed by stage of the I/O path.

A cell's ledger (model/engine.py) counts how often the probe paid each per-call cost,
the device time it waited for and the time it was throttled or queued; times the
calibrated values, that is seconds per operation by parameter. Grouped by the stage
that charges them, it says in a sentence why an environment is slow.
"""

from model.environments import config_for
from model.simulate import Workload, simulate

# Stage of the I/O path that each per-call cost belongs to (model/README.md, Stages).
STAGES = {
    "syscall_s": "system calls", "container_syscall_s": "system calls", "xen_syscall_s": "system calls",
    "write_call_s": "system calls",
    "cache_copy_s_per_byte": "copies", "dram_copy_s_per_byte": "copies", "write_s_per_byte": "copies",
    "guest_copy_s_per_byte": "copies in the guest", "guest_copy_call_s": "copies in the guest",
    "page_dirtying_s": "page cache", "page_io_s": "page cache",
    "fsync_overhead_s": "fsync (journal)", "container_fsync_s": "fsync (journal)",
    "hypercall_s": "hypercalls (VM exits)", "guest_call_s": "guest block requests",
    "virtio_exit_s": "disk transport exits", "xen_ring_s": "Xen ring requests",
    "ring_post_s": "guest block requests", "guest_flush_s": "guest block requests", "trap_s": "disk transport exits",
    "guest_rep_s": "the probe's loop in the guest",
}
DEVICE = "the device"
WAITING = "waiting (throttled or queued)"


def by_cost(result, values: dict) -> dict[str, float]:
    """Seconds per operation of a CellResult by cost: each ledger parameter times its
    count, the device (DEVICE), the waits (WAITING); zeros kept."""
    out = {name: count * values[name] for name, count in result.ledger.coef.items()}
    out[DEVICE] = result.ledger.device_s
    out[WAITING] = result.ledger.wait_s
    return out


def regime_of(env: str, op: str, result) -> str:
    """A simulated cell's regime (model.intervals.regime) from the share of its time spent
    on its device or waiting."""
    from model.intervals import regime
    led = result.ledger
    share = (led.device_s + led.wait_s) / result.per_op_s if result.per_op_s > 0 else 0.0
    return regime(env, op, share)


def by_stage(result, values: dict) -> dict[str, float]:
    """Seconds per operation of a CellResult by stage, largest first."""
    out: dict[str, float] = {}
    for name, seconds in by_cost(result, values).items():
        stage = STAGES.get(name, name)
        out[stage] = out.get(stage, 0.0) + seconds
    return dict(sorted(((k, v) for k, v in out.items() if v > 0), key=lambda kv: -kv[1]))


def cell_ledger(calibration, env: str, size_bytes: int, op: str, config=None) -> tuple[float, dict]:
    """(modelled seconds per op, {stage: seconds}) of a cell the calibration was fitted on
    (its configuration as run), else of the environment's calibrated configuration."""
    values = calibration.values()
    found = [w for w in calibration.workloads() if w["env"] == env]
    exact = [w for w in found if int(w["size_bytes"]) == int(size_bytes) and w["op"] == op]
    w = (exact or found or [{}])[0]
    cfg = config_for(env, config if config is not None else w.get("config"), calibration.machine)
    io = w.get("io_size") if exact else None
    reps = int(w["reps"]) if exact and w.get("reps") else (100 if size_bytes <= (1 << 20) else 10)
    res = simulate(values, cfg, Workload(int(size_bytes), op, reps, io))
    return res.per_op_s, by_stage(res, values)


def sentence(stages: dict, total: float, top: int = 3, floor: float = 0.05) -> str:
    """'91% hypercalls (VM exits), 6% system calls, 3% the device'."""
    if not total or not stages:
        return "no cost recorded"
    parts = [f"{v / total:.0%} {k}" for k, v in list(stages.items())[:top] if v / total >= floor]
    return ", ".join(parts) or f"spread over {len(stages)} stages"
