"""Environments as compositions of stages, built from a cell's configuration as run.

  linux   probe -> syscall -> host page cache -> block device
  docker  the same, plus a per-syscall container cost; its page cache is the container's
          memory limit (the memory cgroup charges and throttles the container's pages)
  qemu    probe -> guest syscall (x guest CPU factor) -> guest page cache -> disk
          transport (virtio: one exit per request; ide/ahci: several trapped register
          accesses) -> pread/pwrite on the image -> host page cache -> device
  xen     probe -> guest syscall -> guest page cache -> Xen PV ring -> blkback -> device
          (blkback submits to the device directly: no host page cache)
  hvt     unikernel probe -> block call -> transport (hvt: one hypercall per call;
          ring: one notification per batch of requests; mapped: no exit, a copy in the
          guest) -> tender -> host file -> host page cache -> device; write_sync ends
          each repetition with the probe's flush request, which the tender's flush
          policy turns into an fsync (on-request), nothing (none, each-write: already
          synced), or the tender fsyncs after every write call (each-write; the study's
          tender, each-block, fsynced after every hypercall, which carried one block:
          with k blocks per call it fsyncs once per call).

An EnvConfig is built by `config_for(env, config, machine)` from the cell's effective
configuration (INTERFACES.md keys, cells/<id>.json["config"]), with the measurement
side's defaults for what an old campaign did not record; the machine's facts give the
host's memory. What-if scenarios change fields of the EnvConfig.
"""

import dataclasses
import json
import math
from dataclasses import dataclass

from edgeio.errors import UserError
from edgeio.records import PRIMITIVES
from edgeio.limits import HVT_RING_DEFAULT_BATCH as RING_BATCH
from edgeio.limits import default_io_size  # noqa: F401  (model.simulate imports it from here)
from model.engine import Ctx
from model.machine import guest_code
from model.stages import BlockDevice, GuestBlockCache, HostFile, PageCache, Transport, requests
from model.params import MIB

OPS = ("write_sync", "write", "read")      # file ops; PRIMITIVES (hvt's micro-probes) besides
ENVS = ("linux", "docker", "qemu", "hvt", "xen")
# hvt flush policies (measure's names) and the study's tender; "block"/"call" are the
# names older versions of the model used
FLUSH_POLICIES = ("none", "each-write", "on-request", "each-block")
FLUSH_ALIASES = {"block": "each-block", "call": "each-write"}
DISKS = ("virtio", "ide", "ahci")
HVT_TRANSPORTS = ("hvt", "ring", "mapped", "passthrough")
SYNCS = ("fsync", "fdatasync", "none")


@dataclass(frozen=True)
class EnvConfig:
    name: str
    kind: str                      # native | guest | hvt
    memory_bytes: int = 0          # memory the environment has (0: the host's)
    container: bool = False        # docker
    overlay: bool = False          # docker: the file is in the writable layer (no volume)
    transport: str = ""            # guest: virtio | ide | ahci | xen | passthrough; hvt: hvt | ring | mapped | passthrough
    host_cache: bool = True        # guest disk is a host file (QEMU) rather than a device (blkback)
    xen_kernel: bool = False       # the Xen guest ran another kernel (5.10-rc3)
    cpu_factor: str = "vm_cpu_factor"   # guest kernel CPU: vm_cpu_factor | emulated_cpu_factor
    block_size: int = 512          # hvt block size
    blocks_per_call: int = 1       # hvt blocks per block call (Solo5 allows 1)
    flush: str = "none"            # hvt: none | each-write | on-request | each-block
    flush_request: bool = True     # hvt write_sync: the probe sends a flush request per repetition
    batch: int = 1                 # hvt ring: requests per notification
    exits_per_request: float = 1.0  # para-passthrough: traps left per request
    guest_cache_bytes: int = 0     # hvt under passthrough: the unikernel's own block cache (0 = none)
    sync: str = "fsync"            # how write_sync syncs: fsync | fdatasync | none
    direct: bool = False           # O_DIRECT: no page cache in the probe's kernel
    cold: bool = False             # reads drop the probe kernel's cache before each repetition

    def replace(self, **changes) -> "EnvConfig":
        return dataclasses.replace(self, **changes)


