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
from edgeio.units import GIB, KIB, MIB  # noqa: F401  (one home of the units; others import them from here)


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
         "copying between page cache and user buffer while the file fits the CPU's last-level cache"),
    Spec("dram_copy_s_per_byte", "linear", 0.9e-9, "s/B",
         "copying between page cache and user buffer from DRAM (file larger than the LLC), incl. page lookups"),
    Spec("write_call_s", "linear", 3e-6, "s", "buffered write bookkeeping per write call (write_begin/end, mtime)"),
    Spec("write_s_per_byte", "linear", 1e-9, "s/B", "buffered write cost per byte beyond the copy"),
    Spec("page_dirtying_s", "linear", 3e-6, "s", "turning a clean cached page dirty (accounting, journal "
         "bookkeeping, balance_dirty_pages); a weak prior: only big rewrites inform it", 10.0),
    Spec("page_io_s", "linear", 0.3e-6, "s", "kernel work per page read into or written back from a page "
         "cache (allocation, LRU, bio, completion); x the guest CPU factor in a guest"),
    Spec("container_syscall_s", "linear", 1e-6, "s", "extra per system call inside a container (seccomp, overlayfs)"),
    Spec("container_fsync_s", "linear", 0.3e-3, "s", "extra per fsync of a file in a container's writable "
         "layer (overlayfs: the upper file's sync and the overlay's own metadata)"),
    Spec("xen_syscall_s", "linear", 1e-6, "s", "extra per system call of the Xen guest kernel (5.10-rc3)"),
    Spec("hypercall_s", "linear", 10e-6, "s", "hvt hypercall: VM exit to KVM, return to the tender, dispatch"),
    Spec("guest_call_s", "linear", 0.3e-6, "s", "guest-side work of one hvt block call besides its exit "
         "(the caller's loop, the runtime's checks; the mapped transport's call); emulated on a software KVM"),
    Spec("ring_post_s", "linear", 0.5e-6, "s", "one ring request posted and completed, without its I/O "
         "(descriptor, the caller's loop, the tender's checks); emulated on a software KVM"),
    Spec("guest_flush_s", "linear", 0.1e-6, "s", "guest-side work of one hvt flush request besides its exit "
         "(the runtime's checks; fewer than a block call's); emulated on a software KVM"),
    Spec("guest_rep_s", "linear", 0.02e-6, "s", "one repetition of the probe's loop in the hvt guest besides "
         "its calls (the loop, the checks after its calls); emulated on a software KVM"),
    Spec("guest_copy_s_per_byte", "linear", 0.3e-9, "s/B", "a copy inside the hvt guest (mapped transport, "
         "a unikernel's own cache); emulated instruction by instruction on a software KVM"),
    Spec("guest_copy_call_s", "linear", 0.02e-6, "s", "one copy inside the hvt guest besides its bytes (the "
         "call, the copy instruction's start and end): a mapped block call pays it per block; ~8 us on a "
         "software KVM"),
    Spec("virtio_exit_s", "linear", 30e-6, "s", "one virtio-blk request: notify exit, QEMU dispatch, completion irq"),
    Spec("trap_s", "linear", 5e-6, "s", "one trapped register access of an emulated device (a port or MMIO "
         "read QEMU's device model answers): an ide/ahci request makes several"),
    Spec("xen_ring_s", "linear", 30e-6, "s", "one Xen PV block request: ring, event channel, grant map/unmap"),
    Spec("fsync_overhead_s", "linear", 1.5e-3, "s", "journal commit work of an ext4 fsync besides data and cache flush"),
    # -- device, memory and virtualisation ----------------------------------------------------
    Spec("vm_cpu_factor", "nonlinear", 1.5, "x", "slow-down of guest kernel CPU work under hardware "
         "virtualisation (stage-2 translation, interrupt virtualisation)"),
    Spec("emulated_cpu_factor", "nonlinear", 8.0, "x", "slow-down of guest kernel CPU work where it is "
         "emulated (qemu accel=tcg; any guest on a software KVM)", 1.5),
    Spec("emulated_copy_factor", "nonlinear", 8.0, "x", "slow-down of a guest kernel's memory work (per-byte "
         "copies, per-page cache bookkeeping) where the CPU is emulated (qemu accel=tcg)", 1.5),
    Spec("guest_fsync_flushes", "nonlinear", 3.0, "count", "cache-flush requests a guest ext4 fsync sends to its disk", 0.5),
    Spec("ide_exits_per_request", "nonlinear", 16.0, "count", "trapped register accesses per request of QEMU's "
         "emulated IDE disk (taskfile registers, bus-master DMA start/stop/status)", 0.7),
    Spec("ahci_exits_per_request", "nonlinear", 3.0, "count", "trapped register accesses per request of QEMU's "
         "emulated AHCI disk (command issue, interrupt status)", 0.7),
    Spec("dev_read_bps", "nonlinear", 200e6, "B/s", "block device sequential read bandwidth (prior by device kind)"),
    Spec("dev_write_bps", "nonlinear", 100e6, "B/s", "block device sequential write bandwidth (prior by device kind)"),
    Spec("dev_request_s", "nonlinear", 0.2e-3, "s", "block device latency per request (prior by device kind)"),
    Spec("dev_flush_s", "nonlinear", 1e-3, "s", "block device cache flush (FLUSH command; prior by device kind)"),
    Spec("dirty_ratio", "nonlinear", 0.2, "fraction", "dirty page limit as a share of dirtyable memory "
         "(prior: the machine's vm.dirty_ratio)", 0.3),
    # -- structural constants: the machine's facts (model/machine.py), or generic defaults --
    Spec("page_bytes", "fixed", 4096, "B", "page size"),
    Spec("cpu_cache_bytes", "fixed", None, "B", "CPU last-level cache (machine fact: cpu_caches)"),
    Spec("kernel_reserve_bytes", "fixed", 256 * MIB, "B", "memory a kernel and its processes keep out of the page "
         "cache, at most half the memory (generic assumption: a small Linux userland)"),
    Spec("guest_cache_share", "fixed", 0.0, "share", "share of a Linux guest's MemTotal its page cache holds of a "
         "file read beyond its memory: measured (the guest's Cached after such a read, "
         "calibration/results.py guest_cache); 0 = not measured: streaming_cache_share x (memory - reserve)"),
    Spec("guest_kernel_reserve", "fixed", 0.0, "B", "memory a Linux guest's kernel keeps (memory - MemTotal, "
         "measured with guest_cache_share)"),
    Spec("streaming_cache_share", "fixed", 0.5, "fraction",
         "share of free memory a file read once per pass can hold (Linux's inactive list)"),
    Spec("host_memory_bytes", "fixed", None, "B", "host memory (machine fact: memory_bytes)"),
    Spec("writeback_request_bytes", "fixed", 1280 * KIB, "B", "largest request the host sends to its device "
         "(machine fact: block_device.max_request_bytes; generic BLK_DEF_MAX_SECTORS)"),
    Spec("readahead_bytes", "fixed", 128 * KIB, "B", "readahead window: request size of sequential reads "
         "(machine fact: block_device.readahead_bytes; generic VM_READAHEAD_PAGES)"),
    Spec("guest_readahead_bytes", "fixed", 128 * KIB, "B", "a guest kernel's readahead window and disk request "
         "size (generic Linux VM_READAHEAD_PAGES: the guest's own settings are not recorded)"),
    Spec("dirty_background_share", "fixed", 0.5, "fraction", "background writeback threshold as a share of the "
         "dirty limit (machine facts: vm.dirty_background_ratio / vm.dirty_ratio; generic 10/20)"),
    Spec("xen_request_bytes", "fixed", 44 * KIB, "B", "Xen blkif request: 11 segments of one page (no indirect descriptors)"),
]}

