"""How a board is described: what QEMU boots, and with which devices.

A board module (measure/testbed/<name>.py) has ARCHES (first = default) and
build(arch) -> Board, building its images into the cache. The machine runner
(measure.testbed.machine) adds what every board gets: the root image (snapshot=on:
the image is never written), a fresh data disk, user-mode network with sshd
forwarded to 127.0.0.1:PORT, the serial console in a log file, and the seed
(ssh keys) appended to the initrd.
"""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Board:
    name: str                 # "pi", "xen"
    arch: str                 # the target's arch as uname -m says it: aarch64 | x86_64
    qemu: str                 # host program, e.g. qemu-system-aarch64
    qemu_package: str         # the Debian package that provides it (said when missing)
    machine: tuple            # -M/-cpu/-accel/-m/-smp arguments
    rootfs: Path              # ext4 image (measure.testbed.rootfs)
    initrd: Path              # boot initramfs (measure.testbed.boot); the seed is appended
    kernel: Path              # what QEMU -kernel loads (Linux, or Xen with dom0 via extra args)
    append: str               # -append
    # Extra QEMU arguments; "{initrd}" is replaced by the seeded initrd's path (a board that
    # hands the initrd over otherwise, e.g. Xen's guest-loader, sets initrd_arg=False).
    extra_args: tuple = ()
    initrd_arg: bool = True   # pass the seeded initrd as -initrd
    disk_device: str = "virtio-blk-pci"   # virtio-blk-device for MMIO-only guests
    net_device: str = "virtio-net-pci"
    data_disk_mib: int = 4096  # the probe's disk, mounted on /var/tmp (sparse file)
    boot_timeout_s: float = 900.0
    # argv run over SSH after sshd answers, each polled until it succeeds, before `up`
    # returns (e.g. dockerd answering); boot_s is to ssh, ready_s to the last of these
    ready_commands: tuple = ()
    facts: dict = field(default_factory=dict)   # recorded in state and shown by status
