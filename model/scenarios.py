"""What-if scenarios: data plus a small function that changes an environment's stages.

A scenario names the environments it changes, its parameters with defaults and types,
the values a report should sweep, `apply(cfg, params) -> cfg` (the model's side), and
`env_params(params) -> {env: {--param: value}}` (the measurement side: the environment
parameters that build the fix, for `invoke verify`; None where the fix is not buildable).
Adding one is adding an entry to SCENARIOS.
"""

from dataclasses import dataclass, field
from typing import Callable

from edgeio import limits
from edgeio.errors import UserError
from edgeio.parse import parse_choice, parse_float, parse_int, parse_size
from edgeio.units import GIB, MIB, TIB
from model.environments import DISKS, ENVS, FLUSH_ALIASES, FLUSH_POLICIES, EnvConfig

# A parameter's type: parse(what, value) -> value, `what` naming it ("hvt-multiblock:
# --param blocks="). The bounds of a parameter that builds an environment parameter are
# that parameter's (edgeio/limits.py), so predict refuses what measure would.


def _int(bounds, power_of_two=False):
    def parse(what, v):
        n = parse_int(what, v, *bounds)
        if power_of_two and n & (n - 1):
            raise UserError(f"{what}{n}: must be a power of two")
        return n
    return parse


def _float(lo, hi):
    return lambda what, v: parse_float(what, v, lo, hi)


def _choice(choices):
    return lambda what, v: parse_choice(what, v, choices)


def _size(lo, hi):
    return lambda what, v: parse_size(v, what, lo, hi)


# Model-only parameters (nothing builds them): finite, and within what could exist.
MAX_EXITS_PER_REQUEST = 1000
BLOCKS = _int(limits.HVT_BLOCKS_PER_CALL)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    envs: tuple
    defaults: dict
    sweep: dict
    types: dict
    apply: Callable[[EnvConfig, dict], EnvConfig] = field(repr=False)
    # why a row can come out slower than the baseline (predict prints it under the table)
    explain: str = ""
    # parsed params -> {env: {measure --param: value (str)}}; None: nothing builds it
    build: Callable[[dict], dict] | None = field(default=None, repr=False)
    unbuildable: str = ""          # why not, when build is None or returns None

    def env_params(self, params: dict | None = None) -> dict | None:
        """The environment parameters (measure's --param names, string values) that build
        this what-if on a target, per environment: e.g. hvt-multiblock blocks=8 ->
        {"hvt": {"blocks_per_call": "8"}}. None when no environment builds it (see
        `unbuildable`). `params` are parsed like `parse`."""
        p = self.parse(dict(params or {}))
        if self.build is None:
            return None
        out = self.build(p)
        return None if out is None else {e: {k: str(v) for k, v in kv.items()} for e, kv in out.items()}

    def parse(self, params: dict) -> dict:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise UserError(f"scenario {self.name}: unknown parameter {', '.join(unknown)} (known: {known})")
        out = dict(self.defaults)
        for k, v in params.items():
            out[k] = self.types[k](f"{self.name}: --param {k}=", v)
        return out


def _powers(lo, hi):
    out, x = [], lo
    while x <= hi:
        out.append(x)
        x *= 2
    return out


def _hvt_only(cfg, fn):
    return fn(cfg) if cfg.kind == "hvt" else cfg


FLUSH_CHOICES = FLUSH_POLICIES + tuple(FLUSH_ALIASES)


def _flush_build(p):
    flush = FLUSH_ALIASES.get(p["flush"], p["flush"])
    if flush == "each-block":
        flush = "each-write"     # the study's tender fsynced per hypercall: per write call
    return {"hvt": {"flush": flush, "blocks_per_call": p["blocks"]}}


