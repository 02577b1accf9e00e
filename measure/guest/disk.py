"""The guest's disk: a raw ext4 image holding the probe's file, already written.

The file is in the image before the guest boots, so a read cell starts with a cold
guest page cache (the first repetition goes to the device) and reads real blocks:
the content is a non-zero pattern because mkfs.ext4 -d turns zero blocks into holes,
and reading a hole never reaches the device.
"""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import cache_dir
from edgeio.units import MIB, format_size

MiB = MIB
DATA_NAME = "data"           # the probe's file: /mnt/data in the guest
_LAYOUT = "ext4-4k-v1"       # bump when the image layout below changes


def min_image_bytes(size: int) -> int:
    """A floor below which the file cannot fit (4 KiB blocks, journal, inode tables)."""
    return size + size // 32 + 8 * MiB


def default_image_bytes(size: int) -> int:
    """The file plus a margin for ext4's journal and metadata, whole MiB."""
    want = size + size // 8 + 64 * MiB
    return -(-want // MiB) * MiB


def disk_image(size: int, image_bytes: int | None = None) -> Path:
    """A cached ext4 image with /data of `size` bytes; built once per (size, image size)."""
    image_bytes = image_bytes or default_image_bytes(size)
    if image_bytes < min_image_bytes(size):
        raise UserError(f"disk image of {format_size(image_bytes)} is too small for a "
                        f"{format_size(size)} file: give at least "
                        f"{-(-min_image_bytes(size) // MiB)} MiB (or leave disk_mib=auto)")
    return _image({DATA_NAME: size}, image_bytes, f"data-{size}-{image_bytes // MiB}M")


def multi_disk_image(sizes: list[int]) -> Path:
    """An ext4 image with one file per size (data-<size>): one disk for many cells (xen)."""
    sizes = sorted(set(sizes))
    image_bytes = default_image_bytes(sum(sizes))
    return _image({data_name(s): s for s in sizes}, image_bytes, f"multi-{len(sizes)}-{image_bytes // MiB}M")


def data_name(size: int) -> str:
    return f"{DATA_NAME}-{size}"


def _image(files: dict[str, int], image_bytes: int, stem: str) -> Path:
    mkfs = _mkfs_identity()
    spec = ",".join(f"{n}={s}" for n, s in sorted(files.items()))
    key = hashlib.sha256(f"{_LAYOUT}\n{mkfs}\n{spec}\n{image_bytes}".encode()).hexdigest()[:12]
    out = cache_dir("guest", "disks") / f"{stem}-{key}.img"
    if out.exists():
        return out
    size = sum(files.values())
    tmpdir = Path(tempfile.mkdtemp(prefix="disk.", dir=out.parent))
    try:
        src = tmpdir / "root"
        src.mkdir()
        for name, n in files.items():
            _write_pattern(src / name, n)
        image = tmpdir / "image"
        with open(image, "wb") as f:
            f.truncate(image_bytes)
        proc = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "edgeio", "-d", str(src),
             # initialise everything now: no ext4lazyinit writes in the guest during a cell
             "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            why = " ".join(proc.stderr.split())[-200:]
            if re.search(r"space|allocate|too small|Could not", why, re.I):
                raise UserError(f"disk image of {format_size(image_bytes)} is too small for a "
                                f"{format_size(size)} file (mkfs.ext4: {why})")
            raise UserError(f"mkfs.ext4 failed: {why}")
        os.replace(image, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def _write_pattern(path: Path, size: int) -> None:
    chunk = bytes((0x41 + i % 26) for i in range(MiB))     # 'A'..'Z', never zero
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(chunk[:n])
            left -= n


def _mkfs_identity() -> str:
    try:
        proc = subprocess.run(["mkfs.ext4", "-V"], capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("mkfs.ext4 not found: apt-get install e2fsprogs") from None
    return (proc.stderr or proc.stdout).splitlines()[0] if (proc.stderr or proc.stdout) else "mkfs.ext4"
