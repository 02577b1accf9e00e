"""`invoke main`: the whole loop, in the order that makes a prediction worth something:
measure, calibrate on that campaign, predict two fixes, build and measure them
(predictions written first), report predicted against measured.

On this machine, or with --target T (ssh://user@host[:port], an ssh_config alias, or
testbed:BOARD) on a remote device while this machine does the compute: the protocol runs
on T, the calibration is fitted here on T's campaign, the fixes are built for T's arch and
measured on T, and every output names the device.
"""

import datetime as _dt
import json
import sys
from pathlib import Path

from edgeio.errors import UserError

# The study's first fix, measured against the baseline measured in the same run.
MULTIBLOCK = ("hvt-multiblock", ["blocks=8"], "hvt")
# The paravirtual-driver question, by what the device can build (chosen from its recorded
# arch, never per board): an emulated disk against virtio. x86_64's qemu has the study's
# IDE; qemu's aarch64 `virt` machine has no IDE controller, so there the emulated disk is
# AHCI (ich9-ahci on its PCI bus), the same question with the controller aarch64 has.
# Without qemu cells in the calibration (qemu unavailable or excluded) the question is
# asked of hvt instead: its paravirtual ring (one notification per batch) against a
# hypercall per block.
EMULATED_DISK = {"x86_64": "ide", "aarch64": "ahci"}
RING = ("hvt-ring", ["batch=8"], "hvt")
VERIFY_MAX_BYTES = 2 << 20   # verifies use the calibration's sizes up to this (large files take minutes)
FILE_OPS = ("write_sync", "write", "read")   # a fix is verified on files, not on the primitives' cells


def _sizes(cal_path, env: str) -> str | None:
    """The calibration's sizes of `env` up to VERIFY_MAX_BYTES, as --size (None: none)."""
    import calibration
    sizes = sorted({int(w["size_bytes"]) for w in calibration.load(cal_path).workloads()
                    if w["env"] == env and w["op"] in FILE_OPS and int(w["size_bytes"]) <= VERIFY_MAX_BYTES})
    return ",".join(str(s) for s in sizes) or None


def verifies(facts: dict, calibrated_envs: set[str]) -> tuple[list[tuple], str]:
    """The two fixes main verifies on a device with these facts, and why the second one."""
    arch = facts.get("arch") or "?"
    disk = EMULATED_DISK.get(arch)
    if disk and "qemu" in calibrated_envs:
        why = (f"paravirtual-driver question on {arch}: qemu disk virtio against the emulated {disk.upper()}"
               + (" (qemu's aarch64 virt machine has no IDE controller; AHCI is the emulated disk it has)"
                  if arch == "aarch64" else ""))
        return [MULTIBLOCK, ("qemu-disk", [f"disk={disk}"], "qemu")], why
    lack = "no qemu cells in the calibration" if disk else f"no emulated disk known for qemu on {arch}"
    return [MULTIBLOCK, RING], (f"paravirtual-driver question on {arch}: hvt's paravirtual ring against "
                                f"a hypercall per block ({lack})")


def device_label(target: str, facts: dict) -> str:
    """'testbed:pi (edgeio-testbed, aarch64, emulated)': the device every output names."""
    kind = "emulated" if facts.get("emulated") else "not emulated"
    return f"{target} ({facts.get('host') or '?'}, {facts.get('arch') or '?'}, {kind})"


def run(pi: bool = False, out: str | None = None, target: str | None = None, budget: str | None = None,
        exclude: str | None = None) -> dict:
    """Returns {"campaign", "calibration", "verify": [dirs], "report", "device"}."""
    from edgeio.commands import calibrate, measure, report, verify
    if target and pi:
        raise UserError("--pi calibrates on the bundled Pi 4 figures; --target measures a device: give one of them")
    remote = target not in (None, "", "local")
    if remote:                   # a bad target or budget is one line before anything is said
        from edgeio.commands.measure import _target
        _target(target).close()
    if budget:
        from measure.adaptive import parse_duration
        parse_duration(budget, "--budget")
    if exclude:
        from edgeio.commands.measure import _env_names
        _env_names(exclude, "--exclude")
    root = Path(out) if out else None
    if root is not None and root.exists() and not root.is_dir():
        raise UserError(f"--out {root}: not a directory")
    if remote and root is None:       # the device's own directory, named after it
        from edgeio import paths
        from measure.targets import target_slug
        root = paths.results_dir() / f"main-{target_slug(target)}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    where = f" on {target}" if remote else ""
    # the calibration protocol: sizes and repetitions chosen from the device's facts so that
    # every parameter of every environment present is pinned (no priors left)
    _say(f"main{where}: the calibration protocol (measure --protocol calibrate)")
    campaign = measure.run(protocol="calibrate", out=str(root) if root else None,
                           targets=[target] if remote else None, budget=budget, exclude=exclude)
    facts = _facts(campaign, target if remote else "local")
    device = device_label(target if remote else "local", facts)
    cals = None
    if root:
        cals = root / "calibrations"
        cals.mkdir(parents=True, exist_ok=True)
    _say(f"main: calibrating on {device}'s campaign {campaign}")
    cal = calibrate.run(source=None if pi else str(campaign), out=str(cals) if cals else None)
    done = []
    if pi:
        _say("verify skipped: the Pi 4 calibration was fitted for another machine; predictions for "
             "this one need its own (invoke main without --pi)")
    else:
        import calibration
        envs = {w["env"] for w in calibration.load(cal).workloads()}
        chosen, why = verifies(facts, envs)
        names = ", ".join(f"{s} {' '.join(p)}" for s, p, _ in chosen)
        _say(f"main: verifies on {device}: {names}; the second is the {why}")
        for scenario, params, env in chosen:
            try:
                done.append(verify.run(scenario, params, calibration=str(cal), size=_sizes(cal, env) or "4KiB",
                                       target=target if remote else None,
                                       out=str(root / "verify") if root else None))
            except UserError as e:        # e.g. no qemu here: the other verify still runs
                _say(f"verify {scenario} {' '.join(params)} on {device}: {e}")
    place = report.run(campaigns=[str(campaign)], calibration=str(cal), verify=[str(d) for d in done],
                       out=str(root / "reports") if root else None)
    if remote:
        _say(f"main on {device}: campaign {campaign}, calibration {cal}, "
             f"{len(done)} verif{'y' if len(done) == 1 else 'ies'}, report {place}")
    return {"campaign": campaign, "calibration": cal, "verify": done, "report": place, "device": device}


def _facts(campaign: Path, target: str) -> dict:
    """The device's facts as the campaign recorded them (metadata.json["targets"])."""
    meta = json.loads((Path(campaign) / "metadata.json").read_text())
    return (meta.get("targets") or {}).get(target) or next(iter((meta.get("targets") or {}).values()), {})


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
