"""The xen environment, for real: Xen 4.17 on the emulated arm64 xen testbed, over SSH.

The board (measure/testbed/xen.py) is Debian's Xen with a Linux dom0 under QEMU TCG;
`invoke testbed up xen` boots it and the environment drives domUs there with xl, as
on a Pi running Xen. Readiness is events (sshd answering, the domU's ready line, the
cell's result line), never sleeps. Without the board: the bad-input paths.
"""

import json
import subprocess

import pytest
from test_testbed_pi import campaign_dir, cells, invoke     # the same invoke/campaign helpers

from edgeio.errors import UserError
from measure.environments.base import CellFailed, Unavailable
from measure.environments.xen import XenEnvironment


def cell(size, op, reps=3, **kw):
    return {"cell_id": f"t-{size}-{op}", "size_bytes": size, "op": op, "reps": reps, "batches": reps,
            "sync": "fsync", "direct": False, "cache": "warm", **kw}


# -- without a board --------------------------------------------------------------------

def test_no_xl_on_an_ssh_target_names_the_packages(sshd):
    from measure.reach import parse_target
    target = parse_target(sshd.url, identity=str(sshd.identity), known_hosts=str(sshd.known_hosts))
    try:
        with pytest.raises(Unavailable) as e:
            XenEnvironment(target).check()
    finally:
        target.close()
    message = str(e.value)
    assert "\n" not in message and "xen-utils" in message and "has no xl" in message


def test_bad_params_are_one_line_errors():
    for params, words in (({"disk": "nvme0"}, "disk="), ({"mem": "lots"}, "mem="),
                          ({"vcpus": "0"}, "vcpus="), ({"timeout": "-1"}, "timeout"),
                          ({"cache": "none"}, "unknown --param cache")):
        with pytest.raises(UserError) as e:
            XenEnvironment(None, params)
        assert words in str(e.value) and "\n" not in str(e.value)
    env = XenEnvironment(None, {"disk": "/dev/vdc", "mem": "256", "vcpus": "2"})
    assert (env.backend, env.device, env.mem_mib, env.vcpus) == ("phy", "/dev/vdc", 256, 2)


def test_a_xen_testbed_that_is_not_up_is_one_line(tmp_path):
    proc = invoke("measure", "--target", "testbed:xen", "--env", "xen", "--size", "4KiB", "--reps", "1",
                  "--out", str(tmp_path), env={"EDGEIO_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: testbed xen is not up: start it with `invoke testbed up xen`"


# -- on the xen testbed (slow) ----------------------------------------------------------

@pytest.fixture(scope="module")
def xen():
    """The running xen testbed: started once (or found up); stopped after if this started it."""
    proc = invoke("testbed", "up", "xen")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    url = proc.stdout.strip().splitlines()[-1]
    assert url.startswith("ssh://root@127.0.0.1:")
    yield url
    if "already up" not in proc.stdout:
        invoke("testbed", "down", "xen", timeout=300)


@pytest.fixture
def target(xen):
    from measure.reach import parse_target
    t = parse_target(xen)
    yield t
    t.close()


@pytest.mark.slow
def test_measure_xen_on_the_xen_testbed(xen, tmp_path):
    reps = 3
    proc = invoke("measure", "--target", xen, "--env", "xen", "--size", "4KiB,1MiB", "--reps", str(reps),
                  "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    campaign = campaign_dir(tmp_path)
    records = cells(campaign)
    assert len(records) == 6 and all(r["status"] == "ok" for r in records), \
        [(r["cell"]["op"], r["error"]) for r in records if r["status"] != "ok"]
    meta = json.loads((campaign / "metadata.json").read_text())
    assert meta["targets"][xen]["emulated"] is True and meta["targets"][xen]["testbed"]["board"] == "xen"
    domains = set()
    for r in records:
        m, size = r["env_metadata"], r["cell"]["size_bytes"]
        assert m["xen_version"].startswith("4.17") and m["guest_block_device"] == "xvda"
        assert m["guest_mem_total_bytes"] > 900 << 20          # the study's 1 GiB domU
        assert isinstance(m["guest_block_reads_bytes"], int) and m["guest_block_reads_bytes"] >= 0
        assert r["config"]["backend"] == "file" and r["config"]["arch"] == "aarch64"
        assert r["config"]["memory_bytes"] == 1 << 30 and r["config"]["vcpus"] == 1
        if r["cell"]["op"] == "write_sync":     # every fsync'd repetition reached xvda
            assert m["guest_block_writes_bytes"] >= reps * size
        domains.add(m["domain"])
    assert len(domains) == 1                    # one domU boot served every cell


@pytest.mark.slow
def test_many_cells_per_boot_data_on_the_backing_disk_and_a_hung_cell(target, tmp_path):
    env = XenEnvironment(target, {"mem": "256", "timeout": "600"})
    env.check()
    env.preflight([cell(4096, "write"), cell(1 << 20, "read")])
    env.prepare()
    try:
        first = env.run(cell(4096, "write"))
        read = env.run(cell(1 << 20, "read"))
        assert first.metadata["domain"] == read.metadata["domain"]      # same boot
        # the warm read's first touch of the pre-written file went to xvda, counted apart
        assert read.metadata["guest_warmup_reads_bytes"] >= 1 << 20
        # the write reached the dom0 file behind xvda: power the domU off, read the image
        rc, out = env._driver(["stop"], 120)
        assert rc == 0, out
        env.domain = None
        local = tmp_path / "xvda.img"
        target.get(env.disk_path, local)
        data = subprocess.run(["debugfs", "-R", "cat data-4096", str(local)], capture_output=True).stdout
        assert data == bytes(ord("a") + i % 26 for i in range(4096))     # the probe's pattern, not 'A'..'Z'
        # a cell that cannot finish in time: the domU is destroyed, the console tail is in the error
        env.timeout = 1.0
        with pytest.raises(CellFailed) as e:
            env.run(cell(1 << 20, "write_sync", reps=200))
        assert "timed out after 1 s and was destroyed" in str(e.value) and "edgeio-domu-ready" in str(e.value)
        assert env.domain is None
        listed = target.run(["xl", "list"], timeout=120).stdout.decode()
        assert "edgeio-" not in listed
        env.timeout = 600.0
        again = env.run(cell(4096, "read"))                               # a fresh domU
        assert again.probe["errno"] == 0 and again.metadata["domain"] != first.metadata["domain"]
    finally:
        env.teardown()
    assert target.run(["test", "-e", env.disk_path], timeout=60).returncode != 0


@pytest.mark.slow
def test_a_domu_that_fails_to_boot_shows_the_console_tail(xen, tmp_path):
    # 48 MiB cannot hold Debian's kernel and its early allocations: it panics out of memory
    proc = invoke("measure", "--target", xen, "--env", "xen", "--size", "4KiB", "--op", "write", "--reps", "1",
                  "--param", "mem=48", "--out", str(tmp_path), "--quiet")
    out = proc.stdout + proc.stderr
    # the domU's own last words: the OOM report, the panic, or the panic's "Rebooting in"
    # (under load the tail shown can start after the OOM report, and the panic line itself
    # may die with the domain)
    last_words = ("out_of_memory", "Kernel panic", "Rebooting in")
    assert "xen: domU failed to boot" in out and any(w in out for w in last_words), out[-2000:]
    assert not any(r["status"] == "ok" for r in cells(campaign_dir(tmp_path)))
