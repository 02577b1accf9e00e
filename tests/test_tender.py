"""The edgeio hvt tender with real unikernels on /dev/kvm: bytes on the disk, flush
policies, multi-block exits, and the hostile-guest suite (malformed hypercalls,
malformed ELF files, bad disks and options): each ends with one clear line and a
non-zero status, and nothing outside the disk file changes."""

import json
import shutil
import struct
import subprocess

import pytest

from tests.conftest import ELF_MACHINE, FOREIGN_ARCH, HOST_ARCH, have_kvm, needs_cross_gcc

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(not have_kvm(), reason="/dev/kvm absent or not accessible: "
                                 "the hvt tender needs KVM")]

TAG = 0xED10000000000000   # the probe writes word (offset | TAG) at each 8-byte offset


@pytest.fixture(scope="module")
def hvt():
    from measure.hvt_build import build
    return build()


def tender(hvt, guest, args, disk=None, extra=(), timeout=60):
    argv = [str(hvt.tender), *extra]
    if disk is not None:
        argv.append(f"--block:storage={disk}")
    argv += [str(guest), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def counters(proc) -> dict:
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith('{"edgeio_hvt_counters"')]
    assert line, proc.stderr
    return json.loads(line[-1])["edgeio_hvt_counters"]


def probe_json(proc) -> dict:
    return json.loads([ln for ln in proc.stdout.splitlines() if '"probe"' in ln][-1])


def make_disk(path, size, fill=b"\xee"):
    path.write_bytes(fill * size)
    return path


# -- the probe on the tender ----------------------------------------------------------

def test_write_puts_the_pattern_on_the_disk_and_nothing_else(hvt, tmp_path):
    disk = make_disk(tmp_path / "disk.img", 16384)
    proc = tender(hvt, hvt.probe, ["op=write", "size=4096", "reps=3", "batches=3"], disk, ["--counters"])
    assert proc.returncode == 0, proc.stderr
    data = disk.read_bytes()
    assert len(data) == 16384
    words = struct.unpack("<512Q", data[:4096])
    assert all(w == (i * 8) | TAG for i, w in enumerate(words))
    assert data[4096:] == b"\xee" * (16384 - 4096)
    out = probe_json(proc)
    assert out["probe"] == "edgeio-solo5-probe" and out["errno"] == 0
    assert out["io_size"] == 512 and out["block_size"] == 512 and out["blocks_per_call"] == 1
    assert out["batch_reps"] == [1, 1, 1] and len(out["batch_seconds"]) == 3
    assert out["total_seconds"] > 0
    c = counters(proc)
    assert c["exits"]["block_write"] == 3 * 8 and c["bytes_written"] == 3 * 4096
    assert c["exits"]["halt"] == 1 and c["handler_ns"]["block_write"] > 0


def test_read_returns_the_bytes_on_the_disk(hvt, tmp_path):
    words = [(i * 2654435761) % 2**64 for i in range(8192)]
    disk = tmp_path / "disk.img"
    disk.write_bytes(struct.pack("<8192Q", *words))
    proc = tender(hvt, hvt.probe, ["op=read", "size=65536", "reps=2"], disk, ["--counters"])
    assert proc.returncode == 0, proc.stderr
    out = probe_json(proc)
    assert out["data_checksum"] == sum(words) % 2**64
    c = counters(proc)
    assert c["exits"]["block_read"] == 2 * 128 and c["bytes_read"] == 2 * 65536
    assert c["bytes_written"] == 0


@pytest.mark.parametrize("k", [8, 64])
def test_multi_block_calls_cut_exits_by_k(hvt, tmp_path, k):
    disk = make_disk(tmp_path / "disk.img", 65536)
    runs = {}
    for blocks in (1, k):
        proc = tender(hvt, hvt.probe, ["op=write", "size=65536", "reps=2", f"blocks={blocks}"], disk,
                      ["--counters", f"--max-blocks-per-call={blocks}"])
        assert proc.returncode == 0, proc.stderr
        assert probe_json(proc)["io_size"] == 512 * blocks
        runs[blocks] = counters(proc)
    assert runs[1]["exits"]["block_write"] == k * runs[k]["exits"]["block_write"] == 2 * 128
    assert runs[1]["bytes_written"] == runs[k]["bytes_written"]
    words = struct.unpack("<8192Q", disk.read_bytes())
    assert all(w == (i * 8) | TAG for i, w in enumerate(words))


def test_more_blocks_than_the_tender_allows_fails_the_call(hvt, tmp_path):
    """As stock: the request gets EINVAL (the probe reports an I/O error), nothing written."""
    disk = make_disk(tmp_path / "disk.img", 4096)
    proc = tender(hvt, hvt.probe, ["op=write", "size=4096", "reps=1", "blocks=8"], disk,
                  ["--max-blocks-per-call=4", "--counters"])
    assert proc.returncode == 1, proc.stderr
    assert probe_json(proc)["errno"] != 0 and counters(proc)["bytes_written"] == 0
    assert disk.read_bytes() == b"\xee" * 4096


