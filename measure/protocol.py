"""Protocols: which cells a campaign measures and how many repetitions go in a timed batch.

Batch sizing (every cell whose repetitions are not given with --reps N): a timed batch
shorter than MIN_BATCH_S measures the clock, the scheduler and a neighbour's burst more
than the operation. pyperf calibrates its loops so one value takes >= 100 ms; our
operations are slower and whole campaigns must fit in minutes, so a batch here lasts at
least 20 ms. The time per operation is not known before the cell runs, so it is
estimated from priors (PRIORS, from this project's quick campaigns on a 2-core x86 VM
with software KVM, the fastest machine we run on: an estimate that is too low makes a
batch longer, not shorter) scaled by what the target's facts and the environment's
configuration say (TCG or KVM, hvt blocks per call, the file against the environment's
memory). Every cell records its estimate and the reason for its size (plan.json).

The calibration protocol (`--protocol calibrate`) picks sizes from the facts so that
each regime the model has a parameter for is measured in every environment present,
within a time budget; see calibrate_specs.
"""

import math

from edgeio.limits import HVT_COPY_ALIGN
from edgeio.records import PRIMITIVES
from edgeio.units import GIB, KIB, MIB, format_size, format_time

MIN_BATCH_S = 0.02          # shortest timed batch (see above)
# a primitive's batches last longer: it pins its parameter alone, and its runs are cheap;
# in 10-15 ms batches the ring primitive read 40 to 60 us a request within one run
PRIMITIVE_MIN_BATCH_S = 0.1
QUICK_BATCHES = 20          # batches of a small cell: enough for a median, a MAD and a CI
LARGE_BATCHES = 3           # batches of a cell whose single operation takes >= LARGE_OP_S
LARGE_OP_S = 0.5
SMALL = 4 * KIB             # per-call costs: one call moves one page
# The guest copy primitive at two sizes, which part a copy's per-call cost from its per-byte
# one: 64 KiB, where the bytes dominate, and the probe's smallest copy (a multiple of 16
# bytes, probe.c), where the call does (here 8.9 us of 11 us; linear from 16 B to 64 KiB)
COPY_PRIMITIVE, COPY_PRIMITIVE_SMALL = 64 * KIB, HVT_COPY_ALIGN
QEMU_CALIBRATE_MIB = 256    # the calibration protocol's small qemu guest (unless --param mem=)
DEFAULT_BUDGET_S = 600.0
FALLBACK_LLC_BYTES = MIB    # = model.machine.FALLBACK_LLC_BYTES, when a target gives no cache size

# Seconds (per call, per byte, per flush) for sizing only; the model fits the real ones.
PRIORS = {
    "call_s": 0.4e-6,               # a read/write system call on the native kernel
    "copy_s_per_byte": 0.025e-9,    # page cache <-> user buffer (write; read is 3x)
    "fsync_s": 0.8e-3,              # ext4 fsync of a small file (journal commit, cache flush)
    "device_write_s_per_byte": 2.5e-9,   # what reaches the disk (write_sync, writes beyond memory)
    "device_read_s_per_byte": 2.0e-9,    # a read that misses the page cache
    "tcg_device_factor": 3.0,       # the emulated virtio data path under TCG
    "tcg_factor": 6.0,              # guest kernel work under TCG (qemu without hardware KVM)
    "kvm_factor": 1.5,              # guest kernel work under hardware KVM
    "tcg_fsync_s": 0.4e-3,          # a guest's fsync: QEMU's flush, host fsync (0.5 ms here, bv9)
    "hvt_call_s_software": 70e-6,   # one hvt block hypercall on a software /dev/kvm
    "hvt_call_s_hardware": 5e-6,    # ... on hardware KVM
    "start_s": {"linux": 0.05, "docker": 0.5, "hvt": 0.3, "qemu_tcg": 8.0, "qemu_kvm": 2.0, "xen": 30.0},
    "image_s_per_byte": 3e-9,       # building a disk image or the probe's first write of its file
    # the hvt primitives (probe.c) on a software / hardware KVM: the guest's block call
    # refused before its exit, a bare exit, a ring request without I/O, a guest copy per call
    # and per byte, and qemu's trapped register access (an exit to QEMU; under TCG a call into
    # its device model: 54 ns here, bv9, where a 10 us prior had sized its batches at 0.8 ms).
    # Software: in units of hvt_call_s_software, which a pilot rescales (~0.6x here: a copy
    # measured 8 us + 124 ns/B, where 600 ns/B had sized its batches at a third of the floor)
    "primitive_s_software": {"call": 40e-6, "exit": 40e-6, "ring": 120e-6, "rep": 20e-6, "flush": 60e-6,
                             "copy_call": 13e-6, "copy_per_byte": 200e-9, "trap": 0.05e-6},
    "primitive_s_hardware": {"call": 0.1e-6, "exit": 5e-6, "ring": 0.5e-6, "rep": 0.02e-6, "flush": 5e-6,
                             "copy_call": 0.02e-6, "copy_per_byte": 0.3e-9, "trap": 5e-6},
    "read_copy_factor": 3.0,        # a read's copy against a write's, per byte
    # per-cell costs outside the probe's timing (starting it, filling a read's file, removing it)
    "cell_overhead_s": 0.05,
    # once per campaign: building and shipping what the cells need (seconds, before the
    # shipped bytes: qemu's kernel, initrd and a disk image per size)
    "prepare_s": {"linux": 0.5, "docker": 10.0, "hvt": 2.0, "qemu": 5.0, "xen": 60.0},
    "ship_bytes_per_s": 200e6,      # copying to the target (local: a file copy)
}
# what qemu ships besides: its kernel and initrd, and one disk image per file size
# (measure/environments/qemu.py: a 64 MiB filesystem plus the file)
QEMU_SHIP_BYTES, QEMU_IMAGE_BYTES = 36 * MIB, 64 * MIB


