"""Debian packages the guest is made of: the kernel (with its modules) and busybox.

Fetched with `apt-get download` (no installation, nothing changes on the host) into
the cache, extracted with `dpkg-deb -x`, and reused until the archive's version
changes. A foreign architecture (arm64 on an amd64 host) needs apt to know it; when
it does not, the error names the command that fixes it.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import cache_dir

DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Kernel:
    root: Path          # extracted package: boot/vmlinuz-*, lib/modules/<release>/
    release: str        # e.g. 6.1.0-56-amd64 (uname -r in the guest)
    package: str        # e.g. linux-image-6.1.0-56-amd64
    version: str        # Debian version, e.g. 6.1.192-2

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def kernel_metapackage(arch: str) -> str:
    return f"linux-image-{DEB_ARCH[arch]}"


def fetch_kernel(arch: str, package: str | None = None) -> Kernel:
    """The guest kernel for arch, from Debian's linux-image-<debarch> (or `package`)."""
    meta = package or kernel_metapackage(arch)
    name, version = _resolve_kernel(meta, arch)
    root = _extracted(name, version, arch)
    releases = sorted(p.name for p in (root / "lib" / "modules").iterdir()) if (root / "lib" / "modules").is_dir() else []
    if not releases:
        raise UserError(f"{name} {version} holds no kernel modules: not a kernel image package")
    release = releases[-1]
    if not (root / "lib" / "modules" / release / "modules.dep").exists():
        # The package ships no modules.dep (postinst runs depmod); make it in the cache.
        _run(["depmod", "-b", str(root), release], "depmod (apt-get install kmod)")
    kernel = Kernel(root=root, release=release, package=name, version=version)
    if not kernel.image.exists():
        raise UserError(f"{name} {version} has no boot/vmlinuz-{release}")
    return kernel


def fetch_busybox(arch: str) -> Path:
    """A static busybox for arch, from Debian's busybox-static."""
    version = _candidate_version("busybox-static", arch)
    root = _extracted("busybox-static", version, arch)
    path = root / "bin" / "busybox"
    if not path.exists():
        raise UserError(f"busybox-static {version} ({arch}) has no bin/busybox")
    return path


def _apt_fix(arch: str) -> str:
    deb = DEB_ARCH[arch]
    if deb == _host_deb_arch():
        return "apt-get update"
    return f"dpkg --add-architecture {deb} && apt-get update"


def _host_deb_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True).stdout.strip()
    except FileNotFoundError:
        return ""


