"""What the probe and the environments accept and default to, known once for both sides.

The measurement side (measure/environments) builds a cell within these bounds; the
model's side (model/scenarios) checks a what-if's parameters against the same bounds,
so a value `invoke measure` would refuse is refused by `invoke predict` and `invoke
verify` too, in the same words (edgeio/parse.py words them).
"""

from edgeio.units import MIB

# The file probe's default bytes per call (probes/args.c): the whole file up to 1 MiB.
PROBE_IO_CAP = MIB


def default_io_size(size: int) -> int:
    return min(int(size), PROBE_IO_CAP)


# hvt (measure/environments/hvt.py; unikernel/tender): blocks per block call, the block
# (sector) size, a power of two, the ring's requests per notification, guest memory in MiB
HVT_BLOCKS_PER_CALL = (1, 65536)
HVT_SECTOR_SIZE = (512, 32768)
HVT_RING_BATCH = (1, 4096)
HVT_RING_DEFAULT_BATCH = 64     # the tender's requests per notification when none is given (issue 14)
HVT_MEM_MIB = (1, 4096)
HVT_COPY_ALIGN = 16             # the copy primitive's size: a multiple of this (probe.c, edgeio_copy)
# qemu and xen guests: the smallest memory their kernels boot in (MiB)
QEMU_MIN_MEM_MIB = 64
XEN_MIN_MEM_MIB = 32
