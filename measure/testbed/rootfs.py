"""A board's root filesystem: Debian packages plus an sshd layer, as a cached ext4 image.

    rootfs = build_rootfs("aarch64", ["qemu-system-arm"], name="pi")

What a Pi's Debian has (dash, coreutils, util-linux, procps, kmod, busybox) and
OpenSSH's server, each package extracted with dpkg-deb -x (no maintainer script runs),
then the few files dpkg's scripts would have made: users, sshd_config, an inittab for
busybox init, the boot script. Keys are NOT in the image: the boot initramfs carries
them (measure.testbed.boot), so one image serves every key pair.

Boards add packages and files (path -> (bytes, mode)); a file under etc/edgeio/rc.d/
runs at boot after the network is up and before sshd starts (the xen board starts
xenstored there). The image is rebuilt only when the resolved package versions, the
added files or this builder's code change.
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
from measure.targets import TESTBED_MARKER

from . import debs

# What a Pi's Raspberry Pi OS / Debian has that the tool's remote path uses (see item 3
# of issue 13): sh, coreutils (timeout, date, df, mktemp, stat, dd), util-linux
# (findmnt, blockdev), procps (ps, pkill), kmod, and sshd with its sftp server.
BASE_PACKAGES = ("base-files", "debianutils", "dash", "coreutils", "util-linux", "mount", "procps", "findutils", "grep", "sed",
                 "gzip", "tar", "kmod", "busybox-static", "openssh-server", "openssh-sftp-server")
MARKER = TESTBED_MARKER.lstrip("/")    # what machine facts read to say "emulated"
_SKIP = ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "usr/share/lintian")
_LAYOUT = "rootfs-v1"                   # bump when the files below change meaning

SSHD_CONFIG = """\
# edgeio testbed: key authentication for root only
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
MaxStartups 64
MaxSessions 64
"""

INITTAB = """\
::sysinit:/etc/edgeio/rc
::respawn:/usr/sbin/sshd -D -e
::shutdown:/bin/busybox umount -a -r
"""

RC = """\
#!/bin/sh
# edgeio testbed boot script (run by busybox init): mounts, loopback network, rc.d hooks.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mkdir -p /run/sshd /var/run
chmod 0755 /run/sshd
busybox hostname -F /etc/hostname
# QEMU user-mode network: the guest is 10.0.2.15, the host 10.0.2.2
busybox ip link set lo up
busybox ip addr add 10.0.2.15/24 dev eth0
busybox ip link set eth0 up
busybox ip route add default via 10.0.2.2
for hook in /etc/edgeio/rc.d/*; do
    [ -x "$hook" ] || continue
    echo "edgeio-testbed: running $hook"
    "$hook" || echo "edgeio-testbed: $hook failed (exit $?)"
done
echo "edgeio-testbed: boot script done, starting sshd"
"""


@dataclass(frozen=True)
class Rootfs:
    arch: str
    image: Path               # ext4 image (the board opens it with snapshot=on)
    key: str                  # hash of its inputs
    packages: dict            # {package: version}


def build_rootfs(arch: str, packages=(), files: dict | None = None, name: str = "board",
                 marker: dict | None = None) -> Rootfs:
    """The cached root image for arch: BASE_PACKAGES + packages + files (path -> (bytes, mode))."""
    files = dict(files or {})
    files[MARKER] = (json.dumps({"board": name, "emulated": True, **(marker or {})}, sort_keys=True).encode()
                     + b"\n", 0o644)
    resolved = debs.resolve(list(BASE_PACKAGES) + list(packages), arch)
    key = _input_key(arch, resolved, files)
    out = cache_dir("testbed", "images", f"{name}-{arch}-{key}")
    manifest = out / "manifest.json"
    if not manifest.exists():
        trees = debs.extracted(resolved, arch)
        staging = Path(tempfile.mkdtemp(prefix="rootfs.", dir=out))
        try:
            for tree in trees:
                _merge(tree, staging)
            _layout(staging, files)
            check_libraries(staging, arch)
            _make_image(staging, out / "rootfs.img")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        manifest.write_text(json.dumps({"arch": arch, "name": name, "packages": resolved}, indent=1))
        for old in out.parent.glob(f"{name}-{arch}-*"):     # superseded images (a running board keeps its open file)
            if old != out:
                shutil.rmtree(old, ignore_errors=True)
    return Rootfs(arch=arch, image=out / "rootfs.img", key=key,
                  packages=json.loads(manifest.read_text())["packages"])


def _input_key(arch: str, resolved: dict, files: dict) -> str:
    h = hashlib.sha256(f"{_LAYOUT} {arch}\n".encode())
    for name, version in sorted(resolved.items()):
        h.update(f"{name}={version}\n".encode())
    for path, (data, mode) in sorted(files.items()):
        h.update(f"{path} {mode:o} {len(data)}\n".encode() + data)
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _merge(tree: Path, staging: Path) -> None:
    proc = subprocess.run(["cp", "-a", f"{tree}/.", f"{staging}/"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"copying {tree.name} into the rootfs failed: {proc.stderr.strip()[-200:]}")
    for sub in _SKIP:
        shutil.rmtree(staging / sub, ignore_errors=True)


def _write(root: Path, path: str, data: bytes, mode: int) -> None:
    dest = root / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.write_bytes(data)
    os.chmod(dest, mode)


def _layout(root: Path, files: dict) -> None:
    """What dpkg's maintainer scripts and an installer would have made."""
    for d in ("proc", "sys", "dev", "run", "tmp", "mnt", "var/tmp", "var/log", "root/.ssh", "etc/ssh",
              "etc/edgeio/rc.d", "usr/local/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "root", 0o700)
    os.chmod(root / "root/.ssh", 0o700)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "var/tmp", 0o1777)
    sh = root / "bin/sh"
    if sh.is_symlink() or sh.exists():
        sh.unlink()
    sh.symlink_to("dash")
    _write(root, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
           b"sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", 0o644)
    _write(root, "etc/group", b"root:x:0:\nkvm:x:104:\nnogroup:x:65534:\n", 0o644)
    # '*': no password can match; not '!' (sshd refuses key logins to a locked account)
    _write(root, "etc/shadow", b"root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n", 0o640)
    _write(root, "etc/hostname", b"edgeio-testbed\n", 0o644)
    _write(root, "etc/hosts", b"127.0.0.1 localhost edgeio-testbed\n", 0o644)
    _write(root, "etc/ssh/sshd_config", SSHD_CONFIG.encode(), 0o644)
    _write(root, "etc/inittab", INITTAB.encode(), 0o644)
    _write(root, "etc/edgeio/rc", RC.encode(), 0o755)
    _write(root, "etc/fstab", b"", 0o644)
    for path, (data, mode) in files.items():
        _write(root, path, data, mode)


def _library_dirs(root: Path, arch: str) -> list[Path]:
    triplet = f"{arch}-linux-gnu"
    return [root / d for d in (f"lib/{triplet}", f"usr/lib/{triplet}", "lib", "usr/lib")]


def check_libraries(root: Path, arch: str, programs=None) -> None:
    """Every NEEDED library of the programs (default: everything in bin/ and sbin/) is in the tree.

    dpkg would have refused an install with a missing dependency; nothing here does,
    so this is where a library the Depends-walk missed is caught, before any boot.
    """
    if programs is None:
        programs = [p for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/lib/openssh")
                    for p in sorted((root / d).glob("*")) if p.is_file() and not p.is_symlink()]
    dirs = _library_dirs(root, arch)
    todo, seen, missing = list(programs), set(), {}
    while todo:
        batch, todo = [p for p in todo if p not in seen], []
        seen.update(batch)
        for path, needed in _needed(batch).items():
            for soname in needed:
                found = next((d / soname for d in dirs if (d / soname).exists()), None)
                if found is None:
                    missing.setdefault(soname, path.relative_to(root))
                elif found.resolve() not in seen:
                    todo.append(found.resolve())
    if missing:
        listed = ", ".join(f"{s} (for /{p})" for s, p in sorted(missing.items())[:5])
        raise UserError(f"board rootfs lacks libraries: {listed}")


def _needed(paths: list[Path]) -> dict[Path, list[str]]:
    """DT_NEEDED of each ELF file among paths (others: none), via binutils' readelf."""
    out: dict[Path, list[str]] = {}
    elves = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    elves.append(p)
        except OSError:
            continue
    for i in range(0, len(elves), 200):
        chunk = elves[i:i + 200]
        try:
            proc = subprocess.run(["readelf", "-d", "-W", *map(str, chunk)], capture_output=True, text=True)
        except FileNotFoundError:
            raise UserError("readelf not found: apt-get install binutils") from None
        current = chunk[0] if len(chunk) == 1 else None
        for line in proc.stdout.splitlines():
            if line.startswith("File: "):
                current = Path(line[len("File: "):].strip())
            elif "(NEEDED)" in line and current is not None:
                out.setdefault(current, []).append(line.rsplit("[", 1)[1].rstrip("]"))
    return out


def _make_image(staging: Path, image: Path) -> None:
    used = int(subprocess.run(["du", "-sb", str(staging)], capture_output=True, text=True).stdout.split()[0])
    size = (used + used // 3 + (96 << 20)) >> 20 << 20
    tmp = image.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(size)
    proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "edgeio-root", "-d", str(staging),
                           "-E", "lazy_itable_init=0,lazy_journal_init=0", str(tmp)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise UserError(f"mkfs.ext4 of the board rootfs failed: {' '.join(proc.stderr.split())[-200:]}")
    os.replace(tmp, image)
