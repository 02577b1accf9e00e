"""Bad input to every command, as a new user or an attacker would type it (issue 19).

Each case runs the `invoke` program in this process (its own option parsing included) with
a private EDGEIO_RESULTS and EDGEIO_CACHE, and asserts: exit status 2, exactly one line on
stderr, no traceback, and no file written anywhere (not in --out, the results or the
cache, nor a work directory in /var/tmp). A second part feeds generated text to the
parsers (edgeio/parse.py) and generated JSON to the file readers: a value or a one-line
UserError, never another exception.
"""

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgeio import parse
from edgeio.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PI4_PROFILE = ROOT / "calibration" / "data" / "pi4_machine.json"
PI4_CSV = ROOT / "calibration" / "data" / "pi4_file_access.csv"


def run_invoke(*args, program=None) -> tuple[int, str]:
    """The `invoke` program (or another, e.g. the `edgeio` command's) in this process:
    (exit code, stderr)."""
    from invoke import Collection, Program
    import tasks
    program = program or Program(namespace=Collection.from_module(tasks))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            program.run(["invoke", *args])
            code = 0
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


# -- the files the cases name ----------------------------------------------------------------
def _profile(**machine):
    """The Pi 4 profile with machine facts (or, with a key "profile.X", top-level X) changed."""
    data = json.loads(PI4_PROFILE.read_text())
    for key, value in machine.items():
        where, key = (data, key[8:]) if key.startswith("profile.") else (data["machine"], key)
        *path, last = key.split(".")
        for k in path:
            where = where[k]
        if value is _DELETE:
            del where[last]
        else:
            where[last] = value
    return data


_DELETE = object()
PROFILES = {
    # the issue's: tracebacks and silent defaults
    "caches_big": _profile(cpu_caches="big"),
    "envs_x": _profile(**{"profile.environments": "x"}),
    "envs_list": _profile(**{"profile.environments": [1]}),
    "envs_hvt_x": _profile(**{"profile.environments.hvt": "x"}),
    "block_device_x": _profile(block_device="x"),
    "page_bytes_0": _profile(page_bytes=0),
    "vm_x": _profile(vm="x"),
    # more
    "memory_string": _profile(memory_bytes="4GB"),
    "memory_negative": _profile(memory_bytes=-1),
    "memory_nan": _profile(memory_bytes=float("nan")),
    "memory_true": _profile(memory_bytes=True),
    "cpus_four": _profile(cpus="four"),
    "kvm_maybe": _profile(kvm="maybe"),
    "emulated_no": _profile(emulated="no"),
    "l2_negative": _profile(**{"cpu_caches.l2_bytes": -1}),
    "l2_fraction": _profile(**{"cpu_caches.l2_bytes": 1.5}),
    "kind_floppy": _profile(**{"block_device.kind": "floppy"}),
    "readahead_text": _profile(**{"block_device.readahead_bytes": "128k"}),
    "dirty_ratio_150": _profile(**{"vm.dirty_ratio": 150}),
    "qemu_memory_text": _profile(**{"profile.environments.qemu.memory_bytes": "2G"}),
    "docker_memory_0": _profile(**{"profile.environments.docker.memory_bytes": 0}),
    "env_unknown": _profile(**{"profile.environments.vmware": {}}),
    "hvt_flush_object": _profile(**{"profile.environments.hvt.flush": {}}),
    "hvt_block_size_100": _profile(**{"profile.environments.hvt.block_size": 100}),
    "sources_x": _profile(**{"profile.sources": "x"}),
    "no_caches": _profile(cpu_caches=_DELETE),
    "machine_x": _profile(**{"profile.machine": "x"}),
}


def _calibration_edit(data, path, value):
    where = data
    *path, last = path
    for k in path:
        where = where[k]
    where[last] = value
    return data


