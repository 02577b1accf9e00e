"""Build the static C file probe per architecture, and read what a probe printed.

The binary lands in the git-ignored cache under a name keyed on a hash of the
sources, the compiler's identity and the flags, so it is rebuilt only when one of
those changes, and concurrent builds never see a half-written file.
"""

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgeio.errors import UserError
from edgeio.paths import PROJECT_ROOT, cache_dir

PROBE_DIR = PROJECT_ROOT / "probes"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-static"]
# Keys every probe record must carry (docs/formats.md, "Probe output").
REQUIRED_KEYS = ("probe", "version", "op", "size", "reps", "io_size", "sync", "direct",
                 "cache", "batch_reps", "batch_seconds", "total_seconds", "errno", "error")

_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# Debian's compiler for each target, and the apt packages that provide it with a static libc.
_CROSS = {
    "x86_64": ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu libc6-dev-amd64-cross"),
    "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
}


def host_arch() -> str:
    return _ARCH_ALIASES.get(platform.machine(), platform.machine())


def probe_version() -> str:
    """The version the probe prints, read from its source."""
    text = (PROBE_DIR / "version.h").read_text()
    m = re.search(r'#define\s+PROBE_VERSION\s+"([^"]+)"', text)
    if not m:
        raise UserError(f"cannot find PROBE_VERSION in {PROBE_DIR / 'version.h'}")
    return m.group(1)


def probe_binary(arch: str | None = None) -> Path:
    """Path of the static probe for arch ('x86_64' or 'aarch64'), built if needed."""
    arch = _normalize_arch(arch or host_arch())
    compiler, identity = _compiler(arch)
    sources = _sources()
    digest = hashlib.sha256()
    for path in sources + sorted(PROBE_DIR.glob("*.h")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(identity.encode() + " ".join(CFLAGS).encode())
    out = cache_dir("probes", arch) / f"fileprobe-{digest.hexdigest()[:16]}"
    if not out.exists():
        _compile(compiler, sources, out)
    return out


def parse_probe_output(text: str) -> dict:
    """The last line of text that is a JSON object with a "probe" key, checked.

    Console output (a guest's serial line, a container log) may carry anything else
    around it; a line may also carry junk before the JSON, so each line is tried from
    its first '{' too.
    """
    for line in reversed(text.splitlines()):
        record = _json_object(line)
        if record is not None and "probe" in record:
            missing = [k for k in REQUIRED_KEYS if k not in record]
            if missing:
                raise UserError(f"probe output lacks {', '.join(missing)}: {line.strip()[:200]}")
            if len(record["batch_reps"]) != len(record["batch_seconds"]):
                raise UserError("probe output has different numbers of batch_reps and batch_seconds")
            return record
    tail = " | ".join(text.strip().splitlines()[-3:])[:300]
    raise UserError(f"no probe output (a JSON line with a \"probe\" key) found; output ended with: {tail or '(nothing)'}")


def _json_object(line: str):
    line = line.strip()
    start = line.find("{")
    if start < 0:
        return None
    for candidate in (line, line[start:]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _normalize_arch(arch: str) -> str:
    if arch not in _ARCH_ALIASES:
        raise UserError(f"unknown probe arch {arch!r}: use x86_64 or aarch64")
    return _ARCH_ALIASES[arch]


def _sources() -> list[Path]:
    sources = sorted(PROBE_DIR.glob("*.c"))
    if not sources:
        raise UserError(f"no probe sources in {PROBE_DIR}")
    return sources


def _compiler(arch: str) -> tuple[str, str]:
    """The compiler for arch and a string identifying it (path and version)."""
    cross, packages = _CROSS[arch]
    candidates = ["gcc", cross] if arch == host_arch() else [cross]
    for name in candidates:
        path = shutil.which(name)
        if path:
            version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            return path, f"{os.path.realpath(path)}\n{version.splitlines()[0] if version else ''}"
    if arch == host_arch():
        packages = "gcc libc6-dev"
    raise UserError(f"no C compiler for {arch} (tried {', '.join(candidates)}): apt-get install {packages}")


def _compile(compiler: str, sources: list[Path], out: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *CFLAGS, "-o", tmp, *map(str, sources)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["(no message)"])
            hint = next((l for l in first if "error" in l), first[0])
            raise UserError(f"building the probe with {compiler} failed: {hint.strip()}"
                            " (a static build needs libc6-dev, or the -cross package for aarch64)")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)  # atomic: a concurrent caller sees the whole binary or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
