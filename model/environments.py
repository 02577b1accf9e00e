"""The study's environments as compositions of stages, and the application (the probe).

  linux   probe -> syscall -> host page cache -> SD card
  docker  the same, plus a per-syscall container cost (seccomp, overlayfs)
  qemu    probe -> guest syscall (x vm_cpu_factor) -> guest page cache -> virtio
          (VM exit, QEMU) -> pread/pwrite on the image -> host page cache -> SD card
  xen     probe -> guest syscall -> guest page cache -> Xen PV ring -> blkback -> SD card
          (blkback submits to the device directly: no host page cache)
  hvt     unikernel probe -> hypercall per block call -> tender -> pread/pwrite on the
          disk file -> host page cache -> SD card; the study's tender fsyncs after each
          block write when the probe asks for durability (write_sync)
What-if knobs (blocks per call, flush policy, block size, ring transport,
para-passthrough, guest memory) are fields of EnvConfig.
"""

import dataclasses
import math
from dataclasses import dataclass

from edgeio.errors import UserError
from model.engine import Ctx
from model.stages import GuestBlockCache, HostFile, PageCache, SdCard, Transport
from model.params import GIB, MIB

OPS = ("write_sync", "write", "read")
FLUSH_POLICIES = ("block", "call", "none")


@dataclass(frozen=True)
class EnvConfig:
    name: str
    kind: str                      # native | guest | hvt
    memory_bytes: int              # memory the environment is given (Pi 4 table)
    container: bool = False        # docker
    transport: str = ""            # guest: virtio | xen | passthrough; hvt: hvt | ring | passthrough
    host_cache: bool = True        # guest disk is a host file (QEMU) rather than a device (blkback)
    xen_kernel: bool = False       # the Xen guest ran another kernel (5.10-rc3)
    block_size: int = 512          # hvt block size
    blocks_per_call: int = 1       # hvt blocks per block call (Solo5 allows 1)
    flush: str = "block"           # hvt write_sync: fsync per block | per call | none
    batch: int = 1                 # hvt ring: requests per notification
    exits_per_request: float = 1.0  # para-passthrough: traps left per request
    guest_cache_bytes: int = 0     # hvt under passthrough: the unikernel's own block cache (0 = none)

    def replace(self, **changes) -> "EnvConfig":
        return dataclasses.replace(self, **changes)


# The study's environments (reference/pi4_environments.csv: memory given to each).
STUDY = {
    "linux": EnvConfig("linux", "native", 4 * GIB),
    "docker": EnvConfig("docker", "native", 4 * GIB, container=True),
    "qemu": EnvConfig("qemu", "guest", 2 * GIB, transport="virtio", host_cache=True),
    "hvt": EnvConfig("hvt", "hvt", 512 * MIB, transport="hvt"),
    "xen": EnvConfig("xen", "guest", 1 * GIB, transport="xen", host_cache=False, xen_kernel=True),
}


def config_for(env: str, config: str | dict | None = None) -> EnvConfig:
    """The study's environment with a campaign cell's --param values applied (the
    measurement side's names: hvt flush/blocks_per_call/sector_size/mem, qemu and docker
    mem in MiB). Keys that do not change the model's structure are ignored."""
    import json
    if env not in STUDY:
        raise UserError(f"the model has no environment {env!r} (known: {', '.join(STUDY)})")
    cfg = STUDY[env]
    if not config:
        return cfg
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise UserError(f"{env}: config {config!r} is not a JSON object") from None
    if not isinstance(config, dict):
        raise UserError(f"{env}: config {config!r} is not a JSON object")
    changes = {}
    try:
        if "mem" in config and cfg.kind != "native":
            changes["memory_bytes"] = int(float(config["mem"]) * MIB)
        if env == "hvt":
            flush = {"none": "none", "each-write": "block", "on-request": "call",
                     "block": "block", "call": "call"}
            if "flush" in config:
                if str(config["flush"]) not in flush:
                    raise UserError(f"hvt: unknown flush policy {config['flush']!r} in config")
                changes["flush"] = flush[str(config["flush"])]
            if "blocks_per_call" in config:
                changes["blocks_per_call"] = int(config["blocks_per_call"])
            if "sector_size" in config:
                changes["block_size"] = int(config["sector_size"])
    except (TypeError, ValueError):
        raise UserError(f"{env}: config {config!r} has a value that is not a number") from None
    cfg = cfg.replace(**changes)
    validate(cfg)
    return cfg


