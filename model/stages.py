"""Stages of the I/O path as SimPy components.

  BlockDevice the physical device (SD card, eMMC, SSD, a virtual disk...): one request at a
              time; latency + bytes / bandwidth; FLUSH. Fitted per machine.
  PageCache   a kernel's page cache over a backing store: capacity from memory, dirty
              limits, a flusher thread (background writeback), throttled writers, fsync
  HostFile    a file on the host seen by a host process (QEMU, the hvt tender): one
              pread/pwrite per request through the host's page cache
  Transport   how a guest's disk requests reach their backend: virtio (VM exit + QEMU),
              an emulated disk (ide/ahci: several trapped register accesses per request),
              Xen PV ring, or para-passthrough (only unavoidable exits)
Kernels, the hvt tender and the application live in environments.py.
"""

import math
from collections import OrderedDict

import simpy

from model.engine import AGG_CHUNK, Ctx


class BlockDevice:
    """The machine's block device: a single queue; each request pays a latency, each byte
    the bandwidth, a FLUSH the flush latency (dev_* parameters, fitted per machine; the
    device kind in the machine's facts only chooses their priors)."""

    def __init__(self, sim):
        self.sim = sim
        self.res = simpy.Resource(sim.env, capacity=1)
        self.busy_until = 0.0
        sim.devices.append(self)

    @property
    def busy(self) -> bool:
        return self.res.count > 0 or len(self.res.queue) > 0

    def state(self) -> tuple:
        return (self.res.count, len(self.res.queue), round(max(0.0, self.busy_until - self.sim.now), 7))

    def _serve(self, ctx, service):
        with self.res.request() as req:
            yield from self.sim.wait(ctx, req)
            ctx.ledger.device_s += service
            self.busy_until = self.sim.now + service
            yield self.sim.env.timeout(service)

    def read(self, ctx, nbytes, nreq):
        p = self.sim.p
        yield from self._serve(ctx, nreq * p["dev_request_s"] + nbytes / p["dev_read_bps"])

    def write(self, ctx, nbytes, nreq):
        p = self.sim.p
        yield from self._serve(ctx, nreq * p["dev_request_s"] + nbytes / p["dev_write_bps"])

    def flush(self, ctx):
        yield from self._serve(ctx, self.sim.p["dev_flush_s"])


def requests(nbytes, request_bytes) -> int:
    return max(1, math.ceil(nbytes / request_bytes)) if nbytes > 0 else 0


