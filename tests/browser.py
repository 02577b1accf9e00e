"""Headless Chromium (Debian's `chromium`) for the report tests: what a page shows a person.

No driver: `--dump-dom` prints the DOM after the page's scripts ran, so a checker script
injected into a copy of the page writes what it measured (every image's natural size,
the page height, the text of each section) into an element that the dump carries out.
`--screenshot` takes a picture of a window as tall as the page.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
WIDTH = 1280

_CHECKER = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (i) {
    return {name: (i.closest('figure') || {}).dataset ? i.closest('figure').dataset.name : '',
            complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var sections = Array.from(document.querySelectorAll('section')).map(function (s) {
    var own = Array.from(s.children).filter(function (c) { return !/^H[1-6]$/.test(c.tagName); });
    return {id: s.id, blocks: own.length, text: s.innerText.length};
  });
  var tables = Array.from(document.querySelectorAll('table')).map(function (t) {
    return t.dataset.kind || '';
  });
  var out = {images: imgs, sections: sections, tables: tables,
             height: Math.ceil(document.documentElement.scrollHeight),
             text: document.body.innerText};
  var pre = document.createElement('pre');
  pre.id = 'edgeio-browser-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="edgeio-chromium-") as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, HOME=profile))


def inspect(html: Path) -> dict:
    """Load `html` (a copy with the checker script) and return what the checker measured."""
    html = Path(html)
    with tempfile.TemporaryDirectory(prefix="edgeio-page-") as tmp:
        page = Path(tmp) / "page.html"
        text = html.read_text(encoding="utf-8")
        page.write_text(text.replace("</body>", _CHECKER + "</body>"), encoding="utf-8")
        res = _run([f"--window-size={WIDTH},900", "--dump-dom", page.as_uri()])
    m = re.search(r'<pre id="edgeio-browser-check">(.*?)</pre>', res.stdout, re.S)
    if not m:
        raise AssertionError(f"chromium gave no checker output (exit {res.returncode}): {res.stderr[-2000:]}")
    import html as _html
    return json.loads(_html.unescape(m.group(1)))


def screenshot(html: Path, png: Path, height: int | None = None) -> int:
    """A full-page screenshot of `html` into `png`; returns the page height in CSS pixels."""
    height = height or inspect(html)["height"]
    res = _run([f"--window-size={WIDTH},{height}", f"--screenshot={Path(png).resolve()}",
                Path(html).resolve().as_uri()])
    if not Path(png).exists():
        raise AssertionError(f"chromium wrote no screenshot (exit {res.returncode}): {res.stderr[-2000:]}")
    return height


if __name__ == "__main__":      # python tests/browser.py REPORT/index.html OUT.png
    import sys
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
