"""A short pilot on the target, so the calibration protocol's time estimate is the target's.

Priors from one machine are off by orders of magnitude on another (an emulated Pi board
runs every instruction through QEMU: its first campaign took 83x the priors' estimate).
Before the protocol is sized, a few seconds of real work run on the target through the
environments' own code (so the per-cell overheads are the ones the cells will pay):

  linux  prepare (ship the probe: the link's transfer rate), 4 KiB write x many (a system
         call), 4 KiB write_sync (a flush), 1 MiB write and read (a byte copied);
  hvt    prepare (ship tender and unikernel) and one cell of 64 KiB writes: 128 block
         hypercalls per repetition (a hypercall, on this target's KVM, emulated or not).

run() returns the raw observations; measure/protocol.py (speeds_from_pilot) turns them
into the estimate's costs. Nothing of the pilot is kept on the target.
"""

import time

from edgeio.errors import UserError
from edgeio.units import KIB, MIB
from measure.environments.base import CellFailed, Unavailable

# (env, size, op, reps): each lasts well under a second natively, a few under emulation
CELLS = (("linux", 4 * KIB, "write", 2000), ("linux", 4 * KIB, "write_sync", 20),
         ("linux", MIB, "write", 10), ("linux", MIB, "read", 10), ("linux", MIB, "write_sync", 5),
         ("hvt", 64 * KIB, "write", 10))
BATCHES = 5     # the median batch: a neighbour's burst during one does not set the estimate
TIMEOUT_S = 300


def run(target, classes: dict, params: dict | None = None) -> dict:
    """{"envs": {env: {"prepare_s", "cells": [{size_bytes, op, reps, per_op_s, wall_s,
    probe_s}]}}, "ship_bytes_per_s", "elapsed_s"} for the environments of `classes`
    (name -> Environment class) among linux and hvt; an environment that cannot run is
    left out (its estimate keeps the priors, scaled)."""
    from measure.probe_build import probe_binary
    start = time.monotonic()
    out = {"envs": {}}
    for name in ("linux", "hvt"):
        if name not in classes:
            continue
        env = classes[name](target, dict((params or {}).get(name, {})))
        try:
            env.check()
            t0 = time.monotonic()
            env.prepare()
            prepared = time.monotonic() - t0
            cells = [_cell(env, size, op, reps) for e, size, op, reps in CELLS if e == name]
            if name == "linux":
                out["ship_bytes_per_s"] = _ship_rate(target, env, probe_binary(env.target_arch()))
        except (UserError, CellFailed, Unavailable, TimeoutError) as e:
            out.setdefault("skipped", {})[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        finally:
            try:
                env.teardown()
            except Exception:        # noqa: BLE001 - the pilot's leftovers never stop a campaign
                pass
        out["envs"][name] = {"prepare_s": prepared, "cells": cells}
    out["elapsed_s"] = time.monotonic() - start
    return out


def _ship_rate(target, env, local) -> float:
    """Bytes per second of one copy to the target, timed alone: the whole prepare (which
    also makes directories, reads facts and starts processes) made a local copy look like
    0.6 MB/s, and qemu's 36 MiB of kernel and images then "needed" 1443 s of the budget."""
    remote = f"{env.workdir}/pilot-ship"
    t0 = time.monotonic()
    target.put(local, remote)
    dt = time.monotonic() - t0
    target.run(["rm", "-f", remote], timeout=30)
    return local.stat().st_size / max(dt, 1e-4)


def _cell(env, size: int, op: str, reps: int) -> dict:
    cell = {"env": env.name, "size_bytes": size, "op": op, "reps": reps, "batches": BATCHES,
            "cache": "warm", "sync": "fsync", "direct": False, "io_size_bytes": None,
            "cell_id": f"pilot-{op}-{size}"}
    t0 = time.monotonic()
    result = env.run(cell, timeout=TIMEOUT_S)
    wall = time.monotonic() - t0
    probe = result.probe
    done = max(1, sum(probe.get("batch_reps") or [reps]))
    per_batch = sorted(float(t) / n for t, n in zip(probe.get("batch_seconds") or [], probe.get("batch_reps") or [])
                       if n) or [float(probe["total_seconds"]) / done]
    return {"size_bytes": size, "op": op, "reps": done, "per_op_s": per_batch[len(per_batch) // 2],
            "wall_s": wall, "probe_s": float(probe["total_seconds"]),
            "io_size_bytes": int(probe.get("io_size") or 0) or None}
