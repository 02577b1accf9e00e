"""hvt: the probe as a Solo5 hvt unikernel on KVM, its disk a file on the target.

The tender is edgeio's own hvt-ABI-compatible monitor (unikernel/tender) unless
tender=solo5 picks a stock `solo5-hvt` from the target's PATH. Each cell gets a
fresh disk image of the cell's size (written, not sparse, so reads hit data), one
tender run with the study's 512 MiB, and the probe's JSON from the console.
transport=ring (requests posted in a ring, one notification per `batch`) and
transport=mapped (the disk file mapped into guest memory) are edgeio extensions
(unikernel/README.md).
"""

import json
import shlex

from edgeio.errors import UserError
from edgeio.limits import HVT_BLOCKS_PER_CALL, HVT_COPY_ALIGN, HVT_MEM_MIB, HVT_RING_BATCH, HVT_SECTOR_SIZE
from edgeio.limits import HVT_RING_DEFAULT_BATCH as RING_BATCH
from edgeio.records import PRIMITIVES
from measure.environments.base import (CellFailed, CellResult, Environment, Unavailable,
                                       check_absolute_path, check_free_space, filesystem_facts, int_param)
from measure.targets import kvm_kind

FLUSH_POLICIES = ("none", "each-write", "on-request")
TENDERS = ("edgeio", "solo5")
TRANSPORTS = ("hvt", "ring", "mapped")
MAPPED_PAGE = 4096                      # a mapped disk is whole pages
DISK_NAME = "storage"                   # the probe's manifest declares this block device
MIN_MEM_MIB = 4                         # image, stack and the smallest buffers
STACK_AND_IMAGE = 2 << 20               # guest memory besides the probe's data buffers
# stock solo5-hvt's limits, as the edgeio tender's, per guest arch (HVT_MEM_MIB: the larger)
MAX_MEM_MIB = {"x86_64": 1024, "aarch64": 4096}
MAX_SPAN = 1 << 20                      # the probe reuses a buffer of at most 1 MiB
DISK_IMAGE_SUFFIXES = (".img", ".raw", ".disk")


def _int_param(name: str, value: str, lo: int, hi: int) -> int:
    return int_param("hvt", name, value, lo, hi)


