"""Build the hvt tender and unikernels (unikernel/) for an arch, cached by source digest.

One build directory per (arch, digest of the sources and compiler) under
edgeio.paths.cache_dir("hvt"): a rebuild happens only when a source changed.
aarch64 is cross-built with aarch64-linux-gnu-gcc; the tender is linked
statically so it runs on a target whatever its C library.
"""

import hashlib
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import PROJECT_ROOT, cache_dir

UNIKERNEL_DIR = PROJECT_ROOT / "unikernel"
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
GUESTS = ("probe", "hostile", "callcost", "fuzzcalls", "manydisks", "ring_hostile", "mapped_wait",
          "copycost")


@dataclass(frozen=True)
class HvtBuild:
    arch: str
    tender: Path            # edgeio-hvt
    probe: Path             # probe.hvt, the Fig. 4 unikernel
    hostile: Path           # hostile.hvt, the hostile-guest test unikernel
    callcost: Path          # callcost.hvt, per-hypercall cost
    digest: str
    fuzzcalls: Path | None = None   # fuzzcalls.hvt, random hypercall sequences (fuzz smoke test)
    manydisks: Path | None = None   # manydisks.hvt, 63 block devices
    ring_hostile: Path | None = None    # ring_hostile.hvt, the hostile ring-transport guest
    mapped_wait: Path | None = None     # mapped_wait.hvt, waits on its mapped disk (truncation test)
    copycost: Path | None = None        # copycost.hvt, the guest's copy cost per byte


def normalize_arch(machine: str) -> str:
    if machine not in ARCHES:
        raise UserError(f"hvt: no tender for arch {machine!r} (x86_64 or aarch64)")
    return ARCHES[machine]


def build(arch: str | None = None) -> HvtBuild:
    """Tender and unikernels for arch (default: this machine's), built if not cached."""
    arch = normalize_arch(arch or platform.machine())
    cc = _compiler(arch)
    digest = _digest(arch, cc)
    out = cache_dir("hvt", arch, digest)
    result = HvtBuild(arch, out / "edgeio-hvt", out / "probe.hvt", out / "hostile.hvt",
                      out / "callcost.hvt", digest, out / "fuzzcalls.hvt", out / "manydisks.hvt",
                      out / "ring_hostile.hvt", out / "mapped_wait.hvt", out / "copycost.hvt")
    if all((out / f"{g}.hvt").exists() for g in GUESTS) and result.tender.exists():
        return result
    if not shutil.which("make"):
        raise UserError("hvt: building the tender needs make (apt-get install make)")
    proc = subprocess.run(["make", "-s", "-C", str(UNIKERNEL_DIR), f"ARCH={arch}", f"CC={cc}",
                           f"OUT={out}", "all"], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UserError(f"hvt: building the {arch} tender and unikernels failed: {' | '.join(tail)}")
    return result


def build_sanitized() -> Path:
    """An ASan+UBSan build of this machine's tender (for the fuzz tests), cached as build()."""
    arch = normalize_arch(platform.machine())
    digest = _digest(arch + "-asan", "cc")
    out = cache_dir("hvt", f"{arch}-asan", digest)
    tender = out / "edgeio-hvt"
    if tender.exists():
        return tender
    proc = subprocess.run(["make", "-s", "-C", str(UNIKERNEL_DIR / "tender"), f"ARCH={arch}", "CC=cc",
                           "SAN=1", f"OUT={out}"], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UserError(f"hvt: building the sanitizer tender failed: {' | '.join(tail)}")
    return tender


def _compiler(arch: str) -> str:
    native = normalize_arch(platform.machine()) == arch
    cc = "cc" if native else f"{arch}-linux-gnu-gcc"
    if not shutil.which(cc):
        pkg = "gcc" if native else f"gcc-{arch.replace('_', '-')}-linux-gnu"
        raise UserError(f"hvt: {cc} not found: install {pkg} to build the {arch} tender")
    return cc


def _digest(arch: str, cc: str) -> str:
    h = hashlib.sha256(arch.encode() + b"\0")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    h.update(version.encode() + b"\0")
    for path in sorted(UNIKERNEL_DIR.rglob("*")):
        if path.is_file() and "build" not in path.relative_to(UNIKERNEL_DIR).parts \
                and path.suffix in (".c", ".h", ".lds", ".json", "") and path.name != "README.md":
            h.update(str(path.relative_to(UNIKERNEL_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