CALIBRATION_EDITS = {
    "param_nan": (["params", "syscall_s", "value"], float("nan")),
    "param_text": (["params", "syscall_s", "value"], "fast"),
    "params_list": (["params"], []),
    "fit_env": (["fit", 0, "env"], "vmware"),
    "fit_size": (["fit", 0, "size_bytes"], "4KiB"),
    "workloads_x": (["metadata", "workloads"], "x"),
    "workload_op": (["metadata", "workloads", 0, "op"], "append"),
    "covariance_shape": (["metadata", "covariance", "joint", "matrix"], [[1.0]]),
    "machine_page_0": (["machine", "page_bytes"], 0),
    "source_missing": (["source"], None),
    "structural_nan": (["metadata", "structural_error", "log_sd"], float("nan")),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import calibration
    d = tmp_path_factory.mktemp("inputs")
    for name, data in PROFILES.items():
        (d / f"{name}.json").write_text(json.dumps(data))
    (d / "not_json.json").write_text("{machine: ")
    (d / "top_list.json").write_text("[1, 2]")
    (d / "no_machine.json").write_text(json.dumps({"profile": "x"}))
    cal = calibration.fit(calibration.load_results(None))        # the bundled Pi 4 figures, ~10 s
    good = cal.save(d / "cal.json")
    base = json.loads(good.read_text())
    for name, (path, value) in CALIBRATION_EDITS.items():
        (d / f"cal_{name}.json").write_text(json.dumps(_calibration_edit(copy.deepcopy(base), path, value)))
    (d / "cal_truncated.json").write_text(good.read_text()[:500])
    rows = PI4_CSV.read_text().splitlines()
    (d / "negative.csv").write_text("\n".join([rows[0], rows[1].replace(rows[1].split(",")[1], "-4096", 1)]))
    (d / "pi.csv").write_text(PI4_CSV.read_text())
    (d / "a_file").write_text("x")
    return d


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEIO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("EDGEIO_CACHE", str(tmp_path / "cache"))
    return tmp_path


# -- the cases: (command and arguments, what the one line says) -------------------------------
# {f}: the files above; {out}: the case's --out (must stay empty)
MEASURE = [
    ("--env linux --size 4kb,4096", "4096 B given twice"),
    ("--env linux --size 4KiB,4KiB", "4096 B given twice"),
    ("--env linux --op read,read", "'read' given twice"),
    ("--env linux,linux", "'linux' given twice"),
    ("--env all,linux", "all already names every one"),
    ("--env linux --exclude docker,docker", "'docker' given twice"),
    ("--env linux --size 0", "--size '0': expected 1 B to 1024 TiB"),
    ("--env linux --size -4k", "--size '-4k': malformed size"),
    ("--env linux --size 4.5k", "malformed size"),
    ("--env linux --size nan", "malformed size"),
    ("--env linux --size 4XB", "malformed size"),
    ("--env linux --size 99999999999999999999G", "expected 1 B to 1024 TiB"),
    ("--env linux --reps nan", "--reps 'nan': expected a whole number"),
    ("--env linux --reps 1e3", "expected a whole number"),
    ("--env linux --reps 100000000000", "--reps 100000000000: expected 1 to 100000000"),
    ("--env linux --reps -1", "expected 1 to"),
    ("--env linux --batches -1", "--batches -1: expected 1 to 100000000"),
    ("--env linux --batches 1.5", "--batches '1.5': expected a whole number"),
    ("--env linux --batches 100000000000", "--batches 100000000000: expected 1 to 100000000"),
    ("--env linux --seed -1", "--seed -1: must be at least 0"),
    ("--env linux --seed 0x10", "expected a whole number"),
    ("--env linux --cell-timeout -5", "--cell-timeout '-5'"),
    ("--env linux --cell-timeout inf", "--cell-timeout 'inf'"),
    ("--env linux --cell-timeout nan", "--cell-timeout 'nan'"),
    ("--env linux --cell-timeout 0", "--cell-timeout '0'"),
    ("--env linux --reps auto --ci nan", "--ci 'nan'"),
    ("--env linux --reps auto --ci 150%", "--ci '150%': expected a share"),
    ("--env linux --reps auto --ci inf%", "--ci"),
    ("--env linux --reps auto --budget inf", "--budget 'inf'"),
    ("--env linux --reps auto --budget 0", "--budget '0'"),
    ("--env linux --reps auto --budget 10y", "--budget '10y'"),
    ("--env linux --io-size 0", "--io-size '0'"),
    ("--env linux --io-size abc", "--io-size 'abc': malformed size"),
    ("--env linux --max-size 1m", "--max-size goes with --protocol calibrate"),
    ("--env linux --protocol calibrate --max-size 1x", "--max-size '1x': malformed size"),
    ("--env linux --protocol fast", "unknown protocol 'fast'"),
    ("--env linux --order sideways", "unknown order 'sideways'"),
    ("--env linux --sync maybe", "unknown sync 'maybe'"),
    ("--env linux --param blocks_per_call=8 --param blocks_per_call=9", "blocks_per_call: given twice"),
    ("--env linux --param =5", "use key=value"),
    ("--env linux --param novalue", "use key=value"),
    ("--env hvt --param blocks_per_call=0", "hvt: --param blocks_per_call=0: expected 1 to 65536"),
    ("--env hvt --param blocks_per_call=100000000000", "expected 1 to 65536"),
    ("--env hvt --param transport=ring --param batch=0", "hvt: --param batch=0: expected 1 to 4096"),
    ("--env hvt --param sector_size=1000", "must be a power of two"),
    ("--env hvt --param mem=nan", "hvt: --param mem='nan': expected a whole number"),
    ("--env qemu --param timeout=nan", "qemu: --param timeout='nan': expected a finite number"),
    ("--env qemu --param timeout=inf", "qemu: --param timeout='inf': expected a finite number"),
    ("--env qemu --param timeout=-1", "qemu: --param timeout='-1': must be more than 0"),
    ("--env qemu --param mem=abc", "qemu: --param mem='abc': expected a whole number"),
    ("--env qemu --param cpus=0", "qemu: --param cpus=0: expected 1 to 1024"),
    ("--env docker --param mem=5", "docker: --param mem=5: expected 6 to"),
    ("--env linux --target ftp://host", "unknown target 'ftp://host'"),
    ("--resume {f}/no-such-campaign", "no-such-campaign"),
    ("--resume {f}/a_file", "a_file"),
    ("--env linux --allow-other-machine", "--allow-other-machine goes with --resume DIR"),
    ("--env linux --retry-failed", "--retry-failed goes with --resume DIR"),
    ("--resume {f}", "is not a campaign directory"),
]
CALIBRATE = [(f"--machine {{f}}/{name}.json --source {{f}}/pi.csv", needle) for name, needle in [
    ("caches_big", "machine.cpu_caches: expected an object, got 'big'"),
    ("envs_x", "environments: expected an object, got 'x'"),
    ("envs_list", "environments: expected an object, got [1]"),
    ("envs_hvt_x", "environments.hvt: expected an object, got 'x'"),
    ("block_device_x", "machine.block_device: expected an object, got 'x'"),
    ("page_bytes_0", "machine.page_bytes: expected at least 512, got 0"),
    ("vm_x", "machine.vm: expected an object, got 'x'"),
    ("memory_string", "machine.memory_bytes: expected a finite number, got '4GB'"),
    ("memory_negative", "machine.memory_bytes: expected more than 0"),
    ("memory_nan", "machine.memory_bytes: expected a finite number"),
    ("memory_true", "machine.memory_bytes: expected a finite number, got True"),
    ("cpus_four", "machine.cpus: expected a whole number"),
    ("kvm_maybe", "machine.kvm: expected one of hardware, software, absent"),
    ("emulated_no", "machine.emulated: expected one of True, False"),
    ("l2_negative", "machine.cpu_caches.l2_bytes: expected at least 1"),
    ("l2_fraction", "machine.cpu_caches.l2_bytes: expected a whole number"),
    ("kind_floppy", "machine.block_device.kind: expected one of"),
    ("readahead_text", "machine.block_device.readahead_bytes: expected a whole number"),
    ("dirty_ratio_150", "machine.vm.dirty_ratio: expected at most 100"),
    ("qemu_memory_text", "environments.qemu.memory_bytes: expected a whole number"),
    ("docker_memory_0", "environments.docker.memory_bytes: expected at least 1"),
    ("env_unknown", "environments.vmware: expected one of linux"),
    ("hvt_flush_object", "environments.hvt.flush: expected a string, number or true/false"),
    ("hvt_block_size_100", "environments.hvt.block_size: expected at least 512"),
    ("sources_x", "sources: expected an object"),
    ("no_caches", "machine facts lack cpu_caches"),
    ("machine_x", "not a machine profile"),
    ("not_json", "not a machine profile (JSONDecodeError"),
    ("top_list", "not a machine profile"),
    ("no_machine", "not a machine profile"),
    ("no_such_profile", "no such machine profile"),
]] + [
    ("--source {f}/no-such.csv", "no such results file or campaign directory"),
    ("--source {f}/negative.csv --machine " + str(PI4_PROFILE), "size_bytes and mean_per_op_s must be positive"),
    ("--source {f}/pi.csv", "needs the machine it was measured on"),
    ("--source {f}/a_file --machine " + str(PI4_PROFILE), "lacks column"),
    ("--out {f}/a_file", "exists; calibrations are never overwritten"),
    ("--out {out}/cal.txt", "give a .json file or an existing directory"),
    ("--source {f}", "is not a campaign directory"),
]
PREDICT = [(f"--scenario {s} --calibration {{f}}/cal.json " + " ".join(f"--param {p}" for p in ps.split()), needle)
           for s, ps, needle in [
    # the issue's
    ("passthrough", "exits_per_request=nan", "passthrough: --param exits_per_request='nan': expected a finite number"),
    ("passthrough", "exits_per_request=inf", "passthrough: --param exits_per_request='inf': expected a finite number"),
    ("hvt-multiblock", "blocks=100000000000", "hvt-multiblock: --param blocks=100000000000: expected 1 to 65536"),
    # more: the same bounds and words as the environment parameter that builds each
    ("hvt-multiblock", "blocks=0", "hvt-multiblock: --param blocks=0: expected 1 to 65536"),
    ("hvt-multiblock", "blocks=-1", "expected 1 to 65536"),
    ("hvt-multiblock", "blocks=1.5", "hvt-multiblock: --param blocks='1.5': expected a whole number"),
    ("hvt-multiblock", "blocks=abc", "expected a whole number"),
    ("hvt-multiblock", "blocks=0x10", "expected a whole number"),
    ("hvt-multiblock", "blocks=8 blocks=9", "--param blocks: given twice"),
    ("hvt-multiblock", "blocks", "use key=value"),
    ("hvt-multiblock", "blockz=8", "unknown parameter blockz"),
    ("hvt-ring", "batch=0", "hvt-ring: --param batch=0: expected 1 to 4096"),
    ("hvt-ring", "batch=5000", "expected 1 to 4096"),
    ("hvt-ring", "blocks=0", "hvt-ring: --param blocks=0: expected 1 to 65536"),
    ("hvt-flush", "flush=call blocks=0", "hvt-flush: --param blocks=0: expected 1 to 65536"),
    ("hvt-flush", "flush=sometimes", "hvt-flush: --param flush='sometimes': use none, each-write"),
    ("hvt-blocksize", "block_size=1000", "hvt-blocksize: --param block_size=1000: must be a power of two"),
    ("hvt-blocksize", "block_size=65536", "expected 512 to 32768"),
    ("guest-memory", "memory=1k", "guest-memory: --param memory='1k': expected 64 MiB to 1 TiB"),
    ("guest-memory", "memory=nan", "malformed size"),
    ("guest-memory", "memory=-1GiB", "malformed size"),
    ("passthrough", "guest_cache_mib=nan", "expected a finite number"),
    ("passthrough", "guest_cache_mib=-1", "expected 0 to 4096"),
    ("passthrough", "exits_per_request=-0.5", "expected 0 to 1000"),
    ("qemu-disk", "disk=scsi", "qemu-disk: --param disk='scsi': use virtio, ide, ahci"),
]] + [
    ("--scenario nope", "unknown scenario 'nope'"),
    ("--scenario hvt-multiblock --format xml", "--format 'xml': expected one of json, csv, md"),
    ("--scenario hvt-multiblock --calibration {f}/no-such.json", "no such calibration file"),
    ("--scenario hvt-multiblock --calibration {f}/not_json.json", "corrupt calibration file"),
    ("--scenario hvt-multiblock --calibration {f}/cal_truncated.json", "corrupt calibration file"),
    ("--scenario hvt-multiblock --calibration {f}/caches_big.json", "not an edgeio-calibration/1"),
    ("--scenario hvt-multiblock --calibration {f}/cal.json --out {f}/a_file", "exists; predictions are never"),
    ("--scenario hvt-multiblock --calibration {f}/cal.json --out {out}/missing/p.csv", "does not exist"),
] + [(f"--scenario hvt-multiblock --calibration {{f}}/cal_{name}.json", needle) for name, needle in [
    ("param_nan", "params.syscall_s.value: expected a finite number"),
    ("param_text", "params.syscall_s.value: expected a finite number, got 'fast'"),
    ("params_list", "params: expected an object"),
    ("fit_env", "fit[0].env: expected one of"),
    ("fit_size", "fit[0].size_bytes: expected a whole number"),
    ("workloads_x", "metadata.workloads: expected a list"),
    ("workload_op", "metadata.workloads[0].op: expected one of"),
    ("covariance_shape", "metadata.covariance.joint.matrix: 1 rows for"),
    ("machine_page_0", "machine.page_bytes: expected at least 512, got 0"),
    ("source_missing", "source: expected a string"),
    ("structural_nan", "metadata.structural_error.log_sd: expected a finite number"),
]]
VERIFY = [
    # the (a ZeroDivisionError each)
    ("--scenario hvt-multiblock --param blocks=0", "hvt-multiblock: --param blocks=0: expected 1 to 65536"),
    ("--scenario hvt-ring --param batch=0", "hvt-ring: --param batch=0: expected 1 to 4096"),
    ("--scenario hvt-flush --param flush=call --param blocks=0", "hvt-flush: --param blocks=0: expected 1"),
    ("--scenario hvt-multiblock --size 4KiB,4KiB", "4096 B given twice"),
    # more
    ("--scenario hvt-multiblock --op read,read", "'read' given twice"),
    ("--scenario hvt-multiblock --size 0", "--size '0': expected 1 B to"),
    ("--scenario hvt-multiblock --reps 0", "--reps 0: expected 1 to"),
    ("--scenario hvt-multiblock --reps nan", "--reps 'nan': expected a whole number"),
    ("--scenario passthrough --param exits_per_request=inf", "expected a finite number"),
    ("--scenario hvt-multiblock --param blocks=8 --param blocks=8", "--param blocks: given twice"),
    ("--scenario hvt-multiblock --target ftp://x", "unknown target 'ftp://x'"),
    ("--scenario nope", "unknown scenario 'nope'"),
    ("", "give --scenario NAME"),
    ("--resume {f}/no-such-campaign", "no-such-campaign"),
    ("--resume {f}/a_file", "is not a campaign directory"),
    ("--scenario hvt-multiblock --calibration {f}/no-such.json", "no such calibration file"),
    ("--scenario hvt-multiblock --calibration {f}/cal.json", "fitted for another machine"),
    ("--scenario hvt-multiblock --calibration {f}/cal_param_nan.json", "params.syscall_s.value"),
    ("--scenario hvt-multiblock --calibration {f}/caches_big.json", "not an edgeio-calibration/1"),
    ("--scenario hvt-multiblock --size nan", "--size 'nan': malformed size"),
    ("--scenario hvt-multiblock --size 4k,4096", "4096 B given twice"),
    ("--scenario hvt-multiblock --op nope", "--op 'nope': unknown"),
    ("--scenario hvt-multiblock --param =8", "use key=value"),
    ("--scenario hvt-multiblock --reps 1e3", "--reps '1e3': expected a whole number"),
    ("--scenario hvt-blocksize --param block_size=1000", "must be a power of two"),
    ("--scenario hvt-ring --param batch=nan", "hvt-ring: --param batch='nan': expected a whole number"),
    ("--scenario guest-memory --param memory=1k", "guest-memory: --param memory='1k': expected"),
    ("--scenario qemu-disk --param disk=scsi", "use virtio, ide, ahci"),
    ("--scenario hvt-multiblock --format yaml", "--format 'yaml'"),
]
REPORT = [
    ("--campaign {f}/no-such-campaign", "no-such-campaign"),
    ("--campaign {f}/a_file", "a_file"),
    ("--campaign {f}", "is not a campaign directory"),
    ("--reference --format xml", "--format 'xml': expected one of json, csv, md"),
    ("--reference --calibration {f}/cal_fit_env.json", "fit[0].env: expected one of"),
    ("--reference --calibration {f}/cal_truncated.json", "corrupt calibration file"),
    ("--reference --calibration {f}/cal_machine_page_0.json", "machine.page_bytes: expected at least 512"),
    ("--reference --compare linux --compare linux", "two different things"),
    ("--reference --calibration {f}/no-such.json", "no such calibration file"),
    ("--reference --calibration {f}/cal_param_nan.json", "params.syscall_s.value"),
    ("--reference --calibration {f}/caches_big.json", "not an edgeio-calibration/1"),
    ("--reference --compare study", "--compare takes exactly two"),
    ("--reference --compare study --compare study", "two different things"),
    ("--reference --verify {f}/no-such-verify", "no-such-verify"),
]
TESTBED = [
    # the issue's: refused before anything boots
    ("up pi --timeout abc", "--timeout 'abc': expected a duration"),
    ("up pi --timeout -5", "--timeout '-5'"),
    # more
    ("up pi --timeout nan", "--timeout 'nan'"),
    ("up pi --timeout inf", "--timeout 'inf'"),
    ("up pi --timeout 0", "--timeout '0': a duration must be positive"),
    ("up pi --timeout 10x", "--timeout '10x'"),
    ("up pi --timeout 400d", "--timeout '400d'"),
    ("up nosuch", "unknown testbed board 'nosuch'"),
    ("up ../pi", "unknown testbed board '../pi'"),
    ("frobnicate pi", "testbed: action 'frobnicate': use up, down, status"),
    ("up pi --arch sparc", "--arch 'sparc'"),
]
MAIN = [   # each refused before the protocol starts (a case that slipped through would measure for minutes)
    ("--target ftp://host", "unknown target 'ftp://host'"),
    ("--target ssh://", "ssh://"),
    ("--pi --target ssh://user@host", "give one of them"),
    ("--budget abc", "--budget 'abc': expected a duration"),
    ("--budget inf", "--budget 'inf'"),
    ("--budget 0", "--budget '0': a duration must be positive"),
    ("--budget -5m", "--budget '-5m'"),
    ("--exclude linux,linux", "--exclude 'linux,linux': 'linux' given twice"),
    ("--exclude vmware", "--exclude 'vmware': unknown"),
    ("--out {f}/a_file", "not a directory"),
]
# Options invoke's parser cannot take (unknown, a value missing, a flag given a value): the
# `edgeio` command makes them one line and exit 2 too (`invoke` itself exits 1 for them).
UNPARSABLE = [
    ("main", "--frobnicate", "No idea what '--frobnicate' is!"),
    ("main", "--pi=abc", "No idea what 'abc' is!"),
    ("main", "--pi extra", "No idea what 'extra' is!"),
    ("measure", "--batches", "needed value and was not given one"),
    ("measure", "--frobnicate 1", "No idea what '--frobnicate' is!"),
    ("predict", "--scenario", "needed value and was not given one"),
    ("verify", "--resume", "needed value and was not given one"),
    ("calibrate", "--validate=yes", "No idea what 'yes' is!"),
    ("report", "--reference=1", "No idea what '1' is!"),
    ("testbed", "", "did not receive required positional arguments"),
    ("nosuchcommand", "", "No idea what 'nosuchcommand' is!"),
]

CASES = ([("measure", a, n) for a, n in MEASURE] + [("calibrate", a, n) for a, n in CALIBRATE]
         + [("predict", a, n) for a, n in PREDICT] + [("verify", a, n) for a, n in VERIFY]
         + [("report", a, n) for a, n in REPORT] + [("testbed", a, n) for a, n in TESTBED]
         + [("main", a, n) for a, n in MAIN])
OUT_OPTION = {"measure": "--out {out}", "calibrate": "--out {out}/cal.json", "verify": "--out {out}",
              "report": "--out {out}/report"}


def _files_under(*roots) -> set:
    return {p for r in roots if r.exists() for p in r.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command, args, needle", CASES,
                         ids=[f"{c}:{a.replace('{f}/', '')}" for c, a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, sandbox, command, args, needle):
    out = sandbox / "out"
    argv = args.format(f=files, out=out).split()
    if "--out" not in argv and command in OUT_OPTION:
        argv += OUT_OPTION[command].format(out=out).split()
    before = _files_under(files)
    code, err = run_invoke(command, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, f"exit {code}, stderr:\n{err}"
    assert "Traceback" not in err and needle.format(f=files) in lines[0], lines[0]
    assert _files_under(sandbox) == set(), "nothing is written on bad input"
    assert _files_under(files) == before


@pytest.mark.parametrize("command, args, needle", UNPARSABLE, ids=[f"{c}:{a}" for c, a, _ in UNPARSABLE])
def test_unparsable_options_are_one_line_exit_2_through_the_edgeio_command(sandbox, command, args, needle):
    from edgeio.cli import program
    code, err = run_invoke(command, *args.split(), program=program())
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert _files_under(sandbox) == set()


def test_every_command_has_its_cases():
    counts = {c: sum(1 for k, _, _ in CASES + UNPARSABLE if k == c) for c in
              ("measure", "calibrate", "predict", "verify", "report", "testbed", "main")}
    assert all(n >= 3 for n in counts.values()) and sum(counts.values()) >= 180, counts


# -- generated input: a value or one line, never another exception ---------------------------
TEXT = st.text(max_size=40) | st.from_regex(r"\s*[+-]?[0-9]{0,25}(\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?\s*"
                                            r"([kKmMgGtTbBiI%]{0,3}|ms|s|min|h|nan|inf)\s*", fullmatch=True)
ANY = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT


def _value_or_one_line(fn, *args):
    try:
        return fn(*args)
    except UserError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=ANY)
def test_parsers_give_a_value_or_one_line(value):
    size = _value_or_one_line(parse.parse_size, value, "--size")
    assert size is None or (isinstance(size, int) and 1 <= size <= parse.MAX_SIZE)
    n = _value_or_one_line(parse.parse_int, "--batches", value, 1, 1000)
    assert n is None or (isinstance(n, int) and 1 <= n <= 1000)
    x = _value_or_one_line(parse.parse_float, "--param x=", value, 0, 10)
    assert x is None or (math.isfinite(x) and 0 <= x <= 10)
    d = _value_or_one_line(parse.parse_duration, value, "--timeout")
    assert d is None or (math.isfinite(d) and 0 < d <= parse.MAX_DURATION_S)
    p = _value_or_one_line(parse.parse_percent, value, "--ci")
    assert p is None or 0 < p < 1
    _value_or_one_line(parse.parse_choice, "--sync", value, ("fsync", "fdatasync"))
    if isinstance(value, str):
        sizes = _value_or_one_line(parse.parse_sizes, value)
        assert sizes is None or len(set(sizes)) == len(sizes)
        ops = _value_or_one_line(parse.parse_choices, "--op", value, ("write_sync", "write", "read"))
        assert ops is None or len(set(ops)) == len(ops)
        _value_or_one_line(parse.parse_params, [value])


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def base_profile():
    return json.loads(PI4_PROFILE.read_text())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["machine", "environments", "sources", "profile"]) | st.text(max_size=8),
       sub=st.sampled_from(["cpu_caches", "memory_bytes", "page_bytes", "vm", "block_device", "kvm", "hvt",
                            "qemu", "cpus", "filesystem", "emulated"]),
       value=JSON)
