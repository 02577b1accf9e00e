"""qemu: the probe in a Linux guest under QEMU (KVM where the CPU virtualizes, else TCG).

The guest (measure/guest) is Debian's kernel with busybox and the static probe in an
initramfs; the probe's file lives on an ext4 disk image attached as a paravirtual
(virtio) or emulated (IDE, AHCI) disk. The probe's arguments travel on the kernel
command line and its JSON comes back on the serial console, extended with the
guest's block-device counters, which is what makes the study's page-cache effect
visible: a file bigger than the guest's page cache is read from the device on every
repetition.

Each cell boots a fresh guest. Its file is already in the disk image (written by the
host, real blocks), so the guest page cache starts cold; for a warm read (the study's)
the init reads the file once, untimed, as the native probe has just written its file
(guest_warmup_reads_bytes counts that read apart from the probe's).
"""

import re
import shlex

from edgeio.errors import UserError
from edgeio.units import format_size
from edgeio.limits import QEMU_MIN_MEM_MIB
from edgeio.parse import MAX_DURATION_S
from measure.environments.base import (CellFailed, CellResult, Environment, Unavailable,
                                       check_free_space, float_param, int_param, probe_args)
from measure.targets import kvm_kind

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
CACHE_MODES = ("writeback", "none", "writethrough", "unsafe")
DISKS = {"x86_64": ("virtio", "ide", "ahci"), "aarch64": ("virtio", "ahci")}
DEFAULT_DIR = "/var/tmp"   # not /tmp: a tmpfs refuses cache=none (O_DIRECT)
SERIAL_TAIL_LINES = 25
_TIMES = re.compile(r"edgeio-times (\S+) (\S+) (\S+)")
_POWER_DOWN = re.compile(r"\[\s*(\d+\.\d+)\] reboot: Power down")
# Runs QEMU under coreutils' timeout on the target, and stamps start, last serial write
# and end on the target's clock. The argv arrives as positional parameters, never as text.
_WRAPPER = ('log=$1; t=$2; shift 2; s=$(date +%s.%N); timeout -k 5 "$t" "$@"; rc=$?; '
            'e=$(date +%s.%N); m=$(date -r "$log" +%s.%N 2>/dev/null || echo 0); '
            'echo "edgeio-times $s $m $e"; exit $rc')


