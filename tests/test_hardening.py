"""The hvt tender as a hardened monitor, tried as an attacker would: ELF manifests that
preset host-only fields, W+X / overlapping / unordered / misaligned segments, guests
that write through null, into text, rodata, boot info or page tables, read TLS they
never set up, run data, issue bad block requests, wait in poll; the syscall filter seen
from /proc and strace; a bounded fuzz smoke test against an ASan+UBSan build. In every
case the tender refuses (exit 2) or the guest traps (exit 3, one line) or gets EINVAL,
and no host file but the disk changes (checksums of the neighbours)."""

import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import HOST_ARCH, have_kvm, needs_host_arch

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(not have_kvm(), reason="/dev/kvm absent or not accessible: "
                                 "the hvt tender needs KVM")]

PF_X, PF_W, PF_R = 1, 2, 4
ENTRY = 104                 # sizeof(struct mft_entry)


@pytest.fixture(scope="module")
def hvt():
    from measure.hvt_build import build
    return build()


@pytest.fixture
def jail(tmp_path):
    """The disk with neighbours beside it; check() says which files changed (by sha256)."""
    d = tmp_path / "jail"
    d.mkdir()
    disk = d / "disk.img"
    disk.write_bytes(bytes(range(256)) * 256)                 # 64 KiB
    (d / "neighbour.img").write_bytes(b"\x5a" * 65536)
    (d / "notes.txt").write_bytes(b"must not change\n" * 64)

    def digests():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}
    before = digests()

    def changed():
        after = digests()
        return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return disk, changed


def run(hvt, guest, args, disk=None, extra=(), timeout=60, **kw):
    argv = [str(hvt.tender), *extra]
    if disk is not None:
        argv.append(f"--block:storage={disk}")
    argv += [str(guest), *args]
    return subprocess.run(argv, capture_output=True, timeout=timeout, **kw)


def error_lines(proc) -> list[str]:
    err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else proc.stderr
    return [ln for ln in err.splitlines() if not ln.startswith('{"edgeio_hvt_counters"')]


# -- ELF surgery ------------------------------------------------------------------------

def _phdrs(data):
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    return [(phoff + i * 56, list(struct.unpack_from("<IIQQQQQQ", data, phoff + i * 56)))
            for i in range(phnum)]


def _loads(data):
    return [(off, ph) for off, ph in _phdrs(data) if ph[0] == 1]


def _set_phdr(data, off, ph):
    struct.pack_into("<IIQQQQQQ", data, off, *ph)


def _mft_entry(data, index) -> int:
    """File offset of manifest entry index in the MFT1 note."""
    i = bytes(data).find(b"MFT1Solo5\0")
    assert i > 0
    return i + 24 + index * ENTRY          # type, name[8], pad, version, entries, then e[]


def _preset(handle, capacity=0, attached=1):
    def patch(d):
        e = _mft_entry(d, 1)
        struct.pack_into("<Q", d, e + 72, capacity)
        struct.pack_into("<Q", d, e + 88, handle)
        d[e + 96] = attached
    return patch


def _wx(d):
    off, ph = _loads(d)[0]
    ph[1] = PF_R | PF_W | PF_X
    _set_phdr(d, off, ph)


def _overlap(d):
    (_, text), (off, data) = _loads(d)[:2]
    data[3] = data[4] = text[3] + 0x1000 if text[5] > 0x1000 else text[3]   # inside the text
    _set_phdr(d, off, data)


def _unordered(d):
    (o1, a), (o2, b) = _loads(d)[:2]
    _set_phdr(d, o1, b)
    _set_phdr(d, o2, a)


def _misaligned(d):
    off, ph = _loads(d)[1]
    ph[3] += 8
    ph[4] += 8
    _set_phdr(d, off, ph)


def _entry_in_data(d):
    struct.pack_into("<Q", d, 24, _loads(d)[1][1][3])


def _sector(size):
    def patch(d):
        struct.pack_into("<H", d, _mft_entry(d, 1) + 80, size)
    return patch


def _reserved_named(d):
    d[_mft_entry(d, 0)] = ord("x")