def test_machine_profile_reader_gives_a_profile_or_one_line(tmp_path_factory, base_profile, key, sub, value):
    from model.machine import load_profile, structure
    data = copy.deepcopy(base_profile)
    target = data.get(key)
    if isinstance(target, dict):
        target[sub] = value
    else:
        data[key] = value
    path = tmp_path_factory.mktemp("p") / "m.json"
    path.write_text(json.dumps(data))
    profile = _value_or_one_line(load_profile, path)
    if profile is not None:          # what the reader accepted, the model can use
        _value_or_one_line(structure, profile["machine"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | JSON.map(json.dumps))
def test_file_readers_give_a_value_or_one_line_on_any_text(tmp_path_factory, text):
    from calibration.core import load
    from model.machine import load_profile
    path = tmp_path_factory.mktemp("t") / "f.json"
    path.write_text(text)
    _value_or_one_line(load_profile, path)
    _value_or_one_line(load, path)


CSV_CELL = st.sampled_from(["linux", "hvt", "xen", "write", "read", "4096", "-1", "0", "nan", "inf", "1e-6", "",
                            "1e400", "x", '"', "{}", '{"mem": "x"}', '{"flush": 1}']) | st.text(max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CSV_CELL, min_size=1, max_size=6), max_size=4),
       header=st.sampled_from(["env,size_bytes,op,mean_per_op_s", "env,size_bytes,op,mean_per_op_s,config",
                               "env,size_bytes,op,mean_per_op_s,reps,ci95_low_s,ci95_high_s", "env,op"]))