# Each primitive is measured in this many runs (boots) at their own places in the
# plan's random order, pooled by the campaign's summary: a primitive pins its parameter
# alone, so one measured during a neighbour's burst of load (a ring request at 69 us
# against 40 us quiet, here) would bias every what-if composed from it.
PRIMITIVE_ROUNDS = 3

def _vm_factor(cfg: dict, priors: dict) -> float:
    return priors["tcg_factor"] if cfg.get("accel") == "tcg" else priors["kvm_factor"]


def per_op_estimate(cfg: dict, size: int, op: str, kvm: str = "software", priors: dict | None = None) -> float:
    """Estimated seconds for one repetition (the whole file once) of op in an environment
    whose effective configuration is cfg (Environment.effective_config). priors: PRIORS,
    or the target's own costs (speeds_from_pilot)."""
    p = priors or PRIORS
    env = cfg.get("env")
    if op in PRIMITIVES:
        hardware = kvm == "hardware" and (env != "qemu" or cfg.get("accel") == "kvm")
        prim = p["primitive_s_hardware" if hardware else "primitive_s_software"]
        return prim["copy_call"] + size * prim["copy_per_byte"] if op == "copy" else prim[op]
    if env == "hvt":
        per_call = p["hvt_call_s_hardware" if kvm == "hardware" else "hvt_call_s_software"]
        io = max(1, int(cfg.get("io_size_bytes") or 512))
        t = math.ceil(size / io) * per_call
        if op == "write_sync" and cfg.get("flush", "none") != "none":
            t += p["fsync_s"] + size * p["device_write_s_per_byte"]
        return t
    io = max(1, int(cfg.get("io_size_bytes") or min(size, MIB)))
    calls = math.ceil(size / io)
    guest = env in ("qemu", "xen")
    tcg = guest and cfg.get("accel") == "tcg"
    factor = _vm_factor(cfg, p) if guest else 1.0
    device = p["tcg_device_factor"] if tcg else 1.0
    per_byte = p["copy_s_per_byte"] * (p["read_copy_factor"] if op == "read" else 1)
    t = factor * (calls * p["call_s"] + size * per_byte)
    memory = cfg.get("memory_bytes")
    beyond_memory = memory is not None and size > memory // 2
    if op == "read" and (beyond_memory or cfg.get("cache") == "cold" or cfg.get("direct")):
        t += device * size * p["device_read_s_per_byte"]
    if op == "write_sync" or (op == "write" and beyond_memory):
        fsync = p["tcg_fsync_s"] if tcg else p["fsync_s"]
        t += (fsync if op == "write_sync" else 0.0) + device * size * p["device_write_s_per_byte"]
    return t