ELF_ATTACKS = {
    # name: (patch, how the host side is set up, message). A guest choosing host file
    # descriptors: stdout with no --block at all; the disk itself, inherited by the
    # tender as an open fd whose number the ELF presets, with a claimed 1 GiB capacity
    # (the probe then writes 128 KiB to a 64 KiB disk); stdin (a neighbour file)
    "preset_stdout_no_block": (_preset(1, capacity=65536), "none", "presets fields only the tender fills"),
    "preset_disk_inflated": (None, "fd", "presets fields only the tender fills"),
    "preset_stdin": (_preset(0, attached=1), "block", "presets fields only the tender fills"),
    "preset_capacity_only": (_preset(0, capacity=1 << 30, attached=0), "block", "presets fields"),
    "sector_size_1": (_sector(1), "block", "declares a 1-byte sector"),
    "sector_size_odd": (_sector(1536), "block", "declares a 1536-byte sector"),
    "reserved_entry_named": (_reserved_named, "block", "entry 0 is not the reserved entry"),
    "segment_wx": (_wx, "block", "both writable and executable"),
    "segments_overlap": (_overlap, "block", "overlaps or precedes"),
    "segments_unordered": (_unordered, "block", "overlaps or precedes"),
    "segment_misaligned": (_misaligned, "block", "not page-aligned"),
    "entry_not_executable": (_entry_in_data, "block", "not in an executable segment"),
}


@pytest.mark.parametrize("name", sorted(ELF_ATTACKS))
def test_hostile_elf_is_refused(hvt, jail, tmp_path, name):
    patch, how, message = ELF_ATTACKS[name]
    disk, changed = jail
    with open(disk.parent / "notes.txt", "rb") as stdin, open(disk, "r+b") as inherited:
        if how == "fd":
            patch = _preset(inherited.fileno(), capacity=1 << 30)
        data = bytearray(hvt.probe.read_bytes())
        patch(data)
        bad = tmp_path / f"{name}.hvt"
        bad.write_bytes(bytes(data))
        argv = [str(hvt.tender), *([f"--block:storage={disk}"] if how == "block" else []), str(bad),
                "op=write", "size=131072" if how == "fd" else "size=4096", "reps=1"]
        proc = subprocess.run(argv, capture_output=True, timeout=60, stdin=stdin,
                              pass_fds=(inherited.fileno(),) if how == "fd" else ())
    lines = error_lines(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[:200], lines)
    assert len(lines) == 1 and lines[0].startswith("edgeio-hvt: error: ") and message in lines[0], lines
    assert proc.stdout == b""                   # nothing of the guest's reached stdout
    assert changed() == []
    assert disk.stat().st_size == 65536


def test_unpatched_probe_runs(hvt, jail):
    """The control for the surgery above: the same probe, unpatched, writes its disk."""
    disk, changed = jail
    proc = run(hvt, hvt.probe, ["op=write", "size=4096", "reps=1"], disk)
    assert proc.returncode == 0, proc.stderr
    assert changed() == ["disk.img"]


# -- memory protections: the guest traps, with one line naming fault and address ----------

X86_TRAPS = [
    ("null_write", r"page fault \(write, page not mapped\) at address 0x0, pc 0x1"),
    ("null_read", r"page fault \(read, page not mapped\) at address 0x8, pc 0x1"),
    ("tls_read", r"page fault \(read, page not mapped\) at address 0x28, pc 0x1"),
    ("text_write", r"page fault \(write, page protection\) at address 0x1[0-9a-f]{5}, pc"),
    ("rodata_write", r"page fault \(write, page protection\) at address 0x1[0-9a-f]{5}, pc"),
    ("bootinfo_write", r"page fault \(write, page protection\) at address 0x10000, pc"),
    ("pagetable_write", r"page fault \(write, page not mapped\) at address 0x20000, pc"),
    ("data_exec", r"page fault \(instruction fetch, page protection\) at address 0x1[0-9a-f]{5}"),
    ("bad_opcode", r"invalid opcode \(vector 6, error code 0x0\) at pc 0x1"),
    ("triple_fault", r"triple fault at pc 0x1[0-9a-f]+ \(last page fault at address 0x18;"),
]