# Structural constants with no generic value: they must come from the machine's facts.
MACHINE_ONLY = [n for n, s in SPECS.items() if s.kind == "fixed" and s.prior is None]

# Which cells of the study's matrix inform each fitted parameter (for messages).
INFORMED_BY = {
    "syscall_s": "4 KiB read cells", "cache_copy_s_per_byte": "4 KiB read cells",
    "dram_copy_s_per_byte": "1 GiB linux/docker read cells", "write_call_s": "4 KiB write cells",
    "write_s_per_byte": "4 KiB write cells", "page_dirtying_s": "hvt 1 GiB write",
    "container_syscall_s": "docker cells", "container_fsync_s": "docker write_sync cells", "page_io_s": "reads that miss a cache, writes beyond the dirty limit", "xen_syscall_s": "xen 4 KiB cells", "hypercall_s": "hvt primitive exit (or hvt cells)",
    "virtio_exit_s": "qemu write_sync and 1 GiB read", "trap_s": "qemu primitive trap", "xen_ring_s": "xen write_sync and 1 GiB read",
    "fsync_overhead_s": "write_sync cells", "vm_cpu_factor": "qemu (kvm) or xen 4 KiB cells",
    "emulated_cpu_factor": "qemu accel=tcg 4 KiB cells", "emulated_copy_factor": "qemu accel=tcg 1 MiB+ cells", "guest_call_s": "hvt primitive call (or hvt 4 KiB cells)",
    "ring_post_s": "hvt primitive ring", "guest_rep_s": "hvt primitive rep", "guest_flush_s": "hvt primitive flush",
    "guest_copy_s_per_byte": "hvt primitive copy (64 KiB)", "guest_copy_call_s": "hvt primitive copy (16 B)",
    "ide_exits_per_request": "qemu disk=ide cells",
    "ahci_exits_per_request": "qemu disk=ahci cells",
    "guest_fsync_flushes": "qemu or xen 4 KiB write_sync", "dev_read_bps": "reads that miss every cache",
    "dev_write_bps": "writes larger than the dirty limit", "dev_request_s": "cells that reach the device",
    "dev_flush_s": "write_sync cells", "dirty_ratio": "writes larger than the dirty limit",
}

