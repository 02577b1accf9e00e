"""The report: measured vs modelled vs what-if, as self-contained HTML and Markdown.

Public API:
  gather(campaigns, reference, calibration, compare, verify) -> Inputs
  document(inputs) -> report.document.Document
  write(doc, out) -> Path          (index.html, report.md and the PNGs, never overwriting)
"""

from report.output import write
from report.inputs import Inputs, gather


def document(inputs: "Inputs"):
    from report.build import document as _document
    return _document(inputs.sources, inputs.calibration, inputs.scenarios, inputs.comparison,
                     inputs.verified)


__all__ = ["Inputs", "gather", "document", "write"]
