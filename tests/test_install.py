"""scripts/install --packages-for ARCH: the list it would install on an ARCH host resolves
there. Checked against apt's own lists (this host has arm64 as a foreign arch after
scripts/install), since an arm64 machine is not at hand: each package must exist for
ARCH (`apt-cache show PKG:ARCH`) or be Architecture: all."""

import shutil
import subprocess
from pathlib import Path

import pytest

from measure.guest.packages import parse_records

INSTALL = Path(__file__).resolve().parent.parent / "scripts" / "install"


def packages_for(arch: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), "--packages-for", arch], capture_output=True, text=True)


def _records(names: list[str]) -> list[dict]:
    # One apt-cache call for the whole list: each call parses every list (~2 s here).
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True)
    return parse_records(proc.stdout)


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_every_package_exists_for_the_arch(arch):
    proc = packages_for(arch)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    names = proc.stdout.split()
    assert "build-essential" in names and "python3-venv" in names
    if not shutil.which("apt-cache"):
        pytest.skip("apt-cache not found: the check needs apt's package lists (a Debian host)")
    if not any(r.get("Architecture") == arch for r in _records([f"bash:{arch}"])):
        pytest.skip(f"apt's lists hold no {arch} packages: `dpkg --add-architecture {arch} && apt-get update`")
    found = {r["Package"] for r in _records([f"{n}:{arch}" for n in names])
             if r.get("Architecture") == arch}
    found |= {r["Package"] for r in _records(names) if r.get("Architecture") == "all"}
    missing = [n for n in names if n not in found]
    assert not missing, f"no {arch} (or arch all) package in apt's lists for: {' '.join(missing)}"


def test_arm64_uses_the_native_compiler():
    names = packages_for("arm64").stdout.split()
    # gcc-aarch64-linux-gnu has no arm64 package; build-essential's gcc is aarch64-linux-gnu-gcc
    assert "gcc-aarch64-linux-gnu" not in names
    assert {"gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"} <= set(packages_for("amd64").stdout.split())


@pytest.mark.parametrize("args", [["--packages-for", "i386"], ["--packages-for"], ["--packages-for", ""],
                                  ["--packages-for", "amd64", "arm64"], ["--bogus"]])
def test_bad_input_is_one_line_exit_2(args):
    proc = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")
