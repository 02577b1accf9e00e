"""The C file probe: bytes written, flushes issued, reads counted, JSON, errors, aarch64 build."""

import json
import re
import shutil
import subprocess

import pytest

from edgeio.errors import UserError
from measure import probe_build
from measure.probe_build import parse_probe_output, probe_binary, probe_version
from tests.conftest import FOREIGN_ARCH, HOST_ARCH, needs_cross_gcc

PATTERN = bytes(ord("a") + i % 26 for i in range(1 << 20))


@pytest.fixture(scope="module")
def probe():
    return str(probe_binary())


def run(probe, *args, prefix=()):
    return subprocess.run([*prefix, probe, *map(str, args)], capture_output=True, text=True, timeout=30)


def ok_json(proc):
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1, "stdout must be exactly one JSON line"
    return json.loads(proc.stdout)


def strace_calls(tmp_path, probe, *args):
    """Run the probe under strace; return {syscall: [return values]} of the I/O calls."""
    if not shutil.which("strace"):
        pytest.skip("strace not installed (apt-get install strace)")
    log = tmp_path / "strace.log"
    proc = run(probe, *args, prefix=["strace", "-f", "-qq", "-o", str(log),
                                     "-e", "trace=pwrite64,pread64,fsync,fdatasync"])
    ok_json(proc)
    calls = {}
    for line in log.read_text().splitlines():
        m = re.match(r"(?:\d+\s+)?(\w+)\(.*\)\s+=\s+(-?\d+)", line)
        if m:
            calls.setdefault(m.group(1), []).append(int(m.group(2)))
    return calls


def test_write_puts_the_pattern_from_offset_zero_and_sets_the_size(probe, tmp_path):
    path = tmp_path / "f.dat"
    path.write_bytes(b"\0" * 20000)          # longer and zero: both must change
    rec = ok_json(run(probe, "--path", path, "--size", 10000, "--reps", 3, "--op", "write",
                      "--io-size", 4096))
    assert rec["io_size"] == 4096 and rec["sync"] == "none"
    chunk = PATTERN[:4096]
    assert path.read_bytes() == chunk + chunk + chunk[:10000 - 8192]


@pytest.mark.parametrize("op,sync,expect", [
    ("write_sync", None, {"fsync": 7}),
    ("write_sync", "fdatasync", {"fdatasync": 7}),
    ("write", "fsync", {}),                   # --sync is recorded as none for plain writes
])
def test_flushes_are_really_issued_once_per_repetition(probe, tmp_path, op, sync, expect):
    args = ["--path", tmp_path / "f.dat", "--size", 8192, "--reps", 7, "--op", op,
            "--io-size", 4096, "--batches", 3]
    calls = strace_calls(tmp_path, probe, *args, *(["--sync", sync] if sync else []))
    flushes = {k: len(v) for k, v in calls.items() if k in ("fsync", "fdatasync")}
    assert flushes == expect
    assert calls["pwrite64"] == [4096] * 14  # 7 repetitions x 2 calls, all complete


def test_read_reads_the_whole_file_each_repetition(probe, tmp_path):
    path = tmp_path / "f.dat"
    path.write_bytes(PATTERN[:12288])
    calls = strace_calls(tmp_path, probe, "--path", path, "--size", 12288, "--reps", 5,
                         "--op", "read", "--io-size", 4096)
    assert calls["pread64"] == [4096] * 15
    assert "pwrite64" not in calls and "fsync" not in calls  # existing content is not rewritten


def test_read_fills_a_missing_file_outside_the_timing(probe, tmp_path):
    path = tmp_path / "new.dat"
    rec = ok_json(run(probe, "--path", path, "--size", 3 << 20, "--reps", 2, "--op", "read"))
    assert rec["io_size"] == 1 << 20         # default for files over 1 MiB
    assert path.read_bytes() == PATTERN * 3