class HvtEnvironment(Environment):
    name = "hvt"
    description = "Solo5 hvt unikernel on KVM (edgeio tender or stock solo5-hvt)"
    params_spec = {
        "tender": "edgeio",         # edgeio | solo5 (a stock solo5-hvt on PATH)
        "flush": "none",            # none (stock) | each-write (the study's tender) | on-request
        "blocks_per_call": "1",     # 1 = stock Solo5; k > 1 = the multi-block extension
        "sector_size": "512",
        "mem": "512",               # MiB, as the study
        "dir": "/var/tmp",          # where disk images go (the linux env's default too)
        "disk": "",                 # an existing device or image (*.img, *.raw, *.disk) to use instead: overwritten
        "unikernel": "",            # another probe unikernel (path on the target) instead of the built one
        "transport": "hvt",         # hvt (a hypercall per call) | ring | mapped (edgeio extensions)
        "batch": "",                # ring: requests per notification (default 64)
    }
    # the path params; the numeric and choice ones are checked in __init__
    param_checks = {key: check_absolute_path("hvt", key) for key in ("dir", "disk", "unikernel")}

    def __init__(self, target, params=None, workdir=None):
        super().__init__(target, params, workdir)
        p = self.params
        if p["tender"] not in TENDERS:
            raise UserError(f"hvt: --param tender={p['tender']!r}: use edgeio or solo5")
        if p["flush"] not in FLUSH_POLICIES:
            raise UserError(f"hvt: --param flush={p['flush']!r}: use {', '.join(FLUSH_POLICIES)}")
        self.blocks = _int_param("blocks_per_call", p["blocks_per_call"], *HVT_BLOCKS_PER_CALL)
        self.sector = _int_param("sector_size", p["sector_size"], *HVT_SECTOR_SIZE)
        if self.sector & (self.sector - 1):
            raise UserError(f"hvt: --param sector_size={self.sector}: must be a power of two")
        self.mem = _int_param("mem", p["mem"], *HVT_MEM_MIB)
        if self.mem < MIN_MEM_MIB:
            raise UserError(f"hvt: --param mem={self.mem} MiB is too small for the probe unikernel "
                            f"(at least {MIN_MEM_MIB} MiB)")
        if p["transport"] not in TRANSPORTS:
            raise UserError(f"hvt: --param transport={p['transport']!r}: use {', '.join(TRANSPORTS)}")
        if p["batch"] and p["transport"] != "ring":
            raise UserError("hvt: --param batch applies to transport=ring only")
        self.batch = _int_param("batch", p["batch"], *HVT_RING_BATCH) if p["batch"] else (
            RING_BATCH if p["transport"] == "ring" else 1)
        if p["transport"] != "hvt" and p["tender"] == "solo5":
            raise UserError(f"hvt: transport={p['transport']} is an edgeio extension: not with tender=solo5")
        if p["transport"] == "mapped" and p["flush"] == "each-write":
            raise UserError("hvt: transport=mapped has no write exits to flush after: "
                            "use flush=on-request (or none)")
        if p["tender"] == "solo5" and p["flush"] != "none":
            raise UserError("hvt: tender=solo5 never flushes: flush=each-write and on-request "
                            "need the edgeio tender")

    # -- checks -------------------------------------------------------------------------
    def _facts(self) -> dict:
        if not hasattr(self, "_host"):
            from measure.hvt_build import ARCHES
            machine = self.target.run(["uname", "-m"], timeout=30).stdout.decode().strip()
            if machine not in ARCHES:
                raise Unavailable(f"hvt: no tender for arch {machine!r} on target {self.target.name} "
                                  "(x86_64 or aarch64)")
            kvm = self.target.run(["test", "-c", "/dev/kvm"], timeout=30).returncode == 0
            self._host = {"arch": ARCHES[machine],
                          "kvm": kvm_kind(self.target.read_text("/proc/cpuinfo"), machine, kvm)}
        return self._host

    def check(self):
        facts = self._facts()
        if self.mem > MAX_MEM_MIB[facts["arch"]]:
            raise UserError(f"hvt: --param mem={self.mem}: an {facts['arch']} guest gets at most "
                            f"{MAX_MEM_MIB[facts['arch']]} MiB (stock solo5-hvt's limit)")
        if facts["kvm"] == "absent":
            raise Unavailable(f"hvt: /dev/kvm is absent on target {self.target.name}: "
                              "the hvt tender needs KVM")
        if self.target.run(["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"], timeout=30).returncode != 0:
            raise Unavailable(f"hvt: /dev/kvm on target {self.target.name} is not readable and "
                              "writable by this user (add it to the kvm group)")
        if self.params["tender"] == "solo5" and not self.target.which("solo5-hvt"):
            raise Unavailable(f"hvt: tender=solo5 but no solo5-hvt on the PATH of target "
                              f"{self.target.name} (install Solo5, or use tender=edgeio)")

    def _blocks_for(self, cell: dict) -> int:
        """Blocks per call: the param, or what the cell's io_size asks for."""
        io = cell.get("io_size_bytes")
        if not io:
            return self.blocks
        if io % self.sector:
            raise UserError(f"hvt: io size {io} B is not a whole number of {self.sector} B sectors")
        return io // self.sector

    def preflight(self, cells):
        for cell in cells:
            if cell["op"] in PRIMITIVES and self.params["tender"] != "edgeio":
                raise UserError(f"hvt: the primitive {cell['op']!r} runs on the edgeio tender only "
                                "(stock solo5-hvt has no counters and no ring)")
            size, k = cell["size_bytes"], self._blocks_for(cell)
            if cell["op"] == "copy":        # a copy in guest memory: no block call
                if size % HVT_COPY_ALIGN:
                    raise UserError(f"hvt: the copy primitive's size {size} B is not a multiple of "
                                    f"{HVT_COPY_ALIGN} B")
            elif size % (self.sector * k):
                raise UserError(f"hvt: size {size} B is not a multiple of sector_size x blocks_per_call "
                                f"({self.sector} x {k} B)")
            if cell.get("cache") == "cold" or cell.get("direct"):
                raise UserError("hvt: --cold and --direct do not apply: the unikernel has no page "
                                "cache, the tender's host file goes through the host's")
            need = 2 * min(size, MAX_SPAN) + STACK_AND_IMAGE
            if need > self.mem << 20:
                raise UserError(f"hvt: mem={self.mem} MiB is too small for a {size} B cell "
                                f"(needs {need / 2**20:.1f} MiB)")
        if self.params["disk"]:
            self._check_disk(max((c["size_bytes"] for c in cells), default=0))
        elif cells:
            need = max(c["size_bytes"] for c in cells) + (16 << 20)
            check_free_space(self.target, self.params["dir"], need, "hvt disk images")
        if self.params["unikernel"] and self.target.run(
                ["test", "-f", self.params["unikernel"]], timeout=30).returncode != 0:
            raise UserError(f"hvt: unikernel {self.params['unikernel']} not found on target {self.target.name}")

    def _check_disk(self, size: int):
        disk = self.params["disk"]
        proc = self.target.run(["blockdev", "--getsize64", disk], timeout=30)
        if proc.returncode != 0:
            proc = self.target.run(["stat", "-L", "-c", "%s", disk], timeout=30)
            if proc.returncode == 0 and not disk.endswith(DISK_IMAGE_SUFFIXES):
                # the cells overwrite it: a file that is no disk image is someone's data
                raise UserError(f"hvt: --param disk={disk}: the cells overwrite it; name a block device "
                                f"or a disk image file ({', '.join('*' + x for x in DISK_IMAGE_SUFFIXES)})")
        if proc.returncode != 0:
            raise UserError(f"hvt: disk {disk} not found on target {self.target.name}")
        have = int(proc.stdout.decode().split()[0])
        if have % self.sector:
            raise UserError(f"hvt: disk {disk} is {have} B, not a multiple of the {self.sector} B sector size")
        if have < size:
            raise UserError(f"hvt: disk {disk} is {have} B, smaller than the {size} B cell")

    # -- campaign -----------------------------------------------------------------------
    def prepare(self):
        from measure.hvt_build import build
        facts = self._facts()
        self.workdir = self.make_workdir(self.params["dir"])
        self.fs = filesystem_facts(self.target, self.workdir)
        artifacts = build(facts["arch"])
        self.digest = artifacts.digest
        if self.params["unikernel"]:
            self.probe = self.params["unikernel"]
        else:
            self.probe = f"{self.workdir}/probe.hvt"
            self.target.put(artifacts.probe, self.probe, mode=0o644)
        if self.params["tender"] == "solo5":
            self.tender = self.target.which("solo5-hvt")
            if not self.tender:
                raise Unavailable(f"hvt: no solo5-hvt on the PATH of target {self.target.name}")
        else:
            self.tender = f"{self.workdir}/edgeio-hvt"
            self.target.put(artifacts.tender, self.tender, mode=0o755)

    def tender_argv(self, disk: str, blocks: int) -> list[str]:
        argv = [self.tender, f"--mem={self.mem}", f"--block:{DISK_NAME}={disk}"]
        if self.sector != 512 or self.params["tender"] == "edgeio":
            argv.append(f"--block-sector-size:{DISK_NAME}={self.sector}")
        if self.params["tender"] == "edgeio":
            argv += [f"--flush={self.params['flush']}", f"--max-blocks-per-call={blocks}", "--counters"]
        if self.params["transport"] != "hvt":
            argv.append(f"--transport={self.params['transport']}")
        return argv

    def guest_transport_args(self) -> list[str]:
        t = self.params["transport"]
        return [] if t == "hvt" else [f"transport={t}"] + ([f"batch={self.batch}"] if t == "ring" else [])

    def _argv(self, cell: dict, disk: str, blocks: int) -> list[str]:
        """Tender and guest command line of a cell. A primitive (the calibration protocol's
        micro-probes, probe.c) runs on the transport it measures whatever the campaign's:
        the ring's on a ring of RING_BATCH, the others on plain hvt; no flush policy."""
        op = cell["op"]
        guest = [f"op={op}", f"size={cell['size_bytes']}", f"reps={cell['reps']}",
                 f"batches={cell.get('batches') or 100}", f"blocks={blocks}"]
        if op not in PRIMITIVES:
            return self.tender_argv(disk, blocks) + [self.probe] + guest + self.guest_transport_args()
        argv = [self.tender, f"--mem={self.mem}", f"--block:{DISK_NAME}={disk}",
                f"--block-sector-size:{DISK_NAME}={self.sector}", "--flush=none",
                f"--max-blocks-per-call={blocks}", "--counters"]
        if op == "ring":
            return argv + ["--transport=ring", self.probe] + guest + ["transport=ring", f"batch={RING_BATCH}"]
        return argv + [self.probe] + guest

    def run(self, cell, timeout=None):
        from measure.probe_build import parse_probe_output
        if not hasattr(self, "tender"):
            self.prepare()
        size, blocks = cell["size_bytes"], self._blocks_for(cell)
        own_disk = not self.params["disk"]
        disk = f"{self.workdir}/disk-{cell.get('cell_id', 'cell')}.img" if own_disk else self.params["disk"]
        argv = self._argv(cell, disk, blocks)
        log = ""
        try:
            if own_disk:
                pages = self.params["transport"] == "mapped"
                # a primitive needs a disk to acquire, of at least one sector (the tender's floor)
                disk_bytes = _round_up(max(size, self.sector), self.sector) if cell["op"] in PRIMITIVES else size
                log += self._make_disk(disk, _round_up(disk_bytes, MAPPED_PAGE) if pages else disk_bytes, timeout)
            log += f"$ {shlex.join(argv)}\n"
            try:
                proc = self.target.run(argv, timeout=timeout)
            except TimeoutError as e:
                raise CellFailed(f"hvt: {e}", log) from None
        finally:
            if own_disk:
                self.target.run(["rm", "-f", disk], timeout=60)
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        log += out + err
        counters = _counters(err)
        if proc.returncode != 0:
            raise CellFailed(f"hvt: exit {proc.returncode}: {_reason(out, err)}", log)
        try:
            probe = parse_probe_output(out)
        except UserError as e:
            raise CellFailed(f"hvt: {e}", log) from None
        meta = {"tender": self.params["tender"], "tender_path": self.tender,
                "flush": self.params["flush"], "blocks_per_call": blocks, "sector_size": self.sector,
                "mem_mib": self.mem, "transport": self.params["transport"], "batch": self.batch, "kvm": self._facts()["kvm"], "arch": self._facts()["arch"],
                "build": getattr(self, "digest", ""), **getattr(self, "fs", {})}
        if counters:
            meta["counters"] = counters
            # the edgeio tender's syscall filter (seccomp, NoNewPrivs): on unless --no-seccomp
            meta["seccomp"] = counters.get("seccomp")
        return CellResult(probe=probe, metadata=meta, log=log)

    def _make_disk(self, disk: str, size: int, timeout) -> str:
        """A disk image of real zeros (not sparse: reads must find data on the device)."""
        bs = 1 << 20
        while size % bs:
            bs //= 2
        argv = ["dd", "if=/dev/zero", f"of={disk}", f"bs={bs}", f"count={size // bs}", "status=none"]
        proc = self.target.run(argv, timeout=timeout)
        if proc.returncode != 0:
            raise CellFailed(f"hvt: making the disk image failed: {proc.stderr.decode(errors='replace').strip()}",
                             f"$ {shlex.join(argv)}\n")
        return f"$ {shlex.join(argv)}\n"

    def teardown(self):
        if getattr(self, "workdir", None):
            self.target.run(["rm", "-rf", self.workdir], timeout=120)

    def memory_bytes(self):
        return self.mem << 20

    def effective_config(self, cell, probe=None, metadata=None):
        """Blocks per call and block size as the unikernel reports them, the flush policy
        as the tender's counters report it (stock solo5-hvt never flushes)."""
        probe, meta = probe or {}, metadata or {}
        counters = meta.get("counters") or {}
        blocks = int(probe.get("blocks_per_call") or self._blocks_for(cell))
        sector = int(probe.get("block_size") or self.sector)
        transport = counters.get("transport") or self.params.get("transport", "hvt")   # issue-14's
        if cell["op"] in PRIMITIVES:
            transport = "ring" if cell["op"] == "ring" else "hvt"
        return {**super().effective_config(cell, probe, metadata),
                "io_size_bytes": int(probe.get("io_size") or min(blocks * sector, int(cell["size_bytes"]))),
                "direct": False, "cache": "warm",    # no guest page cache; preflight refuses the others
                "tender": self.params["tender"], "transport": transport,
                "blocks_per_call": blocks,
                "batch": int(probe.get("batch") or self.batch) if transport == "ring" else 1,   # the guest's
                "flush": ("none" if cell["op"] in PRIMITIVES else
                          counters.get("flush") or (self.params["flush"] if self.params["tender"] == "edgeio" else "none")),
                "block_size": sector}

    def metadata(self):
        meta = {**super().metadata(), **getattr(self, "fs", {})}
        if hasattr(self, "_host"):
            meta.update(kvm=self._host["kvm"], arch=self._host["arch"])
        if hasattr(self, "digest"):
            meta["build"] = self.digest
        return meta


def _counters(stderr: str) -> dict | None:
    """The tender's --counters JSON line from its stderr, if there is one."""
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"edgeio_hvt_counters"'):
            try:
                return json.loads(line)["edgeio_hvt_counters"]
            except (ValueError, KeyError):
                return None
    return None


def _reason(stdout: str, stderr: str) -> str:
    """One line saying why a run failed: the tender's message, else the probe's error."""
    for line in stderr.splitlines():
        if line.startswith(("edgeio-hvt:", "solo5-hvt:")):
            return line.strip()
    for line in reversed(stdout.splitlines()):
        if '"probe"' in line:
            try:
                err = json.loads(line[line.find("{"):]).get("error")
            except ValueError:
                err = None
            if err:
                return f"probe: {err}"
    tail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or ["(no output)"]
    return tail[0][:300]


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit
