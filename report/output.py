"""Writing a report directory: index.html, report.md and the PNGs, never overwriting."""

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path

from edgeio import paths
from edgeio.errors import UserError
from report import html_writer, markdown_writer


def default_dir() -> Path:
    return paths.results_dir() / "reports" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _fresh(path: Path) -> Path:
    """`path`, or path-1, path-2...: the first that does not exist."""
    for i in range(1000):
        candidate = path if i == 0 else path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            return candidate
    raise UserError(f"too many reports named {path}")


def write(doc, out=None) -> Path:
    """Render both documents in a temporary sibling directory, then move it into place.

    A named `out` that exists and is not empty is refused (earlier reports are never
    overwritten); the default directory is timestamped and made unique.
    """
    if out is None:
        target = _fresh(default_dir())
    else:
        target = Path(out)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UserError(f"{target} exists and is not empty: not overwriting, choose another --out")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as e:
        raise UserError(f"cannot write report to {target}: {e.strerror or e}") from None
    try:
        for fig in doc.figures():
            (tmp / f"{fig.name}.png").write_bytes(fig.png)
        (tmp / "report.md").write_text(markdown_writer.render(doc), encoding="utf-8")
        (tmp / "index.html").write_text(html_writer.render(doc), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if target.exists():        # an empty directory the user made for us
            target.rmdir()
        os.rename(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write report to {target}: {e.strerror or e}") from None
    return target
