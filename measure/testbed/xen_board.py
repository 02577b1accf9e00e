"""The emulated Xen host: Xen 4.17 + a Linux dom0 under qemu-system-aarch64 (TCG).

The QEMU command line follows what was found by trying (../shared/notes/emulated-
targets.md): `-M virt,virtualization=on,gic-version=3 -cpu cortex-a72`, QEMU boots Xen's
Image with -kernel and hands dom0's kernel and initramfs over with guest-loader devices,
placed clear of the device tree QEMU puts near 0x48000000 (an initrd overlapping it made
Xen hit a BUG in page_alloc.c).
"""

import subprocess
from pathlib import Path

from edgeio.errors import UserError

MiB = 1 << 20
# Guest memory: dom0 gets DOM0_MIB; the rest (less Xen's own) is for domUs, which the
# study gives 1 GiB.
QEMU_MEM_MIB = 2560
DOM0_MIB = 512
KERNEL_ADDR = 0x49000000
INITRD_MIN_ADDR = 0x4C000000
SCRATCH_BYTES = 6 << 30       # dom0's /var/tmp (sparse file on the host)
SPARE_BYTES = 512 * MiB       # dom0's /dev/vdb: a whole block device for disk=phy cells


def xen_cmdline() -> str:
    return (f"dom0_mem={DOM0_MIB}M,max:{DOM0_MIB}M dom0_max_vcpus=1 "
            "console=dtuart dtuart=/pl011@9000000 loglvl=warning guest_loglvl=warning bootscrub=0")


def dom0_bootargs() -> str:
    return "console=hvc0 earlycon=xen rdinit=/init quiet loglevel=1"


def initrd_addr(kernel: Path) -> int:
    end = KERNEL_ADDR + Path(kernel).stat().st_size
    return max(INITRD_MIN_ADDR, -(-end // (16 * MiB)) * (16 * MiB))


def qemu_argv(hypervisor: Path, kernel: Path, initrd: Path, scratch: Path, spare: Path | None,
              ssh_port: int | None, serial: str, cpus: int = 2) -> list[str]:
    argv = ["qemu-system-aarch64", "-M", "virt,virtualization=on,gic-version=3",
            "-cpu", "cortex-a72", "-accel", "tcg", "-m", str(QEMU_MEM_MIB), "-smp", str(cpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", serial,
            "-kernel", str(hypervisor), "-append", xen_cmdline(),
            "-device", f"guest-loader,addr={KERNEL_ADDR:#x},kernel={kernel},bootargs={dom0_bootargs()}",
            "-device", f"guest-loader,addr={initrd_addr(kernel):#x},initrd={initrd}",
            "-drive", f"file={scratch},format=raw,if=none,id=scratch,cache=unsafe",
            "-device", "virtio-blk-device,drive=scratch"]
    if spare is not None:
        argv += ["-drive", f"file={spare},format=raw,if=none,id=spare,cache=writeback",
                 "-device", "virtio-blk-device,drive=spare"]
    if ssh_port is not None:
        argv += ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                 "-device", "virtio-net-device,netdev=n0"]
    return argv


def make_disks(directory: Path) -> tuple[Path, Path]:
    """dom0's scratch disk (ext4, sparse) and a blank spare disk, made once."""
    scratch, spare = directory / "scratch.img", directory / "spare.img"
    if not scratch.exists():
        tmp = scratch.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.truncate(SCRATCH_BYTES)
        proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "dom0-scratch", str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"mkfs.ext4 for the xen testbed's scratch disk failed: {proc.stderr.strip()[-200:]}")
        tmp.rename(scratch)
    if not spare.exists():
        with open(spare, "wb") as f:
            f.truncate(SPARE_BYTES)
    return scratch, spare
