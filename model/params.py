"""The model's named parameters: what each one is, its unit, its prior, how it is fitted.

Three kinds:
  linear     per-call CPU costs; a cell's time is linear in them whenever the caller
             never waits behind a concurrent process (the calibration fits them by WLS);
  nonlinear  device, memory and virtualisation factors that enter through capacity,
             throttling or products (fitted by simulation, least squares on relative errors);
  fixed      structural constants of the hardware and of Linux defaults (not fitted).

Priors are deliberately weak (a factor of ~3): they only matter when a parameter is
not identified by the data, e.g. when validation leaves out the one cell that carries it.
"""

from dataclasses import dataclass

from edgeio.errors import UserError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str            # linear | nonlinear | fixed
    prior: float
    unit: str
    description: str
    prior_sd: float | None = None   # linear: relative sd of the value (default 1);
                                    # others: sd of log(value) (default 1.1)

    @property
    def sd(self) -> float:
        if self.prior_sd is not None:
            return self.prior_sd
        return 1.0 if self.kind == "linear" else 1.1


SPECS: dict[str, Spec] = {s.name: s for s in [
    # -- per-call CPU costs (host kernel; guests pay vm_cpu_factor times these) ------------
    Spec("syscall_s", "linear", 0.5e-6, "s", "system call entry/exit and VFS dispatch, per call"),
    Spec("cache_copy_s_per_byte", "linear", 0.25e-9, "s/B",
         "copying between page cache and user buffer while the file fits the CPU's L2 cache"),
    Spec("dram_copy_s_per_byte", "linear", 0.9e-9, "s/B",
         "copying between page cache and user buffer from DRAM (file larger than L2), incl. page lookups"),
    Spec("write_call_s", "linear", 3e-6, "s", "buffered write bookkeeping per write call (write_begin/end, mtime)"),
    Spec("write_s_per_byte", "linear", 1e-9, "s/B", "buffered write cost per byte beyond the copy"),
    Spec("page_dirtying_s", "linear", 3e-6, "s", "turning a clean cached page dirty (accounting, journal "
         "bookkeeping, balance_dirty_pages); a weak prior: only big rewrites inform it", 10.0),
    Spec("container_syscall_s", "linear", 1e-6, "s", "extra per system call inside a container (seccomp, overlayfs)"),
    Spec("xen_syscall_s", "linear", 1e-6, "s", "extra per system call of the Xen guest kernel (5.10-rc3)"),
    Spec("hypercall_s", "linear", 10e-6, "s", "hvt hypercall: VM exit to KVM, return to the tender, dispatch"),
    Spec("virtio_exit_s", "linear", 30e-6, "s", "one virtio-blk request: notify exit, QEMU dispatch, completion irq"),
    Spec("xen_ring_s", "linear", 30e-6, "s", "one Xen PV block request: ring, event channel, grant map/unmap"),
    Spec("fsync_overhead_s", "linear", 1.5e-3, "s", "journal commit work of an ext4 fsync besides data and cache flush"),
    # -- device, memory and virtualisation ----------------------------------------------------
    Spec("vm_cpu_factor", "nonlinear", 1.5, "x", "slow-down of guest kernel CPU work (stage-2 translation)", 0.5),
    Spec("guest_fsync_flushes", "nonlinear", 3.0, "count", "cache-flush requests a guest ext4 fsync sends to its disk", 0.5),
    Spec("sd_read_bps", "nonlinear", 45e6, "B/s", "SD card sequential read bandwidth"),
    Spec("sd_write_bps", "nonlinear", 30e6, "B/s", "SD card sequential write bandwidth"),
    Spec("sd_request_s", "nonlinear", 0.3e-3, "s", "SD card latency per request"),
    Spec("sd_flush_s", "nonlinear", 0.5e-3, "s", "SD card cache flush (FLUSH command)"),
    Spec("dirty_ratio", "nonlinear", 0.2, "fraction", "dirty page limit as a share of dirtyable memory (background: half)", 0.3),
    # -- structural constants -----------------------------------------------------------------
    Spec("page_bytes", "fixed", 4096, "B", "page size"),
    Spec("cpu_cache_bytes", "fixed", 1 * MIB, "B", "CPU L2 cache (BCM2711: 1 MiB shared)"),
    Spec("kernel_reserve_bytes", "fixed", 256 * MIB, "B", "memory a kernel and its processes keep out of the page cache (at most half the memory)"),
    Spec("streaming_cache_share", "fixed", 0.5, "fraction",
         "share of free memory a file read once per pass can hold (Linux's inactive list)"),
    Spec("host_memory_bytes", "fixed", 4 * GIB, "B", "host memory (Raspberry Pi 4 Model B, 4 GiB)"),
    Spec("writeback_request_bytes", "fixed", 512 * KIB, "B", "largest request the host writeback sends to the SD card"),
    Spec("readahead_bytes", "fixed", 128 * KIB, "B", "Linux readahead window: request size of sequential reads"),
    Spec("xen_request_bytes", "fixed", 44 * KIB, "B", "Xen blkif request: 11 segments of 4 KiB (no indirect descriptors)"),
]}