def test_results_csv_reader_gives_a_results_set_or_one_line(tmp_path_factory, header, rows):
    from calibration.results import load_results
    path = tmp_path_factory.mktemp("r") / "results.csv"
    path.write_text("\n".join([header] + [",".join(r) for r in rows]) + "\n")
    _value_or_one_line(load_results, str(path), str(PI4_PROFILE))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(["params", "fit", "metadata", "machine", "workloads", "covariance",
                                      "joint", "matrix", "syscall_s", "value", 0, 1, "env", "op"]),
                     min_size=1, max_size=4), value=JSON)
def test_calibration_reader_gives_a_calibration_or_one_line(files, tmp_path_factory, path, value):
    from calibration.core import load
    data = json.loads((files / "cal.json").read_text())
    where = data
    for k in path[:-1]:
        nxt = where[k] if isinstance(where, dict) and k in where or (
            isinstance(where, list) and isinstance(k, int) and k < len(where)) else None
        if not isinstance(nxt, (dict, list)):
            break
        where = nxt
    if isinstance(where, dict):
        where[path[-1]] = value
    elif isinstance(where, list) and where:
        where[0] = value
    p = tmp_path_factory.mktemp("c") / "cal.json"
    p.write_text(json.dumps(data))
    cal = _value_or_one_line(load, p)
    if cal is not None:               # what the reader accepted, predictions can use
        cal.values(), cal.structural_log_sd(), cal.sample(2), cal.prior_only()