def test_json_fields_and_batches(probe, tmp_path):
    rec = ok_json(run(probe, "--path", tmp_path / "f.dat", "--size", "4KiB", "--reps", 100,
                      "--op", "write_sync", "--batches", 7))
    assert rec["probe"] == "edgeio-fileprobe" and rec["version"] == probe_version()
    assert (rec["op"], rec["size"], rec["reps"], rec["io_size"]) == ("write_sync", 4096, 100, 4096)
    assert (rec["sync"], rec["direct"], rec["cache"], rec["errno"], rec["error"]) == \
        ("fsync", False, "warm", 0, "")
    assert len(rec["batch_reps"]) == len(rec["batch_seconds"]) == 7
    assert sum(rec["batch_reps"]) == 100 and max(rec["batch_reps"]) - min(rec["batch_reps"]) <= 1
    assert all(s > 0 for s in rec["batch_seconds"])
    assert rec["total_seconds"] == pytest.approx(sum(rec["batch_seconds"]), abs=1e-8)
    # CPU time of one thread cannot exceed its wall time (the CPU clock brackets the wall one)
    assert 0 < rec["cpu_seconds"] <= rec["total_seconds"] + 1e-3
    assert parse_probe_output(json.dumps(rec)) == rec


def test_direct_io_writes_through_aligned_buffers(probe, tmp_path):
    path = tmp_path / "f.dat"
    proc = run(probe, "--path", path, "--size", 16384, "--reps", 3, "--op", "write", "--io-size", 4096,
               "--direct")
    if proc.returncode == 1 and json.loads(proc.stdout)["errno"] == 22:
        pytest.skip("this filesystem refuses O_DIRECT")
    rec = ok_json(proc)
    assert rec["direct"] is True and rec["io_size"] == 4096
    assert path.read_bytes() == PATTERN[:4096] * 4
    assert ok_json(run(probe, "--path", path, "--size", 16384, "--reps", 3, "--op", "read",
                       "--direct"))["errno"] == 0


def test_batches_are_capped_at_reps_and_cold_times_each_repetition(probe, tmp_path):
    rec = ok_json(run(probe, "--path", tmp_path / "f.dat", "--size", 4096, "--reps", 3, "--op", "write"))
    assert rec["batch_reps"] == [1, 1, 1]
    rec = ok_json(run(probe, "--path", tmp_path / "f.dat", "--size", 4096, "--reps", 4, "--op", "read",
                      "--cold", "--batches", 2))
    assert rec["cache"] == "cold" and rec["batch_reps"] == [1, 1, 1, 1]
    assert rec["cold_method"] in ("fadvise", "fadvise+drop_caches")