@pytest.mark.parametrize("policy,k,fsyncs", [("none", 1, 0), ("on-request", 1, 5),
                                             ("each-write", 1, 40), ("each-write", 8, 5)])
def test_flush_policy_counts(hvt, tmp_path, policy, k, fsyncs):
    disk = make_disk(tmp_path / "disk.img", 4096)
    proc = tender(hvt, hvt.probe, ["op=write_sync", "size=4096", "reps=5", f"blocks={k}"], disk,
                  ["--counters", f"--flush={policy}", f"--max-blocks-per-call={k}"])
    assert proc.returncode == 0, proc.stderr
    c = counters(proc)
    assert c["fsyncs"] == fsyncs and c["flush"] == policy
    assert c["exits"]["block_flush"] == 5      # write_sync asks once per repetition
    assert probe_json(proc)["sync"] == "fsync"


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
@pytest.mark.parametrize("policy,expected", [("none", 0), ("each-write", 16), ("on-request", 2)])
def test_flush_policy_seen_by_strace(hvt, tmp_path, policy, expected):
    disk = make_disk(tmp_path / "disk.img", 4096)
    trace = tmp_path / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-e", "trace=fsync,fdatasync,pwrite64", "-o", str(trace), str(hvt.tender),
         f"--flush={policy}", f"--block:storage={disk}", str(hvt.probe),
         "op=write_sync", "size=4096", "reps=2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calls = trace.read_text().splitlines()
    assert sum(" fsync(" in c for c in calls) == expected and not any("fdatasync(" in c for c in calls)
    assert sum("pwrite64(" in c for c in calls) == 16


def test_stock_abi_tender_makes_write_sync_fail_cleanly(hvt, tmp_path):
    """--stock-abi: the tender offers guests no extension, as a stock solo5-hvt."""
    disk = make_disk(tmp_path / "disk.img", 4096)
    proc = tender(hvt, hvt.probe, ["op=write_sync", "size=4096", "reps=1"], disk, ["--stock-abi"])
    assert proc.returncode == 2
    assert "needs the tender's flush extension" in probe_json(proc)["error"]
    assert disk.read_bytes() == b"\xee" * 4096
    proc = tender(hvt, hvt.hostile, ["case=flush_bad_handle"], disk, ["--stock-abi"])
    assert proc.returncode == 3 and "unknown hypercall 16" in proc.stderr
    proc = tender(hvt, hvt.probe, ["op=write", "size=4096", "reps=1"], disk, ["--stock-abi"])
    assert proc.returncode == 0 and probe_json(proc)["errno"] == 0


def test_probe_bad_arguments_exit_2_with_json(hvt, tmp_path):
    disk = make_disk(tmp_path / "disk.img", 4096)
    proc = tender(hvt, hvt.probe, ["op=write", "size=1000", "reps=1"], disk)
    assert proc.returncode == 2
    assert "multiple of block_size" in probe_json(proc)["error"]
    proc = tender(hvt, hvt.probe, ["op=write", "size=8192", "reps=1"], disk)
    assert proc.returncode == 2 and "larger than the disk" in probe_json(proc)["error"]


# -- hostile guest: malformed hypercalls ------------------------------------------------

HOSTILE = [
    ("arg_outside", [], "argument at 0x"),
    ("arg_straddle", [], "outside guest memory"),
    ("arg_top", [], "outside guest memory"),
    ("buf_outside", [], "buffer at 0x"),
    ("buf_straddle", [], "buffer at 0x"),
    ("buf_wrap", [], "outside guest memory"),
    ("len_overflow", [], "buffer at 0x"),
    ("len_overflow", ["--max-blocks-per-call=65536"], "buffer at 0x"),
    ("puts_outside", [], "puts: string"),
    ("puts_len_overflow", [], "puts: string"),
    ("hypercall_zero", [], "unknown hypercall 0"),
    ("hypercall_unknown", [], "unknown hypercall 12"),
    ("net_write", [], "no network device"),
    ("halt_outside", [], "halt: argument"),
    ("port_other", [], "not a hypercall port"),
    ("port_in", [], "other than one 32-bit OUT"),
    ("port_byte", [], "other than one 32-bit OUT"),
    ("wild_store", [], "page fault (write, page not mapped) at address 0x24000000"),
    ("cpu_halt", [], "without the HALT hypercall"),
]