# What the measurement side runs when a --param is not given (measure/environments/*:
# params_spec; tests/test_predict.py checks they agree), for campaigns that recorded no
# effective configuration. xen has no measurement side yet: the study's guest.
ENV_DEFAULTS = {
    "linux": {},
    "docker": {"memory_bytes": 4096 * MIB},
    "qemu": {"memory_bytes": 2048 * MIB, "disk": "virtio", "accel": "auto", "cache_mode": "writeback"},
    "hvt": {"memory_bytes": 512 * MIB, "tender": "edgeio", "transport": "hvt", "blocks_per_call": 1,
            "flush": "none", "block_size": 512},
    "xen": {"memory_bytes": 1024 * MIB, "backend": "phy"},
}
# legacy --param names (cell params of campaigns without a recorded config)
PARAM_NAMES = {"mem": "memory_bytes", "sector_size": "block_size", "cache": "cache_mode"}


def effective_config(env: str, config: dict | str | None = None, defaults: dict | None = None,
                     machine: dict | None = None) -> dict:
    """The complete configuration of a cell: `config` (recorded effective config, or the
    cell's --param values) over `defaults` (a machine profile's environments) over the
    measurement side's defaults. Keys as in INTERFACES.md; sizes in bytes."""
    if env not in ENVS:
        raise UserError(f"the model has no environment {env!r} (known: {', '.join(ENVS)})")
    if isinstance(config, str):
        text = config.strip()
        try:
            config = json.loads(text) if text else {}
        except ValueError:
            raise UserError(f"{env}: config {config!r} is not a JSON object") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UserError(f"{env}: config {config!r} is not a JSON object")
    out = {"env": env, **ENV_DEFAULTS[env], **(defaults or {})}
    for k, v in config.items():
        if k == "mem":                                 # the --param: MiB
            try:
                v = int(float(v) * MIB)
            except (TypeError, ValueError):
                raise UserError(f"{env}: config {config!r} has a value that is not a number") from None
        if k == "cache" and str(v) in ("warm", "cold"):
            out[k] = v                                 # the probe's cache mode, not qemu's
            continue
        out[PARAM_NAMES.get(k, k)] = v
    if env == "linux" or (env == "docker" and not out.get("memory_bytes")):
        out["memory_bytes"] = (machine or {}).get("memory_bytes") or out.get("memory_bytes") or 0
    if env == "qemu" and out.get("accel") in (None, "", "auto"):
        # measure/environments/qemu.py: kvm only with hardware virtualisation
        out["accel"] = "kvm" if (machine or {}).get("kvm") == "hardware" else "tcg"
    return out


def _num(env, key, v, kind=int):
    try:
        if isinstance(v, bool):
            raise ValueError
        return kind(float(v)) if kind is int else kind(v)
    except (TypeError, ValueError):
        raise UserError(f"{env}: config {key}={v!r} is not a number") from None


def _volume(v) -> bool:
    """docker's volume: the recorded bool, or the --param (a directory; "" = none)."""
    if isinstance(v, bool):
        return v
    return bool(v) and str(v).strip().lower() not in ("", "0", "false", "no", "none")


def _bool(v) -> bool:
    return v is True or str(v).strip().lower() in ("1", "true", "yes", "on")


