"""The Xen domU: Debian's kernel with a busybox initramfs that serves many cells per boot.

    domu = build_domu("aarch64")       # kernel + initramfs, cached like the qemu guest

Same ingredients as the qemu guest (measure/guest/__init__.py): Debian's kernel and
busybox-static, the static probe; the modules are Xen's block frontend and ext4, and
the init (xen_init.sh) stays up reading cell lines from its console, so one domain
boot serves a whole campaign. On x86_64 the kernel is the uncompressed vmlinux inside
the bzImage (a PV domain boots it without decompressing at emulated speed).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import cache_dir

from . import _atomic_write, _pvh_vmlinux
from .initramfs import PROBE_JSON, Cpio, module_bytes, module_order
from .packages import DEB_ARCH, fetch_busybox, fetch_kernel

INIT_TEMPLATE = Path(__file__).with_name("xen_init.sh")
# ext4 asks the crypto API for crc32c at mount time; modules.dep cannot know that.
DOMU_MODULES = ["xen_blkfront", "crc32c_generic", "ext4"]


@dataclass(frozen=True)
class DomU:
    arch: str
    kernel: Path
    initrd: Path
    release: str
    kernel_package: str

    @property
    def kernel_description(self) -> str:
        return f"{self.release} ({self.kernel_package})"


def build_domu(arch: str, probe: Path | None = None) -> DomU:
    if arch not in DEB_ARCH:
        raise UserError(f"no Xen domU for arch {arch!r}: use x86_64 or aarch64")
    if probe is None:
        from measure.probe_build import probe_binary
        probe = probe_binary(arch)
    kernel = fetch_kernel(arch)
    busybox = fetch_busybox(arch)
    h = hashlib.sha256(f"{kernel.package}={kernel.version}\n{busybox.parent.parent.name}\n".encode())
    h.update(hashlib.sha256(Path(probe).read_bytes()).digest())
    for path in (INIT_TEMPLATE, PROBE_JSON, Path(__file__)):
        h.update(path.read_bytes())
    out = cache_dir("guest", arch, f"domu-{h.hexdigest()[:16]}")
    manifest = out / "manifest.json"
    if not manifest.exists():
        modules = module_order(kernel.modules, DOMU_MODULES)
        cpio = Cpio()
        for d in ("bin", "dev", "proc", "sys", "mnt", "modules"):
            cpio.dir(d)
        cpio.chardev("dev/console", 5, 1)
        cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
        cpio.file("probe", Path(probe).read_bytes(), 0o755)
        init = (INIT_TEMPLATE.read_text().replace("@@MODULES@@", " ".join(n for n, _ in modules))
                .replace("@@PROBE_JSON@@", PROBE_JSON.read_text()))
        cpio.file("init", init.encode(), 0o755)
        for name, path in modules:
            cpio.file(f"modules/{name}.ko", module_bytes(path))
        import gzip
        _atomic_write(out / "initrd.gz", gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
        image = kernel.image.read_bytes()
        if arch == "x86_64":
            image = _pvh_vmlinux(image) or image
        _atomic_write(out / "kernel", image)
        _atomic_write(manifest, json.dumps({
            "arch": arch, "release": kernel.release, "kernel_package": f"{kernel.package} {kernel.version}",
            "modules": [n for n, _ in modules]}, indent=1).encode())
    info = json.loads(manifest.read_text())
    return DomU(arch=arch, kernel=out / "kernel", initrd=out / "initrd.gz", release=info["release"],
                kernel_package=info["kernel_package"])
