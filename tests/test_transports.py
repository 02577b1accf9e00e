"""The hvt tender's two edgeio transports with real unikernels on /dev/kvm: the ring
(many requests per exit) and the mapped disk (no exit in the data path). Bytes on the
disk, exact counters, the hostile-ring suite (each case ends the guest with status 3
and changes nothing outside the disk), and a disk truncated under a mapped guest."""

import json
import math
import os
import re
import shutil
import struct
import subprocess

import pytest

from tests.conftest import have_kvm
from tests.test_tender import (TAG, assert_guest_ended, counters, hvt, jail, make_disk,  # noqa: F401
                               probe_json, tender)

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(not have_kvm(), reason="/dev/kvm absent or not accessible: "
                                 "the hvt tender needs KVM")]

SECTOR = 512


def pattern_ok(data: bytes, span: int = 1 << 20) -> bool:
    words = struct.unpack(f"<{len(data) // 8}Q", data)
    return all(w == ((i * 8) % span) | TAG for i, w in enumerate(words))


def run_probe(hvt, disk, transport, op, size, reps, blocks=1, batch=None, flush="on-request"):
    guest = [f"op={op}", f"size={size}", f"reps={reps}", f"blocks={blocks}", f"transport={transport}"]
    if batch:
        guest.append(f"batch={batch}")
    proc = tender(hvt, hvt.probe, guest, disk,
                  ["--counters", f"--transport={transport}", f"--flush={flush}",
                   f"--max-blocks-per-call={blocks}"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return probe_json(proc), counters(proc)


# -- data integrity ---------------------------------------------------------------------

@pytest.mark.parametrize("transport,batch,blocks", [("ring", 16, 2), ("ring", 64, 1), ("mapped", None, 4)])
def test_write_then_read_whole_file(hvt, tmp_path, transport, batch, blocks):
    size = 65536
    disk = make_disk(tmp_path / "disk.img", size)
    out, _ = run_probe(hvt, disk, transport, "write", size, 3, blocks, batch)
    assert out["transport"] == transport and out["batch"] == (batch or 1)
    assert pattern_ok(disk.read_bytes())
    # reads after writes, across repetitions: the checksum is over the whole file
    words = [(i * 2654435761 + 7) % 2**64 for i in range(size // 8)]
    disk.write_bytes(struct.pack(f"<{len(words)}Q", *words))
    out, c = run_probe(hvt, disk, transport, "read", size, 2, blocks, batch)
    assert out["data_checksum"] == sum(words) % 2**64
    assert c["bytes_written"] == 0


@pytest.mark.parametrize("transport,batch", [("ring", 64), ("mapped", None)])
def test_file_larger_than_the_buffer_written_whole(hvt, tmp_path, transport, batch):
    size = 2 << 20                                   # the probe's 1 MiB buffer, reused twice
    disk = make_disk(tmp_path / "disk.img", size + 8192)
    run_probe(hvt, disk, transport, "write", size, 1, 64, batch)
    data = disk.read_bytes()
    assert pattern_ok(data[:size]) and data[size:] == b"\xee" * 8192


# -- counters, exact ---------------------------------------------------------------------

@pytest.mark.parametrize("op,size,blocks,batch", [("write", 65536, 1, 64), ("write_sync", 65536, 2, 5),
                                                  ("read", 32768, 8, 3), ("write_sync", 4096, 8, 64)])
def test_ring_counters(hvt, tmp_path, op, size, blocks, batch):
    reps = 3
    disk = make_disk(tmp_path / "disk.img", 65536)
    _, c = run_probe(hvt, disk, "ring", op, size, reps, blocks, batch)
    requests = size // (SECTOR * blocks)
    sync = op == "write_sync"
    data_notifications = reps * math.ceil(requests / batch)
    assert c["transport"] == "ring"
    assert c["notifications"] == c["exits"]["ring_notify"] == data_notifications + reps * sync
    assert c["flush_exits"] == reps * sync and c["fsyncs"] == reps * sync
    assert c["block_exits"] == c["notifications"]
    assert c["exits"]["block_write"] == c["exits"]["block_read"] == 0
    assert c["ring_requests"] == reps * (requests + sync)
    assert c["host_io_calls"] == data_notifications     # contiguous requests: one preadv/pwritev each
    assert c["exits"]["total"] == 1 + c["notifications"] + 2   # setup, notifications, puts, halt
    assert c["bytes_read" if op == "read" else "bytes_written"] == reps * size


def test_ring_each_write_fsyncs_every_request(hvt, tmp_path):
    disk = make_disk(tmp_path / "disk.img", 8192)
    _, c = run_probe(hvt, disk, "ring", "write_sync", 8192, 2, 2, 4, flush="each-write")
    assert c["fsyncs"] == 2 * 8 and c["host_io_calls"] == 2 * 8     # no merging, fsync after each
    assert c["notifications"] == 2 * (2 + 1)
    assert pattern_ok(disk.read_bytes())


@pytest.mark.parametrize("op,flush", [("write", "on-request"), ("read", "on-request"),
                                      ("write_sync", "on-request"), ("write_sync", "none")])
def test_mapped_counters(hvt, tmp_path, op, flush):
    reps = 4
    disk = make_disk(tmp_path / "disk.img", 65536)
    _, c = run_probe(hvt, disk, "mapped", op, 65536, reps, 8, flush=flush)
    sync = op == "write_sync"
    assert c["transport"] == "mapped"
    assert c["exits"]["block_write"] == c["exits"]["block_read"] == c["notifications"] == 0
    assert c["block_exits"] == c["flush_exits"] == c["exits"]["mapped_flush"] == reps * sync
    assert c["fsyncs"] == reps * (sync and flush == "on-request")
    assert c["host_io_calls"] == 0 and c["bytes_written"] == c["bytes_read"] == 0   # the guest copies
    assert c["exits"]["total"] == 1 + reps * sync + 2          # window query, flushes, puts, halt


# -- hostile ring ---------------------------------------------------------------------------

HOSTILE_RING = [
    ("setup_entries_zero", "0 entries, expected a power of two"),
    ("setup_entries_npot", "3 entries"),
    ("setup_entries_huge", "2147483648 entries"),
    ("setup_outside", "outside guest memory"),
    ("setup_wrap", "outside guest memory"),
    ("setup_unaligned", "not 8-byte aligned"),
    ("setup_over_text", "overlaps the guest's read-only image"),
    ("setup_bad_handle", "ring setup: bad block handle 7"),
    ("setup_twice", "already has a ring"),
    ("notify_no_ring", "has no ring"),
    ("notify_bad_handle", "ring notify: bad block handle 9"),
    ("prod_ahead", "more than the ring's 8 entries"),
    ("prod_behind", "more than the ring's 8 entries"),
    ("slot_outside", "descriptor index 8 outside the ring of 8"),
    ("slot_huge", "descriptor index 65535 outside"),
    ("chain_loop", "used twice in one notification"),
    ("chain_self", "used twice in one notification"),
    ("shared_desc", "used twice in one notification"),
    ("next_outside", "descriptor index 8 outside"),
    ("buf_outside", "outside guest memory"),
    ("buf_straddle", "outside guest memory"),
    ("buf_wrap", "outside guest memory"),
    ("buf_second_seg", "outside guest memory"),
    ("len_zero", "not a positive multiple"),
    ("len_unaligned", "not a positive multiple"),
    ("len_max", "outside guest memory"),
    ("offset_unaligned", "not aligned"),
    ("offset_beyond", "beyond the end of the disk"),
    ("offset_wrap", "beyond the end of the disk"),
    ("chain_past_end", "beyond the end of the disk"),
    ("read_into_text", "read into the guest's read-only image"),
    ("op_unknown", "unknown op 9"),
    ("flush_with_buffer", "FLUSH request 0 has a buffer"),
]


def test_hostile_ring_cases_are_all_in_the_guest(hvt):
    """Every case the test suite names exists in the guest (an unknown case exits 2)."""
    names = hvt.ring_hostile.read_bytes()
    for case, _ in HOSTILE_RING:
        assert case.encode() + b"\0" in names, case


@pytest.mark.parametrize("case,message", HOSTILE_RING, ids=[c for c, _ in HOSTILE_RING])
def test_hostile_ring_ends_the_guest(hvt, jail, case, message):
    disk, snapshot = jail
    before = snapshot()
    proc = tender(hvt, hvt.ring_hostile, [f"case={case}"], disk, ["--counters", "--transport=ring"])
    assert_guest_ended(proc, message)
    assert snapshot() == before                      # disk and its neighbour untouched
    c = counters(proc)
    assert c["bytes_written"] == c["bytes_read"] == c["host_io_calls"] == 0


def test_hostile_ring_control_case_runs(hvt, jail):
    disk, _ = jail
    proc = tender(hvt, hvt.ring_hostile, ["case=ok"], disk, ["--counters", "--transport=ring"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert disk.read_bytes()[:1024] == b"\x5a" * 1024
    c = counters(proc)
    assert c["notifications"] == 1 and c["ring_requests"] == 2 and c["host_io_calls"] == 2


@pytest.mark.parametrize("guest,case,message", [
    ("ring_hostile", "setup_twice", "ring transport is not enabled"),
    ("ring_hostile", "notify_no_ring", "ring transport is not enabled"),
    ("ring_hostile", "mapped_info", "disks are not mapped"),
    ("ring_hostile", "mapped_flush_beyond", "disks are not mapped"),
])
def test_transport_hypercalls_need_the_transport(hvt, jail, guest, case, message):
    disk, snapshot = jail
    before = snapshot()
    proc = tender(hvt, getattr(hvt, guest), [f"case={case}"], disk)
    assert proc.returncode == 3 and message in proc.stderr, proc.stderr
    assert snapshot() == before


@pytest.mark.parametrize("case", ["mapped_flush_beyond", "mapped_flush_wrap"])
def test_hostile_mapped_flush_ends_the_guest(hvt, jail, case):
    disk, snapshot = jail
    before = snapshot()
    proc = tender(hvt, hvt.ring_hostile, [f"case={case}"], disk, ["--transport=mapped", "--flush=on-request"])
    assert proc.returncode == 3 and "mapped flush:" in proc.stderr and "beyond the end of the disk" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and snapshot() == before


# -- the mapped disk: limits and a file truncated under the guest ----------------------

@pytest.mark.parametrize("size,extra,message", [
    (4096 + 512, ["--transport=mapped"], "not a whole number of 4096-byte pages"),
    (4096, ["--transport=mapped", "--flush=each-write"], "no write exits to flush after"),
    (4096, ["--transport=ring", "--stock-abi"], "not with --stock-abi"),
    (4096, ["--transport=disk"], "expected hvt, ring or mapped"),
])
def test_transport_options_refused(hvt, tmp_path, size, extra, message):
    disk = make_disk(tmp_path / "disk.img", size)
    proc = tender(hvt, hvt.probe, ["op=write", "size=512", "reps=1"], disk, extra)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert disk.read_bytes() == b"\xee" * size


@pytest.mark.parametrize("transport,message", [("ring", "needs the tender's ring extension"),
                                               ("mapped", "needs the tender's mapped disks")])
def test_probe_refuses_a_transport_the_tender_lacks(hvt, tmp_path, transport, message):
    disk = make_disk(tmp_path / "disk.img", 4096)
    proc = tender(hvt, hvt.probe, ["op=write", "size=4096", "reps=1", f"transport={transport}"], disk)
    assert proc.returncode == 2 and message in probe_json(proc)["error"]
    assert disk.read_bytes() == b"\xee" * 4096


def test_mapped_disk_truncated_under_the_guest(hvt, tmp_path):
    size = 1 << 20
    disk = make_disk(tmp_path / "disk.img", size)
    proc = subprocess.Popen([str(hvt.tender), "--transport=mapped", f"--block:storage={disk}",
                             str(hvt.mapped_wait)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()                 # the guest wrote through the window, waits
        assert line == "mapped_wait: ready\n", (line, proc.stderr.read() if proc.poll() is not None else "")
        fd = os.open(disk, os.O_RDWR)
        try:
            os.ftruncate(fd, 4096)                    # its last sector is gone
            os.pwrite(fd, struct.pack("<Q", 1), 8)    # let it go on
        finally:
            os.close(fd)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, (proc.returncode, out, err)
    assert "survived" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeio-hvt: host error: ") and "shrank" in lines[0], err


# -- aarch64: the same transports on an emulated arm64 board with KVM -------------------

def _a64_needs():
    return all(shutil.which(p) for p in ("aarch64-linux-gnu-gcc", "qemu-system-aarch64", "cpio"))


@pytest.mark.skipif(not _a64_needs(), reason="needs aarch64-linux-gnu-gcc, qemu-system-aarch64 and cpio")
def test_aarch64_transports_under_emulation(tmp_path):
    from tests.test_hardening import _emulated_board_log
    log = _emulated_board_log(tmp_path, "transports_init.c", ("probe", "ring_hostile", "mapped_wait"), timeout=900)
    assert "=== done" in log and "=== kvm: yes" in log, log[-3000:]
    result = {m.group(1): (int(m.group(2)), int(m.group(3)))
              for m in re.finditer(r"^=== (\S+) rc=(-?\d+) sig=(\d+)$", log, re.M)}
    section = {name: log[log.index(f"=== {name}\n"):log.index(f"=== {name} rc=")] for name in result}

    def counters_of(name):
        line = [ln for ln in section[name].splitlines() if ln.startswith('{"edgeio_hvt_counters"')][-1]
        return json.loads(line)["edgeio_hvt_counters"]

    def probe_of(name):
        return json.loads([ln for ln in section[name].splitlines() if '"probe"' in ln][-1])
    expected = sum(((i * 8) | TAG) for i in range(65536 // 8)) % 2**64     # the pattern, read back
    for t in ("ring", "mapped"):
        assert result[f"{t}-write_sync"] == (0, 0) and result[f"{t}-read"] == (0, 0), section
        assert probe_of(f"{t}-read")["data_checksum"] == expected
        assert counters_of(f"{t}-read")["arch"] == "aarch64"
    c = counters_of("ring-write_sync")                   # 64 requests of 1 KiB, batch 16, + flush
    assert c["notifications"] == 2 * (4 + 1) and c["flush_exits"] == 2 and c["host_io_calls"] == 2 * 4
    c = counters_of("mapped-write_sync")
    assert c["block_exits"] == c["flush_exits"] == c["fsyncs"] == 3 and c["exits"]["block_write"] == 0
    assert counters_of("mapped-read")["block_exits"] == 0
    for case in ("chain_loop", "slot_outside", "buf_outside", "offset_wrap", "prod_ahead", "read_into_text"):
        assert result[case] == (3, 0) and "edgeio-hvt: guest error: ring" in section[case], section[case]
    assert "mapped_wait: ready" in section["truncated"]
    assert result["truncated"] == (4, 0) and "edgeio-hvt: host error:" in section["truncated"], section["truncated"]
    assert "shrank" in section["truncated"] and "survived" not in section["truncated"]
