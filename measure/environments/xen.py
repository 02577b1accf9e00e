"""xen: the probe in a Xen domU, driven from dom0 (this machine or over SSH) with xl.

The domU is Debian's kernel with a busybox initramfs (measure/guest/domu.py) and an
ext4 disk on xvda holding one pre-written file per cell size (data-<size>). The
domain boots once per prepare, not per cell: its init reads cell lines from its
console and answers each with the probe's JSON plus xvda's /sys/block counters.
On dom0 a small sh driver (xen_driver.sh) creates the domain paused, attaches a
reader to its console pty (the console log), unpauses it, types each cell's line at
the console and waits for that cell's answer. A domU that hangs is destroyed at the
cell timeout and the next cell boots a fresh one; the error carries the console's tail.

Backends (--param disk=): "file" (default) is an image file in --param dir on dom0,
attached raw (blkback over a loop device); a block device path (/dev/...) is a "phy"
backend and is OVERWRITTEN with the image.
"""

import re
import secrets
import tempfile
import time
from pathlib import Path

from edgeio.errors import UserError
from edgeio.limits import XEN_MIN_MEM_MIB
from measure.environments.base import (CellFailed, CellResult, Environment, Unavailable,
                                       check_free_space, probe_args)
from measure.environments.qemu import _float_param, _int_param

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
DRIVER = Path(__file__).with_name("xen_driver.sh")
TAIL_MARK = "edgeio-console-tail"
_SAFE_ARG = re.compile(r"[A-Za-z0-9_./=-]+")


