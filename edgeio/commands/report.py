"""`invoke report`: one document with what was measured, how well the model explains it,
and what each proposed fix would buy; or, with --compare and --format, the comparison
alone as json, csv or md on stdout (pyperf's compare_to)."""

import sys
from pathlib import Path

import report
from edgeio import exports
from edgeio.errors import UserError

# Columns of `report --compare --format` (docs/formats.md).
COMPARE_COLUMNS = ["size_bytes", "op", "series_a", "series_b", "mean_a", "mean_b", "ratio",
                   "ci95_low", "ci95_high", "mannwhitney_p", "welch_p", "n_a", "n_b", "significant"]


def run(campaigns: list[str], calibration: str | None = None, out: str | None = None,
        reference: bool = False, compare: list[str] | None = None,
        verify: list[str] | None = None, fmt: str | None = None) -> Path | None:
    """Write index.html (self-contained) and report.md (+ PNGs) into a new directory; return it.

    campaigns: campaign directories (none and no `reference`: the newest under the
    results directory). calibration: a calibration JSON for the model sections (none:
    the newest under results/calibrations, if any).
    reference: add the study's published figures. compare: two environments or two
    campaigns (directories, names, or 'study') to compare with ratios and tests.
    verify: verify campaign directories for "Predicted before measured" (none: those
    under results/verify made with the report's calibration).
    fmt: json, csv or md: print the --compare table in that format and write no document.
    """
    fmt = exports.parse_format(fmt)
    if fmt:
        if not compare:
            raise UserError("--format prints the --compare table: give --compare A --compare B "
                            "(the full report is HTML and Markdown)")
        if out:
            raise UserError("--format prints to stdout; --out names a report directory: give one of them")
        sys.stdout.write(compare_table(campaigns, reference, compare, fmt))
        return None
    inputs = report.gather(campaigns, reference=reference, calibration=calibration, compare=compare,
                           verify=verify)
    doc = report.document(inputs)
    where = report.write(doc, out)
    print(f"report written to {where / 'index.html'} (and {where / 'report.md'})")
    return where


def compare_table(campaigns, reference: bool, compare: list[str], fmt: str) -> str:
    """The comparison of two environments or two campaigns, rendered in `fmt`."""
    import pandas as pd
    from report import data
    from report.build import comparison_rows
    from report.inputs import resolve_compare
    # Two campaign directories compared need no other source: they are loaded by --compare.
    if not campaigns and not reference and all(Path(c).is_dir() or c == data.REFERENCE_NAME for c in compare):
        sources = []
    else:
        sources = report.gather(campaigns, reference=reference, calibration=None).sources
    comparison = resolve_compare(compare, sources)
    df = data.measured(sources)
    samples = data.per_op_samples(sources, df)
    rows, a, b = comparison_rows(df, samples, sources, comparison)
    frame = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    return exports.render("comparison", frame, fmt, COMPARE_COLUMNS,
                          {"a": a, "b": b, "by": comparison[0],
                           "ratio": "mean time per op of B over A (above 1: B is slower)"})