@pytest.mark.parametrize("args", [
    [],
    ["--size", 4096, "--reps", 1, "--op", "write"],                      # no --path
    ["--path", "X", "--size", 0, "--reps", 1, "--op", "write"],
    ["--path", "X", "--size", "4QB", "--reps", 1, "--op", "write"],
    ["--path", "X", "--size", 4096, "--reps", -1, "--op", "write"],
    ["--path", "X", "--size", 4096, "--reps", 1, "--op", "append"],
    ["--path", "X", "--size", 4096, "--reps", 1, "--op", "write", "--sync", "always"],
    ["--path", "X", "--size", 4096, "--reps", 1, "--op", "write", "--bogus"],
    ["--path", "X", "--size", 4096, "--reps", 1, "--op", "write", "--batches"],
    ["--path", "X", "--size", 1000, "--reps", 1, "--op", "write", "--direct"],
    ["--path", "X", "--size", 4096, "--reps", 1, "--op", "write", "--io-size", 1000, "--direct"],
])
def test_bad_arguments_exit_2_with_one_line(probe, tmp_path, args):
    args = [tmp_path / "x" if a == "X" else a for a in args]
    proc = run(probe, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "usage" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("path,op,err,call", [
    ("/dev/full", "write", 28, "pwrite"),                # ENOSPC
    ("/nonexistent-dir/f.dat", "read", 2, "open"),       # ENOENT
    ("/tmp", "write", 21, "open"),                       # EISDIR (root ignores permissions)
])
def test_io_errors_exit_1_with_errno_and_json(probe, path, op, err, call):
    proc = run(probe, "--path", path, "--size", 4096, "--reps", 3, "--op", op)
    assert proc.returncode == 1
    rec = parse_probe_output(proc.stdout)
    assert rec["errno"] == err and rec["error"].startswith(call)
    assert rec["batch_reps"] == [] and rec["total_seconds"] == 0


def test_aarch64_build_runs_under_qemu_user(tmp_path):
    """The Pi's probe: natively on an aarch64 host, under qemu-user elsewhere."""
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if HOST_ARCH != "aarch64" and not qemu:
        pytest.skip("qemu-user not installed (apt-get install qemu-user)")
    binary = probe_binary("aarch64")
    assert open(binary, "rb").read(20)[18] == 183       # ELF e_machine EM_AARCH64
    path = tmp_path / "f.dat"
    rec = ok_json(run(str(binary), "--path", path, "--size", 8192, "--reps", 20, "--op", "write_sync",
                      "--sync", "fdatasync", "--batches", 4,
                      prefix=[] if HOST_ARCH == "aarch64" else [qemu]))
    assert rec["sync"] == "fdatasync" and rec["batch_reps"] == [5, 5, 5, 5]
    assert path.read_bytes() == PATTERN[:8192]


@pytest.mark.parametrize("arch", [HOST_ARCH, pytest.param(FOREIGN_ARCH, marks=needs_cross_gcc(FOREIGN_ARCH))])
def test_both_compilers_build_it_without_warnings(tmp_path, arch):
    compiler, _ = probe_build._compiler(arch)
    proc = subprocess.run([compiler, *probe_build.CFLAGS, "-o", str(tmp_path / arch),
                           *map(str, probe_build._sources())], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_build_is_cached_and_keyed_on_the_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEIO_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "probes"
    shutil.copytree(probe_build.PROBE_DIR, src)
    monkeypatch.setattr(probe_build, "PROBE_DIR", src)
    first = probe_binary()
    stamp = first.stat().st_mtime_ns
    assert probe_binary() == first and first.stat().st_mtime_ns == stamp
    (src / "version.h").write_text((src / "version.h").read_text() + "/* changed */\n")
    assert probe_binary() != first


def test_missing_compiler_names_the_package(monkeypatch):
    monkeypatch.setattr(probe_build.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=f"gcc-{FOREIGN_ARCH.replace('_', '-')}-linux-gnu"):
        probe_binary(FOREIGN_ARCH)          # the other arch: its Debian cross toolchain
    with pytest.raises(UserError, match="apt-get install gcc libc6-dev"):
        probe_binary(HOST_ARCH)             # this machine's own gcc
    with pytest.raises(UserError, match="unknown probe arch"):
        probe_binary("riscv64")


def test_parse_probe_output_takes_the_last_probe_line_of_a_console():
    good = {"probe": "edgeio-solo5-probe", "version": "1.0", "op": "read", "size": 4096, "reps": 2,
            "io_size": 512, "sync": "none", "direct": False, "cache": "warm", "batch_reps": [1, 1],
            "batch_seconds": [0.1, 0.2], "total_seconds": 0.3, "errno": 0, "error": "",
            "block_size": 512, "blocks_per_call": 1}
    console = "\n".join([
        "            |      ___|", "Solo5: Memory map: 512 MB addressable:",
        json.dumps({"probe": "stale", "version": "0"}),          # an earlier, incomplete record
        json.dumps({"not": "a probe"}),
        "Solo5: " + json.dumps(good) + "\r",                      # junk before the JSON
        "{broken json", "Solo5: solo5_exit(0) called",
    ])
    assert parse_probe_output(console) == good
    with pytest.raises(UserError, match="no probe output"):
        parse_probe_output("booting\n{\"a\": 1}\nhalted")
    with pytest.raises(UserError, match="lacks .*batch_seconds"):
        parse_probe_output(json.dumps({k: v for k, v in good.items() if k != "batch_seconds"}))
