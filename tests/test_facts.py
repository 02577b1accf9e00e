"""Machine facts (measure/facts.py) and each environment's configuration as run.

Facts are compared with /sys and /proc read here independently (os.stat's device
number, not the mountinfo the code parses), over the loopback SSH target, and through a
target whose only tools are busybox's applets (what a minimal image has).
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import HOST_ARCH, docker_running, have_kvm
from measure import facts as F
from measure.targets import PROBE_DIR, LocalTarget, machine_facts

AGREED_KEYS = {"memory_bytes", "page_bytes", "cpus", "arch", "kernel", "kvm", "emulated", "cpu_model",
               "cpu_caches", "block_device", "filesystem", "vm"}


def _sys(path) -> str:
    return Path(path).read_text().strip()


def _disk_of(path: str) -> str:
    """The whole disk holding `path`, found from stat's device number (not from mountinfo)."""
    dev = os.stat(path).st_dev
    node = Path(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
    return node.parent.name if (node / "partition").exists() else node.name


def _expected_caches() -> dict:
    out = {}
    for idx in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        level, kind = _sys(idx / "level"), _sys(idx / "type")
        size = int(_sys(idx / "size").rstrip("K")) * 1024
        if (level, kind) == ("1", "Data"):
            out["l1d_bytes"] = size
        elif kind == "Unified":
            out[f"l{level}_bytes"] = size
    return out


def test_local_facts_match_sys_and_proc():
    f = machine_facts(LocalTarget())
    assert AGREED_KEYS <= set(f)
    assert f["page_bytes"] == os.sysconf("SC_PAGE_SIZE")
    assert f["memory_bytes"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert f["cpus"] == len(os.sched_getaffinity(0))
    caches = _expected_caches()
    assert caches, "this machine exposes its caches in sysfs"
    assert {k: v for k, v in f["cpu_caches"].items() if k != "source" and v is not None} == caches
    assert {f["cpu_caches"]["source"][k] for k in caches} == {"sysfs"}
    for key in F.VM_KEYS:
        assert f["vm"][key] == int(_sys(f"/proc/sys/vm/{key}"))
    disk = _disk_of(PROBE_DIR)
    bd = f["block_device"]
    assert bd["name"] == disk
    assert bd["readahead_bytes"] == int(_sys(f"/sys/block/{disk}/queue/read_ahead_kb")) * 1024
    assert bd["max_request_bytes"] == int(_sys(f"/sys/block/{disk}/queue/max_sectors_kb")) * 1024
    assert bd["rotational"] == (_sys(f"/sys/block/{disk}/queue/rotational") == "1")
    assert f"[{bd['scheduler']}]" in _sys(f"/sys/block/{disk}/queue/scheduler") or bd["scheduler"] == "none"
    assert bd["kind"] in ("sd", "emmc", "nvme", "ssd", "hdd", "virtual", "unknown")
    fstype = subprocess.run(["stat", "-f", "-c", "%T", PROBE_DIR], capture_output=True, text=True).stdout.strip()
    assert f["filesystem"]["path"] == os.path.realpath(PROBE_DIR)
    assert f["filesystem"]["type"].startswith(fstype[:3])          # stat says ext2/ext3 for ext4
    assert os.path.ismount(f["filesystem"]["mount"])
    assert f["kvm"] in ("hardware", "software", "absent") and isinstance(f["emulated"], bool)


def test_facts_follow_the_directory(tmp_path):
    """A tmpfs directory has no block device: the facts say so rather than naming the root disk."""
    mnt = Path("/dev/shm")
    if not mnt.is_dir() or os.stat(mnt).st_dev == os.stat("/").st_dev:
        pytest.skip("no separate /dev/shm tmpfs here")
    f = machine_facts(LocalTarget(), str(mnt))
    assert f["filesystem"]["type"] == "tmpfs" and f["filesystem"]["mount"] == "/dev/shm"
    assert f["block_device"]["name"] is None and f["block_device"]["kind"] is None


def test_facts_over_ssh_equal_local(sshd):
    from measure.reach import parse_target
    t = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    try:
        remote = t.facts()
    finally:
        t.close()
    local = machine_facts(LocalTarget())
    for key in AGREED_KEYS:
        assert remote[key] == local[key], key
    assert remote["block_device"]["name"]


class BusyboxTarget(LocalTarget):
    """This machine, seen through busybox only: every program is a busybox applet."""

    def __init__(self, bindir: Path):
        self.env = {"PATH": str(bindir)}

    def run(self, argv, timeout=None, input=None, check=False):
        try:
            return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=self.env)
        except FileNotFoundError:
            return subprocess.CompletedProcess(argv, 127, b"", b"not found")

    def read_text(self, path):
        proc = self.run(["cat", path])
        return proc.stdout.decode() if proc.returncode == 0 else None


def test_facts_with_busybox_only(tmp_path):
    busybox = subprocess.run(["sh", "-c", "command -v busybox"], capture_output=True, text=True).stdout.strip()
    if not busybox:
        pytest.skip("busybox not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split():
        (bindir / applet).symlink_to(busybox)
    f = machine_facts(BusyboxTarget(bindir))
    local = machine_facts(LocalTarget())
    assert not (bindir / "getconf").exists()          # the page size came from the smaps fallback
    for key in ("page_bytes", "cpu_caches", "block_device", "filesystem", "vm", "memory_bytes", "emulated"):
        assert f[key] == local[key], key


def _fake_sysfs_without_cache_sizes(root: Path) -> None:
    """cpu0's cache/index0 and index1 with level and type but no size, no L2/L3 (what the
    emulated board's and some Pi kernels' sysfs give), and no device tree."""
    for idx, kind in (("index0", "Data"), ("index1", "Instruction")):
        d = root / "sys/devices/system/cpu/cpu0/cache" / idx
        d.mkdir(parents=True)
        (d / "level").write_text("1\n")
        (d / "type").write_text(kind + "\n")


def test_cache_sizes_missing_from_sysfs_are_measured(tmp_path):
    """A target whose sysfs has no cache sizes: the last-level cache is measured on it by the
    probe's pointer-chase sweep and recorded as measured; what nothing gave stays null with
    what was tried; campaigns' facts carry it; nothing defaults silently."""
    _fake_sysfs_without_cache_sizes(tmp_path / "root")
    f = machine_facts(LocalTarget(), sys_root=str(tmp_path / "root"))
    caches = f["cpu_caches"]
    assert caches["source"]["l2_bytes"].startswith("measured: pointer-chase"), caches
    # this machine's caches, as a sweep sees them: above its L1, within its memory
    real = _expected_caches()
    assert real["l1d_bytes"] < caches["l2_bytes"] <= 4 * max(real.values()), (caches, real)
    assert caches["l1d_bytes"] is None and caches["source"]["l1d_bytes"].startswith("none: sysfs and the device tree")
    assert caches["l3_bytes"] is None


def test_cache_facts_order_and_failure_are_recorded():
    files = {f"{F.CACHE_DIR}/index0/level": "1", f"{F.CACHE_DIR}/index0/type": "Data",
             f"{F.CACHE_DIR}/index0/size": "48K"}
    calls = []

    def sweep():
        calls.append(1)
        raise RuntimeError("no C compiler for aarch64")
    c = F.cache_facts(files, sweep)
    assert calls and c["l1d_bytes"] == 48 << 10 and c["l2_bytes"] is None
    assert c["source"]["l1d_bytes"] == "sysfs"
    assert "sweep failed: no C compiler for aarch64" in c["source"]["l2_bytes"]
    # a device tree with the L2 (a Pi 4's bcm2711: d-cache-size 32 KiB, l2-cache0 1 MiB level 2)
    dt = {f"{F.DT}/cpus/cpu@0/d-cache-size": "00008000", f"{F.DT}/cpus/l2-cache0/cache-size": "00100000",
          f"{F.DT}/cpus/l2-cache0/cache-level": "00000002"}
    c = F.cache_facts(dt, sweep)
    assert (c["l1d_bytes"], c["l2_bytes"]) == (32 << 10, 1 << 20) and len(calls) == 1   # no sweep needed
    assert c["source"]["l2_bytes"] == "device tree"


def _curve(levels, noise=()):
    """A sweep's points: ns per load stepping up past each (size, ns) level."""
    pts, size = [], 4096
    while size <= 64 << 20:
        for s in (size, size + size // 2):
            ns = next((ns for top, ns in levels if s <= top), 100.0)
            pts.append([s, ns * dict(noise).get(s, 1.0)])
        size *= 2
    return pts


def test_last_level_cache_from_a_sweep():
    # L1 32 KiB at 1 ns, L2 1 MiB at 5 ns, memory 100 ns: the last level is 1 MiB
    assert F.last_level_from_sweep(_curve([(32 << 10, 1.0), (1 << 20, 5.0)])) == 1 << 20
    # a neighbour's burst on one point inside the L2 does not end it early
    assert F.last_level_from_sweep(_curve([(32 << 10, 1.0), (1 << 20, 5.0)], [(256 << 10, 30.0)])) == 1 << 20
    # an L3 of 8 MiB at 20 ns: the step to memory is the one that counts
    assert F.last_level_from_sweep(_curve([(32 << 10, 1.0), (1 << 20, 5.0), (8 << 20, 20.0)])) == 8 << 20
    # emulated (every load ~5 ns of translation), host caches show through: still a last level
    assert F.last_level_from_sweep(_curve([(2 << 20, 6.0)])) == 2 << 20
    # a flat curve never leaves the caches: no level
    assert F.last_level_from_sweep(_curve([(64 << 20, 3.0)])) is None


# -- pure parsers, on a Raspberry Pi 4's files --------------------------------------------

PI_MOUNTINFO = """\
21 1 179:2 / / rw,noatime shared:1 - ext4 /dev/root rw
22 21 0:20 / /proc rw,relatime shared:12 - proc proc rw
25 21 179:1 / /boot/firmware rw,relatime shared:14 - vfat /dev/mmcblk0p1 rw
30 21 0:27 / /var/tmp\\040x rw shared:20 - tmpfs tmpfs rw
"""


def test_pi_mount_and_device_parsing():
    m = F.mount_of(PI_MOUNTINFO, "/var/tmp")
    assert m == {"mount": "/", "type": "ext4", "source": "/dev/root", "dev": "179:2"}
    assert F.mount_of(PI_MOUNTINFO, "/boot/firmware/x")["dev"] == "179:1"
    assert F.mount_of(PI_MOUNTINFO, "/var/tmp x/f")["type"] == "tmpfs"     # \040 is a space
    assert F.mount_of(PI_MOUNTINFO, "/var/tmp xy")["mount"] == "/"         # a prefix is not a parent
    bd = F.block_device({"disk": "mmcblk0", "device/type": "SD", "queue/rotational": "0",
                         "queue/read_ahead_kb": "128", "queue/max_sectors_kb": "1024",
                         "queue/scheduler": "[mq-deadline] kyber bfq none"})
    assert bd == {"name": "mmcblk0", "model": None, "kind": "sd", "rotational": False,
                  "readahead_bytes": 128 << 10, "max_request_bytes": 1 << 20, "scheduler": "mq-deadline"}


@pytest.mark.parametrize("name,model,rot,mmc,slave,kind", [
    ("mmcblk0", None, 0, "SD", None, "sd"), ("mmcblk0", None, 0, "MMC", None, "emmc"),
    ("nvme0n1", "Samsung", 0, None, None, "nvme"), ("vda", None, 1, None, None, "virtual"),
    ("sda", "QEMU HARDDISK", 1, None, None, "virtual"), ("sda", "WDC WD10", 1, None, None, "hdd"),
    ("sda", "Samsung SSD", 0, None, None, "ssd"), ("dm-0", None, 0, None, "nvme0n1", "nvme"),
    ("xvda", None, 0, None, None, "virtual"), ("md0", None, 0, None, None, "unknown"),
])
def test_device_kind(name, model, rot, mmc, slave, kind):
    assert F.device_kind(name, model, rot, mmc, slave) == kind


def test_caches_vm_and_emulation_from_files():
    d = F.CACHE_DIR
    files = {f"{d}/index0/level": "1", f"{d}/index0/type": "Data", f"{d}/index0/size": "32K",
             f"{d}/index1/level": "1", f"{d}/index1/type": "Instruction", f"{d}/index1/size": "48K",
             f"{d}/index2/level": "2", f"{d}/index2/type": "Unified", f"{d}/index2/size": "1024K",
             "/proc/sys/vm/dirty_ratio": "20", "/proc/sys/vm/dirty_bytes": "0"}
    assert F.cpu_caches(files) == {"l1d_bytes": 32 << 10, "l2_bytes": 1 << 20, "l3_bytes": None}
    vm = F.vm_settings(files)
    assert vm["dirty_ratio"] == 20 and vm["dirty_bytes"] == 0 and vm["dirty_background_ratio"] is None
    virt = {"/sys/firmware/devicetree/base/compatible": "linux,dummy-virt "}
    assert F.is_emulated(virt, "CPU part : 0xd08")
    assert not F.is_emulated({"/sys/firmware/devicetree/base/compatible": "raspberrypi,4-model-b brcm,bcm2711 "}, "")
    qemu_pc = {"/sys/class/dmi/id/sys_vendor": "QEMU"}
    assert F.is_emulated(qemu_pc, "model name : QEMU Virtual CPU version 2.5+")
    assert not F.is_emulated({**qemu_pc, "/sys/devices/system/clocksource/clocksource0/available_clocksource":
                              "kvm-clock tsc acpi_pm "}, "")
    assert F.parse_size("1M") == 1 << 20 and F.parse_size("bogus") is None


# -- each environment's configuration as run ----------------------------------------------

def _cell(env, size=4096, op="read", reps=3, **kw):
    return {"cell_id": f"t-{env}-{size}-{op}", "env": env, "size_bytes": size, "op": op, "reps": reps,
            "batches": reps, "io_size_bytes": None, "sync": "fsync", "direct": False, "cache": "warm",
            "params": {}, **kw}


def test_linux_config_reports_the_probes_io_size(tmp_path):
    from measure.environments.linux import LinuxEnvironment
    env = LinuxEnvironment(LocalTarget(), {"dir": str(tmp_path)})
    env.check()
    env.prepare()
    try:
        for size, io in ((4096, 4096), (3 << 20, 1 << 20)):
            c = _cell("linux", size)
            r = env.run(c, timeout=120)
            cfg = env.effective_config(c, r.probe, r.metadata)
            assert cfg["io_size_bytes"] == io == r.probe["io_size"]
            assert cfg == env.effective_config(c)        # planned = as run when the probe obeys
        c = _cell("linux", 8192, op="write_sync", sync="fdatasync", io_size_bytes=2048)
        cfg = env.effective_config(c, env.run(c, timeout=120).probe)
    finally:
        env.teardown()
    assert cfg["io_size_bytes"] == 2048 and cfg["sync"] == "fdatasync"
    assert cfg["memory_bytes"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert env.effective_config(_cell("linux", op="write"))["sync"] == "none"


@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
def test_hvt_default_config_is_the_tenders(tmp_path):
    from measure.environments.hvt import HvtEnvironment
    env = HvtEnvironment(LocalTarget(), {"dir": str(tmp_path)})
    env.check()
    env.prepare()
    try:
        c = _cell("hvt", op="write_sync")
        r = env.run(c, timeout=120)
    finally:
        env.teardown()
    cfg = env.effective_config(c, r.probe, r.metadata)
    assert r.metadata["counters"]["flush"] == "none" and r.metadata["counters"]["fsyncs"] == 0
    assert cfg["flush"] == "none" and cfg["blocks_per_call"] == 1 and cfg["block_size"] == 512
    assert cfg["io_size_bytes"] == 512 and cfg["tender"] == "edgeio" and cfg["transport"] == "hvt"
    assert cfg["batch"] == 1 and cfg["memory_bytes"] == 512 << 20 and cfg["cache"] == "warm"
    # what the tender reports wins over what was asked
    told = dict(r.metadata, counters=dict(r.metadata["counters"], flush="each-write"))
    assert env.effective_config(c, r.probe, told)["flush"] == "each-write"
    k8 = HvtEnvironment(LocalTarget(), {"blocks_per_call": "8", "flush": "on-request", "mem": "64"})
    cfg8 = k8.effective_config(_cell("hvt"))
    assert cfg8["blocks_per_call"] == 8 and cfg8["io_size_bytes"] == 4096 and cfg8["flush"] == "on-request"
    assert cfg8["memory_bytes"] == 64 << 20


def test_qemu_and_docker_config_defaults():
    from measure.environments.docker import DockerEnvironment
    from measure.environments.qemu import QemuEnvironment
    q = QemuEnvironment(LocalTarget(), {})
    q.check()
    cfg = q.effective_config(_cell("qemu", 2 << 20))
    assert cfg["disk"] == "virtio" and cfg["cache_mode"] == "writeback" and cfg["memory_bytes"] == 2048 << 20
    assert cfg["accel"] == q.accel and cfg["arch"] == HOST_ARCH and cfg["io_size_bytes"] == 1 << 20
    small = QemuEnvironment(LocalTarget(), {"mem": "256", "disk": "ide", "accel": "tcg"})
    cfg = small.effective_config(_cell("qemu"), {"io_size": 4096},
                                 {"transport": "ide", "cache": "writeback", "accel": "tcg", "guest_arch": "x86_64"})
    assert (cfg["memory_bytes"], cfg["disk"], cfg["accel"]) == (256 << 20, "ide", "tcg")
    d = DockerEnvironment(LocalTarget(), {"mem": "300"})
    cfg = d.effective_config(_cell("docker"))
    assert cfg["memory_bytes"] == 300 << 20 and cfg["volume"] is False
    assert DockerEnvironment(LocalTarget(), {"volume": "/var/tmp"}).effective_config(_cell("docker"))["volume"] is True


@pytest.mark.slow
@pytest.mark.skipif(not (have_kvm() and docker_running()), reason="needs /dev/kvm and docker")
def test_campaign_records_config_as_run(results_tmp):
    """Every cell record carries its config; samples.csv and summary.csv carry it as run_config."""
    import pandas as pd

    from edgeio.commands import measure
    path = measure.run(env="linux,docker,hvt", size="4KiB", op="write_sync", reps="20", quiet=True)
    recs = [json.loads(p.read_text()) for p in sorted((path / "cells").glob("*.json"))]
    by_env = {r["cell"]["env"]: r["config"] for r in recs}
    assert by_env["hvt"]["flush"] == "none" and by_env["docker"]["memory_bytes"] == 4096 << 20
    assert all(r["config"]["io_size_bytes"] == r["probe"]["io_size"] for r in recs)
    summary = pd.read_csv(path / "summary.csv")
    for _, row in summary.iterrows():
        assert json.loads(row["run_config"]) == by_env[row["env"]]
    meta = json.loads((path / "metadata.json").read_text())
    assert AGREED_KEYS <= set(meta["targets"]["local"])
    assert re.fullmatch(r"[a-z0-9]+", meta["targets"]["local"]["block_device"]["name"])


class NoNprocTarget(LocalTarget):
    """This machine with nproc failing, as a command lost on a loaded SSH link does."""

    def run(self, argv, timeout=None, input=None, check=False):
        if argv[:1] == ["nproc"]:
            return subprocess.CompletedProcess(argv, 255, b"", b"channel closed")
        return super().run(argv, timeout=timeout, input=input, check=check)


def test_cpus_come_from_cpuinfo_when_nproc_gives_nothing():
    processors = sum(1 for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.split(":")[0].strip() == "processor")
    assert machine_facts(NoNprocTarget())["cpus"] == processors > 0
