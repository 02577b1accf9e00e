"""A board's boot initramfs: busybox and the disk/network modules, then the rootfs takes over.

    initrd = build_initrd("aarch64", kernel, extra_modules=["xen_evtchn"])
    seeded = seed(initrd, {"authorized_keys": pub, ...}, state_dir / "initrd")

The initramfs loads the modules, mounts the root image (edgeio.root=, default vda) and
the data disk (edgeio.data=, default vdb) on /var/tmp, copies the seed (ssh host key,
authorized key) into place and switches to the rootfs's busybox init. The seed is a
second, uncompressed cpio archive appended per `up`: the kernel unpacks concatenated
archives in order, so the cached part never holds a key.
"""

import hashlib
from pathlib import Path

from edgeio.paths import cache_dir
from measure.guest.initramfs import Cpio, busybox_archive, module_order

# virtio over PCI (the pi board) and over MMIO (guest-loader boards), disk, network, ext4.
BASE_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "crc32c_generic", "ext4")

INIT = """\
#!/bin/busybox sh
# edgeio testbed initramfs: modules, root and data disks, seed files, switch_root.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "edgeio-testbed: $*"; }
arg() { for w in $(cat /proc/cmdline); do case "$w" in edgeio.$1=*) echo "${w#*=}";; esac; done; }
root=$(arg root); root=${root:-vda}
data=$(arg data); data=${data:-vdb}
for m in @@MODULES@@; do insmod "/modules/$m.ko" 2>/dev/null || say "insmod $m failed"; done
i=0
while [ ! -b "/dev/$root" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 "/dev/$root" /newroot; then say "cannot mount root /dev/$root"; sleep 5; poweroff -f; fi
if [ -b "/dev/$data" ]; then
    mount -t ext4 "/dev/$data" /newroot/var/tmp && chmod 1777 /newroot/var/tmp || say "cannot mount data /dev/$data"
fi
if [ -d /seed ]; then
    cp /seed/authorized_keys /newroot/root/.ssh/authorized_keys && chmod 600 /newroot/root/.ssh/authorized_keys
    for k in /seed/ssh_host_*; do cp "$k" /newroot/etc/ssh/; done
    chmod 600 /newroot/etc/ssh/ssh_host_*_key
fi
say "root /dev/$root mounted, switching to its init"
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot /bin/busybox init
"""


def build_initrd(arch: str, kernel, busybox: Path | None = None, extra_modules=()) -> Path:
    """The cached gzip'd cpio for this kernel + module list (modules resolved with their deps)."""
    if busybox is None:
        from measure.guest.packages import fetch_busybox
        busybox = fetch_busybox(arch)
    modules = module_order(kernel.modules, list(BASE_MODULES) + list(extra_modules))
    init = INIT.replace("@@MODULES@@", " ".join(name for name, _ in modules))
    h = hashlib.sha256(f"{kernel.package}={kernel.version}\n{busybox.parent.parent.name}\n{init}".encode())
    h.update(Path(__file__).read_bytes())
    out = cache_dir("testbed", "initrd") / f"boot-{arch}-{h.hexdigest()[:16]}.cpio.gz"
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(busybox_archive(busybox, init, modules, dirs=("newroot",)))
    tmp.replace(out)
    return out


def seed(initrd: Path, files: dict[str, bytes], dest: Path) -> Path:
    """initrd with /seed/<name> files appended as a second archive, written to dest (mode 600)."""
    cpio = Cpio()
    cpio.dir("seed")
    for name, data in sorted(files.items()):
        cpio.file(f"seed/{name}", data, 0o600)
    tmp = dest.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        base = initrd.read_bytes()
        # the kernel finds the next archive's header only at a 4-byte boundary; zeros are skipped
        f.write(base + b"\0" * (-len(base) % 4))
        f.write(cpio.finish())
    tmp.chmod(0o600)
    tmp.replace(dest)
    return dest
