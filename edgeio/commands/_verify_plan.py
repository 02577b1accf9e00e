"""What `invoke verify` builds: a scenario's fix as environment parameters, and the cells.

A scenario (model/scenarios.py) says what a fix changes in the model; this module says
which --param values of the measuring environments build that fix, so the fix can be
measured beside the baseline it is compared against. Pure functions: no I/O.
"""

import json
from dataclasses import dataclass

from edgeio.errors import UserError
from edgeio.store import config_key
from edgeio.units import format_size

MIB = 1 << 20
# model/scenarios.py's hvt-flush names -> the tender's --flush policies (measure/environments/hvt.py)
TENDER_FLUSH = {"block": "each-write", "call": "on-request", "none": "none",
                "each-write": "each-write", "on-request": "on-request"}


@dataclass(frozen=True)
class Build:
    """The environment parameters that build a scenario's fix, per environment."""
    scenario: str
    values: dict                 # the scenario's parameters, parsed (defaults filled in)
    fix: dict                    # env -> {--param: value (str)} added to the baseline's
    unbuildable: dict            # env -> why the fix cannot be built for it here


def _ring_or_mapped(env_params_spec: dict, transport: str) -> str | None:
    """None if the hvt environment of this checkout can run `transport`, else why not."""
    if "transport" not in env_params_spec:
        return (f"the hvt environment of this checkout has no transport parameter "
                f"(transport={transport} is not built yet)")
    return None


def build(scenario: str, values: dict, specs: dict) -> Build:
    """The fix of `scenario` with parsed `values`; specs: env -> that env's params_spec.

    Environments of the scenario that cannot build the fix (no knob for it in this
    checkout) are listed in `unbuildable` with the reason, never silently dropped."""
    fix, bad = {}, {}
    v = values
    if scenario == "baseline":
        bad = {e: "the baseline scenario changes nothing: there is no fix to measure" for e in specs}
    elif scenario == "hvt-multiblock":
        fix["hvt"] = {"blocks_per_call": str(v["blocks"])}
    elif scenario == "hvt-flush":
        if str(v["flush"]) not in TENDER_FLUSH:
            raise UserError(f"hvt-flush: flush={v['flush']!r} has no tender policy "
                            f"(known: {', '.join(TENDER_FLUSH)})")
        fix["hvt"] = {"flush": TENDER_FLUSH[str(v["flush"])], "blocks_per_call": str(v["blocks"])}
    elif scenario == "hvt-blocksize":
        fix["hvt"] = {"sector_size": str(v["block_size"])}
    elif scenario == "hvt-ring":
        why = _ring_or_mapped(specs.get("hvt", {}), "ring")
        if why:
            bad["hvt"] = why
        else:
            fix["hvt"] = {"transport": "ring", "batch": str(v["batch"]), "blocks_per_call": str(v["blocks"])}
    elif scenario == "passthrough":
        why = _ring_or_mapped(specs.get("hvt", {}), "mapped")
        if v.get("guest_cache_mib"):
            why = why or "the mapped transport has no unikernel block cache to size (guest_cache_mib)"
        if why:
            bad["hvt"] = why
        else:
            fix["hvt"] = {"transport": "mapped", "blocks_per_call": str(v["blocks"])}
        for env in ("qemu", "xen"):
            bad[env] = "para-passthrough (BitVisor) is not buildable by edgeio: no such hypervisor here"
    elif scenario == "guest-memory":
        mib = int(v["memory"]) // MIB
        if mib * MIB != int(v["memory"]):
            raise UserError(f"guest-memory: memory={v['memory']} B is not a whole number of MiB")
        fix["qemu"] = {"mem": str(mib)}
        fix["xen"] = {"mem": str(mib)}
    elif scenario == "qemu-disk":
        fix["qemu"] = {"disk": str(v["disk"])}
    else:
        raise UserError(f"scenario {scenario}: verify does not know how to build its fix")
    for env, params in list(fix.items()):
        spec = specs.get(env)
        if spec is None:
            del fix[env]
            continue
        missing = sorted(set(params) - set(spec))
        if missing:
            bad[env] = f"env {env} of this checkout has no --param {', '.join(missing)}"
            del fix[env]
    bad = {e: why for e, why in bad.items() if e in specs}
    return Build(scenario, dict(values), fix, bad)


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


def cells(b: Build, workloads: dict, baselines: dict, target: str, batches: int = 100) -> list[dict]:
    """Baseline and fix cells, interleaved (baseline, fix, baseline, fix...) so drift on a
    shared machine falls on both alike. workloads: env -> [(size, op, reps)];
    baselines: env -> the baseline's --param dict (what the calibration campaign ran)."""
    out = []
    for env in sorted(b.fix):
        base = dict(baselines.get(env) or {})
        fixed = {**base, **b.fix[env]}
        roles = [("baseline", base)] + ([("fix", fixed)] if fixed != base else [])
        for size, op, reps in workloads.get(env, []):
            for role, params in roles:
                out.append({"env": env, "target": target, "size_bytes": int(size), "op": op,
                            "reps": int(reps), "io_size_bytes": None, "batches": batches,
                            "sync": "fsync", "direct": False, "cache": "warm",
                            "params": dict(params), "role": role})
    for i, cell in enumerate(out):
        cell["index"] = i
        cell["cell_id"] = (f"{i:04d}-{cell['env']}-{format_size(cell['size_bytes']).replace(' ', '')}"
                           f"-{cell['op']}-{cell['role']}")
    return out


def model_config(cell: dict, spec: dict) -> dict:
    """The cell's configuration as it will run (defaults filled in), in the agreed keys
    of cells/<id>.json["config"] (coord/INTERFACES.md): what the model simulates."""
    p = {**spec, **(cell.get("params") or {})}
    env = cell["env"]
    cfg = {"env": env, "io_size_bytes": cell.get("io_size_bytes") or min(int(cell["size_bytes"]), MIB),
           "sync": (cell.get("sync") or "fsync") if cell["op"] == "write_sync" else "none",
           "direct": bool(cell.get("direct")), "cache": cell.get("cache") or "warm"}
    if "mem" in p:
        cfg["memory_bytes"] = int(float(p["mem"]) * MIB)
    if env == "hvt":
        cfg.update(tender=p.get("tender", "edgeio"), transport=p.get("transport", "hvt"),
                   blocks_per_call=int(p.get("blocks_per_call", 1)), batch=int(p.get("batch", 1)),
                   flush=p.get("flush", "none"), block_size=int(p.get("sector_size", 512)))
    elif env == "qemu":
        cfg.update(disk=p.get("disk", "virtio"), cache_mode=p.get("cache", "writeback"),
                   accel=p.get("accel", "auto"), arch=p.get("arch", "host"))
    return cfg


def cell_key(cell: dict) -> str:
    """How summary.csv names a cell's configuration (edgeio.store.config_key of its params)."""
    return config_key(cell.get("params") or {})


def baseline_params(workloads: list[dict], env: str) -> dict:
    """The --param values the calibration campaign ran `env` with (its most common config)."""
    configs = [w.get("config") or "{}" for w in workloads if w["env"] == env]
    if not configs:
        return {}
    text = max(dict.fromkeys(configs), key=configs.count)
    try:
        params = json.loads(text) if isinstance(text, str) else dict(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