LINEAR = [n for n, s in SPECS.items() if s.kind == "linear"]
NONLINEAR = [n for n, s in SPECS.items() if s.kind == "nonlinear"]
FITTED = LINEAR + NONLINEAR


def prior_sds(machine: dict | None = None) -> dict[str, float]:
    """Every fitted parameter's prior spread (Spec.sd), widened where the machine's facts
    say the generic one would be dishonest (model/machine.py machine_prior_sds)."""
    out = {n: SPECS[n].sd for n in FITTED}
    if machine is not None:
        from model.machine import machine_prior_sds
        out.update(machine_prior_sds(machine))
    return out


def priors(machine: dict | None = None) -> dict[str, float]:
    """Every parameter's prior; with a machine's facts, its structural constants and the
    priors that depend on it (model/machine.py). Without, the machine-only constants
    are absent and a simulation that needs one is a UserError."""
    out = {n: float(s.prior) for n, s in SPECS.items() if s.prior is not None}
    if machine is not None:
        from model.machine import machine_priors, structure
        out.update(structure(machine))
        out.update(machine_priors(machine))
    return out


class Params(dict):
    """Parameter values by name; records which names a simulation read (for memoising)."""

    def __init__(self, values: dict | None = None, machine: dict | None = None):
        merged = priors(machine)
        for k, v in (values or {}).items():
            if k not in SPECS:
                raise UserError(f"unknown model parameter {k!r}")
            merged[k] = float(v)
        lacking = [n for n in MACHINE_ONLY if n not in merged]
        if lacking:
            raise UserError(f"model parameter(s) {', '.join(lacking)} are machine facts: build the model "
                            "from a machine profile or a campaign's recorded facts")
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
        if k.endswith("_bps") or k.endswith("_bytes") or k.endswith("_factor"):
            if v <= 0:
                raise UserError(f"model parameter {k} must be positive, got {v:g}")
        elif v < 0:
            raise UserError(f"model parameter {k} must not be negative, got {v:g}")
        if spec.unit == "fraction" and not 0 < v <= 1:
            raise UserError(f"model parameter {k} must lie in (0, 1], got {v:g}")
