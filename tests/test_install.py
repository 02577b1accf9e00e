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


def _fake_host(tmp_path, deb_arch: str, foreign: str = "") -> tuple[Path, dict]:
    """A copy of scripts/install beside stand-ins (named as such: a real install needs root
    and changes this machine) for dpkg, dpkg-query, apt-get, id, docker and the venv's
    python, each logging how it was called. dpkg says the host is deb_arch."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(INSTALL, root / "scripts" / "install")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fakes = {
        "dpkg": f'case "$1" in --print-architecture) echo {deb_arch};; '
                f'--print-foreign-architectures) printf "{foreign}";; esac',
        "dpkg-query": "exit 1",                        # nothing installed yet
        "apt-get": "true", "id": "echo 0", "docker": "true", "python3": "true",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}\n')
        (bin_dir / name).chmod(0o755)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text(f'#!/bin/sh\necho "venv-python $*" >> {log}\n')
    (root / ".venv" / "bin" / "python").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return root, env


@pytest.mark.parametrize("deb_arch,foreign_added", [("arm64", None), ("amd64", "arm64")])
def test_the_install_asks_apt_for_the_printed_list(tmp_path, deb_arch, foreign_added):
    """On a deb_arch host the install hands apt exactly what --packages-for deb_arch prints,
    and adds a foreign arch only on amd64 (the Pi's arm64 guest packages)."""
    root, env = _fake_host(tmp_path, deb_arch)
    proc = subprocess.run(["bash", str(root / "scripts" / "install")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    install = [c for c in calls if c.startswith("apt-get install")]
    assert len(install) == 1
    assert install[0].split()[-len(packages_for(deb_arch).stdout.split()):] == packages_for(deb_arch).stdout.split()
    added = [c.split()[-1] for c in calls if c.startswith("dpkg --add-architecture")]
    assert added == ([foreign_added] if foreign_added else [])


def test_the_install_refuses_an_unsupported_host(tmp_path):
    root, env = _fake_host(tmp_path, "armhf")
    proc = subprocess.run(["bash", str(root / "scripts" / "install")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: host arch armhf is not supported: amd64 or arm64"
    assert "apt-get" not in (tmp_path / "calls.log").read_text()