class PageCache:
    """One file in a kernel's page cache (the probe's file, or a guest's disk image).

    The file is written sequentially from offset 0 each repetition, so the dirty pages
    form one window that ends at the write cursor and that the flusher cleans from its
    old end; rewriting a dirty page adds nothing. Reads hit when the file fits the
    cache: the study's reads do not drop caches and follow a write of the same file.
    A file larger than the cache misses on every page: a cyclic sequential scan evicts
    each page from an LRU before it comes round again (request mode tracks every page
    in a real LRU; a test checks both agree).
    """

    def __init__(self, sim, name, memory_bytes, backing, cpu_factor=1.0,
                 fsync_flushes=1.0, writeback_request_bytes=None, capacity_bytes=None, journal=True):
        p = sim.p
        self.sim, self.name, self.backing, self.cpu_factor = sim, name, backing, cpu_factor
        self.P = int(p["page_bytes"])
        self.journal = journal          # fsync commits a filesystem journal (ext4)
        if capacity_bytes:              # a cache of a given size (a unikernel's block cache)
            free = float(capacity_bytes)
            self.capacity_pages = max(1, int(free // self.P))
        else:
            # small machines and guests keep proportionally less: at most half their memory
            free = memory_bytes - min(p["kernel_reserve_bytes"], memory_bytes / 2)
            if free <= 0:
                from edgeio.errors import UserError
                raise UserError(f"{name}: memory {memory_bytes:.0f} B leaves nothing for the page cache")
            self.capacity_pages = int(p["streaming_cache_share"] * free // self.P)
            if name == "guest" and p["guest_cache_share"] > 0:
                # what the target's guest was measured to hold (its Cached after reading a
                # file beyond its memory), for this guest's memory
                held = p["guest_cache_share"] * (memory_bytes - p["guest_kernel_reserve"])
                self.capacity_pages = max(1, int(held // self.P))
        self.limit_pages = max(1, int(p["dirty_ratio"] * free // self.P))
        self.background_pages = max(1, int(self.limit_pages * p["dirty_background_share"]))
        self.fsync_flushes = fsync_flushes
        self.wb_request = writeback_request_bytes or p["writeback_request_bytes"]
        # aggregate pieces: AGG_CHUNK, but at most 1/16 of the dirty limit so that small
        # caches still see the writer and the flusher interleave finely
        self.chunk_pages = max(self.wb_request_pages(p), min(AGG_CHUNK // self.P, self.limit_pages // 16))
        self.file_pages = 0
        self.pos = 0
        self.dirty = 0
        self.syncing = False
        self.flusher_busy = False
        self.inflight, self.inflight_since = 0, 0.0
        self.cold = False               # this repetition's reads start from a dropped cache
        self.lru = OrderedDict()
        self.flusher_ctx = Ctx(f"{name}-flusher")
        self._kick = sim.env.event()
        self._progress = sim.env.event()
        sim.caches.append(self)
        sim.env.process(self._flusher())

    def wb_request_pages(self, p):
        return max(1, int(self.wb_request // self.P))

    # -- state --------------------------------------------------------------------------
    def open(self, file_bytes):
        self.file_bytes = int(file_bytes)
        self.file_pages = max(1, math.ceil(file_bytes / self.P))
        self.fits = self.file_pages <= self.capacity_pages
        if self.sim.mode == "request":   # warm: the last pages written are resident
            first = max(0, self.file_pages - self.capacity_pages)
            self.lru = OrderedDict((i, True) for i in range(first, self.file_pages))

    def seek(self, offset=0):
        self.pos = offset % self.file_bytes

    def drop(self):
        """Drop the clean cached pages (a cold read; the probe syncs first, outside the
        timing): this repetition's reads miss."""
        self.cold = True
        if self.sim.mode == "request":
            self.lru.clear()

    def quiet(self) -> bool:
        return not self.flusher_busy and self.dirty <= self.background_pages and not self.syncing

    def state(self, full=False) -> tuple:
        # the cursor matters only while some page is dirty (is the page under it dirty?)
        s = (self.dirty, self.pos % self.P if self.dirty else None)
        if full:
            s += (self.flusher_busy, self.syncing, self.inflight,
                  round(self.sim.now - self.inflight_since, 7) if self.flusher_busy else None)
        return s

    # -- writes -------------------------------------------------------------------------
    def write(self, ctx, nbytes):
        """Dirty the pages of the next nbytes at the cursor; throttle above the dirty limit."""
        start = self.pos
        first, last = start // self.P, (start + nbytes - 1) // self.P
        touched = last - first + 1
        if self.dirty > 0 and start % self.P:
            touched -= 1          # the page under the cursor is the newest dirty page
        new = max(0, min(touched, self.file_pages - self.dirty))
        self.pos = (start + nbytes) % self.file_bytes
        if self.sim.mode == "request":
            for i in range(first, last + 1):
                self._touch(i % self.file_pages)
        if new:
            yield from self.sim.cpu(ctx, {"page_dirtying_s": new}, self.cpu_factor)
            self.dirty += new
        if self.dirty > self.background_pages and not self._kick.triggered:
            self._kick.succeed()
        while self.dirty > self.limit_pages:      # balance_dirty_pages: wait for writeback
            yield from self.sim.wait(ctx, self._progress)

    def headroom_bytes(self) -> int:
        """Bytes a writer can dirty before anything else happens (aggregate pieces)."""
        below = self.background_pages - self.dirty
        return max(self.P, below * self.P if below > 0 else self.chunk_pages * self.P)

    def _touch(self, page):
        self.lru[page] = True
        self.lru.move_to_end(page)
        while len(self.lru) > self.capacity_pages:
            self.lru.popitem(last=False)

    def _flusher(self):
        """Background writeback: above the background threshold, clean the oldest pages."""
        env = self.sim.env
        chunk_pages = self.chunk_pages if self.sim.mode == "aggregate" else self.wb_request_pages(self.sim.p)
        while True:
            if self.dirty <= self.background_pages or self.syncing:
                if self._kick.triggered:
                    self._kick = env.event()
                yield self._kick
                continue
            pages = min(self.dirty, chunk_pages)
            self.flusher_busy = True
            self.inflight, self.inflight_since = pages, self.sim.now
            nbytes = pages * self.P
            yield from self._page_io(self.flusher_ctx, pages)
            yield from self.backing.write(self.flusher_ctx, nbytes, requests(nbytes, self.wb_request))
            self.dirty -= pages
            self.flusher_busy = False
            self._signal_progress()

    def _page_io(self, ctx, pages):
        """Kernel work per page read in or written back (allocation, LRU, bio, completion),
        at the kernel's CPU factor: what makes a guest's cache misses dear under TCG."""
        if pages and self.journal is not None:
            yield from self.sim.cpu(ctx, {"page_io_s": pages}, self.cpu_factor)

    def _signal_progress(self):
        ev, self._progress = self._progress, self.sim.env.event()
        ev.succeed()

    def fsync(self, ctx, journal: bool = True):
        """The caller writes back what is dirty (after the flusher's piece in flight), then
        the filesystem commits its journal (not for an fdatasync of a rewrite in place)
        and asks the disk to flush its cache."""
        self.syncing = True
        while self.flusher_busy:
            yield from self.sim.wait(ctx, self._progress)
        if self.dirty:
            nbytes = self.dirty * self.P
            yield from self._page_io(ctx, self.dirty)
            yield from self.backing.write(ctx, nbytes, requests(nbytes, self.wb_request))
            self.dirty = 0
        self.syncing = False
        self._signal_progress()
        if self.journal and journal:
            # the journal commit waits for its own block writes more than it computes:
            # not scaled by a guest's CPU factor
            yield from self.sim.cpu(ctx, {"fsync_overhead_s": 1})
        yield from self.sim.repeat(ctx, self.fsync_flushes, lambda: self.backing.flush(ctx))

    # -- reads --------------------------------------------------------------------------
    def read(self, ctx, nbytes, request_bytes):
        """Read nbytes at the cursor; misses go to the backing store in readahead requests."""
        if self.sim.mode == "aggregate":
            self.pos = (self.pos + nbytes) % self.file_bytes
            if not self.fits or self.cold:
                yield from self._page_io(ctx, math.ceil(nbytes / self.P))
                yield from self.backing.read(ctx, nbytes, requests(nbytes, request_bytes))
            return
        first, last = self.pos // self.P, (self.pos + nbytes - 1) // self.P
        self.pos = (self.pos + nbytes) % self.file_bytes
        window = max(1, int(request_bytes // self.P))
        i = first
        while i <= last:
            page = i % self.file_pages
            if page in self.lru:
                self._touch(page)
                i += 1
                continue
            # a miss reads the readahead window from here (up to the end of the file)
            n = min(window, self.file_pages - page)
            yield from self._page_io(ctx, n)
            yield from self.backing.read(ctx, n * self.P, 1)
            for k in range(n):
                self._touch(page + k)
            i += 1


class HostFile:
    """A host process's file (QEMU's disk image, the hvt disk): pread/pwrite per request."""

    def __init__(self, sim, cache: PageCache):
        self.sim, self.cache = sim, cache

    def _copy_term(self):
        p = self.sim.p
        return "cache_copy_s_per_byte" if self.cache.file_bytes <= p["cpu_cache_bytes"] else "dram_copy_s_per_byte"

    def read(self, ctx, nbytes, nreq):
        yield from self.sim.cpu(ctx, {"syscall_s": nreq, self._copy_term(): nbytes})
        yield from self.cache.read(ctx, nbytes, self.sim.p["readahead_bytes"])

    def write(self, ctx, nbytes, nreq):
        yield from self.sim.cpu(ctx, {"syscall_s": nreq, "write_call_s": nreq,
                                      self._copy_term(): nbytes, "write_s_per_byte": nbytes})
        yield from self.cache.write(ctx, nbytes)

    def flush(self, ctx):
        yield from self.sim.cpu(ctx, {"syscall_s": 1})
        yield from self.cache.fsync(ctx)


class GuestBlockCache:
    """Block calls served by copies inside the hvt guest (guest_copy_call_s per call and
    guest_copy_s_per_byte; emulated on a software KVM): a unikernel's own block cache
    (passthrough), or the host file mapped into the guest (the mapped transport: the cache
    is the host's page cache)."""

    def __init__(self, sim, cache: PageCache, mapped: bool = False):
        self.sim, self.cache, self.mapped = sim, cache, mapped

    def read(self, ctx, nbytes, nreq):
        yield from self.sim.cpu(ctx, {"guest_copy_call_s": nreq, "guest_copy_s_per_byte": nbytes})
        yield from self.cache.read(ctx, nbytes, self.sim.p["readahead_bytes"])

    def write(self, ctx, nbytes, nreq):
        yield from self.sim.cpu(ctx, {"guest_copy_call_s": nreq, "guest_copy_s_per_byte": nbytes})
        yield from self.cache.write(ctx, nbytes)

    def flush(self, ctx):
        if self.mapped:       # the tender's msync(MS_SYNC): a data-only sync of the range
            yield from self.sim.cpu(ctx, {"syscall_s": 1})
            yield from self.cache.fsync(ctx, journal=False)
        else:
            yield from self.cache.fsync(ctx)


class Transport:
    """A guest's disk requests to the backend: a per-request cost, then the backend.

    kind "virtio": notify exit + QEMU dispatch + completion (virtio_exit_s); "emulated"
    (QEMU's ide, ahci): the same dispatch and completion, and `exits_param` trapped
    register accesses per request instead of the notification (trap_s each, which the
    qemu primitive `trap` measures); "xen": blkfront/blkback ring, event channel and grant mapping
    (xen_ring_s); "passthrough": the guest driver drives the device and the hypervisor
    traps only `exits` times per request. Requests are at most `request_bytes`.
    """

    COST = {"virtio": "virtio_exit_s", "xen": "xen_ring_s"}

    def __init__(self, sim, kind, backend, request_bytes, exits=1.0, exits_param=None):
        self.sim, self.kind, self.backend = sim, kind, backend
        self.request_bytes, self.exits, self.exits_param = request_bytes, exits, exits_param

    def _cost(self, ctx, nreq):
        if self.kind == "passthrough":
            terms = {"hypercall_s": nreq * self.exits}
        elif self.exits_param:
            # an emulated controller's request goes through QEMU's block layer and ends in
            # an interrupt as virtio's does; instead of one notification it makes its
            # trapped register accesses (trap_s each, the qemu primitive `trap`)
            terms = {"virtio_exit_s": nreq, "trap_s": nreq * self.sim.p[self.exits_param]}
        else:
            terms = {self.COST[self.kind]: nreq}
        yield from self.sim.cpu(ctx, terms)

    def read(self, ctx, nbytes, nreq):
        nreq = max(nreq, requests(nbytes, self.request_bytes))
        yield from self._cost(ctx, nreq)
        yield from self.backend.read(ctx, nbytes, nreq)

    def write(self, ctx, nbytes, nreq):
        nreq = max(nreq, requests(nbytes, self.request_bytes))
        yield from self._cost(ctx, nreq)
        yield from self.backend.write(ctx, nbytes, nreq)

    def flush(self, ctx):
        yield from self._cost(ctx, 1)
        yield from self.backend.flush(ctx)