def start_estimate(cfg: dict, size: int, priors: dict | None = None) -> float:
    """Seconds a cell costs besides its timed repetitions: start-up, the file's first write,
    the per-cell overhead of running it on the target."""
    p = priors or PRIORS
    env = cfg.get("env")
    key = f"qemu_{'tcg' if cfg.get('accel') == 'tcg' else 'kvm'}" if env == "qemu" else env
    return p["start_s"].get(key, 1.0) + size * p["image_s_per_byte"] + p["cell_overhead_s"]


def prepare_estimate(env: str, sizes: list[int], priors: dict | None = None) -> float:
    """Seconds an environment's prepare takes once per campaign (building, shipping)."""
    p = priors or PRIORS
    t = p["prepare_s"].get(env, 5.0)
    if env == "qemu":
        t += (QEMU_SHIP_BYTES + sum(QEMU_IMAGE_BYTES + s for s in set(sizes))) / p["ship_bytes_per_s"]
    return t


def speeds_from_pilot(pilot: dict) -> dict:
    """PRIORS with the target's own costs from a pilot (measure/pilot.py run()): what the
    pilot measured replaces the prior; the rest (guests, devices, start-up) is the prior
    scaled by how this target's CPU compares with the priors' machine (the geometric mean
    of its system call's and its copy's ratio to the priors). Pure arithmetic."""
    p = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRIORS.items()}
    envs = (pilot or {}).get("envs") or {}
    lin = {(c["size_bytes"], c["op"]): c for c in (envs.get("linux") or {}).get("cells", [])}
    scale = 1.0
    if all(k in lin for k in ((SMALL, "write"), (MIB, "write"), (MIB, "read"))):
        w4, w1, r1 = (lin[k]["per_op_s"] for k in ((SMALL, "write"), (MIB, "write"), (MIB, "read")))
        copy = max(w1 - w4, 1e-3 * w1) / (MIB - SMALL)
        call = max(w4 - SMALL * copy, 0.1 * w4)
        scale = math.sqrt(call / PRIORS["call_s"] * copy / PRIORS["copy_s_per_byte"])
        for key in ("tcg_fsync_s", "device_read_s_per_byte", "device_write_s_per_byte",
                    "hvt_call_s_software", "hvt_call_s_hardware"):
            p[key] = PRIORS[key] * scale
        p["start_s"] = {k: v * scale for k, v in PRIORS["start_s"].items()}
        p["prepare_s"] = {k: v * scale for k, v in PRIORS["prepare_s"].items()}
        for key in ("primitive_s_software", "primitive_s_hardware"):
            p[key] = {k: v * scale for k, v in PRIORS[key].items()}
        p.update(call_s=call, copy_s_per_byte=copy, read_copy_factor=min(10.0, max(0.3, r1 / w1)))
        if (SMALL, "write_sync") in lin:
            p["fsync_s"] = max(lin[(SMALL, "write_sync")]["per_op_s"] - w4, 0.0)
        if (MIB, "write_sync") in lin:
            dev = (lin[(MIB, "write_sync")]["per_op_s"] - w1 - p["fsync_s"]) / MIB
            p["device_write_s_per_byte"] = max(dev, 0.0)
        # a file's first write (a read's fill, a disk image): copied, then written out
        p["image_s_per_byte"] = copy + p["device_write_s_per_byte"]
        over = sorted(c["wall_s"] - c["probe_s"] for c in lin.values())
        p["cell_overhead_s"] = over[len(over) // 2]
        p["start_s"]["linux"] = 0.0          # the overhead measured is the linux cell's start
        p["prepare_s"]["linux"] = envs["linux"]["prepare_s"]
    if pilot and pilot.get("ship_bytes_per_s"):
        p["ship_bytes_per_s"] = float(pilot["ship_bytes_per_s"])
    hvt = envs.get("hvt") or {}
    for c in hvt.get("cells", []):
        calls = max(1, math.ceil(c["size_bytes"] / (c.get("io_size_bytes") or 512)))
        p["hvt_call_s_software"] = p["hvt_call_s_hardware"] = c["per_op_s"] / calls
        # the primitives run in the same guest on the same KVM: scaled by the hvt call
        # measured against its prior (not by the native CPU's ratio: a software KVM's
        # priors already count the emulation)
        for kind in ("software", "hardware"):
            ratio = p[f"hvt_call_s_{kind}"] / PRIORS[f"hvt_call_s_{kind}"]
            p[f"primitive_s_{kind}"] = {k: v * ratio for k, v in PRIORS[f"primitive_s_{kind}"].items()}
        p["start_s"]["hvt"] = max(c["wall_s"] - c["probe_s"] - p["cell_overhead_s"], 0.0)
        p["prepare_s"]["hvt"] = hvt["prepare_s"]
    p["scale"] = scale
    return p


def batch_sizing(per_op_s: float, batches: int | None = None,
                 min_batch_s: float = MIN_BATCH_S) -> tuple[int, int, str]:
    """(reps, batches, reason): each batch lasts >= min_batch_s by the estimate."""
    per_batch = max(1, math.ceil(min_batch_s / per_op_s)) if per_op_s > 0 else 1
    if batches is None:
        batches = LARGE_BATCHES if per_op_s >= LARGE_OP_S else QUICK_BATCHES
    why = (f"{per_batch} reps per batch x {batches} batches: an op takes ~{format_time(per_op_s)} "
           f"(estimate), a batch >= {format_time(min_batch_s)}")
    return per_batch * batches, batches, why


# -- the calibration protocol ----------------------------------------------------------

def _approx(n: int) -> str:
    """A size a person reads: exact binary units where they fit, else 1 decimal."""
    for unit, f in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= f:
            return format_size(n) if n % f == 0 else f"{n / f:.1f} {unit}"
    return f"{n} B"


def _pow2_floor(n: int) -> int:
    return 1 << max(12, int(n).bit_length() - 1)


def _dirty_limit(memory: int, vm: dict) -> int:
    """Bytes of dirty page cache before writers are throttled (vm.dirty_bytes or ratio)."""
    if vm.get("dirty_bytes"):
        return int(vm["dirty_bytes"])
    return int(memory * (vm.get("dirty_ratio") or 20) / 100)


def calibrate_specs(configs: dict[str, dict], facts: dict, budget_s: float = DEFAULT_BUDGET_S,
                    max_size: int | None = None, free_bytes: int | None = None,
                    priors: dict | None = None) -> tuple[list[dict], list[str]]:
    """The calibration protocol's cells for one target: ([spec], [notes]).

    configs: env name -> that environment's effective config (as planned, for a 4 KiB cell);
    facts: the target's machine facts. A spec is {env, size_bytes, op, cache, reps,
    batches, reason, estimate_s}; notes say which regimes could not be measured and why.
    Regimes (each one pins something the model has a parameter for):
      per-call     4 KiB, every op: system call, hypercall, exit and fsync costs;
      in-cache     a file that fits half the CPU's L2 cache: copy cost from cache;
      dram         a file 4x the last-level cache (within a quarter of the environment's memory):
                   copy cost from DRAM, writeback of large writes;
      hvt-blocks   hvt: a file of many block calls (per-block cost, within the budget);
      beyond-mem   a file 1.5x the environment's memory: reads miss its page cache, and
                   writes outrun its dirty limit (a guest with little memory makes this
                   affordable: qemu gets mem=256 MiB unless told otherwise);
      primitives   the micro-probes (kind "primitive", edgeio.records.PRIMITIVES) that
                   pin the costs the what-ifs are composed of, a few seconds each: hvt's
                   block call refused before its exit, a bare exit, a ring request
                   without I/O, a pass of the probe's loop with and without a flush
                   request, a 16 B and a 64 KiB copy in guest memory; an x86_64 qemu guest's
                   trapped register access (a port read QEMU's device model answers). No fix (more blocks per
                   call, a ring with data, a mapped disk, another disk) is ever measured
                   here: the model is checked on what it has not seen.
    Native reads from the device (a cold cache) are left out: summaries and the model tell
    cells apart by env, size and op, so a cold read would pass for a warm one.
    max_size caps every size (a quick try, a test); free_bytes bounds the largest file.
    priors: the target's costs (speeds_from_pilot) for the estimates, else PRIORS.
    """
    caches = facts.get("cpu_caches") or {}
    llc = caches.get("l3_bytes") or caches.get("l2_bytes")
    specs, notes = [], []
    if not llc:       # the facts say what was tried (measure/facts.cache_facts); said, not silent
        llc = FALLBACK_LLC_BYTES
        tried = (caches.get("source") or {}).get("l2_bytes") if isinstance(caches.get("source"), dict) else None
        notes.append(f"no last-level cache size ({tried or 'not recorded'}): the cache regimes are planned "
                     f"for {_approx(llc)}, the size calibrate assumes then (model/machine.py)")
    l2 = caches.get("l2_bytes") or llc
    # an emulated machine's KVM runs its guests' code emulated, whatever its kvm fact says
    kvm = "software" if facts.get("emulated") else (facts.get("kvm") or "absent")
    vm = facts.get("vm") or {}
    cap = max_size or (1 << 62)

    def add(env, size, ops, why, cache="warm", kind="file"):
        if size > cap:
            size, why = cap, f"{why} (capped to {_approx(cap)} by --max-size)"
        cfg = dict(configs[env], cache=cache, io_size_bytes=_io(configs[env], size))
        for op in ops:
            if any(s["env"] == env and s["size_bytes"] == size and s["op"] == op and s["cache"] == cache
                   for s in specs):
                continue
            per_op = per_op_estimate(cfg, size, op, kvm, priors)
            reps, batches, sizing = batch_sizing(
                per_op, min_batch_s=PRIMITIVE_MIN_BATCH_S if kind == "primitive" else MIN_BATCH_S)
            if op == "ring":          # whole notifications of the ring primitive's batch
                from edgeio.limits import HVT_RING_DEFAULT_BATCH as RING_BATCH
                reps = -(-reps // (RING_BATCH * batches)) * RING_BATCH * batches
            specs.append({"env": env, "kind": kind, "size_bytes": size, "op": op, "cache": cache, "reps": reps,
                          "rounds": PRIMITIVE_ROUNDS if kind == "primitive" else 1,
                          "batches": batches, "per_op_estimate_s": per_op,
                          "start_estimate_s": start_estimate(cfg, size, priors), "reason": f"{why}; {sizing}"})
            _estimate(specs[-1])

    for env, cfg in configs.items():
        memory = cfg.get("memory_bytes") or facts.get("memory_bytes") or GIB
        add(env, SMALL, ("write_sync", "write", "read"), "per-call costs: one 4 KiB call per repetition")
        if env == "hvt":
            size = _hvt_blocks_size(cfg, kvm, cap, priors)
            add(env, size, ("write_sync", "write", "read"),
                f"hvt-blocks: {size // max(1, cfg.get('io_size_bytes') or 512)} block calls per repetition "
                f"(the largest power of two whose repetition stays under {LARGE_OP_S:g} s here)")
            notes.append("hvt: the unikernel has no page cache; the tender's host file is in the host's, "
                         "whose memory and dirty limit are the linux regimes'")
            sector = int(cfg.get("block_size") or 512)
            add(env, sector, ("call", "exit", "ring", "rep", "flush"), "primitive: one per repetition, no data moved",
                kind="primitive")
            add(env, COPY_PRIMITIVE_SMALL, ("copy",), "primitive: the smallest copy in guest memory "
                "(its per-call cost)", kind="primitive")
            add(env, COPY_PRIMITIVE, ("copy",), "primitive: a copy in guest memory (its per-byte cost)",
                kind="primitive")
            continue
        if env == "qemu" and (cfg.get("arch") or facts.get("arch")) == "x86_64":
            add(env, SMALL, ("trap",), "primitive: one trapped register access per repetition",
                kind="primitive")
        elif env == "qemu":
            notes.append("qemu: no trapped-access primitive (port I/O: x86_64 guests only); "
                         "ide and ahci requests keep trap_s at its prior")
        in_cache = _pow2_floor(l2 // 2)
        add(env, in_cache, ("write", "read"), f"in-cache: {_approx(in_cache)} fits half the "
            f"{_approx(l2)} L2 cache")
        dram = min(_pow2_floor(4 * llc), _pow2_floor(memory // 4))
        add(env, dram, ("write_sync", "write", "read"), f"dram: {_approx(dram)} is >= 2x the "
            f"{_approx(llc)} last-level cache and <= a quarter of the {_approx(memory)} memory")
        beyond = memory + memory // 2
        dirty = _dirty_limit(memory, vm if env in ("linux", "docker") else {})
        room = (free_bytes or (1 << 62)) // 2
        cfg_big = dict(cfg, io_size_bytes=MIB)
        cost = start_estimate(cfg_big, beyond, priors) + 3 * sum(per_op_estimate(cfg_big, beyond, op, kvm, priors)
                                                                for op in ("write", "read"))
        if beyond <= min(cap, room) and cost <= budget_s / 8:
            add(env, beyond, ("write_sync", "write", "read"),
                f"beyond-mem: {_approx(beyond)} is 1.5x the environment's {_approx(memory)}: reads "
                f"miss its page cache, writes outrun its dirty limit (~{_approx(dirty)})")
        else:
            why = (f"needs ~{format_time(cost)} of the {format_time(budget_s)} budget" if cost > budget_s / 8
                   else f"needs more than half the {_approx(room * 2)} free" if beyond > room
                   else "is above --max-size")
            notes.append(f"{env}: no file beyond its {_approx(memory)} memory (a {_approx(beyond)} "
                         f"file {why}); its dirty limit (~{_approx(dirty)}) is not outrun")
    large = _study_large(configs, kvm, cap, budget_s, free_bytes, notes, priors)
    if large:
        why = (f"study size: the study's large file ({_approx(STUDY_LARGE)})" + (
            "" if large == STUDY_LARGE else f" as {_approx(large)}, the largest that every environment "
            "fits in a quarter of the budget (or --max-size, or the free space, allows)")
            + ", in every environment so one table compares them")
        for env in configs:
            add(env, large, OPS, why)
        for s in specs:        # a regime of its own chose that size already: say it is the study's too
            if s["size_bytes"] == large and not s["reason"].startswith("study size"):
                s["reason"] = f"study size too ({_approx(large)} in every environment); {s['reason']}"
    specs, dropped = _fit_budget(specs, budget_s, priors)
    notes += dropped
    _stretch(specs, budget_s, priors)
    return specs, notes


STRETCH_SHARE = 0.5     # a plan well inside its budget grows its batches up to half of it
MAX_STRETCH = 8         # ... at most 8x longer


def _stretch(specs: list[dict], budget_s: float, priors: dict | None) -> None:
    """A plan that uses little of its budget gets longer batches (more repetitions each),
    up to STRETCH_SHARE of the budget: on a noisy or emulated machine a cell's median then
    spans seconds of the neighbours' load rather than a burst (the emulated board's cells
    are mostly overhead: its plan used 20 s of a 10 min budget, and its fit showed it)."""
    fixed = sum(s["start_estimate_s"] for s in specs) + sum(_prepare(specs, priors).values())
    measuring = sum(s["reps"] * s["per_op_estimate_s"] for s in specs)
    if measuring <= 0:
        return
    factor = min(MAX_STRETCH, int((budget_s * STRETCH_SHARE - fixed) // measuring))
    if factor < 2:
        return
    for s in specs:
        s["reps"] *= factor
        s["reason"] += f"; batches {factor}x longer: the plan used little of the {format_time(budget_s)} budget"
        _estimate(s)


STUDY_LARGE = GIB           # the study's large-file case (its 4 KiB case is SMALL)
STUDY_SHARE = 4             # the study-size cells of all environments fit 1/STUDY_SHARE of the budget
OPS = ("write_sync", "write", "read")


def _study_large(configs, kvm, cap, budget_s, free_bytes, notes, priors=None) -> int | None:
    """The study's large file for this target: 1 GiB, capped by --max-size and the free
    space, halved until every environment's cells at it (every op, batches as sized) fit a
    quarter of the budget; None (with a note) when not even 1 MiB does."""
    limit = min(_pow2_floor(cap) if cap < (1 << 62) else STUDY_LARGE,
                _pow2_floor((free_bytes or (1 << 62)) // 2))
    size = min(STUDY_LARGE, limit)

    def cost(size):
        total = 0.0
        for cfg in configs.values():
            c = dict(cfg, io_size_bytes=_io(cfg, size))
            for op in OPS:
                per_op = per_op_estimate(c, size, op, kvm, priors)
                total += batch_sizing(per_op)[0] * per_op
            total += start_estimate(c, size, priors)
        return total
    while size > MIB and cost(size) > budget_s / STUDY_SHARE:
        size //= 2
    if cost(size) > budget_s / STUDY_SHARE:
        notes.append(f"study sizes: no large file fits a quarter of the {format_time(budget_s)} budget in "
                     "every environment; only 4 KiB compares them all")
        return None
    return size


def _io(cfg: dict, size: int) -> int:
    if cfg.get("env") == "hvt":
        return min(size, int(cfg.get("io_size_bytes") or 512))
    return min(size, MIB)


def _hvt_blocks_size(cfg: dict, kvm: str, cap: int, priors: dict | None = None) -> int:
    io = max(1, int(cfg.get("io_size_bytes") or 512))
    size = MIB
    while size * 2 <= cap and per_op_estimate(dict(cfg, io_size_bytes=io), size * 2, "write", kvm,
                                              priors) < LARGE_OP_S:
        size *= 2
    return min(size, cap)


def _estimate(spec: dict) -> None:
    """A spec's time: a start per round (a boot), then its repetitions."""
    starts = int(spec.get("rounds") or 1) * spec["start_estimate_s"]
    spec["estimate_s"] = round(starts + spec["reps"] * spec["per_op_estimate_s"], 3)


def _fit_budget(specs: list[dict], budget_s: float, priors: dict | None = None) -> tuple[list[dict], list[str]]:
    """Fit the plan, with each environment's prepare, in the budget: shrink the most
    expensive cells (fewer batches, down to LARGE_BATCHES); then, while it still does not
    fit, leave out the costliest environment but linux, saying so (a calibration is judged
    against the environments its campaign has, so what stays is still pinned)."""
    notes = []

    def total(xs):
        return sum(x["estimate_s"] for x in xs) + sum(_prepare(xs, priors).values())
    for s in sorted(specs, key=lambda s: -s["estimate_s"]):
        if total(specs) <= budget_s:
            break
        if s["batches"] > LARGE_BATCHES:
            s["reps"] = s["reps"] // s["batches"] * LARGE_BATCHES
            s["batches"] = LARGE_BATCHES
            s["reason"] += f"; {LARGE_BATCHES} batches to fit the {format_time(budget_s)} budget"
            _estimate(s)
    while total(specs) > budget_s:
        prep = _prepare(specs, priors)
        cost = {e: prep[e] + sum(x["estimate_s"] for x in specs if x["env"] == e) for e in prep if e != "linux"}
        if not cost:
            break
        env = max(cost, key=cost.get)
        notes.append(f"{env}: left out: it needs ~{format_time(cost[env])} (prepare "
                     f"~{format_time(prep[env])}) and the plan did not fit the {format_time(budget_s)} budget")
        specs = [x for x in specs if x["env"] != env]
    if total(specs) > budget_s:
        notes.append(f"the plan's estimate {format_time(total(specs))} exceeds the {format_time(budget_s)} budget")
    return specs, notes


def _prepare(specs: list[dict], priors: dict | None) -> dict[str, float]:
    envs = sorted({x["env"] for x in specs})
    return {e: prepare_estimate(e, [x["size_bytes"] for x in specs if x["env"] == e], priors) for e in envs}


def plan_estimate(cells: list[dict], priors: dict | None = None) -> dict:
    """{"cells_s", "prepare_s": {env: s}, "total_s"}: what the plan should take."""
    prep = _prepare(cells, priors)
    cells_s = sum(c.get("estimate_s") or 0 for c in cells)
    return {"cells_s": round(cells_s, 3), "prepare_s": {e: round(v, 3) for e, v in prep.items()},
            "total_s": round(cells_s + sum(prep.values()), 3)}


def describe(cells: list[dict], priors: dict | None = None) -> str:
    """The plan and its estimate, for the terminal, before anything runs."""
    lines = []
    order = {op: i for i, op in enumerate(("write_sync", "write", "read"))}
    for c in sorted(cells, key=lambda c: (c.get("target", ""), c["env"], c["size_bytes"], order.get(c["op"], 9))):
        lines.append(f"  {c['env']:7} {format_size(c['size_bytes']):>9} {c['op']:10} {c.get('cache', 'warm'):4} "
                     f"x{c['reps']:<7} ~{format_time(c.get('estimate_s') or 0):>8}  {c.get('reason', '')}")
    est = plan_estimate(cells, priors)
    prep = ", ".join(f"{e} ~{format_time(v)}" for e, v in est["prepare_s"].items())
    return "\n".join(lines + [f"  estimate: {format_time(est['total_s'])} for {len(cells)} cells "
                              f"({format_time(est['cells_s'])} measuring, preparing {prep})"])


def size_cell(cell: dict, cfg: dict, kvm: str, batches: int | None = None, priors: dict | None = None) -> dict:
    """Give a planned cell (reps not fixed by the user) its reps and batches, in place."""
    per_op = per_op_estimate(cfg, int(cell["size_bytes"]), cell["op"], kvm, priors)
    cell["reps"], cell["batches"], why = batch_sizing(per_op, batches)
    cell.update(per_op_estimate_s=per_op, start_estimate_s=start_estimate(cfg, int(cell["size_bytes"]), priors),
                reason=cell.get("reason") or why)
    _estimate(cell)
    return cell
