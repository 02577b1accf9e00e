"""A minimal Linux guest for the qemu environment, built from Debian packages.

    guest = build_guest("x86_64")          # kernel + initramfs, cached
    image = disk_image(4096)                # ext4 image holding /data

The kernel is Debian's stock one (the study ran a distribution kernel too), the
userland is busybox-static plus the static probe; the init script (init.sh) does the
rest. Everything lives in the cache and is rebuilt only when an input changes: the
cache key hashes the kernel and busybox package versions, the probe binary, the init
template and the builder's own code.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import cache_dir

from .disk import DATA_NAME, default_image_bytes, disk_image, min_image_bytes
from .initramfs import build_initramfs
from .packages import DEB_ARCH, Kernel, fetch_busybox, fetch_kernel

__all__ = ["Guest", "build_guest", "disk_image", "default_image_bytes", "min_image_bytes",
           "DATA_NAME", "guest_path", "DEB_ARCH"]


@dataclass(frozen=True)
class Guest:
    arch: str
    kernel: Path           # what QEMU -kernel loads (vmlinuz, or the vmlinux inside for PVH)
    initrd: Path           # gzip'd cpio
    release: str           # guest uname -r
    kernel_package: str    # Debian package and version the kernel came from
    transports: tuple      # disk transports this kernel can drive
    boot: str = "linux"    # "pvh": x86 kernel stored uncompressed, booted through its PVH entry

    @property
    def kernel_description(self) -> str:
        return f"{self.release} ({self.kernel_package})"


def guest_path(name: str) -> str:
    """Where a file of the disk image appears in the guest."""
    return f"/mnt/{name}"


def build_guest(arch: str, probe: Path | None = None, kernel_package: str | None = None) -> Guest:
    """The cached guest for arch (x86_64 | aarch64), built if an input changed."""
    if arch not in DEB_ARCH:
        raise UserError(f"no guest for arch {arch!r}: use x86_64 or aarch64")
    if probe is None:
        from measure.probe_build import probe_binary
        probe = probe_binary(arch)
    kernel = fetch_kernel(arch, kernel_package)
    busybox = fetch_busybox(arch)
    key = _input_key(kernel, busybox, Path(probe))
    out = cache_dir("guest", arch, f"guest-{key}")
    manifest = out / "manifest.json"
    if not manifest.exists():
        initrd, lists = build_initramfs(busybox, Path(probe), kernel.modules)
        _atomic_write(out / "initrd.gz", initrd)
        boot = "linux"
        image = kernel.image.read_bytes()
        if arch == "x86_64":
            vmlinux = _pvh_vmlinux(image)
            if vmlinux is not None:
                image, boot = vmlinux, "pvh"
        _atomic_write(out / "kernel", image)
        _atomic_write(manifest, json.dumps({
            "arch": arch, "release": kernel.release,
            "kernel_package": f"{kernel.package} {kernel.version}",
            "busybox": busybox.parent.parent.name, "probe": Path(probe).name,
            "boot": boot, "modules": lists}, indent=1).encode())
    info = json.loads(manifest.read_text())
    return Guest(arch=arch, kernel=out / "kernel", initrd=out / "initrd.gz",
                 release=info["release"], kernel_package=info["kernel_package"],
                 transports=tuple(info["modules"]), boot=info["boot"])


def _pvh_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed kernel ELF inside an x86 bzImage, if it has a PVH entry note.

    QEMU starts such an ELF directly at its PVH entry point. Under TCG this skips the
    BIOS and the in-guest xz decompression, which cost ~8 s of emulated time per boot
    (measured: 11.9 s -> 3.2 s to power-off); the kernel itself is the same.
    """
    import lzma
    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        return None
    try:
        elf = lzma.LZMADecompressor().decompress(bzimage[start:])
    except lzma.LZMAError:
        return None
    # Xen ELF note type 18 (XEN_ELFNOTE_PHYS32_ENTRY) is the PVH entry point.
    if not elf.startswith(b"\x7fELF") or not _has_pvh_note(elf):
        return None
    return elf


def _has_pvh_note(elf: bytes) -> bool:
    import struct
    if elf[4] != 2:        # 64-bit ELF only
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:    # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12: pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _input_key(kernel: Kernel, busybox: Path, probe: Path) -> str:
    h = hashlib.sha256()
    h.update(f"{kernel.package}={kernel.version}\n{busybox.parent.parent.name}\n".encode())
    h.update(hashlib.sha256(probe.read_bytes()).digest())
    here = Path(__file__).parent
    for name in ("init.sh", "probe_json.sh", "initramfs.py", "__init__.py"):    # the builder's own inputs
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