class QemuEnvironment(Environment):
    name = "qemu"
    description = "Linux guest (Debian kernel, busybox) under QEMU, probe file on a virtual ext4 disk"
    params_spec = {
        "arch": "host",         # x86_64 | aarch64 (qemu-system-aarch64 -M virt, the Pi's path)
        "mem": "2048",          # guest MiB, as the study's VM
        "disk": "virtio",       # virtio (paravirtual) | ide | ahci (emulated)
        "cache": "writeback",   # QEMU -drive cache=
        "accel": "auto",        # auto | kvm | tcg
        "cpus": "1",
        "timeout": "900",       # seconds per guest run
        "disk_mib": "auto",     # disk image size; auto = the file plus a margin
        "dir": DEFAULT_DIR,     # where the images go on the target
    }

    def __init__(self, target, params=None, workdir=None):
        super().__init__(target, params, workdir)
        self._explicit = dict(params or {})
        p = self.params
        self.mem_mib = _int_param(p, "mem", QEMU_MIN_MEM_MIB)
        self.cpus = _int_param(p, "cpus", 1, maximum=1024)
        self.timeout = _float_param(p, "timeout")
        self.disk_mib = None if p["disk_mib"] == "auto" else _int_param(p, "disk_mib", 1)
        if p["cache"] not in CACHE_MODES:
            raise UserError(f"qemu: cache={p['cache']!r}: use one of {', '.join(CACHE_MODES)}")
        if p["accel"] not in ("auto", "kvm", "tcg"):
            raise UserError(f"qemu: accel={p['accel']!r}: use auto, kvm or tcg")
        if p["disk"] not in DISKS["x86_64"]:
            raise UserError(f"qemu: disk={p['disk']!r}: use virtio, ide or ahci")
        if p["arch"] != "host":
            if p["arch"] not in ARCHES:
                raise UserError(f"qemu: arch={p['arch']!r}: use x86_64 or aarch64")
            self.arch = ARCHES[p["arch"]]
            self._check_disk()
        self._shipped: dict[int, str] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def check(self):
        facts = self._host()
        if not hasattr(self, "arch"):
            self.arch = facts["arch"]
            self._check_disk()
        self.qemu = f"qemu-system-{self.arch}"
        for program, package in ((self.qemu, "qemu-system-x86" if self.arch == "x86_64" else "qemu-system-arm"),
                                 ("timeout", "coreutils")):
            if not self.target.which(program):
                raise Unavailable(f"qemu: {program} not found on target {self.target.name} "
                                  f"(apt-get install {package})")
        self.accel, self.accel_reason = self._choose_accel(facts)
        proc = self.target.run([self.qemu, "--version"], timeout=60)
        first = proc.stdout.decode(errors="replace").splitlines()[:1]
        self.qemu_version = first[0].replace("QEMU emulator version ", "") if first else "unknown"
        from measure.guest.packages import check_available
        try:
            check_available(self.arch)
        except UserError as e:
            raise Unavailable(f"qemu: {e}") from None

    def preflight(self, cells):
        self._sizes = sorted({c["size_bytes"] for c in cells})
        # "too small" (disk_mib) is bad input: _image_bytes says so before anything runs
        need = sum(self._image_bytes(size) for size in self._sizes)
        check_free_space(self.target, self.workdir or self.params["dir"], need, "qemu disk images")

    def prepare(self):
        from measure.guest import build_guest
        if not hasattr(self, "accel"):
            self.check()
        self.guest = build_guest(self.arch)
        if self.params["disk"] not in self.guest.transports:
            raise UserError(f"qemu: the guest kernel {self.guest.release} cannot drive disk={self.params['disk']}")
        if self.workdir:
            self.remote = f"{self.workdir}/qemu"
            self.target.run(["mkdir", "-p", self.remote], timeout=60, check=True)
        else:
            self.remote = self.make_workdir(self.params["dir"])
        self.target.put(self.guest.kernel, f"{self.remote}/kernel")
        self.target.put(self.guest.initrd, f"{self.remote}/initrd.gz")
        for size in getattr(self, "_sizes", []):   # here, not in the cells' timed run()
            self._disk_for(size)

    def run(self, cell, timeout=None):
        if not hasattr(self, "guest"):
            self.prepare()
        limit = self._timeout(timeout)
        disk = self._disk_for(cell["size_bytes"])
        serial = f"{self.remote}/serial-{re.sub(r'[^A-Za-z0-9_.-]', '_', str(cell.get('cell_id', 'cell')))}.log"
        self.target.run(["rm", "-f", serial], timeout=60)
        argv = self.qemu_argv(cell, disk, serial)
        wrapped = ["sh", "-c", _WRAPPER, "edgeio-qemu", serial, f"{limit:g}", *argv]
        try:
            proc = self.target.run(wrapped, timeout=limit + 30)
            rc, out, err = proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        except TimeoutError:
            rc, out, err = 124, "", "(the target did not return)"
        console = (self.target.read_text(serial) or "").replace("\r", "")
        self.target.run(["rm", "-f", serial], timeout=60)
        log = f"$ {shlex.join(argv)}\n{console}" + (f"\n[qemu stderr]\n{err}" if err.strip() else "")
        if rc == 124:
            raise CellFailed(f"guest timed out after {limit:g} s ({self._label()}); "
                             f"serial log ends:\n{_tail(console)}", log)
        if rc != 0:
            raise CellFailed(f"{self.qemu} exit {rc} ({self._label()}): {err.strip()[-300:]}\n"
                             f"serial log ends:\n{_tail(console)}", log)
        from measure.probe_build import parse_probe_output
        try:
            probe = parse_probe_output(console)
        except UserError:
            raise CellFailed(f"guest printed no probe result ({self._label()}); serial log ends:\n"
                             f"{_tail(console)}", log) from None
        if probe.get("errno") or probe.get("probe_exit"):
            raise CellFailed(f"probe failed in the guest: {probe.get('error') or 'exit ' + str(probe.get('probe_exit'))}"
                             f" (errno {probe.get('errno')})", log)
        return CellResult(probe=probe, metadata=self._cell_metadata(probe, console, out), log=log)

    def teardown(self):
        if getattr(self, "remote", None) and not self.workdir:
            self.target.run(["rm", "-rf", self.remote], timeout=120)
        self.remote = None
        self._shipped = {}

    def memory_bytes(self):
        return self.mem_mib << 20          # the guest's, as given to -m

    def effective_config(self, cell, probe=None, metadata=None):
        meta = metadata or {}
        return {**super().effective_config(cell, probe, metadata),
                "disk": meta.get("transport") or self.params["disk"],
                "cache_mode": meta.get("cache") or self.params["cache"],
                "accel": meta.get("accel") or getattr(self, "accel", None),
                "arch": meta.get("guest_arch") or getattr(self, "arch", None)}

    def metadata(self):
        meta = super().metadata()
        for key in ("arch", "accel", "accel_reason", "qemu_version"):
            if hasattr(self, key):
                meta[key] = getattr(self, key)
        if hasattr(self, "guest"):
            meta["guest_kernel"] = self.guest.kernel_description
        meta.update(machine=self._machine() if hasattr(self, "arch") else None,
                    transport=self.params["disk"], cache=self.params["cache"], mem_mib=self.mem_mib)
        return meta

    # -- the QEMU command line -----------------------------------------------------------

    def qemu_argv(self, cell: dict, disk: str, serial: str) -> list[str]:
        args = ["--path", "/mnt/data"] + probe_args(cell)
        for a in args:
            if not re.fullmatch(r"[A-Za-z0-9_./=-]+", a):
                raise UserError(f"qemu: probe argument {a!r} cannot travel on a kernel command line")
        console = "ttyS0" if self.arch == "x86_64" else "ttyAMA0"
        append = (f"console={console} quiet panic=-1 edgeio.disk={self.params['disk']} "
                  f"edgeio.probe={','.join(args)}")
        cpu = "host" if self.accel == "kvm" else ("cortex-a72" if self.arch == "aarch64" else "qemu64")
        machine = self._machine()
        if self.arch == "aarch64" and self.accel == "kvm":
            machine += ",gic-version=host"     # KVM can only offer the host's GIC (v2 on a Pi 4)
        argv = [self.qemu, "-M", machine, "-accel", self.accel, "-cpu", cpu,
                "-m", str(self.mem_mib), "-smp", str(self.cpus),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{serial}",
                "-kernel", f"{self.remote}/kernel", "-initrd", f"{self.remote}/initrd.gz",
                "-append", append]
        return argv + self._disk_args(disk)

    def _machine(self) -> str:
        if self.arch == "aarch64":
            return "virt"
        # One machine type for every disk, so that a transport what-if (ide vs virtio)
        # changes the transport only: under TCG the pc machine alone ran a cached 1 MiB
        # read ~1.6x slower than q35 (both virtio-blk), which a disk comparison across
        # machine types took for the disk's cost.
        return "q35"

    def _disk_args(self, disk: str) -> list[str]:
        cache, kind = self.params["cache"], self.params["disk"]
        drive = ["-drive", f"file={disk},format=raw,if=none,id=d0,cache={cache}"]
        if kind == "ide":       # a PIIX3 IDE controller (the pc machine's) added to q35; ata_piix drives it
            return drive + ["-device", "piix3-ide,id=pide", "-device", "ide-hd,drive=d0,bus=pide.0"]
        if kind == "virtio":
            return drive + ["-device", "virtio-blk-pci,drive=d0"]
        if self.arch == "x86_64":   # q35's built-in ICH9 AHCI controller
            return drive + ["-device", "ide-hd,drive=d0,bus=ide.0"]
        return drive + ["-device", "ich9-ahci,id=ahci", "-device", "ide-hd,drive=d0,bus=ahci.0"]

    # -- helpers -----------------------------------------------------------------------

    def _check_disk(self):
        disk = self.params["disk"]
        if disk not in DISKS[self.arch]:
            if self.arch == "aarch64" and disk == "ide":
                raise UserError("qemu: disk=ide does not exist on aarch64: qemu-system-aarch64 -M virt "
                                "has no IDE controller; its emulated disk is disk=ahci (ICH9 AHCI on PCIe)")
            raise UserError(f"qemu: disk={disk!r} on {self.arch}: use {', '.join(DISKS[self.arch])}")

    def _host(self) -> dict:
        proc = self.target.run(["uname", "-m"], timeout=30)
        machine = proc.stdout.decode().strip()
        try:
            kvm = self.target.run(["test", "-c", "/dev/kvm"], timeout=30).returncode == 0
        except (UserError, TimeoutError):
            kvm = False
        arch = ARCHES.get(machine, machine)
        kind = kvm_kind(self.target.read_text("/proc/cpuinfo"), machine, kvm)
        if "arch" not in self._explicit and arch not in DISKS:
            raise Unavailable(f"qemu: no guest for host arch {machine!r}: give --param arch=x86_64 or aarch64")
        return {"arch": arch, "kvm": kind}

    def _choose_accel(self, facts: dict) -> tuple[str, str]:
        """Decide before booting: a software KVM (no VT-x/AMD-V) would boot Linux for hours."""
        want = self.params["accel"]
        if facts["arch"] != self.arch:
            if want == "kvm":
                raise Unavailable(f"qemu: accel=kvm cannot run a {self.arch} guest on a {facts['arch']} host")
            return "tcg", f"{self.arch} guest on a {facts['arch']} host: emulated (TCG)"
        if want == "tcg":
            return "tcg", "asked for (accel=tcg)"
        if facts["kvm"] == "hardware":
            return "kvm", "hardware virtualization present"
        if want == "kvm":
            why = ("/dev/kvm is absent" if facts["kvm"] == "absent" else
                   "/dev/kvm is a software hypervisor here (no vmx/svm CPU flag): a Linux guest "
                   "does not boot in useful time")
            raise Unavailable(f"qemu: accel=kvm: {why}; use accel=tcg or auto")
        return "tcg", ("no /dev/kvm" if facts["kvm"] == "absent" else
                       "/dev/kvm without hardware virtualization (software KVM): TCG instead")

    def _timeout(self, timeout):
        if "timeout" in self._explicit or timeout is None:
            return self.timeout
        return float(timeout)

    def _image_bytes(self, size: int) -> int:
        from measure.guest import default_image_bytes, min_image_bytes
        if self.disk_mib is None:
            return default_image_bytes(size)
        image = self.disk_mib << 20
        if image < min_image_bytes(size):
            raise UserError(f"qemu: disk image of {self.disk_mib} MiB is too small for a {format_size(size)} "
                            f"file: give disk_mib >= {-(-min_image_bytes(size) >> 20)} or disk_mib=auto")
        return image

    def _disk_for(self, size: int) -> str:
        """The ext4 image holding the cell's file on the target, built and shipped once per size."""
        if size not in self._shipped:
            from measure.guest import disk_image
            local = disk_image(size, self._image_bytes(size))
            remote = f"{self.remote}/disk-{size}.img"
            self.target.put(local, remote)
            self._shipped[size] = remote
        return self._shipped[size]

    def _label(self) -> str:
        return f"{self.arch} {self.accel} disk={self.params['disk']}"

    def _cell_metadata(self, probe: dict, console: str, wrapper_out: str) -> dict:
        meta = {"qemu_version": self.qemu_version, "machine": self._machine(), "accel": self.accel,
                "cache": self.params["cache"], "transport": self.params["disk"],
                "guest_arch": self.arch, "guest_mem_mib": self.mem_mib,
                "guest_kernel": self.guest.kernel_description, "kernel_boot": self.guest.boot}
        for key, value in probe.items():
            if key.startswith(("guest_block_", "guest_warmup")) or key in ("guest_mem_total_bytes",
                                                                             "guest_cached_bytes"):
                meta[key] = value
        meta.update(_timings(probe, console, wrapper_out))
        return meta