def default_io_size(size: int) -> int:
    """The file probe's default bytes per call (probes/args.c): the file, at most 1 MiB."""
    return min(size, MIB)


def study_reps(size: int) -> int:
    """The study's repetitions: 100000 for 4 KiB, 10 for 1 GiB."""
    return 100000 if size <= MIB else 10


def validate(cfg: EnvConfig) -> None:
    if cfg.memory_bytes <= 0:
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
    if cfg.guest_cache_bytes < 0:
        raise UserError(f"{cfg.name}: guest cache must not be negative, got {cfg.guest_cache_bytes} B")
    if cfg.guest_cache_bytes > cfg.memory_bytes:
        raise UserError(f"{cfg.name}: a guest cache of {cfg.guest_cache_bytes // MIB} MiB does not fit the "
                        f"guest's {cfg.memory_bytes // MIB} MiB of memory")


class Kernel:
    """A Linux kernel running the file probe: system calls over its page cache."""

    def __init__(self, sim, cache: PageCache, factor: float, extra_syscall: str | None):
        self.sim, self.cache, self.factor, self.extra = sim, cache, factor, extra_syscall

    def _copy(self):
        return ("cache_copy_s_per_byte" if self.cache.file_bytes <= self.sim.p["cpu_cache_bytes"]
                else "dram_copy_s_per_byte")

    def _syscalls(self, ctx, n, terms):
        yield from self.sim.cpu(ctx, terms, self.factor)
        if self.extra:
            yield from self.sim.cpu(ctx, {self.extra: n})

    def read(self, ctx, size, io):
        n = math.ceil(size / io)
        if self.sim.mode == "aggregate":
            # n identical calls with no state change between them (hits, or misses that
            # all go to the device): their costs add exactly, so charge them at once.
            yield from self._syscalls(ctx, n, {"syscall_s": n, self._copy(): size})
            yield from self.cache.read(ctx, size, self.sim.p["readahead_bytes"])
            return
        for off in range(0, size, io):
            b = min(io, size - off)
            yield from self._syscalls(ctx, 1, {"syscall_s": 1, self._copy(): b})
            yield from self.cache.read(ctx, b, self.sim.p["readahead_bytes"])

    def write(self, ctx, size, io):
        """Write `size` bytes in calls of `io`, in pieces small enough that dirtying and
        throttling interleave with the CPU work as they do page by page."""
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
        yield from self._syscalls(ctx, 1, {"syscall_s": 1})
        yield from self.cache.fsync(ctx)


class LinuxEnv:
    """linux, docker, qemu, xen: the C file probe on a Linux kernel."""

    def __init__(self, sim, cfg: EnvConfig):
        p = sim.p
        host_mem = p["host_memory_bytes"]
        sd = SdCard(sim)
        if cfg.kind == "native":
            self.cache = PageCache(sim, "host", host_mem, sd)
            self.kernel = Kernel(sim, self.cache, 1.0, "container_syscall_s" if cfg.container else None)
            return
        if cfg.transport == "passthrough" or not cfg.host_cache:
            backend = sd
        else:
            if host_mem - cfg.memory_bytes <= 0:
                raise UserError(f"{cfg.name}: guest memory {cfg.memory_bytes} leaves the host no page cache")
            backend = HostFile(sim, PageCache(sim, "host", host_mem - cfg.memory_bytes, sd))
        req = p["xen_request_bytes"] if cfg.transport == "xen" else p["readahead_bytes"]
        transport = Transport(sim, cfg.transport, backend, req, cfg.exits_per_request)
        f = p["vm_cpu_factor"]
        self.cache = PageCache(sim, "guest", cfg.memory_bytes, transport, cpu_factor=f,
                               fsync_flushes=p["guest_fsync_flushes"])
        self.kernel = Kernel(sim, self.cache, f, "xen_syscall_s" if cfg.xen_kernel else None)
        self.host_file = backend if isinstance(backend, HostFile) else None

    def open(self, size):
        self.cache.open(size)
        if getattr(self, "host_file", None):
            self.host_file.cache.open(size)

    def rep(self, ctx, op, size, io):
        self.cache.seek(0)
        if op == "read":
            yield from self.kernel.read(ctx, size, io)
        else:
            yield from self.kernel.write(ctx, size, io)
            if op == "write_sync":
                yield from self.kernel.fsync(ctx)


