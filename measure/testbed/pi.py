"""The pi board: an emulated Raspberry Pi 4-like arm64 host with KVM, for --target.

QEMU's virt machine with EL2 (virtualization=on) and a Cortex-A72 (the Pi 4's core;
under TCG the fastest choice: -cpu max spends its time emulating pointer
authentication), 4 GiB like the study's Pi 4, two CPUs. Debian's arm64 kernel
initialises KVM in nVHE mode at EL2, so /dev/kvm exists inside: the hvt tender and
qemu -accel kvm run there as on a Pi. The rootfs is Debian arm64 userland with
sshd (measure.testbed.rootfs) plus qemu-system-aarch64 for the qemu environment;
the tool ships the probe, tender, unikernel and guest kernel itself, as to a real Pi.

Docker is on it too (Debian's docker.io, containerd, runc): dockerd starts at boot in
the background, as on the study's machine (--iptables=false --bridge=none: the docker
environment runs containers with --network none), with its data root on the data disk,
so containers write where the linux probe does, not into the root image's snapshot.
Under TCG it answers some 10-40 s after sshd does; `up` returns once it does.
"""

from measure.guest.packages import fetch_kernel

from .board import Board
from .boot import build_initrd
from .rootfs import build_rootfs

ARCHES = ("aarch64",)
# qemu-system-aarch64 for the qemu environment on KVM; Docker for the docker environment
PACKAGES = ("qemu-system-arm", "docker.io", "containerd", "runc", "tini")
MEMORY_MIB = 4096
CPUS = 2
DOCKER_ROOT = "/var/tmp/docker"
DOCKER_HOOK = f"""#!/bin/sh
# dockerd in the background: sshd need not wait for it (it takes tens of seconds under TCG)
mkdir -p /sys/fs/cgroup {DOCKER_ROOT}
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
(dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \\
    --data-root {DOCKER_ROOT} > /var/log/dockerd.log 2>&1 &)
""".encode()


def build(arch: str | None = None) -> Board:
    arch = arch or ARCHES[0]
    kernel = fetch_kernel(arch)
    rootfs = build_rootfs(arch, PACKAGES, name="pi", marker={"cpu": "cortex-a72"},
                          files={"etc/edgeio/rc.d/50-docker": (DOCKER_HOOK, 0o755)})
    return Board(
        name="pi", arch=arch, qemu="qemu-system-aarch64", qemu_package="qemu-system-arm",
        machine=("-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a72", "-accel", "tcg",
                 "-m", str(MEMORY_MIB), "-smp", str(CPUS)),
        rootfs=rootfs.image, initrd=build_initrd(arch, kernel, extra_modules=["overlay"]), kernel=kernel.image,
        append="console=ttyAMA0 panic=-1 quiet edgeio.root=vda edgeio.data=vdb",
        facts={"kernel": f"{kernel.package} {kernel.version}", "rootfs": rootfs.key,
               "cpu": "cortex-a72", "memory_mib": MEMORY_MIB, "cpus": CPUS,
               "docker": f"dockerd started at boot, data root {DOCKER_ROOT} (the data disk)"},
        ready_commands=(("docker", "version", "--format", "{{.Server.Version}}"),))
