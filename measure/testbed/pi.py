"""The pi board: an emulated Raspberry Pi 4-like arm64 host with KVM, for --target.

QEMU's virt machine with EL2 (virtualization=on) and a Cortex-A72 (the Pi 4's core;
under TCG the fastest choice: -cpu max spends its time emulating pointer
authentication), 4 GiB like the study's Pi 4, two CPUs. Debian's arm64 kernel
initialises KVM in nVHE mode at EL2, so /dev/kvm exists inside: the hvt tender and
qemu -accel kvm run there as on a Pi. The rootfs is Debian arm64 userland with
sshd (measure.testbed.rootfs) plus qemu-system-aarch64 for the qemu environment;
the tool ships the probe, tender, unikernel and guest kernel itself, as to a real Pi.

Docker is not on this board: docker.io's daemon, containerd and runc are ~150 MB of
Go binaries whose start-up under TCG would dominate every boot; status says so.
"""

from measure.guest.packages import fetch_kernel

from .board import Board
from .boot import build_initrd
from .rootfs import build_rootfs

ARCHES = ("aarch64",)
PACKAGES = ("qemu-system-arm",)      # qemu-system-aarch64 for the qemu environment on KVM
MEMORY_MIB = 4096
CPUS = 2
MISSING = {"docker": "not on the pi testbed (dockerd/containerd under TCG would dominate every boot)"}


def build(arch: str | None = None) -> Board:
    arch = arch or ARCHES[0]
    kernel = fetch_kernel(arch)
    rootfs = build_rootfs(arch, PACKAGES, name="pi",
                          marker={"cpu": "cortex-a72", "missing": MISSING})
    return Board(
        name="pi", arch=arch, qemu="qemu-system-aarch64", qemu_package="qemu-system-arm",
        machine=("-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a72", "-accel", "tcg",
                 "-m", str(MEMORY_MIB), "-smp", str(CPUS)),
        rootfs=rootfs.image, initrd=build_initrd(arch, kernel), kernel=kernel.image,
        append="console=ttyAMA0 panic=-1 quiet edgeio.root=vda edgeio.data=vdb",
        facts={"kernel": f"{kernel.package} {kernel.version}", "rootfs": rootfs.key,
               "cpu": "cortex-a72", "memory_mib": MEMORY_MIB, "cpus": CPUS, "missing": MISSING})