def config_for(env: str, config: dict | str | None = None, machine: dict | None = None,
               defaults: dict | None = None) -> EnvConfig:
    """The model's environment for a cell configuration (see effective_config)."""
    c = effective_config(env, config, defaults, machine)
    mem = _num(env, "memory_bytes", c.get("memory_bytes") or 0)
    sync = str(c.get("sync") or "fsync")
    if sync not in SYNCS:
        raise UserError(f"{env}: unknown sync {sync!r} in config (known: {', '.join(SYNCS)})")
    common = {"sync": sync, "direct": _bool(c.get("direct", False)),
              "cold": str(c.get("cache") or "warm") == "cold"}
    emulated = guest_code(machine or {}) == "emulated"     # a KVM on an emulated board too
    if env in ("linux", "docker"):
        host = (machine or {}).get("memory_bytes") or mem
        if env == "docker" and host:
            mem = min(mem or host, host)     # the cgroup limit caps the container's page cache
        cfg = EnvConfig(env, "native", mem, container=env == "docker",
                        overlay=env == "docker" and not _volume(c.get("volume")), **common)
    elif env == "qemu":
        disk = str(c.get("disk") or "virtio")
        if disk not in DISKS:
            raise UserError(f"qemu: unknown disk {disk!r} in config (known: {', '.join(DISKS)})")
        accel = str(c.get("accel"))
        if accel not in ("kvm", "tcg"):
            raise UserError(f"qemu: unknown accel {accel!r} in config (known: kvm, tcg)")
        factor = "emulated_cpu_factor" if accel == "tcg" or emulated else "vm_cpu_factor"
        cfg = EnvConfig(env, "guest", mem, transport=disk, cpu_factor=factor, **common)
    elif env == "xen":
        cfg = EnvConfig(env, "guest", mem, transport="xen", host_cache=False, xen_kernel=True,
                        cpu_factor="emulated_cpu_factor" if emulated else "vm_cpu_factor",
                        **common)
    else:
        flush = str(c.get("flush") or "none")
        flush = FLUSH_ALIASES.get(flush, flush)
        if flush not in FLUSH_POLICIES:
            raise UserError(f"hvt: unknown flush policy {c.get('flush')!r} in config "
                            f"(known: {', '.join(FLUSH_POLICIES)})")
        transport = str(c.get("transport") or "hvt")
        if transport not in HVT_TRANSPORTS:
            raise UserError(f"hvt: unknown transport {transport!r} in config (known: {', '.join(HVT_TRANSPORTS)})")
        cfg = EnvConfig(env, "hvt", mem, transport=transport, block_size=_num(env, "block_size", c.get("block_size", 512)),
                        blocks_per_call=_num(env, "blocks_per_call", c.get("blocks_per_call", 1)),
                        batch=_num(env, "batch", c.get("batch") or (RING_BATCH if transport == "ring" else 1)),
                        flush=flush,
                        flush_request=str(c.get("tender") or "edgeio") != "study",
                        sync=sync, cold=False, direct=False)
    validate(cfg)
    return cfg


def assumes(cfg: EnvConfig) -> str:
    """What a configuration assumes, in the words of its --params (a what-if's table)."""
    if cfg.kind == "hvt":
        out = [f"transport={cfg.transport}"] + ([f"batch={cfg.batch}"] if cfg.transport == "ring" else [])
        flush = {"each-block": "each-write (fsync per call, as the study's tender)"}.get(cfg.flush, cfg.flush)
        return ", ".join(out + [f"blocks={cfg.blocks_per_call}", f"block={cfg.block_size} B", f"flush={flush}"])
    if cfg.kind == "guest":
        return f"disk={cfg.transport}, mem={cfg.memory_bytes // MIB} MiB"
    return "as measured"


def study_reps(size: int) -> int:
    """The study's repetitions: 100000 for 4 KiB, 10 for 1 GiB."""
    return 100000 if size <= MIB else 10