@settings(max_examples=200, deadline=None)
@given(record=JSON, cell=JSON)
def test_record_checks_name_a_field_or_pass(record, cell):
    from edgeio import records
    for check, arg in ((records.check_record, (record, "0000-linux-4KiB-read")), (records.check_cell, (cell,)),
                       (records.check_plan, (cell,)), (records.check_metadata, (record, 2))):
        try:
            check(*arg)
        except (records.Invalid, UserError) as e:
            assert "\n" not in str(e)



# -- a resume on another machine -------------------------------------------------------------
def test_resume_on_another_machine_is_refused_unless_allowed(sandbox):
    from edgeio.commands import measure
    campaign = measure.run(env="linux", size="4KiB", op="read,write", reps="20", batches=5,
                           out=str(sandbox / "out"), quiet=True)
    meta = json.loads((campaign / "metadata.json").read_text())
    here = meta["targets"]["local"]
    meta["targets"]["local"] = dict(here, host="raspberrypi", memory_bytes=here["memory_bytes"] * 4, kvm="hardware")
    (campaign / "metadata.json").write_text(json.dumps(meta))
    next((campaign / "cells").glob("*write.json")).unlink()          # one cell left to measure
    files = lambda: {p: p.read_bytes() for p in campaign.rglob("*") if p.is_file() and p.name != ".lock"}  # noqa: E731
    before = files()
    code, err = run_invoke("measure", "--resume", str(campaign))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"host raspberrypi vs {here['host']}" in lines[0] and "memory" in lines[0], lines[0]
    assert ("kvm hardware vs" in lines[0]) == (here["kvm"] != "hardware")
    assert files() == before, "a refused resume writes nothing (the lock file aside)"
    code, err = run_invoke("measure", "--resume", str(campaign), "--allow-other-machine", "--quiet")
    assert code == 0, err
    meta = json.loads((campaign / "metadata.json").read_text())
    (change,) = meta["machine_changes"]
    assert change["from"]["host"] == "raspberrypi" and change["to"]["host"] == here["host"]
    assert any(d.startswith("host raspberrypi") for d in change["differences"])
    assert len(list((campaign / "cells").glob("*.json"))) == 2
    # the machine now recorded is this one: the next resume goes on without the flag
    code, err = run_invoke("measure", "--resume", str(campaign), "--quiet")
    assert code == 0, err
    # recorded facts of the wrong shape are named, not skipped
    meta["targets"] = {"local": "vm"}
    (campaign / "metadata.json").write_text(json.dumps(meta))
    code, err = run_invoke("measure", "--resume", str(campaign))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "targets.local: expected an object" in err, err
