"""The xen board: Xen 4.17 with a Linux dom0 (sshd, xl) on an emulated arm64 host.

QEMU's virt machine with EL2 and a Cortex-A72 (the Pi 4's core) boots Debian's Xen
hypervisor image; dom0's kernel (Debian's arm64 kernel) and the testbed's boot
initramfs are handed over with guest-loader devices (measure.testbed.xen_board has
the addresses and Xen's command line). dom0's root is the testbed's Debian rootfs
plus Xen's tools; an rc.d hook (xen_rc.sh) starts xenstored, xen-init-dom0 and
xenconsoled before sshd. Block hotplug uses a POSIX sh script (xen_block.sh): Debian's
is bash, which the rootfs does not carry. The xen environment (measure/environments/
xen.py) then runs its domUs there over SSH, as on a Pi running Xen.
"""

from pathlib import Path

from measure.guest.packages import fetch_kernel

from .board import Board
from .boot import build_initrd
from .rootfs import build_rootfs
from .xen_board import DOM0_MIB, KERNEL_ADDR, QEMU_MEM_MIB, XEN_VERSION, dom0_bootargs, initrd_addr, \
    xen_cmdline

ARCHES = ("aarch64",)
CPUS = 2
HERE = Path(__file__).parent
PACKAGES = (f"xen-hypervisor-{XEN_VERSION}-arm64", f"xen-utils-{XEN_VERSION}", "xen-utils-common",
            "xenstore-utils", "libgcc-s1")   # libgcc_s: dlopen'ed by glibc when xl exits (pthread_cancel)
# Xen's backends and the loop driver (file-backed disks), loaded by the boot initramfs.
MODULES = ("xen_evtchn", "xen_gntdev", "xen_gntalloc", "xen_privcmd", "xenfs", "xen_blkback", "loop")
MISSING = {env: "not on the xen testbed (a Xen dom0: use --env xen, or the pi testbed)"
           for env in ("hvt", "qemu", "docker")}


def _files() -> dict:
    rc = (HERE / "xen_rc.sh").read_text().replace("@@XEN@@", XEN_VERSION)
    files = {"etc/edgeio/rc.d/50-xen": (rc.encode(), 0o755),
             "etc/xen/scripts/block": ((HERE / "xen_block.sh").read_bytes(), 0o755),
             "etc/hostname": (b"edgeio-xen\n", 0o644)}
    # Debian's /usr/sbin/xl is a version-picking wrapper; call the one Xen we ship directly.
    for name in ("xl", "xenstored", "xenconsoled"):
        files[f"usr/sbin/{name}"] = (f'#!/bin/sh\nexec /usr/lib/xen-{XEN_VERSION}/bin/{name} "$@"\n'.encode(),
                                     0o755)
    return files


def build(arch: str | None = None) -> Board:
    arch = arch or ARCHES[0]
    kernel = fetch_kernel(arch)
    rootfs = build_rootfs(arch, PACKAGES, files=_files(), name="xen",
                          marker={"cpu": "cortex-a72", "hypervisor": f"xen {XEN_VERSION}", "missing": MISSING})
    hypervisor = rootfs.image.parent / "xen.img"
    if not hypervisor.exists():
        from .debs import extracted
        tree = next(t for t in extracted({PACKAGES[0]: rootfs.packages[PACKAGES[0]]}, arch))
        hypervisor.write_bytes((Path(tree) / "boot" / f"xen-{XEN_VERSION}-arm64").read_bytes())
    # virtio-mmio devices enumerate in reverse order of the command line: root is vdb, data vda.
    bootargs = dom0_bootargs() + " edgeio.root=vdb edgeio.data=vda"
    return Board(
        name="xen", arch=arch, qemu="qemu-system-aarch64", qemu_package="qemu-system-arm",
        machine=("-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a72", "-accel", "tcg",
                 "-m", str(QEMU_MEM_MIB), "-smp", str(CPUS)),
        rootfs=rootfs.image, initrd=build_initrd(arch, kernel, extra_modules=MODULES),
        kernel=hypervisor, append=xen_cmdline(),
        extra_args=("-device", f"guest-loader,addr={KERNEL_ADDR:#x},kernel={kernel.image},bootargs={bootargs}",
                    "-device", f"guest-loader,addr={initrd_addr(kernel.image):#x},initrd={{initrd}}"),
        initrd_arg=False, disk_device="virtio-blk-device", net_device="virtio-net-device",
        data_disk_mib=6144,
        facts={"kernel": f"{kernel.package} {kernel.version}", "rootfs": rootfs.key, "cpu": "cortex-a72",
               "xen": rootfs.packages.get(PACKAGES[0]), "memory_mib": QEMU_MEM_MIB, "dom0_mib": DOM0_MIB,
               "cpus": CPUS, "missing": MISSING})
