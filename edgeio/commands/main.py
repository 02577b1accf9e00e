"""`invoke main`: the whole loop on this machine, in the order that makes a prediction worth
something: measure, calibrate on that campaign, predict two fixes, build and measure them
(predictions written first), report predicted against measured."""

import sys
from pathlib import Path

from edgeio.errors import UserError

# What main verifies: the study's first fix, and the paravirtual-driver question (the
# emulated IDE disk against virtio), each against the baseline measured in the same run,
# at the calibration's sizes up to VERIFY_MAX_BYTES (its large files would take minutes).
VERIFIES = (("hvt-multiblock", ["blocks=8"], "hvt"), ("qemu-disk", ["disk=ide"], "qemu"))
VERIFY_MAX_BYTES = 2 << 20


def _sizes(cal_path, env: str) -> str | None:
    """The calibration's sizes of `env` up to VERIFY_MAX_BYTES, as --size (None: none)."""
    import calibration
    sizes = sorted({int(w["size_bytes"]) for w in calibration.load(cal_path).workloads()
                    if w["env"] == env and int(w["size_bytes"]) <= VERIFY_MAX_BYTES})
    return ",".join(str(s) for s in sizes) or None


def run(pi: bool = False, out: str | None = None) -> dict:
    """Returns {"campaign", "calibration", "verify": [dirs], "report"}."""
    from edgeio.commands import calibrate, measure, report, verify
    # the calibration protocol: sizes and repetitions chosen from this machine's facts so that
    # every parameter of every environment present is pinned (no priors left)
    campaign = measure.run(protocol="calibrate", out=out)
    cals = None
    if out:
        cals = Path(out) / "calibrations"
        cals.mkdir(parents=True, exist_ok=True)
    cal = calibrate.run(source=None if pi else str(campaign), out=str(cals) if cals else None)
    done = []
    if pi:
        _say("verify skipped: the Pi 4 calibration was fitted for another machine; predictions for "
             "this one need its own (invoke main without --pi)")
    else:
        for scenario, params, env in VERIFIES:
            try:
                done.append(verify.run(scenario, params, calibration=str(cal), size=_sizes(cal, env) or "4KiB",
                                       out=str(Path(out) / "verify") if out else None))
            except UserError as e:        # e.g. no qemu here: the other verify still runs
                _say(f"verify {scenario} {' '.join(params)}: {e}")
    where = report.run(campaigns=[str(campaign)], calibration=str(cal), verify=[str(d) for d in done],
                       out=str(Path(out) / "reports") if out else None)
    return {"campaign": campaign, "calibration": cal, "verify": done, "report": where}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