def _timings(probe: dict, console: str, wrapper_out: str) -> dict:
    """Boot-to-probe and teardown seconds from the target's clock and the guest's uptime.

    The last serial write (the kernel's "Power down" line, guest uptime tp) is also the
    serial file's mtime m on the target: boot = (m - start) - (tp - probe start),
    teardown = (tp - probe end) + (end - m). Boot-to-probe includes mounting the disk
    and, for warm reads, the warm-up read (warmup_seconds, from the guest's uptime).
    """
    m = _TIMES.search(wrapper_out)
    if not m:
        return {}
    start, last, end = (float(x) for x in m.groups())
    out = {"qemu_wall_seconds": round(end - start, 3)}
    t0, t1 = probe.get("guest_uptime_probe_start_s"), probe.get("guest_uptime_probe_end_s")
    down = _POWER_DOWN.findall(console)
    if t0 is None or t1 is None or not last:
        return out
    tp = float(down[-1]) if down else t1
    tw = probe.get("guest_uptime_warmup_start_s", t0)
    out.update(boot_to_probe_seconds=round((last - start) - (tp - t0), 3),   # includes the warm-up
               warmup_seconds=round(t0 - tw, 3),
               probe_wall_seconds=round(t1 - t0, 3),
               teardown_seconds=round((tp - t1) + (end - last), 3))
    return out


def _int_param(p: dict, key: str, minimum: int, env: str = "qemu", maximum: int = 1 << 30) -> int:
    return int_param(env, key, p[key], minimum, maximum)


def _float_param(p: dict, key: str, env: str = "qemu") -> float:
    """Seconds: positive and finite (nan, inf refused), at most a year."""
    return float_param(env, key, p[key], above=0.0, hi=MAX_DURATION_S)


def _tail(console: str, lines: int = SERIAL_TAIL_LINES) -> str:
    kept = [ln for ln in console.strip().splitlines() if ln.strip()][-lines:]
    return "\n".join(kept) if kept else "(the guest printed nothing)"