def validate(cfg: EnvConfig) -> None:
    if cfg.memory_bytes < 0 or (cfg.kind != "native" and cfg.memory_bytes <= 0):
        raise UserError(f"{cfg.name}: memory must be positive, got {cfg.memory_bytes}")
    if cfg.block_size <= 0 or cfg.block_size & (cfg.block_size - 1) or cfg.block_size > 32768 or cfg.block_size < 512:
        raise UserError(f"{cfg.name}: block size must be a power of two from 512 to 32768, got {cfg.block_size}")
    if cfg.blocks_per_call < 1:
        raise UserError(f"{cfg.name}: blocks per call must be at least 1, got {cfg.blocks_per_call}")
    if cfg.flush not in FLUSH_POLICIES:
        raise UserError(f"{cfg.name}: flush policy must be one of {', '.join(FLUSH_POLICIES)}, got {cfg.flush!r}")
    if cfg.batch < 1:
        raise UserError(f"{cfg.name}: batch must be at least 1, got {cfg.batch}")
    if cfg.exits_per_request < 0:
        raise UserError(f"{cfg.name}: exits per request must not be negative, got {cfg.exits_per_request}")
    if cfg.transport == "mapped" and cfg.flush == "each-write":
        raise UserError(f"{cfg.name}: the mapped transport has no write exits to flush after "
                        "(flush each-write is refused by the tender)")
    if cfg.guest_cache_bytes < 0:
        raise UserError(f"{cfg.name}: guest cache must not be negative, got {cfg.guest_cache_bytes} B")
    if cfg.guest_cache_bytes > cfg.memory_bytes > 0:
        raise UserError(f"{cfg.name}: a guest cache of {cfg.guest_cache_bytes // MIB} MiB does not fit the "
                        f"guest's {cfg.memory_bytes // MIB} MiB of memory")


class Kernel:
    """A Linux kernel running the file probe: system calls over its page cache (or, with
    O_DIRECT, straight to its disk in requests of at most the disk's request size)."""

    def __init__(self, sim, cache: PageCache, factor: float, extra_syscall: str | None, cfg: EnvConfig,
                 copy_factor: float | None = None):
        self.sim, self.cache, self.factor, self.extra = sim, cache, factor, extra_syscall
        self.copy_factor = factor if copy_factor is None else copy_factor
        self.cfg = cfg
        # a guest kernel reads ahead by its own default, not by the host disk's setting
        self.readahead = sim.p["readahead_bytes" if cfg.kind == "native" else "guest_readahead_bytes"]

    def _copy(self):
        return ("cache_copy_s_per_byte" if self.cache.file_bytes <= self.sim.p["cpu_cache_bytes"]
                else "dram_copy_s_per_byte")

    def _syscalls(self, ctx, n, terms):
        if self.copy_factor != self.factor:     # emulated: bytes and calls scale apart
            per_byte = {k: v for k, v in terms.items() if k.endswith("_per_byte")}
            terms = {k: v for k, v in terms.items() if k not in per_byte}
            yield from self.sim.cpu(ctx, per_byte, self.copy_factor)
        yield from self.sim.cpu(ctx, terms, self.factor)
        if self.extra:
            yield from self.sim.cpu(ctx, {self.extra: n})

    def _direct(self, ctx, op, size, io):
        """O_DIRECT: no page cache; each call is its own request(s) to the disk."""
        n = math.ceil(size / io)
        per_call = requests(io, self.cache.wb_request)
        dev = self.cache.backing.read if op == "read" else self.cache.backing.write
        if self.sim.mode == "aggregate":
            yield from self._syscalls(ctx, n, {"syscall_s": n})
            yield from dev(ctx, size, n * per_call)
            return
        for off in range(0, size, io):
            yield from self._syscalls(ctx, 1, {"syscall_s": 1})
            yield from dev(ctx, min(io, size - off), per_call)

    def read(self, ctx, size, io):
        if self.cfg.direct:
            yield from self._direct(ctx, "read", size, io)
            return
        n = math.ceil(size / io)
        if self.sim.mode == "aggregate":
            # n identical calls with no state change between them (hits, or misses that
            # all go to the device): their costs add exactly, so charge them at once.
            yield from self._syscalls(ctx, n, {"syscall_s": n, self._copy(): size})
            yield from self.cache.read(ctx, size, self.readahead)
            return
        for off in range(0, size, io):
            b = min(io, size - off)
            yield from self._syscalls(ctx, 1, {"syscall_s": 1, self._copy(): b})
            yield from self.cache.read(ctx, b, self.readahead)

    def write(self, ctx, size, io):
        """Write `size` bytes in calls of `io`, in pieces small enough that dirtying and
        throttling interleave with the CPU work as they do page by page."""
        if self.cfg.direct:
            yield from self._direct(ctx, "write", size, io)
            return
        done = 0
        copy = self._copy()
        while done < size:
            if self.sim.mode == "aggregate":
                q = min(size - done, self.cache.headroom_bytes())
            else:
                q = min(io - done % io, size - done, self.cache.P)
            calls = q / io           # a piece carries its share of the per-call costs
            yield from self._syscalls(ctx, calls, {"syscall_s": calls, "write_call_s": calls,
                                                   copy: q, "write_s_per_byte": q})
            yield from self.cache.write(ctx, q)
            done += q

    def fsync(self, ctx):
        """fsync commits the journal (the file's mtime changed); fdatasync of a rewrite
        in place has no metadata to commit, only data and the disk's cache flush."""
        yield from self._syscalls(ctx, 1, {"syscall_s": 1})
        if self.cfg.overlay:
            yield from self.sim.cpu(ctx, {"container_fsync_s": 1})
        yield from self.cache.fsync(ctx, journal=self.cfg.sync == "fsync")


