"""The emulated Xen host's boot files: the hypervisor, dom0's kernel and dom0's initramfs.

    dom0 = build_dom0("aarch64")      # cached; rebuilt only when an input changes
    dom0.hypervisor, dom0.kernel, dom0.initrd, dom0.manifest

Everything comes from Debian packages (apt-get download + dpkg-deb -x, as the qemu
guest does): Xen 4.17 and its tools, their shared libraries, busybox-static and
Debian's kernel. dom0 is an initramfs (dom0_init.sh): it loads the Xen driver modules,
mounts xenfs, starts xenstored, xen-init-dom0 and xenconsoled, mounts its scratch disk
on /var/tmp and brings up the network; extra layers (sshd and its keys, from the
testbed framework) are merged in by the caller. The tools are dynamically linked:
the libraries they need are found by following DT_NEEDED through the packages.
"""

import gzip
import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import cache_dir
from measure.guest.initramfs import Cpio, module_bytes, module_order
from measure.guest.packages import DEB_ARCH, _candidate_version, _extracted, fetch_busybox, fetch_kernel

XEN_VERSION = "4.17"
TRIPLET = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
LOADER = {"aarch64": "ld-linux-aarch64.so.1", "x86_64": "ld-linux-x86-64.so.2"}
# What xl, the daemons and xenstore-* link against (notes: emulated-targets.md), plus libc.
LIBRARY_PACKAGES = [
    "libxencall1", "libxenevtchn1", "libxenforeignmemory1", "libxengnttab1", "libxenhypfs1",
    f"libxenmisc{XEN_VERSION}", "libxenstore4", "libxentoollog1", "libxendevicemodel1",
    "libxentoolcore1", "libyajl2", "libfdt1", "libc6", "libuuid1", "zlib1g", "liblzma5",
    "libzstd1", "libgcc-s1",
]
TOOL_PACKAGES = [f"xen-utils-{XEN_VERSION}", "xen-utils-common", "xenstore-utils"]
# dom0's programs: (path in the package, where dom0 has it)
_TOOLBIN = f"usr/lib/xen-{XEN_VERSION}/bin"
PROGRAMS = [(f"{_TOOLBIN}/{name}", f"/usr/sbin/{name}")
            for name in ("xl", "xenstored", "xenconsoled", "xen-init-dom0", "xenconsole")]
PROGRAMS += [(f"usr/bin/{name}", f"/usr/bin/{name}")
             for name in ("xenstore-read", "xenstore-write", "xenstore-rm", "xenstore-ls",
                          "xenstore-exists", "xenstore-list")]
# The Xen backends and what dom0 needs for its own disks and network (QEMU virt: virtio-mmio).
DOM0_MODULES = ["xen_evtchn", "xen_gntdev", "xen_gntalloc", "xen_privcmd", "xenfs",
                "xen_blkback", "loop", "virtio_mmio", "virtio_blk", "virtio_net",
                "crc32c_generic", "ext4"]
HERE = Path(__file__).parent
INIT = HERE / "dom0_init.sh"
BLOCK_SCRIPT = HERE / "xen_block.sh"


@dataclass(frozen=True)
class Dom0:
    arch: str
    hypervisor: Path      # Xen's image (arm64: an Image QEMU -kernel boots)
    kernel: Path          # dom0's Linux kernel
    initrd: Path          # dom0's initramfs (gzip'd cpio), before extra layers
    manifest: dict        # package versions, release, key

    @property
    def xen_package(self) -> str:
        return self.manifest["packages"][f"xen-hypervisor-{XEN_VERSION}-{DEB_ARCH[self.arch]}"]


def hypervisor_package(arch: str) -> str:
    return f"xen-hypervisor-{XEN_VERSION}-{DEB_ARCH[arch]}"


def build_dom0(arch: str = "aarch64") -> Dom0:
    if arch != "aarch64":
        raise UserError(f"xen testbed: dom0 for {arch} is not built by this version (use aarch64)")
    names = [hypervisor_package(arch), *TOOL_PACKAGES, *LIBRARY_PACKAGES, "busybox-static"]
    versions = {name: _candidate_version(name, arch) for name in names}
    kernel = fetch_kernel(arch)
    versions[kernel.package] = kernel.version
    h = hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
    for path in (INIT, BLOCK_SCRIPT, Path(__file__)):
        h.update(path.read_bytes())
    key = h.hexdigest()[:16]
    out = cache_dir("testbed", "xen", arch, f"dom0-{key}")
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        roots = {name: _extracted(name, versions[name], arch) for name in versions if name != kernel.package}
        hyp = roots[hypervisor_package(arch)] / "boot" / f"xen-{XEN_VERSION}-{DEB_ARCH[arch]}"
        if not hyp.exists():
            raise UserError(f"{hypervisor_package(arch)} has no boot/{hyp.name}")
        initrd = _dom0_initramfs(arch, roots, kernel.modules, fetch_busybox(arch))
        _atomic_write(out / "initrd.gz", initrd)
        _atomic_write(out / "xen", hyp.read_bytes())
        _atomic_write(out / "kernel", kernel.image.read_bytes())
        _atomic_write(manifest_path, json.dumps({
            "arch": arch, "key": key, "packages": versions, "kernel_release": kernel.release,
            "kernel_package": f"{kernel.package} {kernel.version}"}, indent=1).encode())
    return Dom0(arch=arch, hypervisor=out / "xen", kernel=out / "kernel", initrd=out / "initrd.gz",
                manifest=json.loads(manifest_path.read_text()))