# Well-formed block requests the tender cannot carry out: SOLO5_R_EINVAL back to the
# guest, as stock solo5-hvt, and nothing written.
EINVAL = [
    ("offset_wrap", ["--max-blocks-per-call=65536"]),
    ("offset_beyond", []),
    ("offset_last_plus", ["--max-blocks-per-call=2"]),
    ("offset_unaligned", []),
    ("len_unaligned", []),
    ("len_zero", []),
    ("too_many_blocks", []),
    ("handle_bad", []),
    ("handle_reserved", []),
    ("handle_huge", []),
    ("read_into_text", []),
]


@pytest.fixture
def jail(tmp_path):
    """A directory with the disk and a sentinel file beside it, and a snapshot of both."""
    d = tmp_path / "jail"
    d.mkdir()
    disk = d / "disk.img"
    disk.write_bytes(bytes(range(256)) * 256)        # 64 KiB, recognisable
    (d / "sentinel").write_bytes(b"must not change\n" * 64)

    def snapshot():
        return {p.name: p.read_bytes() for p in d.iterdir()}
    return disk, snapshot


@pytest.mark.parametrize("case,extra,message", HOSTILE, ids=[f"{c}{'-' + e[0][2:] if e else ''}"
                                                            for c, e, _ in HOSTILE])
def test_hostile_hypercall_ends_the_guest(hvt, jail, case, extra, message):
    disk, snapshot = jail
    before = snapshot()
    proc = tender(hvt, hvt.hostile, [f"case={case}"], disk, ["--counters", *extra])
    assert_guest_ended(proc, message)
    assert snapshot() == before                      # disk and its neighbour untouched
    assert counters(proc)["bytes_written"] == 0


def assert_guest_ended(proc, message):
    """The tender ended the guest: status 3, one guest-error line saying message, no "survived"."""
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert "survived" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith('{"edgeio_hvt_counters"')]
    assert len(lines) == 1 and lines[0].startswith("edgeio-hvt: guest error: "), proc.stderr
    assert message in lines[0]


@pytest.mark.parametrize("case,extra", EINVAL, ids=[c + ("-" + e[0][2:] if e else "") for c, e in EINVAL])
def test_bad_block_request_returns_einval(hvt, jail, case, extra):
    disk, snapshot = jail
    before = snapshot()
    proc = tender(hvt, hvt.hostile, [f"case={case}"], disk, ["--counters", *extra])
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "hostile: survived ret=2" in proc.stdout          # SOLO5_R_EINVAL
    assert snapshot() == before
    c = counters(proc)
    assert c["bytes_written"] == 0 and c["bytes_read"] == 0


def test_flush_of_a_bad_handle_returns_einval(hvt, jail):
    disk, snapshot = jail
    before = snapshot()
    proc = tender(hvt, hvt.hostile, ["case=flush_bad_handle"], disk, ["--flush=on-request", "--counters"])
    assert proc.returncode == 0, proc.stderr
    assert counters(proc)["fsyncs"] == 0 and snapshot() == before


def test_hostile_control_case_runs(hvt, jail):
    disk, snapshot = jail
    proc = tender(hvt, hvt.hostile, ["case=ok"], disk)
    assert proc.returncode == 0, proc.stderr
    assert disk.read_bytes()[:512] == b"\x5a" * 512


# -- malformed ELF files -------------------------------------------------------------

def _patched(src, dst, patch):
    data = bytearray(src.read_bytes())
    patch(data)
    dst.write_bytes(bytes(data))
    return dst


def _abi_note_at(data) -> int:
    i = bytes(data).find(b"Solo5\0\0\0" + struct.pack("<II", 1, 2))
    assert i > 0
    return i + 8          # the descriptor: target, version


def _phdrs(data):
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    return [(phoff + i * 56, struct.unpack_from("<IIQQQQQQ", data, phoff + i * 56)) for i in range(phnum)]


def _set_data_memsz(data, memsz):
    off, ph = [(o, p) for o, p in _phdrs(data) if p[0] == 1][-1]
    struct.pack_into("<Q", data, off + 40, memsz)