def _transport(sim, cfg, backend):
    p = sim.p
    if cfg.transport == "xen":
        return Transport(sim, "xen", backend, p["xen_request_bytes"])
    if cfg.transport in ("ide", "ahci"):
        return Transport(sim, "emulated", backend, p["guest_readahead_bytes"],
                         exits_param=f"{cfg.transport}_exits_per_request")
    return Transport(sim, cfg.transport, backend, p["guest_readahead_bytes"], cfg.exits_per_request)


def _host_cache(sim, cfg, device):
    host_mem = sim.p["host_memory_bytes"]
    if host_mem - cfg.memory_bytes <= 0:
        raise UserError(f"{cfg.name}: guest memory {cfg.memory_bytes} leaves the host no page cache")
    return PageCache(sim, "host", host_mem - cfg.memory_bytes, device)


class LinuxEnv:
    """linux, docker, qemu, xen: the C file probe on a Linux kernel."""

    def __init__(self, sim, cfg: EnvConfig):
        p = sim.p
        host_mem = p["host_memory_bytes"]
        dev = BlockDevice(sim)
        self.cfg = cfg
        self.host_file = None
        if cfg.kind == "native":
            mem = min(cfg.memory_bytes or host_mem, host_mem)
            self.cache = PageCache(sim, "host", mem, dev)
            self.kernel = Kernel(sim, self.cache, 1.0, "container_syscall_s" if cfg.container else None, cfg)
            return
        if cfg.transport == "passthrough" or not cfg.host_cache:
            backend = dev
        else:
            backend = HostFile(sim, _host_cache(sim, cfg, dev))
            self.host_file = backend
        f = p[cfg.cpu_factor]
        # an emulated CPU (TCG) translates memory work (copies, per-page bookkeeping) and a
        # system call path differently: their slow-downs are fitted apart; under hardware
        # virtualisation they are one
        copy = p["emulated_copy_factor"] if cfg.cpu_factor == "emulated_cpu_factor" else f
        # per-page work (dirtying, reading in, writing back) is memory work too
        self.cache = PageCache(sim, "guest", cfg.memory_bytes, _transport(sim, cfg, backend), cpu_factor=copy,
                               fsync_flushes=p["guest_fsync_flushes"])
        self.kernel = Kernel(sim, self.cache, f, "xen_syscall_s" if cfg.xen_kernel else None, cfg, copy)

    def open(self, size):
        self.cache.open(size)
        if self.host_file:
            self.host_file.cache.open(size)

    def rep(self, ctx, op, size, io):
        if op == "trap":             # the qemu primitive: one register access QEMU answers
            yield from self.kernel.sim.cpu(ctx, {"trap_s": 1})
            return
        self.cache.seek(0)
        if op == "read":
            if self.cfg.cold:
                self.cache.drop()        # outside the timed window (probes/fileprobe.c)
            yield from self.kernel.read(ctx, size, io)
        else:
            yield from self.kernel.write(ctx, size, io)
            if op == "write_sync" and self.cfg.sync != "none":
                yield from self.kernel.fsync(ctx)