def _flush_apply(cfg, p):
    return cfg.replace(flush=FLUSH_ALIASES.get(p["flush"], p["flush"]), blocks_per_call=p["blocks"],
                       flush_request=True)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario(
        "baseline", "the environments as they were calibrated (speed-up 1 by construction)",
        ENVS, {}, {}, {}, lambda cfg, p: cfg, build=lambda p: {e: {} for e in ENVS}),
    Scenario(
        "hvt-multiblock", "Solo5 block calls carrying k blocks: one hypercall and one host "
        "pread/pwrite per call (flush policy unchanged: a tender that fsyncs, as the study's did per "
        "hypercall, fsyncs once per call of k blocks)",
        ("hvt",), {"blocks": 8}, {"blocks": _powers(1, 2048)}, {"blocks": BLOCKS},
        lambda cfg, p: cfg.replace(blocks_per_call=p["blocks"]),
        "fewer exits only save time; a slower row comes from the host page cache's writeback "
        "timing (dirty throttling) shifting with the call size",
        build=lambda p: {"hvt": {"blocks_per_call": p["blocks"]}}),
    Scenario(
        "hvt-flush", "the tender's flush policy for write_sync: none (stock Solo5: data reaches only "
        "the host page cache), each-write (fsync after every write call; alias call), on-request "
        "(fsync at the guest's flush request), each-block (the study's tender: an fsync per hypercall, "
        "so per call of `blocks` blocks; alias block)",
        ("hvt",), {"flush": "each-write", "blocks": 8}, {"flush": list(FLUSH_POLICIES)},
        {"flush": _choice(FLUSH_CHOICES), "blocks": BLOCKS},
        _flush_apply,
        "a flush per call of several blocks writes more per fsync; slower only if the host's "
        "writeback timing shifts against it",
        build=_flush_build),
    Scenario(
        "hvt-blocksize", "a larger Solo5 block size (power of two, 512..32768): fewer blocks per file",
        ("hvt",), {"block_size": 4096}, {"block_size": _powers(512, 32768)},
        {"block_size": _int(limits.HVT_SECTOR_SIZE, power_of_two=True)},
        lambda cfg, p: cfg.replace(block_size=p["block_size"]),
        "bigger blocks mean fewer calls but more bytes per block fsync and per host copy; a slower row "
        "is where those per-byte costs outweigh the calls saved",
        build=lambda p: {"hvt": {"sector_size": p["block_size"]}}),
    Scenario(
        "hvt-ring", "a paravirtual transport for hvt: requests on a shared ring, one notification "
        "(hypercall) per batch; the tender still does one host call per request",
        ("hvt",), {"batch": limits.HVT_RING_DEFAULT_BATCH, "blocks": 1}, {"batch": _powers(1, 256)},
        {"batch": _int(limits.HVT_RING_BATCH), "blocks": BLOCKS},
        lambda cfg, p: cfg.replace(transport="ring", batch=p["batch"], blocks_per_call=p["blocks"]),
        "a ring still costs one host call per request; with batch=1 it saves nothing, and a slower "
        "row comes from the host's writeback timing",
        build=lambda p: {"hvt": {"transport": "ring", "batch": p["batch"], "blocks_per_call": p["blocks"]}}),
    Scenario(
        "passthrough", "para-passthrough (BitVisor-style): the guest driver drives the device; no "
        "QEMU/tender/blkback and no host page cache (hvt keeps no page cache unless given "
        "`guest_cache_mib` of its own; without one every block call reaches the card); "
        "`exits_per_request` traps remain per request; `blocks` per hvt call",
        ("qemu", "xen", "hvt"), {"exits_per_request": 1.0, "blocks": 1, "guest_cache_mib": 0},
        {"exits_per_request": [0, 0.5, 1, 2, 4]},
        {"exits_per_request": _float(0, MAX_EXITS_PER_REQUEST), "blocks": BLOCKS,
         "guest_cache_mib": _float(0, limits.HVT_MEM_MIB[1])},
        lambda cfg, p: cfg.replace(
            transport="passthrough", exits_per_request=p["exits_per_request"],
            **({"blocks_per_call": p["blocks"], "guest_cache_bytes": int(p["guest_cache_mib"] * MIB)}
               if cfg.kind == "hvt" else {})),
        "the host page cache is gone: what it absorbed or served (every hvt block, qemu's writes, "
        "reads and fsyncs) now waits for the device; give hvt its own cache: --param guest_cache_mib=N",
        unbuildable="para-passthrough needs a BitVisor-style hypervisor, which edgeio does not build"),
    Scenario(
        "guest-memory", "memory given to the qemu and xen guests (the guest page cache grows; "
        "qemu's host page cache shrinks by as much)",
        ("qemu", "xen"), {"memory": 3 * GIB},
        {"memory": [512 * MIB, 1 * GIB, 2 * GIB, 3 * GIB, int(3.5 * GIB)]}, {"memory": _size(limits.QEMU_MIN_MEM_MIB * MIB, TIB)},
        lambda cfg, p: cfg.replace(memory_bytes=p["memory"]),
        "a bigger guest leaves qemu's host page cache smaller (and a smaller guest caches less), "
        "so more of the file goes to the device",
        build=lambda p: {"qemu": {"mem": max(1, p["memory"] >> 20)}}),
    Scenario(
        "hvt-mapped", "hvt with the disk file mapped into the guest: a block call is a copy in the "
        "guest (no exit, no host call); a flush is one hypercall and an fsync",
        ("hvt",), {}, {}, {},
        lambda cfg, p: cfg.replace(transport="mapped"),
        "a copy in the guest is emulated where KVM is a software hypervisor: per byte it can cost "
        "more than the exits it saves",
        build=lambda p: {"hvt": {"transport": "mapped"}}),
    Scenario(
        "qemu-disk", "QEMU's disk transport: virtio (paravirtual: one exit per request), ide or ahci "
        "(emulated controllers: several trapped register accesses per request)",
        ("qemu",), {"disk": "ide"}, {"disk": list(DISKS)}, {"disk": _choice(DISKS)},
        lambda cfg, p: cfg.replace(transport=p["disk"]),
        "an emulated controller costs more exits per request; virtio is never slower",
        build=lambda p: {"qemu": {"disk": p["disk"]}}),
]}


def get(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UserError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return SCENARIOS[name]
