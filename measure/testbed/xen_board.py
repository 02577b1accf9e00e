"""The emulated Xen host: Xen 4.17 + a Linux dom0 under qemu-system-aarch64 (TCG).

The QEMU command line follows what was found by trying (../shared/notes/emulated-
targets.md): `-M virt,virtualization=on,gic-version=3 -cpu cortex-a72`, QEMU boots Xen's
Image with -kernel and hands dom0's kernel and initramfs over with guest-loader devices,
placed clear of the device tree QEMU puts near 0x48000000 (an initrd overlapping it made
Xen hit a BUG in page_alloc.c).
"""

from pathlib import Path

from edgeio.units import MIB as MiB

# Guest memory: dom0 gets DOM0_MIB; the rest (less Xen's own) is for domUs, which the
# study gives 1 GiB.
QEMU_MEM_MIB = 2560
DOM0_MIB = 512
KERNEL_ADDR = 0x49000000
INITRD_MIN_ADDR = 0x4C000000
XEN_VERSION = "4.17"


def xen_cmdline() -> str:
    return (f"dom0_mem={DOM0_MIB}M,max:{DOM0_MIB}M dom0_max_vcpus=1 "
            "console=dtuart dtuart=/pl011@9000000 loglvl=warning guest_loglvl=warning bootscrub=0")


def dom0_bootargs() -> str:
    return "console=hvc0 earlycon=xen quiet loglevel=4"


def initrd_addr(kernel: Path) -> int:
    end = KERNEL_ADDR + Path(kernel).stat().st_size
    return max(INITRD_MIN_ADDR, -(-end // (16 * MiB)) * (16 * MiB))