class HvtEnv:
    """The Solo5 unikernel probe on the hvt tender.

    transport hvt: one hypercall per block call, one host pread/pwrite per call;
    ring: requests on a shared ring, one notification (hypercall) per `batch` requests,
    guest-side descriptor work per request; the tender turns a notification's contiguous
    requests into one preadv/pwritev (issue 14; with each-write it syncs every request,
    unmerged); mapped: the disk file is mapped into the guest, a block call is a copy in
    the guest (no exit, no host call; pages are dirtied in the host page cache), a flush
    is one hypercall and an msync (a data-only sync); passthrough: the guest driver
    drives the device."""

    def __init__(self, sim, cfg: EnvConfig):
        p = sim.p
        self.sim, self.cfg = sim, cfg
        self.dev = BlockDevice(sim)
        self.file = None
        self.guest_cache = cfg.transport == "passthrough" and cfg.guest_cache_bytes > 0
        if self.guest_cache:
            # a unikernel with its own block cache: block calls are served inside the
            # guest; misses (readahead) and writeback reach the device through the guest
            # driver, trapping exits_per_request times per request
            to_dev = Transport(sim, "passthrough", self.dev, p["guest_readahead_bytes"], cfg.exits_per_request)
            self.file = GuestBlockCache(sim, PageCache(
                sim, "unikernel", cfg.memory_bytes, to_dev, capacity_bytes=cfg.guest_cache_bytes, journal=False))
        elif cfg.transport == "mapped":
            self.file = GuestBlockCache(sim, _host_cache(sim, cfg, self.dev), mapped=True)
        elif cfg.transport != "passthrough":
            self.file = HostFile(sim, _host_cache(sim, cfg, self.dev))

    def open(self, size):
        if self.file:
            self.file.cache.open(size)

    def _exits(self, ncalls):
        """Guest-side and exit costs of ncalls block calls (the host's are the file's)."""
        cfg = self.cfg
        if self.guest_cache or cfg.transport == "mapped":   # block calls are copies in the guest
            return {"guest_call_s": ncalls}
        if cfg.transport == "ring":          # posted requests, one notification per batch
            return {"ring_post_s": ncalls, "hypercall_s": ncalls / cfg.batch}
        if cfg.transport == "passthrough":
            return {"guest_call_s": ncalls, "hypercall_s": ncalls * cfg.exits_per_request}
        return {"guest_call_s": ncalls, "hypercall_s": ncalls}

    def _calls(self, ctx, op, n, nbytes_per_call):
        """n identical block calls of nbytes each (read or buffered write)."""
        sim = self.sim
        if self.file is None:                # passthrough: the guest driver drives the device
            yield from sim.cpu(ctx, self._exits(n))
            dev = self.dev.read if op == "read" else self.dev.write
            if sim.mode == "aggregate":
                yield from dev(ctx, n * nbytes_per_call, n)
            else:
                for _ in range(n):
                    yield from dev(ctx, nbytes_per_call, 1)
            return
        left = n
        while left > 0:
            if sim.mode == "aggregate" and op == "read":
                m = left                     # reads change no state: charge all at once
            elif sim.mode == "aggregate":
                m = max(1, min(left, self.file.cache.headroom_bytes() // nbytes_per_call))
            else:
                m = 1
            yield from sim.cpu(ctx, self._exits(m))
            host_calls = m
            if self.cfg.transport == "ring" and not (op == "write" and self.cfg.flush == "each-write"):
                # the tender merges a notification's contiguous requests into one preadv/pwritev
                host_calls = m / self.cfg.batch
            if op == "read":
                yield from self.file.read(ctx, m * nbytes_per_call, host_calls)
            else:
                yield from self.file.write(ctx, m * nbytes_per_call, host_calls)
            left -= m

    def _fsync(self, ctx):
        if self.file is None:
            yield from self.dev.flush(ctx)
        else:
            yield from self.file.flush(ctx)

    def _flush_request(self, ctx):
        """The probe's flush request at the end of a write_sync repetition: one hypercall;
        the tender fsyncs only under on-request (each-write has synced every write)."""
        guest = "ring_post_s" if self.cfg.transport == "ring" else "guest_flush_s"
        yield from self.sim.cpu(ctx, {"hypercall_s": 1, guest: 1})
        if self.cfg.flush == "on-request":
            yield from self._fsync(ctx)

    def rep(self, ctx, op, size, io):
        cfg, sim = self.cfg, self.sim
        if op in PRIMITIVES:
            yield from self._primitive(ctx, op, size)
            return
        if self.file:
            self.file.cache.seek(0)
        # the probe's repetition loop (probe.c timed_loop), besides its calls: guest code,
        # emulated on a software KVM (~10 us there, a few ns on hardware)
        yield from sim.cpu(ctx, {"guest_rep_s": 1})
        bs, k = cfg.block_size, cfg.blocks_per_call
        blocks = math.ceil(size / bs)
        runs = [(blocks // k, k)] + ([(1, blocks % k)] if blocks % k else [])
        for ncalls, kk in runs:
            if ncalls == 0:
                continue
            if op == "read":
                yield from self._calls(ctx, "read", ncalls, kk * bs)
            elif op == "write" or cfg.flush in ("none", "on-request"):
                yield from self._calls(ctx, "write", ncalls, kk * bs)
            else:       # each-write, and the study's tender (each-block): an fsync per block call
                def unit(kk=kk):
                    yield from self._calls(ctx, "write", 1, kk * bs)
                    yield from self._fsync(ctx)
                yield from sim.repeat(ctx, ncalls, unit)
        if cfg.transport == "ring":
            # the probe notifies for what is left at the end of a repetition: whole
            # notifications, each one exit and one host call (charged per batch above)
            calls = sum(n for n, _ in runs)
            extra = math.ceil(calls / cfg.batch) - calls / cfg.batch
            yield from sim.cpu(ctx, {"hypercall_s": extra, "syscall_s": extra})
        if op == "write_sync" and cfg.flush_request:
            yield from self._flush_request(ctx)

    def _primitive(self, ctx, op, size):
        """The calibration protocol's micro-probes (unikernel/probe/probe.c), one per
        repetition: a block call the guest refuses before its exit, a bare exit, a copy in
        guest memory, a one-block ring read at offset 0 (one notification per ring batch,
        one small host pread of the cached block per request: nothing to merge), a pass of
        the repetition loop with no call, such a pass with write_sync's flush request (the
        tender's --flush=none: no fsync)."""
        terms = {"call": {"guest_call_s": 1}, "exit": {"hypercall_s": 1}, "rep": {"guest_rep_s": 1},
                 "flush": {"guest_rep_s": 1, "guest_flush_s": 1, "hypercall_s": 1},
                 "copy": {"guest_copy_call_s": 1, "guest_copy_s_per_byte": size},
                 "ring": {"ring_post_s": 1, "hypercall_s": 1 / self.cfg.batch, "syscall_s": 1,
                          "cache_copy_s_per_byte": size}}[op]
        yield from self.sim.cpu(ctx, terms)


def study() -> dict[str, EnvConfig]:
    """The study's environments on its Raspberry Pi 4, from the shipped machine profile
    (calibration/data/pi4_machine.json: facts and the study's environment table)."""
    from model.machine import pi4
    prof = pi4()
    envs = prof.get("environments") or {}
    return {e: config_for(e, None, prof["machine"], envs.get(e)) for e in ENVS}


def build(sim, cfg: EnvConfig):
    validate(cfg)
    if cfg.kind == "hvt":
        return HvtEnv(sim, cfg)
    if cfg.kind in ("native", "guest"):
        return LinuxEnv(sim, cfg)
    raise UserError(f"unknown environment kind {cfg.kind!r}")


def app(sim, envmodel, op, size, io, reps):
    """The probe: open once, repeat the operation `reps` times, close."""
    ctx = Ctx("app")

    def rep():
        yield from envmodel.rep(ctx, op, size, io)

    def run():
        yield from sim.repeat(ctx, reps, rep, top=True)

    return ctx, run