def _apt_state() -> str:
    """Identifies apt's package lists: apt-cache answers cannot change while this does not."""
    lists = Path("/var/lib/apt/lists")
    h = hashlib.sha256(os.environ.get("APT_CONFIG", "").encode())
    try:
        for entry in sorted(os.scandir(lists), key=lambda e: e.name):
            if entry.is_file():
                st = entry.stat()
                h.update(f"{entry.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    except OSError:
        pass
    return h.hexdigest()[:16]


def _show(package: str, arch: str) -> dict | None:
    """apt-cache's record of the candidate version of package:arch, or None if apt does not know it.

    Remembered per state of apt's lists: without a binary package cache (Debian's
    container images disable it) each apt-cache call parses every list, ~2-4 s here.
    """
    return apt_memo("apt-show.json", f"{package}:{DEB_ARCH[arch]}", lambda: _apt_cache_show(package, arch))


def apt_memo(name: str, key: str, compute):
    """compute(), remembered in cache_dir("guest")/name per state of apt's lists and key."""
    memo_path = cache_dir("guest") / name
    key = f"{_apt_state()} {key}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    value = compute()
    memo = {k: v for k, v in memo.items() if k.split()[0] == key.split()[0]}   # drop stale states
    memo[key] = value
    fd, tmp = tempfile.mkstemp(prefix=name + ".", dir=memo_path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(memo, f)
    os.replace(tmp, memo_path)
    return value


def parse_records(text: str) -> list[dict]:
    """apt-cache show's paragraphs as {field: value} (continuation lines dropped)."""
    records = []
    for paragraph in text.split("\n\n"):
        record = {}
        for line in paragraph.splitlines():
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                record[key] = value.strip()
        if record:
            records.append(record)
    return records


def _apt_cache_show(package: str, arch: str) -> dict | None:
    qualified = f"{package}:{DEB_ARCH[arch]}"
    try:
        proc = subprocess.run(["apt-cache", "show", "--no-all-versions", qualified],
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("apt-cache not found: the guest is built from Debian packages (Debian/Ubuntu host needed)") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return (parse_records(proc.stdout) or [{}])[0]


def _missing(package: str, arch: str) -> UserError:
    deb = DEB_ARCH[arch]
    return UserError(f"Debian package {package}:{deb} is not known to apt for the {arch} guest: "
                     f"run `{_apt_fix(arch)}` (then `apt-get download {package}:{deb}` works)")


def _resolve_kernel(meta: str, arch: str) -> tuple[str, str]:
    """(concrete package, version): linux-image-amd64 depends on linux-image-6.1.0-NN-amd64."""
    record = _show(meta, arch)
    if record is None:
        cached = _cached_versions(meta, arch)
        if cached:       # offline, but fetched before: keep working with what we have
            return cached[-1]
        raise _missing(meta, arch)
    for dep in record.get("Depends", "").split(","):
        name = dep.split("(")[0].split("|")[0].strip().split(":")[0]
        if name.startswith("linux-image-") and name != meta:
            inner = _show(name, arch)
            if inner is None:
                raise _missing(name, arch)
            return name, inner["Version"]
    return meta, record["Version"]   # already a concrete kernel package


def _candidate_version(package: str, arch: str) -> str:
    record = _show(package, arch)
    if record is None:
        cached = _cached_versions(package, arch)
        if cached:
            return cached[-1][1]
        raise _missing(package, arch)
    return record["Version"]


def _pkg_dir(arch: str) -> Path:
    return cache_dir("guest", arch, "packages")


def _stem(package: str, version: str) -> str:
    return f"{package}_{version.replace(':', '%3a')}"


def _cached_versions(meta: str, arch: str) -> list[tuple[str, str]]:
    """Extracted packages in the cache whose name starts like meta (linux-image-*-amd64)."""
    prefix = meta.rsplit("-", 1)[0] + "-" if meta.startswith("linux-image-") else meta + "_"
    found = []
    for path in sorted(_pkg_dir(arch).glob("*.extracted")):
        stem = path.name[: -len(".extracted")]
        name, _, version = stem.partition("_")
        if (name + "_").startswith(prefix) or name.startswith(prefix):
            found.append((name, version.replace("%3a", ":")))
    return found


def _extracted(package: str, version: str, arch: str) -> Path:
    """The package's files under the cache, downloading and extracting once."""
    out = _pkg_dir(arch) / (_stem(package, version) + ".extracted")
    if out.is_dir():
        return out
    extract(_download(package, version, arch), out)
    return out


def extract(deb: Path, out: Path) -> None:
    """dpkg-deb -x deb into out (atomically), then drop the .deb: the extracted tree is what we keep."""
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], "dpkg-deb")
        try:
            os.rename(tmp, out)      # atomic; a concurrent builder may have won the race
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    deb.unlink(missing_ok=True)


def _download(package: str, version: str, arch: str) -> Path:
    deb_arch = DEB_ARCH[arch]
    workdir = Path(tempfile.mkdtemp(prefix="download.", dir=_pkg_dir(arch)))
    os.chmod(workdir, 0o755)   # apt's sandbox user must be able to write here
    try:
        proc = subprocess.run(["apt-get", "download", f"{package}:{deb_arch}={version}"],
                              cwd=workdir, capture_output=True, text=True)
        debs = list(workdir.glob("*.deb"))
        if proc.returncode != 0 or not debs:
            why = (proc.stderr.strip().splitlines() or ["no .deb fetched"])[-1]
            raise UserError(f"`apt-get download {package}:{deb_arch}={version}` failed: {why} "
                            f"(try `{_apt_fix(arch)}`)")
        final = _pkg_dir(arch) / debs[0].name
        os.replace(debs[0], final)
        return final
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(argv: list[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(f"{argv[0]} not found: install {what}") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [""])[-1]
        raise UserError(f"{' '.join(argv[:2])} failed: {why}")


def check_available(arch: str) -> None:
    """Raise UserError (naming the fix) unless the guest's packages can be had, without downloading."""
    if _show(kernel_metapackage(arch), arch) is None and not _cached_versions(kernel_metapackage(arch), arch):
        raise _missing(kernel_metapackage(arch), arch)
    if _show("busybox-static", arch) is None and not _cached_versions("busybox-static", arch):
        raise _missing("busybox-static", arch)