# -- the initramfs ---------------------------------------------------------------------

def _dom0_initramfs(arch: str, roots: dict, modules_dir: Path, busybox: Path) -> bytes:
    files: dict[str, tuple[bytes, int]] = {}
    tools = [roots[name] for name in TOOL_PACKAGES]
    for relpath, dest in PROGRAMS:
        src = _find(tools, relpath)
        if src is None:
            raise UserError(f"Xen tools: no {relpath} in {', '.join(TOOL_PACKAGES)}")
        files[dest] = (src.read_bytes(), 0o755)
    libs = _library_index([roots[name] for name in LIBRARY_PACKAGES + TOOL_PACKAGES], arch)
    # libgcc_s is dlopen'ed by glibc's pthread_cancel (xl aborts at exit without it).
    closure = _needed_closure([files[d][0] for _, d in PROGRAMS], libs, extra=["libgcc_s.so.1"])
    for soname, data in closure.items():
        files[f"/lib/{TRIPLET[arch]}/{soname}"] = (data, 0o755)
    files[f"/lib/{LOADER[arch]}"] = files[f"/lib/{TRIPLET[arch]}/{LOADER[arch]}"]
    files["/bin/busybox"] = (busybox.read_bytes(), 0o755)
    files["/init"] = (INIT.read_bytes(), 0o755)
    files["/etc/xen/scripts/block"] = (BLOCK_SCRIPT.read_bytes(), 0o755)
    files["/etc/xen/xl.conf"] = (b"# edgeio testbed dom0: xl defaults\n", 0o644)
    ordered = module_order(modules_dir, DOM0_MODULES)
    files["/etc/edgeio/modules"] = ("\n".join(name for name, _ in ordered).encode() + b"\n", 0o644)
    for name, path in ordered:
        files[f"/modules/{name}.ko"] = (module_bytes(path), 0o644)
    return pack(files)


def pack(files: dict[str, tuple[bytes, int]], dirs: tuple = ()) -> bytes:
    """A gzip'd newc cpio of files {absolute path: (bytes, mode)}, parent dirs made."""
    cpio = Cpio()
    made = set()
    wanted = set(dirs) | {"dev", "proc", "sys", "tmp", "run", "var", "mnt", "root", "etc"}
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        wanted.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    for d in sorted(wanted):
        if d and d not in made:
            cpio.dir(d)
            made.add(d)
    cpio.chardev("dev/console", 5, 1)
    for path, (data, mode) in sorted(files.items()):
        cpio.file(path.strip("/"), data, mode)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def _find(roots: list[Path], relpath: str) -> Path | None:
    for root in roots:
        if (root / relpath).exists():
            return (root / relpath).resolve()
    return None


def _library_index(roots: list[Path], arch: str) -> dict[str, Path]:
    """soname -> file (symlinks followed) over the lib dirs of the packages."""
    index = {}
    for root in roots:
        for sub in (f"lib/{TRIPLET[arch]}", f"usr/lib/{TRIPLET[arch]}", "lib"):
            d = root / sub
            if not d.is_dir():
                continue
            for entry in d.iterdir():
                if ".so" in entry.name and entry.name not in index:
                    real = entry.resolve()
                    if real.is_file():
                        index[entry.name] = real
    return index


def _needed_closure(binaries: list[bytes], libs: dict[str, Path], extra: list[str] = ()) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    todo = [n for data in binaries for n in elf_needed(data)] + list(extra)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        if name not in libs:
            raise UserError(f"Xen tools need {name}, which none of the packages provides")
        data = libs[name].read_bytes()
        out[name] = data
        todo.extend(elf_needed(data))
    return out


def elf_needed(data: bytes) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF (what readelf -d lists as NEEDED)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    needed, strtab = [], None
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:
            break
        if tag == 1:
            needed.append(value)
        elif tag == 5:
            strtab = value
    if strtab is None:
        return []
    base = next((off + strtab - va for va, off, size in loads if va <= strtab < va + size), None)
    if base is None:
        return []
    return [data[base + n: data.index(b"\0", base + n)].decode() for n in needed]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
