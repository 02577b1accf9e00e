"""Sets of Debian packages for a board's root filesystem, fetched in batches.

A board needs a few programs (sshd, coreutils, qemu-system-aarch64...) and the
libraries they link against. Those libraries are found through the packages'
Depends, following only library packages (lib*, zlib1g): the rest of a Depends list
(debconf, adduser, ucf, init helpers, data packages) serves dpkg's maintainer scripts,
which never run here. The resolved set is remembered per state of apt's lists, so a
board whose image is built costs no apt call; the rootfs builder checks afterwards that
every ELF's NEEDED libraries are really there.

Downloads and extracted trees share measure/guest's package cache, in one
`apt-get download` per batch (one call per package is ~1-3 s each).
"""

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgeio.errors import UserError
from measure.guest import packages as guest_packages
from measure.guest.packages import DEB_ARCH

# Library packages that pull in what a board never runs.
_NOT_FOLLOWED = {"libc-bin", "libpam-runtime", "libpam-modules-bin", "libdebconfclient0"}


def _is_library(name: str) -> bool:
    return (name.startswith("lib") or name == "zlib1g") and name not in _NOT_FOLLOWED


def _dependencies(record: dict) -> list[str]:
    """First alternative of every Depends / Pre-Depends entry, without versions or :any."""
    names = []
    for field in ("Pre-Depends", "Depends"):
        for entry in record.get(field, "").split(","):
            first = entry.split("|")[0].strip()
            if first:
                names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return names


def _show_many(names: list[str], arch: str) -> dict[str, dict]:
    """{package: record} for the candidate versions, in one apt-cache call."""
    if not names:
        return {}
    deb = DEB_ARCH[arch]
    try:
        proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *(f"{n}:{deb}" for n in names)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("apt-cache not found: testbed boards are built from Debian packages") from None
    records = {}
    for record in guest_packages.parse_records(proc.stdout):
        if "Package" in record:
            records.setdefault(record["Package"], record)
    return records


def resolve(roots: list[str], arch: str) -> dict[str, str]:
    """{package: version}: the roots and the library packages they depend on, transitively."""
    key = f"{DEB_ARCH[arch]} {' '.join(sorted(roots))}"
    return guest_packages.apt_memo("testbed-resolved.json", key, lambda: _resolve(roots, arch))


def _resolve(roots: list[str], arch: str) -> dict[str, str]:
    found: dict[str, str] = {}
    frontier = sorted(set(roots))
    while frontier:
        records = _show_many(frontier, arch)
        missing = [n for n in frontier if n not in records and n in roots]
        if missing:
            raise guest_packages._missing(missing[0], arch)
        nxt = set()
        for name, record in records.items():
            found[name] = record["Version"]
            nxt.update(d for d in _dependencies(record) if _is_library(d))
        # a library name apt does not know (virtual, other arch) is simply not followed
        frontier = sorted(nxt - set(found) - set(frontier))
    return found


def extracted(packages: dict[str, str], arch: str) -> list[Path]:
    """The extracted tree of every package (downloaded in one batch if not cached)."""
    pkg_dir = guest_packages._pkg_dir(arch)

    def tree(name, version):
        return pkg_dir / (guest_packages._stem(name, version) + ".extracted")

    todo = {n: v for n, v in packages.items() if not tree(n, v).is_dir()}
    if todo:
        _download(todo, arch, pkg_dir)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda nv: _extract(pkg_dir, *nv, tree(*nv)), todo.items()))
    return [tree(n, v) for n, v in sorted(packages.items())]


def _download(packages: dict[str, str], arch: str, pkg_dir: Path) -> None:
    deb = DEB_ARCH[arch]
    workdir = Path(tempfile.mkdtemp(prefix="download.", dir=pkg_dir))
    os.chmod(workdir, 0o755)       # apt's sandbox user must be able to write here
    try:
        specs = [f"{n}:{deb}={v}" for n, v in sorted(packages.items())]
        proc = subprocess.run(["apt-get", "download", "-q", *specs], cwd=workdir,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no .deb fetched"])[-1]
            raise UserError(f"apt-get download of {len(specs)} {deb} packages failed: {why} "
                            f"(try `{guest_packages._apt_fix(arch)}`)")
        for path in workdir.glob("*.deb"):
            os.replace(path, pkg_dir / path.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _extract(pkg_dir: Path, name: str, version: str, out: Path) -> None:
    stem = guest_packages._stem(name, version)
    debs = [p for p in pkg_dir.glob(f"{name}_*.deb") if p.name.startswith(stem + "_")]
    if not debs:
        raise UserError(f"apt-get download did not fetch {name} {version}")
    guest_packages.extract(debs[0], out)