ELF_CASES = {
    "empty": (lambda d: d.clear(), "truncated"),
    "truncated_header": (lambda d: d.__delitem__(slice(40, None)), "truncated"),
    "truncated_segments": (lambda d: d.__delitem__(slice(3000, None)), "truncated"),
    "not_elf": (lambda d: d.__setitem__(slice(0, 4), b"#!/b"), "not an ELF file"),
    "elf32": (lambda d: d.__setitem__(4, 1), "not a 64-bit little-endian ELF"),
    "wrong_arch": (lambda d: struct.pack_into("<H", d, 18, ELF_MACHINE[FOREIGN_ARCH]), f"built for {FOREIGN_ARCH}"),
    "not_exec": (lambda d: struct.pack_into("<H", d, 16, 3), "not a static executable"),
    "phdrs_outside": (lambda d: struct.pack_into("<Q", d, 32, 1 << 40), "program headers"),
    "phnum_huge": (lambda d: struct.pack_into("<H", d, 56, 60000), "program headers"),
    "entry_outside": (lambda d: struct.pack_into("<Q", d, 24, 0x50), "entry point"),
    "abi_target": (lambda d: struct.pack_into("<I", d, _abi_note_at(d), 3), "target 3, not hvt"),
    "abi_version": (lambda d: struct.pack_into("<I", d, _abi_note_at(d) + 4, 1), "ABI version 1"),
    "abi_missing": (lambda d: d.__setitem__(slice(_abi_note_at(d) - 8, _abi_note_at(d) - 3), b"Solo6"),
                    "no Solo5 ABI1 note"),
    "too_big_for_memory": (lambda d: _set_data_memsz(d, 600 << 20), "does not fit in 512 MiB"),
}


@pytest.mark.parametrize("name", sorted(ELF_CASES))
def test_malformed_elf_is_refused(hvt, tmp_path, name):
    patch, message = ELF_CASES[name]
    bad = _patched(hvt.probe, tmp_path / f"{name}.hvt", patch)
    disk = make_disk(tmp_path / "disk.img", 4096)
    proc = tender(hvt, bad, ["op=write", "size=4096", "reps=1"], disk)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeio-hvt: error: ") and message in lines[0], proc.stderr
    assert disk.read_bytes() == b"\xee" * 4096


def test_memory_too_small_for_the_elf(hvt, tmp_path):
    bad = _patched(hvt.probe, tmp_path / "big.hvt", lambda d: _set_data_memsz(d, 3 << 20))
    proc = tender(hvt, bad, [], make_disk(tmp_path / "disk.img", 4096), ["--mem=2"])
    assert proc.returncode == 2 and "does not fit in 2 MiB of guest memory" in proc.stderr


def test_host_executable_is_refused(hvt, tmp_path):
    proc = tender(hvt, shutil.which("true"), [], make_disk(tmp_path / "disk.img", 4096))
    assert proc.returncode == 2 and "not a static executable" in proc.stderr


# -- disks and options ---------------------------------------------------------------

@pytest.mark.parametrize("content,message", [
    (None, "No such file or directory"),
    (b"x" * 1000, "not a multiple of the 512-byte sector size"),
    (b"", "smaller than one 512-byte sector"),
])
def test_bad_disk(hvt, tmp_path, content, message):
    disk = tmp_path / "disk.img"
    if content is not None:
        disk.write_bytes(content)
    proc = tender(hvt, hvt.probe, ["op=write", "size=512", "reps=1"], disk)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    if content is not None:
        assert disk.read_bytes() == content


@pytest.mark.parametrize("args,message", [
    ([], "not attached"),
    (["--flush=sometimes"], "expected none, each-write or on-request"),
    (["--mem=0"], "--mem=0"),
    (["--mem=999999"], "--mem=999999"),
    (["--max-blocks-per-call=0"], "--max-blocks-per-call=0"),
    (["--block-sector-size:storage=1000"], "power of two"),
    (["--block:other=/dev/null"], "no block device named 'other'"),
    (["--frobnicate"], "unknown option --frobnicate"),
])
def test_bad_options(hvt, tmp_path, args, message):
    proc = tender(hvt, hvt.probe, [], None, args)
    assert proc.returncode == 2 and message in proc.stderr


def test_no_unikernel(hvt):
    proc = subprocess.run([str(hvt.tender)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no unikernel given" in proc.stderr


def test_sector_size_option_changes_the_block_size(hvt, tmp_path):
    disk = make_disk(tmp_path / "disk.img", 8192)
    proc = tender(hvt, hvt.probe, ["op=write", "size=8192", "reps=1"], disk,
                  ["--block-sector-size:storage=4096", "--counters"])
    assert proc.returncode == 0, proc.stderr
    assert probe_json(proc)["block_size"] == 4096 and counters(proc)["exits"]["block_write"] == 2


# -- the other arch's build (x86_64 host: the Pi 4's aarch64; here it must at least build) --

@needs_cross_gcc(FOREIGN_ARCH)
def test_other_arch_tender_and_guests_build(hvt, tmp_path):
    from measure.hvt_build import build
    other = build(FOREIGN_ARCH)
    for path in (other.tender, other.probe, other.hostile):
        head = path.read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and struct.unpack_from("<H", head, 18)[0] == ELF_MACHINE[FOREIGN_ARCH]
    # and this tender refuses it cleanly
    proc = tender(hvt, other.probe, [], make_disk(tmp_path / "disk.img", 4096))
    assert proc.returncode == 2 and f"built for {FOREIGN_ARCH}, this tender runs {HOST_ARCH}" in proc.stderr
