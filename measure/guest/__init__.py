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
    kernel: Path           # vmlinuz
    initrd: Path           # gzip'd cpio
    release: str           # guest uname -r
    kernel_package: str    # Debian package and version the kernel came from
    transports: tuple      # disk transports this kernel can drive

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
        _atomic_write(out / "vmlinuz", kernel.image.read_bytes())
        _atomic_write(manifest, json.dumps({
            "arch": arch, "release": kernel.release,
            "kernel_package": f"{kernel.package} {kernel.version}",
            "busybox": busybox.parent.parent.name, "probe": Path(probe).name,
            "modules": lists}, indent=1).encode())
    info = json.loads(manifest.read_text())
    return Guest(arch=arch, kernel=out / "vmlinuz", initrd=out / "initrd.gz",
                 release=info["release"], kernel_package=info["kernel_package"],
                 transports=tuple(info["modules"]))


def _input_key(kernel: Kernel, busybox: Path, probe: Path) -> str:
    h = hashlib.sha256()
    h.update(f"{kernel.package}={kernel.version}\n{busybox.parent.parent.name}\n".encode())
    h.update(hashlib.sha256(probe.read_bytes()).digest())
    here = Path(__file__).parent
    for name in ("init.sh", "initramfs.py"):    # the builder's own inputs
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