class HvtEnv:
    """The Solo5 unikernel probe on the hvt tender: one hypercall per block call."""

    def __init__(self, sim, cfg: EnvConfig):
        p = sim.p
        self.sim, self.cfg = sim, cfg
        self.sd = SdCard(sim)
        self.file = None
        self.guest_cache = cfg.transport == "passthrough" and cfg.guest_cache_bytes > 0
        if self.guest_cache:
            # a unikernel with its own block cache: block calls are served inside the
            # guest; misses (readahead) and writeback reach the card through the guest
            # driver, trapping exits_per_request times per request
            to_card = Transport(sim, "passthrough", self.sd, p["readahead_bytes"], cfg.exits_per_request)
            self.file = GuestBlockCache(sim, PageCache(
                sim, "unikernel", cfg.memory_bytes, to_card, cpu_factor=p["vm_cpu_factor"],
                capacity_bytes=cfg.guest_cache_bytes, journal=False), p["vm_cpu_factor"])
        elif cfg.transport != "passthrough":
            if p["host_memory_bytes"] - cfg.memory_bytes <= 0:
                raise UserError(f"{cfg.name}: guest memory {cfg.memory_bytes} leaves the host no page cache")
            self.file = HostFile(sim, PageCache(sim, "host", p["host_memory_bytes"] - cfg.memory_bytes, self.sd))

    def open(self, size):
        if self.file:
            self.file.cache.open(size)

    def _exits(self, ncalls):
        cfg = self.cfg
        if self.guest_cache:                 # block calls are function calls in the guest
            return 0
        if cfg.transport == "ring":          # one notification per batch of requests
            return ncalls / cfg.batch
        if cfg.transport == "passthrough":
            return ncalls * cfg.exits_per_request
        return ncalls

    def _calls(self, ctx, op, n, nbytes_per_call):
        """n identical block calls of nbytes each (read or buffered write)."""
        sim = self.sim
        if self.file is None:                # passthrough: the guest driver drives the card
            yield from sim.cpu(ctx, {"hypercall_s": self._exits(n)})
            dev = self.sd.read if op == "read" else self.sd.write
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
            yield from sim.cpu(ctx, {"hypercall_s": self._exits(m)})
            if op == "read":
                yield from self.file.read(ctx, m * nbytes_per_call, m)
            else:
                yield from self.file.write(ctx, m * nbytes_per_call, m)
            left -= m

    def _flush(self, ctx):
        if self.file is None:
            yield from self.sd.flush(ctx)
        else:
            yield from self.file.flush(ctx)

    def rep(self, ctx, op, size, io):
        cfg, sim = self.cfg, self.sim
        if self.file:
            self.file.cache.seek(0)
        bs, k = cfg.block_size, cfg.blocks_per_call
        blocks = math.ceil(size / bs)
        runs = [(blocks // k, k)] + ([(1, blocks % k)] if blocks % k else [])
        for ncalls, kk in runs:
            if ncalls == 0:
                continue
            if op == "read":
                yield from self._calls(ctx, "read", ncalls, kk * bs)
            elif op == "write" or cfg.flush == "none":
                yield from self._calls(ctx, "write", ncalls, kk * bs)
            elif cfg.flush == "call":
                def unit(kk=kk):
                    yield from self._calls(ctx, "write", 1, kk * bs)
                    yield from self._flush(ctx)
                yield from sim.repeat(ctx, ncalls, unit)
            else:                             # the study's tender: fsync after every block
                def unit(kk=kk):
                    yield from sim.cpu(ctx, {"hypercall_s": self._exits(1)})
                    yield from sim.repeat(ctx, kk, lambda: self._block_then_flush(ctx, bs))
                yield from sim.repeat(ctx, ncalls, unit)

    def _block_then_flush(self, ctx, bs):
        if self.file is None:
            yield from self.sd.write(ctx, bs, 1)
        else:
            yield from self.file.write(ctx, bs, 1)
        yield from self._flush(ctx)


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
