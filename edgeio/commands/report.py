"""`invoke report`: one document with what was measured, how well the model explains it,
and what each proposed fix would buy."""

from pathlib import Path

import report


def run(campaigns: list[str], calibration: str | None = None, out: str | None = None,
        reference: bool = False, compare: list[str] | None = None,
        verify: list[str] | None = None) -> Path:
    """Write index.html (self-contained) and report.md (+ PNGs) into a new directory; return it.

    campaigns: campaign directories (none and no `reference`: the newest under the
    results directory). calibration: a calibration JSON for the model sections (none:
    the newest under results/calibrations, if any).
    reference: add the study's published figures. compare: two environments or two
    campaigns (directories, names, or 'study') to compare with ratios and tests.
    verify: verify campaign directories for "Predicted before measured" (none: those
    under results/verify made with the report's calibration).
    """
    inputs = report.gather(campaigns, reference=reference, calibration=calibration, compare=compare,
                           verify=verify)
    doc = report.document(inputs)
    where = report.write(doc, out)
    print(f"report written to {where / 'index.html'} (and {where / 'report.md'})")
    return where