class XenEnvironment(Environment):
    name = "xen"
    description = "Linux domU under Xen (Debian kernel, busybox), probe file on xvda (blkfront/blkback)"
    params_spec = {
        "mem": "1024",          # domU MiB: the study's 1 GiB
        "vcpus": "1",
        "disk": "file",         # file | /dev/BLOCKDEVICE (phy backend; overwritten)
        "timeout": "900",       # seconds per cell
        "boot_timeout": "600",  # seconds from xl create to the domU's ready line
        "dir": "/var/tmp",      # where the domU's files go on dom0
    }

    def __init__(self, target, params=None, workdir=None):
        super().__init__(target, params, workdir)
        self._explicit = dict(params or {})
        p = self.params
        self.mem_mib = _int_param(p, "mem", XEN_MIN_MEM_MIB, "xen")
        self.vcpus = _int_param(p, "vcpus", 1, "xen", maximum=1024)
        self.timeout = _float_param(p, "timeout", "xen")
        self.boot_timeout = _float_param(p, "boot_timeout", "xen")
        if p["disk"] == "file":
            self.backend, self.device = "file", None
        elif re.fullmatch(r"/dev/[A-Za-z0-9_./-]+", p["disk"]):
            self.backend, self.device = "phy", p["disk"]
        else:
            raise UserError(f"xen: disk={p['disk']!r}: use file or a block device path (/dev/...)")
        self.domain = None          # name of the running domU, None when down
        self.remote = None
        self._sizes = []
        self._seq = 0

    # -- lifecycle ---------------------------------------------------------------------

    def check(self):
        where = self.target.name
        missing = [(prog, pkg) for prog, pkg in (("xl", "xen-utils"), ("xenstore-read", "xenstore-utils"),
                                                 ("stty", "coreutils"), ("setsid", "util-linux"))
                   if not self.target.which(prog)]
        caps = self.target.read_text("/proc/xen/capabilities")
        if missing:
            hyp = "" if caps is not None else " and boot the Xen hypervisor (xen-hypervisor-4.17-*)"
            raise Unavailable(f"xen: target {where} has no {', '.join(p for p, _ in missing)}: install "
                              f"{' '.join(dict.fromkeys(k for _, k in missing))}{hyp}")
        if caps is None:
            raise Unavailable(f"xen: no Xen hypervisor on {where} (/proc/xen/capabilities absent: "
                              "boot Xen and mount xenfs)")
        if "control_d" not in caps:
            raise Unavailable(f"xen: {where} is a Xen guest, not dom0 (/proc/xen/capabilities "
                              "lacks control_d)")
        machine = self.target.run(["uname", "-m"], timeout=30).stdout.decode().strip()
        if machine not in ARCHES:
            raise Unavailable(f"xen: no domU for dom0 arch {machine!r}")
        self.arch = ARCHES[machine]
        info = self.target.run(["xl", "info"], timeout=120)
        if info.returncode != 0:
            raise Unavailable(f"xen: `xl info` failed on {where}: "
                              f"{info.stderr.decode(errors='replace').strip()[-200:]}")
        self.xl_info = _xl_info(info.stdout.decode(errors="replace"))
        free = _number(self.xl_info.get("free_memory"))
        if free is not None and free < self.mem_mib:
            raise Unavailable(f"xen: mem={self.mem_mib} MiB does not fit: Xen on {where} has "
                              f"{free} MiB free (give --param mem=)")
        self.dom0_kernel = self.target.run(["uname", "-r"], timeout=30).stdout.decode().strip()

    def preflight(self, cells):
        self._sizes = sorted({int(c["size_bytes"]) for c in cells})
        from measure.guest.disk import default_image_bytes
        if self.backend == "file":
            # the compressed image and the unpacked one
            need = 2 * default_image_bytes(sum(self._sizes))
            check_free_space(self.target, self.params["dir"], need, "xen domU disk image")

    def prepare(self):
        if not hasattr(self, "arch"):
            self.check()
        from measure.guest.domu import build_domu
        self.domu = build_domu(self.arch)
        if self.remote is None:
            self.remote = self.target.run(
                ["mktemp", "-d", "-p", self.params["dir"], "edgeio-xen.XXXXXX"],
                timeout=60, check=True).stdout.decode().strip()
        self.target.put(self.domu.kernel, f"{self.remote}/kernel")
        self.target.put(self.domu.initrd, f"{self.remote}/initrd.gz")
        self.target.put(DRIVER, f"{self.remote}/driver.sh", mode=0o755)
        self._ship_disk()
        self._boot()

    def run(self, cell, timeout=None):
        if self.remote is None:
            self.prepare()
        elif self.domain is None:       # the last one hung or crashed: a fresh domU
            self._boot()
        size = int(cell["size_bytes"])
        if size not in self._sizes:
            raise CellFailed(f"xen: size {size} was not in the plan this domU's disk was built for")
        from measure.guest.disk import data_name
        args = ["--path", f"/mnt/{data_name(size)}"] + probe_args(cell)
        for a in args:
            if not _SAFE_ARG.fullmatch(a):
                raise UserError(f"xen: probe argument {a!r} cannot travel on the domU console")
        self._seq += 1
        nonce = f"{self._seq}-{secrets.token_hex(4)}"
        limit = self.timeout if ("timeout" in self._explicit or timeout is None) else float(timeout)
        line = f"edgeio-cell {nonce} {','.join(args)}"
        t0 = time.monotonic()
        rc, out = self._driver(["cell", nonce, f"{int(limit) or 1}", line], limit + 60)
        wall = time.monotonic() - t0
        log = f"$ xl console {self.domain} <<< {line}\n{out}"
        if rc != 0:
            self._down_after_failure()
            what = {124: f"domU timed out after {limit:g} s and was destroyed",
                    3: "domU is gone (crashed or powered off)"}.get(rc, f"xen driver exit {rc}")
            raise CellFailed(f"{what} ({self._label()}); console ends:\n{_tail(out)}", log)
        from measure.probe_build import parse_probe_output
        try:
            probe = parse_probe_output(out.split(nonce, 1)[1])
        except (UserError, IndexError):
            raise CellFailed(f"domU printed no probe result ({self._label()}): {out.strip()[-300:]}", log) from None
        if probe.get("errno") or probe.get("probe_exit"):
            raise CellFailed(f"probe failed in the domU: {probe.get('error') or 'exit ' + str(probe.get('probe_exit'))}"
                             f" (errno {probe.get('errno')})", log)
        meta = self._cell_metadata(probe, wall)
        return CellResult(probe=probe, metadata=meta, log=log)

    def teardown(self):
        if self.domain is not None:
            try:
                self._driver(["stop"], 90)
            except (UserError, TimeoutError, CellFailed):
                pass
            self.domain = None
        if self.remote:
            self.target.run(["rm", "-rf", self.remote], timeout=120)
        self.remote = None

    def effective_config(self, cell, probe=None, metadata=None):
        base = super().effective_config(cell, probe, metadata) if hasattr(super(), "effective_config") else {}
        return {**base, "env": self.name, "backend": self.backend, "vcpus": self.vcpus,
                "arch": getattr(self, "arch", None), "memory_bytes": self.mem_mib << 20}

    def metadata(self):
        meta = super().metadata()
        meta.update(backend=self.backend, vcpus=self.vcpus, mem_mib=self.mem_mib,
                    arch=getattr(self, "arch", None))
        if hasattr(self, "xl_info"):
            meta.update(xen_version=self.xl_info.get("xen_version"), dom0_kernel=self.dom0_kernel,
                        xen_total_memory_mib=_number(self.xl_info.get("total_memory")),
                        xen_caps=self.xl_info.get("xen_caps"))
        if hasattr(self, "domu"):
            meta["domu_kernel"] = self.domu.kernel_description
        if hasattr(self, "boot_seconds"):
            meta["domu_boot_seconds"] = self.boot_seconds
        return meta

    # -- helpers -----------------------------------------------------------------------

    def _driver(self, argv, timeout):
        proc = self.target.run(["sh", f"{self.remote}/driver.sh", argv[0], self.remote, self.domain, *argv[1:]],
                               timeout=timeout)
        return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")

    def _ship_disk(self):
        import gzip
        import shutil
        from measure.guest.disk import multi_disk_image
        image = multi_disk_image(self._sizes or [4096])
        if not self._sizes:
            self._sizes = [4096]
        with tempfile.TemporaryDirectory() as tmp:
            packed = Path(tmp) / "disk.img.gz"
            with open(image, "rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            self.target.put(packed, f"{self.remote}/disk.img.gz")
        if self.backend == "file":
            self.disk_path = f"{self.remote}/xvda.img"
            script = 'gunzip -c "$1" > "$2" && rm -f "$1"'
        else:
            self.disk_path = self.device
            if self.target.run(["test", "-b", self.device], timeout=30).returncode != 0:
                raise UserError(f"xen: disk={self.device} is not a block device on {self.target.name}")
            script = 'gunzip -c "$1" | dd of="$2" bs=1M conv=fsync 2>/dev/null && rm -f "$1"'
        self.target.run(["sh", "-c", script, "sh", f"{self.remote}/disk.img.gz", self.disk_path],
                        timeout=1800, check=True)

    def _config(self, name: str) -> str:
        target = self.disk_path
        lines = [f'name = "{name}"', f'kernel = "{self.remote}/kernel"', f'ramdisk = "{self.remote}/initrd.gz"',
                 'extra = "console=hvc0 quiet loglevel=1 panic=2"',
                 f"memory = {self.mem_mib}", f"vcpus = {self.vcpus}",
                 f"disk = [ 'format=raw, vdev=xvda, access=rw, target={target}' ]",
                 'on_poweroff = "destroy"', 'on_reboot = "destroy"', 'on_crash = "destroy"']
        if self.arch == "x86_64":
            lines.insert(1, 'type = "pv"')     # PV: no VT-x needed (and none under TCG)
        return "\n".join(lines) + "\n"

    def _boot(self):
        name = f"edgeio-{secrets.token_hex(4)}"
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "domu.cfg"
            cfg.write_text(self._config(name))
            self.target.put(cfg, f"{self.remote}/domu.cfg")
        self.domain = name
        t0 = time.monotonic()
        rc, out = self._driver(["start", f"{int(self.boot_timeout)}"], self.boot_timeout + 120)
        if rc != 0:
            self._down_after_failure()      # nothing left behind: domain, console reader
            why = {124: f"did not come up within {self.boot_timeout:g} s (destroyed)",
                   3: "failed to boot (the domain is gone)"}.get(rc, f"driver exit {rc}")
            raise CellFailed(f"xen: domU {why} ({self._label()}); console ends:\n{_tail(out)}", out)
        self.boot_seconds = round(time.monotonic() - t0, 3)
        self.ready_line = out.strip().splitlines()[-1] if out.strip() else ""

    def _down_after_failure(self):
        """The driver destroyed a hung domU (or it died): stop its reader; the next cell reboots."""
        try:
            self._driver(["stop"], 90)
        except (UserError, TimeoutError, CellFailed):
            pass
        self.domain = None

    def _label(self) -> str:
        return f"{getattr(self, 'arch', '?')} mem={self.mem_mib} MiB backend={self.backend}"

    def _cell_metadata(self, probe: dict, wall: float) -> dict:
        meta = {"xen_version": self.xl_info.get("xen_version"), "dom0_kernel": self.dom0_kernel,
                "domu_kernel": self.domu.kernel_description, "guest_arch": self.arch,
                "guest_mem_mib": self.mem_mib, "vcpus": self.vcpus, "backend": self.backend,
                "disk": self.disk_path, "domain": self.domain, "domu_boot_seconds": self.boot_seconds,
                "cell_wall_seconds": round(wall, 3),
                "cell_overhead_seconds": round(wall - float(probe.get("total_seconds") or 0), 3)}
        for key, value in probe.items():
            if key.startswith(("guest_block_", "guest_warmup", "guest_uptime")) or key in ("guest_mem_total_bytes", "guest_kernel"):
                meta[key] = value
        return meta


def _xl_info(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def _number(value):
    try:
        return int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def _tail(out: str, lines: int = 25) -> str:
    text = out.split(TAIL_MARK, 1)[1] if TAIL_MARK in out else out
    kept = [ln for ln in text.replace("\r", "").strip().splitlines() if ln.strip()][-lines:]
    return "\n".join(kept) if kept else "(the domU printed nothing)"