# Which cells of the study's matrix inform each fitted parameter (for messages).
INFORMED_BY = {
    "syscall_s": "4 KiB read cells", "cache_copy_s_per_byte": "4 KiB read cells",
    "dram_copy_s_per_byte": "1 GiB linux/docker read cells", "write_call_s": "4 KiB write cells",
    "write_s_per_byte": "4 KiB write cells", "page_dirtying_s": "hvt 1 GiB write",
    "container_syscall_s": "docker cells", "xen_syscall_s": "xen 4 KiB cells", "hypercall_s": "hvt cells",
    "virtio_exit_s": "qemu write_sync and 1 GiB read", "xen_ring_s": "xen write_sync and 1 GiB read",
    "fsync_overhead_s": "write_sync cells", "vm_cpu_factor": "qemu or xen 4 KiB cells",
    "guest_fsync_flushes": "qemu or xen 4 KiB write_sync", "sd_read_bps": "qemu or xen 1 GiB read",
    "sd_write_bps": "1 GiB write cells", "sd_request_s": "1 GiB cells that reach the card",
    "sd_flush_s": "xen write_sync", "dirty_ratio": "1 GiB write and write_sync cells",
}

LINEAR = [n for n, s in SPECS.items() if s.kind == "linear"]
NONLINEAR = [n for n, s in SPECS.items() if s.kind == "nonlinear"]
FITTED = LINEAR + NONLINEAR


def priors() -> dict[str, float]:
    return {n: float(s.prior) for n, s in SPECS.items()}


class Params(dict):
    """Parameter values by name; records which names a simulation read (for memoising)."""

    def __init__(self, values: dict | None = None):
        merged = priors()
        for k, v in (values or {}).items():
            if k not in SPECS:
                raise UserError(f"unknown model parameter {k!r}")
            merged[k] = float(v)
        super().__init__(merged)
        self.used: set[str] | None = None
        check(self)

    def __getitem__(self, name):
        if self.used is not None:
            self.used.add(name)
        return dict.__getitem__(self, name)


def check(values: dict) -> None:
    """Impossible values (zero bandwidth, negative costs, ratio outside (0, 1]) are a UserError."""
    for k, v in values.items():
        spec = SPECS.get(k)
        if spec is None:
            continue
        if not (v == v) or v in (float("inf"), float("-inf")):
            raise UserError(f"model parameter {k} is not a finite number")
        if k.endswith("_bps") or k.endswith("_bytes") or k == "vm_cpu_factor":
            if v <= 0:
                raise UserError(f"model parameter {k} must be positive, got {v:g}")
        elif v < 0:
            raise UserError(f"model parameter {k} must not be negative, got {v:g}")
        if spec.unit == "fraction" and not 0 < v <= 1:
            raise UserError(f"model parameter {k} must lie in (0, 1], got {v:g}")