# The same cases on aarch64 (its guest faults are data and instruction aborts; no triple fault).
A64_TRAPS = {
    "null_write": "data abort (write, page not mapped) at address 0x0,",
    "null_read": "data abort (read, page not mapped) at address 0x8,",
    "tls_read": "data abort (read, page not mapped) at address 0x10,",
    "text_write": "data abort (write, page protection) at address 0x1",
    "rodata_write": "data abort (write, page protection) at address 0x1",
    "bootinfo_write": "data abort (write, page protection) at address 0x10000,",
    "pagetable_write": "data abort (write, page not mapped) at address 0x20000,",
    "data_exec": "instruction abort (page protection) at address 0x1",
    "bad_opcode": "undefined instruction at pc 0x1",
    "wild_store": "data abort (write, page not mapped) at address 0x24000000,",
}
# This host's tender: its own arch's messages (a Pi runs the aarch64 ones natively).
TRAPS = X86_TRAPS if HOST_ARCH == "x86_64" else [(c, re.escape(m)) for c, m in A64_TRAPS.items()]


@pytest.mark.parametrize("case,pattern", TRAPS, ids=[c for c, _ in TRAPS])
def test_memory_protection_traps(hvt, jail, case, pattern):
    disk, changed = jail
    proc = run(hvt, hvt.hostile, [f"case={case}"], disk, ["--counters"])
    lines = error_lines(proc)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, lines)
    assert b"survived" not in proc.stdout
    assert len(lines) == 1 and lines[0].startswith("edgeio-hvt: guest error: guest fault: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert changed() == []


def test_text_write_names_the_function_it_hit(hvt, jail):
    """The address in the line is the one written: solo5_app_main's first byte."""
    disk, _ = jail
    nm = subprocess.run(["nm", str(hvt.hostile)], capture_output=True, text=True).stdout
    addr = int([ln.split()[0] for ln in nm.splitlines() if ln.endswith(" solo5_app_main")][0], 16)
    proc = run(hvt, hvt.hostile, ["case=text_write"], disk)
    assert f"at address {addr:#x}," in error_lines(proc)[0]


def test_out_of_range_block_write_returns_einval(hvt, jail):
    disk, changed = jail
    proc = run(hvt, hvt.hostile, ["case=offset_beyond"], disk, ["--counters"])
    assert proc.returncode == 0, proc.stderr
    assert b"hostile: survived ret=2" in proc.stdout            # SOLO5_R_EINVAL, as stock
    assert changed() == [] and disk.stat().st_size == 65536


# -- the syscall filter -------------------------------------------------------------------

def _status_while_waiting(hvt, disk, extra=()):
    """/proc/PID/status of a tender whose guest printed its line and now blocks in poll."""
    proc = subprocess.Popen([str(hvt.tender), *extra, f"--block:storage={disk}", str(hvt.hostile),
                             "case=wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()                   # the event: the guest is running
        assert line == b"hostile: waiting\n", (line, proc.stderr.read() if proc.poll() is not None else "")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return dict(re.findall(r"^(Seccomp|NoNewPrivs):\s+(\d+)$", status, re.M))
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_seccomp_filter_is_on_while_the_guest_runs(hvt, jail):
    disk, changed = jail
    assert _status_while_waiting(hvt, disk) == {"Seccomp": "2", "NoNewPrivs": "1"}
    assert changed() == []


def test_seccomp_off_only_by_option(hvt, jail):
    disk, _ = jail
    assert _status_while_waiting(hvt, disk, ["--no-seccomp"]) == {"Seccomp": "0", "NoNewPrivs": "0"}


ALLOWED_AFTER_FILTER = {"ioctl", "pwrite64", "pread64", "fsync", "write", "clock_gettime",
                        "clock_nanosleep", "nanosleep", "exit_group"}


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_filter_installed_before_the_first_guest_instruction(hvt, jail, tmp_path):
    """strace: seccomp() comes before the first KVM_RUN, and afterwards the tender makes
    only the allowed calls (a full probe run with fsync after every write)."""
    disk, _ = jail
    trace = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-o", str(trace), str(hvt.tender), "--flush=each-write",
                           "--counters", f"--block:storage={disk}", str(hvt.probe), "op=write_sync",
                           "size=4096", "reps=2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calls = [m.group(1) for m in (re.match(r"\d+\s+(\w+)\(", ln) for ln in trace.read_text().splitlines())
             if m]
    lines = trace.read_text().splitlines()
    first_run = next(i for i, ln in enumerate(lines) if "KVM_RUN" in ln)
    filt = next(i for i, ln in enumerate(lines) if re.match(r"\d+\s+seccomp\(SECCOMP_SET_MODE_FILTER", ln))
    assert filt < first_run
    after = {m.group(1) for m in (re.match(r"\d+\s+(\w+)\(", ln) for ln in lines[filt + 1:]) if m}
    assert after <= ALLOWED_AFTER_FILTER, after - ALLOWED_AFTER_FILTER
    assert {"pwrite64", "fsync", "ioctl"} <= after and calls


FILTER_ALLOWS = ["write_stdout", "write_stderr", "pwrite_disk", "pread_disk", "fsync_disk", "fdatasync_disk",
                 "clock_gettime", "clock_nanosleep", "ioctl_vcpu_run"]
FILTER_KILLS = ["write_disk_fd_as_console", "pwrite_other_fd", "pread_stdin", "ioctl_vcpu_other_request",
                "ioctl_disk_fd", "openat", "getpid", "mmap", "socket", "execve", "prctl_undo"]
if HOST_ARCH == "x86_64":
    FILTER_KILLS.append("x32_write")          # the x32 ABI exists only there


@pytest.fixture(scope="module")
def seccomp_check(tmp_path_factory):
    """unikernel/tests/seccomp_check.c: the filter installed on its own, then one syscall."""
    from measure.hvt_build import UNIKERNEL_DIR
    out = tmp_path_factory.mktemp("seccomp") / "seccomp_check"
    subprocess.run(["cc", "-O2", "-std=gnu11", "-D_GNU_SOURCE", f"-I{UNIKERNEL_DIR / 'include'}", "-o", str(out),
                    str(UNIKERNEL_DIR / "tests" / "seccomp_check.c"), str(UNIKERNEL_DIR / "tender" / "seccomp.c"),
                    str(UNIKERNEL_DIR / "tender" / "errors.c")], check=True)
    return out


@pytest.mark.parametrize("check", FILTER_ALLOWS + FILTER_KILLS)
def test_filter_allows_only_the_run_loops_calls(seccomp_check, tmp_path, check):
    """The allowlist checks arguments: pwrite only on the disk, write only to the console,
    ioctl only KVM_RUN & co. on the vCPU; anything else is SIGSYS."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    proc = subprocess.run([str(seccomp_check), str(disk), check], capture_output=True, timeout=30)
    if check in FILTER_ALLOWS:
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
    else:
        assert proc.returncode == -signal.SIGSYS, proc.returncode


def test_counters_record_the_filter(hvt, jail):
    import json
    disk, _ = jail
    for extra, expected in (([], True), (["--no-seccomp"], False)):
        proc = run(hvt, hvt.hostile, ["case=ok"], disk, ["--counters", *extra])
        line = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith('{"edgeio_hvt_counters"')][-1]
        assert json.loads(line)["edgeio_hvt_counters"]["seccomp"] is expected


# -- stock behaviour and limits -----------------------------------------------------------

def test_poll_with_a_huge_timeout_returns(hvt, jail):
    """A poll of 2^64 ns comes back (bounded to 1 s per call), as a timeout."""
    disk, _ = jail
    proc = run(hvt, hvt.hostile, ["case=poll_long"], disk, timeout=120)
    assert proc.returncode == 0 and b"hostile: survived ret=0" in proc.stdout, proc.stderr


@pytest.mark.parametrize("status", [2, 3, 4])
def test_guest_status_is_told_apart_from_the_tenders(hvt, jail, status):
    """A guest halting with 2, 3 or 4 gets that status but no error line, and the
    counters say who ended the run; the tender's own verdicts always carry one line."""
    import json
    disk, _ = jail
    proc = run(hvt, hvt.hostile, [f"case=exit{status}"], disk, ["--counters"])
    assert proc.returncode == status and error_lines(proc) == []
    c = json.loads(proc.stderr.decode().splitlines()[-1])["edgeio_hvt_counters"]
    assert c["exit"] == {"by": "guest", "status": status}
    proc = run(hvt, hvt.hostile, ["case=arg_outside"], disk, ["--counters"])
    c = json.loads(proc.stderr.decode().splitlines()[-1])["edgeio_hvt_counters"]
    assert proc.returncode == 3 and c["exit"] == {"by": "tender", "status": 3}
    assert error_lines(proc)[0].startswith("edgeio-hvt: guest error: ")


def test_command_line_of_the_maximum_length(hvt, jail):
    disk, _ = jail
    arg = "case=ok " + "x" * (8191 - 8)                  # one argument, 8191 bytes + NUL
    assert run(hvt, hvt.hostile, [arg], disk).returncode == 0
    proc = run(hvt, hvt.hostile, [arg + "x"], disk)
    assert proc.returncode == 2 and b"longer than 8191 bytes" in proc.stderr


def test_63_block_devices(hvt, tmp_path):
    disks = [tmp_path / f"d{i}" for i in range(1, 64)]
    for d in disks:
        d.write_bytes(b"\0" * 4096)
    neighbour = tmp_path / "neighbour"
    neighbour.write_bytes(b"\x77" * 4096)
    proc = subprocess.run([str(hvt.tender), *(f"--block:d{i}={d}" for i, d in enumerate(disks, 1)),
                           str(hvt.manydisks)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "manydisks: 63 written" in proc.stdout
    for i, d in enumerate(disks, 1):
        assert d.read_bytes() == bytes([i]) * 512 + b"\0" * 3584
    assert neighbour.read_bytes() == b"\x77" * 4096


@needs_host_arch("x86_64", "its stock limit is 1024 MiB; aarch64's is 4096 MiB, more than a Pi may map")
def test_memory_up_to_stocks_limit(hvt, jail):
    disk, _ = jail
    assert run(hvt, hvt.hostile, ["case=ok"], disk, ["--mem=1024"]).returncode == 0
    proc = run(hvt, hvt.hostile, ["case=ok"], disk, ["--mem=1026"])
    assert proc.returncode == 2 and b"--mem=1026" in proc.stderr


def test_stock_probe_is_built_for_general_registers_only():
    """A software KVM cannot run SSE in guest kernel mode: the stock toolchain build
    must pass -mgeneral-regs-only as edgeio's own build does."""
    from measure.hvt_build import UNIKERNEL_DIR
    proc = subprocess.run(["make", "-n", "-B", "-C", str(UNIKERNEL_DIR), "OUT=/nonexistent/stock",
                           "stock-probe"], capture_output=True, text=True)
    compile_lines = [ln for ln in proc.stdout.splitlines() if "-solo5-none-static-cc" in ln]
    assert compile_lines and all("-mgeneral-regs-only" in ln for ln in compile_lines), proc.stdout


# -- fuzz smoke: mutated ELFs and random hypercall sequences, ASan+UBSan -----------------

SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=99",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=98"}
ELF_MUTANTS = 240
CALL_SEQUENCES = 80
SPIN_TIMEOUT = 60           # a guest run takes < 0.5 s; a mutant's code may loop forever


def _mutate(base: bytes, rng: random.Random) -> bytes:
    d = bytearray(base)
    phoff, = struct.unpack_from("<Q", d, 32)
    note = bytes(d).find(b"MFT1Solo5\0")
    hot = [(0, 64), (phoff, phoff + 56 * 5), (note - 12, note + 24 + 2 * ENTRY)]
    for _ in range(rng.randint(1, 6)):
        lo, hi = rng.choice(hot) if rng.random() < 0.85 else (0, len(d))
        i = rng.randrange(lo, min(hi, len(d)))
        kind = rng.random()
        if kind < 0.5:
            d[i] ^= 1 << rng.randrange(8)
        elif kind < 0.8:
            width = rng.choice((2, 4, 8))
            if i + width <= len(d):
                v = rng.choice((0, 1, 0xff, 0x1000, 0x100000, (1 << (8 * width)) - 1,
                                rng.getrandbits(8 * width)))
                d[i:i + width] = (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        else:
            d[i] = rng.randrange(256)
    if rng.random() < 0.05:
        del d[rng.randrange(len(d)):]
    return bytes(d)


def _verdict(proc) -> str:
    err = proc.stderr.decode(errors="replace")
    if proc.returncode < 0:
        return f"signal {-proc.returncode}"
    if proc.returncode in (98, 99) or "Sanitizer" in err or "runtime error" in err:
        return "sanitizer: " + err[-500:]
    return ""


@pytest.fixture(scope="module")
def sanitized():
    from measure.hvt_build import build_sanitized
    return build_sanitized()


def test_fuzz_smoke_under_asan_and_ubsan(hvt, sanitized, tmp_path):
    """A few hundred mutated probe ELFs and random hypercall sequences against the
    ASan+UBSan tender: no sanitizer report, no signal, no file but the disk touched."""
    env = {**os.environ, **SAN_ENV}
    rng = random.Random(11)
    base = hvt.probe.read_bytes()
    jail = tmp_path / "jail"
    jail.mkdir()
    (jail / "neighbour").write_bytes(b"\x33" * 4096)
    mutants = []
    for i in range(ELF_MUTANTS):
        p = tmp_path / f"m{i}.hvt"
        p.write_bytes(_mutate(base, rng))
        mutants.append(p)
    neighbours = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [jail / "neighbour", *mutants]}

    def one(job):
        kind, i = job
        disk = jail / f"disk{i % 2}.img"
        if kind == "elf":
            argv = [str(sanitized), "--no-seccomp", "--mem=8", f"--block:storage={disk}", str(mutants[i]),
                    "op=write", "size=4096", "reps=1"]
        else:
            argv = [str(sanitized), "--no-seccomp", "--mem=8", "--flush=on-request", "--max-blocks-per-call=4",
                    f"--block:storage={disk}", str(hvt.fuzzcalls), f"seed={i}", "calls=400"]
        try:
            return job, subprocess.run(argv, capture_output=True, timeout=SPIN_TIMEOUT, cwd=jail, env=env)
        except subprocess.TimeoutExpired:
            return job, None        # a mutated guest that spins without exiting: its right

    for n in range(2):
        (jail / f"disk{n}.img").write_bytes(b"\0" * 65536)
    jobs = [("elf", i) for i in range(ELF_MUTANTS)] + [("calls", i) for i in range(CALL_SEQUENCES)]
    outcomes = {"refused": 0, "ran": 0, "guest ended": 0, "spun": 0}
    bad = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for (kind, i), proc in pool.map(one, jobs):
            if proc is None:
                outcomes["spun"] += 1
                continue
            v = _verdict(proc)
            if v:
                bad.append((kind, i, v))
            outcomes["refused" if proc.returncode == 2 and kind == "elf" else
                     "guest ended" if proc.returncode == 3 else "ran"] += 1
    assert bad == []
    assert sorted(p.name for p in jail.iterdir()) == ["disk0.img", "disk1.img", "neighbour"]
    assert all((jail / f"disk{n}.img").stat().st_size == 65536 for n in range(2))
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == h for p, h in neighbours.items())
    # the mix exercised every path: refusals, runs, guests ended by the tender
    assert outcomes["refused"] > 50 and outcomes["ran"] > 10 and outcomes["guest ended"] > 20, outcomes


def test_fuzz_calls_with_the_filter_on(hvt, tmp_path):
    """The same hypercall sequences on the shipped (filtered) tender: no SIGSYS, i.e.
    the allowlist covers every path a guest can drive."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 65536)
    for seed in range(30):
        proc = subprocess.run([str(hvt.tender), "--flush=each-write", "--max-blocks-per-call=4",
                               f"--block:storage={disk}", str(hvt.fuzzcalls), f"seed={seed}", "calls=400"],
                              capture_output=True, timeout=120)
        assert proc.returncode in (0, 3) or (proc.returncode > 0 and b"edgeio-hvt:" not in proc.stderr), \
            (seed, proc.returncode, proc.stderr[-300:])
        assert proc.returncode >= 0, (seed, proc.returncode)


# -- aarch64: the same protections, run on an emulated arm64 board with KVM -------------



def _emulated_board_log(tmp_path, init="emulated_init.c", guests=("probe", "hostile", "fuzzcalls"),
                        timeout=600) -> str:
    """Boot Debian's arm64 kernel under qemu-system-aarch64 (TCG, EL2: KVM inside) with an
    initramfs of the aarch64 tender, its guests and unikernel/tests/<init> as /init."""
    from measure.guest.packages import fetch_kernel
    from measure.hvt_build import UNIKERNEL_DIR, build
    arm = build("aarch64")
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "proc").mkdir()
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-static", "-o", str(root / "init"),
                    str(UNIKERNEL_DIR / "tests" / init)], check=True)
    for p in (arm.tender, *(getattr(arm, g) for g in guests)):
        shutil.copy(p, root / p.name)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    cpio = subprocess.run(["cpio", "-o", "-H", "newc"], input="\n".join(files).encode(), cwd=root,
                          capture_output=True, check=True).stdout
    (tmp_path / "initrd").write_bytes(cpio)
    kernel = fetch_kernel("aarch64")
    proc = subprocess.run(
        ["qemu-system-aarch64", "-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a72",
         "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic", "-no-reboot", "-kernel", str(kernel.image),
         "-initrd", str(tmp_path / "initrd"), "-append", "console=ttyAMA0 panic=-1 quiet rdinit=/init"],
        capture_output=True, timeout=timeout)
    return proc.stdout.decode(errors="replace").replace("\r\n", "\n")


@pytest.mark.skipif(not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-system-aarch64")
                         and shutil.which("cpio")),
                    reason="needs aarch64-linux-gnu-gcc, qemu-system-aarch64 and cpio")
def test_aarch64_tender_under_emulation(tmp_path):
    log = _emulated_board_log(tmp_path)
    assert "=== done" in log, log[-2000:]
    assert "=== kvm: yes" in log
    result = {m.group(1): (int(m.group(2)), int(m.group(3)))
              for m in re.finditer(r"^=== (\S+) rc=(-?\d+) sig=(\d+)$", log, re.M)}
    section = {name: log[log.index(f"=== {name}\n"):log.index(f"=== {name} rc=")] for name in result}
    assert result["probe-write"] == (0, 0) and '"seccomp": true' in section["probe-write"]
    assert '"arch": "aarch64"' in section["probe-write"]
    # what the write put on the disk, read back: the probe's pattern over 4 KiB
    expected = sum((i * 8) | 0xED10000000000000 for i in range(512)) % 2**64
    assert result["probe-read"] == (0, 0) and f'"data_checksum": {expected}' in section["probe-read"]
    assert result["ok"] == (0, 0)
    for case, message in A64_TRAPS.items():
        assert result[case] == (3, 0), (case, section[case])
        assert f"edgeio-hvt: guest error: guest fault: {message}" in section[case], (case, section[case])
    for case in ("offset_beyond", "handle_bad", "read_into_text"):
        assert result[case] == (0, 0) and "hostile: survived ret=2" in section[case], section[case]
    assert result["arg_outside"] == (3, 0) and "outside guest memory" in section["arg_outside"]
    assert result["exit3"] == (3, 0) and "edgeio-hvt:" not in section["exit3"]
    assert result["poll_long"] == (0, 0) and "survived ret=0" in section["poll_long"]
    for seed in range(1, 9):
        assert result[f"seed={seed}"][1] == 0 and result[f"seed={seed}"][0] in (0, 3), section[f"seed={seed}"]
    assert re.search(r"^=== Seccomp:\s+2", log, re.M) and re.search(r"^=== NoNewPrivs:\s+1", log, re.M)
