"""The guest's initramfs: busybox, the probe, the init script and the disk-driver modules.

Written as a gzip'd cpio "newc" archive by Python itself, so device nodes and owners
come out right without root and the bytes depend only on the inputs.
"""

import gzip
import io
import lzma
from pathlib import Path

from edgeio.errors import UserError

# What each disk transport needs loaded, besides ext4 (the Debian kernel builds them as modules).
TRANSPORT_MODULES = {
    "virtio": ["virtio_pci", "virtio_blk"],
    "ide": ["ata_piix", "sd_mod"],
    "ahci": ["ahci", "sd_mod"],
}
# ext4 asks the crypto API for crc32c at mount time; modules.dep cannot know that.
FS_MODULES = ["crc32c_generic", "ext4"]

INIT_TEMPLATE = Path(__file__).with_name("init.sh")
PROBE_JSON = Path(__file__).with_name("probe_json.sh")    # pasted into the init templates


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _module_name(relpath: str) -> str:
    base = relpath.rsplit("/", 1)[-1]
    return _norm(base.split(".ko")[0])


def module_order(modules_dir: Path, wanted: list[str]) -> list[tuple[str, Path]]:
    """(name, file) of wanted modules and their dependencies, dependencies first.

    Built-in ones are skipped; a wanted module the kernel has neither built in nor as
    a file raises UserError.
    """
    deps: dict[str, list[str]] = {}
    files: dict[str, Path] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        name = _module_name(path)
        files[name] = modules_dir / path
        deps[name] = [_module_name(d) for d in rest.split()]
    builtin = set()
    if (modules_dir / "modules.builtin").exists():
        builtin = {_module_name(p) for p in (modules_dir / "modules.builtin").read_text().split()}

    order: list[str] = []

    def visit(name: str, chain: tuple) -> None:
        if name in order or name in builtin:
            return
        if name not in files:
            raise UserError(f"guest kernel has no module {name} (needed for {chain[0]})")
        for dep in deps[name]:
            if dep not in chain:
                visit(dep, chain + (dep,))
        order.append(name)

    for want in wanted:
        visit(_norm(want), (_norm(want),))
    return [(name, files[name]) for name in order]


def module_bytes(path: Path) -> bytes:
    """The module as busybox insmod wants it: uncompressed."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith((".ko.zst", ".ko.gz")):
        if path.name.endswith(".gz"):
            return gzip.decompress(data)
        raise UserError(f"zstd-compressed module {path.name} not supported")
    return data


def render_init(module_lists: dict[str, list[str]]) -> str:
    text = INIT_TEMPLATE.read_text().replace("@@PROBE_JSON@@", PROBE_JSON.read_text())
    for transport in TRANSPORT_MODULES:
        text = text.replace(f"@@MODULES_{transport}@@", " ".join(module_lists.get(transport, [])))
    return text


class Cpio:
    """A minimal cpio newc writer (the format the kernel unpacks into its rootfs)."""

    def __init__(self):
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple = (0, 0), nlink: int = 1):
        fields = [self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out.write(header + name.encode() + b"\0")
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self):
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def dir(self, name: str):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644):
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name: str, major: int, minor: int):
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._ino = 0
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def build_initramfs(busybox: Path, probe: Path, modules_dir: Path) -> tuple[bytes, dict]:
    """(gzip'd cpio bytes, {transport: [module, ...]}) for one kernel, busybox and probe."""
    lists: dict[str, list[str]] = {}
    all_modules: dict[str, Path] = {}
    for transport, wanted in TRANSPORT_MODULES.items():
        try:
            ordered = module_order(modules_dir, FS_MODULES + wanted)
        except UserError:
            if transport == "virtio":
                raise
            continue      # this kernel cannot drive that controller; the environment says so
        lists[transport] = [name for name, _ in ordered]
        all_modules.update(ordered)

    archive = busybox_archive(busybox, render_init(lists), sorted(all_modules.items()),
                              files=[("probe", probe.read_bytes(), 0o755)])
    return archive, lists


def busybox_archive(busybox: Path, init: str, modules, dirs=("mnt",), files=()) -> bytes:
    """A gzip'd cpio: /bin/busybox, /init, /modules/<name>.ko (uncompressed), /dev/console,
    the directories dirs and files [(path, bytes, mode)]."""
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "modules", *dirs):
        cpio.dir(d)
    # The kernel opens /dev/console for init before anything can mount devtmpfs.
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for path, data, mode in files:
        cpio.file(path, data, mode)
    cpio.file("init", init.encode(), 0o755)
    for name, path in modules:
        cpio.file(f"modules/{name}.ko", module_bytes(path))
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)
