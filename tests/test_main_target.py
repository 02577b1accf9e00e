"""`invoke main --target T`: the whole main job against a remote device (issue 17).

Without a board: the choice of the second verify from the device's recorded facts, the
label every output carries, bad input in one line. On the emulated Pi board (slow; it
reuses a board that is up, else brings one up and down): the protocol on the board, a
calibration fitted on that campaign with neither --machine nor --allow-priors, two
verifies with their comparison.csv, a report that names the board, the facts the board's
sysfs lacks measured, and the protocol's estimate printed beside what it took.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeio.commands.main import device_label, verifies
from edgeio.paths import PROJECT_ROOT

INVOKE = [sys.executable, "-m", "invoke"]


def invoke(*args, timeout=1800):
    return subprocess.run([*INVOKE, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)


# -- without a board (fast) -----------------------------------------------------------

def test_the_second_verify_is_chosen_from_the_devices_arch_and_calibration():
    x86, arm = {"arch": "x86_64"}, {"arch": "aarch64"}
    chosen, why = verifies(x86, {"linux", "hvt", "qemu"})
    assert [c[:2] for c in chosen] == [("hvt-multiblock", ["blocks=8"]), ("qemu-disk", ["disk=ide"])]
    chosen, why = verifies(arm, {"linux", "hvt", "qemu"})
    assert chosen[1][:2] == ("qemu-disk", ["disk=ahci"]) and "no IDE" in why
    chosen, why = verifies(arm, {"linux", "hvt"})
    assert chosen[1][:2] == ("hvt-ring", ["batch=8"]) and "no qemu cells" in why
    assert "paravirtual" in why


def test_the_device_label_names_host_arch_and_emulation():
    assert device_label("testbed:pi", {"host": "edgeio-testbed", "arch": "aarch64", "emulated": True}) == \
        "testbed:pi (edgeio-testbed, aarch64, emulated)"
    assert device_label("raspberrypi", {"host": "pi4", "arch": "aarch64", "emulated": False}).endswith(
        "(pi4, aarch64, not emulated)")


def test_main_bad_target_input_is_one_line(tmp_path):
    for args in (("--target", "testbed:pi", "--pi"), ("--target", "ftp://x"), ("--target", "testbed:nosuch")):
        proc = invoke("main", *args, "--out", str(tmp_path), timeout=300)
        assert proc.returncode == 2, (args, proc.stderr[-500:])
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: "), (args, proc.stderr)


# -- on the emulated Pi board (slow) --------------------------------------------------

@pytest.fixture(scope="module")
def board():
    """The pi testbed: one that is up is reused (and left up); else it is brought up here
    and down after this module."""
    was_up = "pi: up" in invoke("testbed", "status", "pi", timeout=120).stdout
    proc = invoke("testbed", "up", "pi")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    yield proc.stdout.strip().splitlines()[-1]
    if not was_up:
        assert invoke("testbed", "down", "pi", timeout=300).returncode == 0


@pytest.mark.slow
def test_main_against_the_emulated_pi_board(board, tmp_path):
    out = tmp_path / "main"
    proc = invoke("main", "--target", "testbed:pi", "--budget", "4m",
                  "--out", str(out), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    text = proc.stdout + proc.stderr
    device = "testbed:pi (edgeio-testbed, aarch64, emulated)"
    # the protocol ran on the board: its campaign is named after it and records its facts
    campaigns = [p for p in out.iterdir() if (p / "metadata.json").exists()]
    assert len(campaigns) == 1 and campaigns[0].name.endswith("-edgeio-testbed-aarch64-emulated"), campaigns
    meta = json.loads((campaigns[0] / "metadata.json").read_text())
    facts = next(iter(meta["targets"].values()))
    assert facts["arch"] == "aarch64" and facts["emulated"] is True
    # the board's sysfs has no cache sizes: measured on it, and said so
    caches = facts["cpu_caches"]
    assert caches["l2_bytes"] and caches["source"]["l2_bytes"].startswith("measured: pointer-chase"), caches
    # the estimate came from a pilot on the board, and is printed beside what it took
    assert meta["options"]["protocol_info"]["pilot"], "no pilot recorded"
    timing = meta["protocol_time"]
    assert timing["estimate_s"] > 0 and timing["actual_s"] > 0
    assert re.search(r"protocol time: estimate .+, actual .+ \(actual/estimate [0-9.]+\)", text), text[-3000:]
    # calibrated on that campaign, with neither --machine nor --allow-priors
    cals = list((out / "calibrations").glob("*.json"))
    assert len(cals) == 1
    cal = json.loads(cals[0].read_text())
    assert str(campaigns[0].resolve()) in json.dumps(cal.get("source")), cal.get("source")
    assert "--allow-priors" not in text and "--machine" not in text.replace("without --machine", "")
    # two verifies, each with its comparison, predicted on the board's calibration
    verified = sorted(p for p in (out / "verify").iterdir() if (p / "comparison.csv").exists())
    assert len(verified) == 2, (list((out / "verify").iterdir()), text[-3000:])
    scenarios = {json.loads((v / "metadata.json").read_text())["verify"]["scenario"] for v in verified}
    assert scenarios == {"hvt-multiblock", "hvt-ring"}, scenarios   # no qemu cells: the paravirtual ring
    assert f"verifies on {device}" in text and "paravirtual" in text
    # the report names the board
    html = (out / "reports" / "index.html").read_text()
    assert "edgeio-testbed" in html and "aarch64" in html and "emulated" in html
    assert f"main on {device}" in text
