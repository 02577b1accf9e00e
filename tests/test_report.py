"""The report from a small real campaign (+ a real calibration), --reference, and bad input."""

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import docker_running, have_kvm
from edgeio import store
from edgeio.errors import UserError
from edgeio.units import format_time
from edgeio.commands import report as report_cmd


# -- a parsed report ---------------------------------------------------------------

class ReportHTML(HTMLParser):
    """Tables (with their cells' data-* attributes), figures, sections and warning boxes."""

    def __init__(self):
        super().__init__()
        self.tables, self.figures, self.sections, self.warnings = [], [], [], []
        self._table = self._cell = self._warning = None
        self._text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = {"attrs": a, "cells": []}
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._text = a, []
        elif tag == "figure":
            self.figures.append({"attrs": a})
        elif tag == "img" and self.figures:
            self.figures[-1]["src"] = a.get("src", "")
        elif tag == "section":
            self.sections.append(a)
        elif tag == "div" and "warnings" in (a.get("class") or ""):
            self._warning = []
        elif tag == "li" and self._warning is not None:
            self._text = []

    def handle_data(self, data):
        self._text.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table["cells"].append(dict(self._cell, text="".join(self._text)))
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None
        elif tag == "li" and self._warning is not None:
            self._warning.append("".join(self._text))
        elif tag == "div" and self._warning is not None:
            self.warnings += self._warning
            self._warning = None

    def tables_of(self, kind):
        return [t for t in self.tables if t["attrs"].get("data-kind") == kind]

    def cells_of(self, kind):
        return [c for t in self.tables_of(kind) for c in t["cells"]]


def parse(report_dir: Path) -> ReportHTML:
    p = ReportHTML()
    p.feed((report_dir / "index.html").read_text(encoding="utf-8"))
    return p


def assert_nontrivial_png(data: bytes):
    img = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    assert img.shape[0] > 200 and img.shape[1] > 200
    # Not a blank canvas: a good share of pixels are drawn (ink), and they vary.
    assert img.std() > 10
    assert (img < 200).mean() > 0.01


def assert_images(report_dir: Path, parsed: ReportHTML):
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    for fig in parsed.figures:
        name = fig["attrs"]["data-name"]
        assert fig["src"].startswith("data:image/png;base64,")
        embedded = base64.b64decode(fig["src"].split(",", 1)[1])
        beside = (report_dir / f"{name}.png").read_bytes()
        assert embedded == beside
        assert f"]({name}.png)" in md
        assert_nontrivial_png(beside)


# -- fixtures: a real campaign, a real calibration ------------------------------------

@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A small real campaign made by `invoke measure`'s own code: linux, docker when it
    runs, hvt when /dev/kvm is there (about 15 s here, builds included)."""
    from edgeio.commands import measure
    root = tmp_path_factory.mktemp("campaign-results")
    envs = ["linux"] + (["docker"] if docker_running() else []) + (["hvt"] if have_kvm() else [])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEIO_RESULTS", str(root))
        path = measure.run(env=",".join(envs), size="4KiB,64KiB", op="all", reps="100", batches=10,
                           quiet=True)
    return Path(path)


@pytest.fixture(scope="module")
def study_calibration(tmp_path_factory):
    """The model calibrated on the study's 4 KiB figures (all five environments; the
    1 GiB cells would add ~20 s of fitting and simulation without testing more here)."""
    import calibration
    results = calibration.load_results(None)
    results = results[results["size_bytes"] == 4096].copy()
    results.attrs["source"] = "the study's 4 KiB figures"
    cal = calibration.fit(results)
    return cal.save(tmp_path_factory.mktemp("calibration") / "study-4k.json")


@pytest.fixture
def few_draws(monkeypatch):
    """Fewer parameter draws per predicted point: the intervals get coarser, not absent."""
    import report.whatif
    monkeypatch.setattr(report.whatif, "DRAWS", 4)


def expected_cells(path: Path) -> pd.DataFrame:
    return store.load_summary(path)


# -- the report of a campaign --------------------------------------------------------

def test_campaign_report_has_every_cell_plot_scenario_and_comparison(campaign, study_calibration, few_draws,
                                                                     results_tmp, capsys):
    summary = expected_cells(campaign)
    envs = sorted(set(summary["env"]))
    compare = ["linux", "docker"] if "docker" in envs else None
    out = report_cmd.run([str(campaign)], calibration=str(study_calibration), compare=compare)
    assert out.parent == results_tmp / "reports"
    assert str(out) in capsys.readouterr().out
    parsed = parse(out)

    # (1) one table per size; a cell per (env, size, op), value and interval the store's.
    measured = parsed.cells_of("measured")
    by_key = {(c["data-env"], int(c["data-size"]), c["data-op"]): c for c in measured if "data-env" in c}
    assert len(by_key) == len(summary)
    sizes = {int(t["attrs"]["data-size"]) for t in parsed.tables_of("measured")}
    assert sizes == set(summary["size_bytes"])
    for r in summary.itertuples():
        cell = by_key[(r.env, r.size_bytes, r.op)]
        assert float(cell["data-mean"]) == pytest.approx(r.mean_per_op_s, rel=1e-12)
        assert float(cell["data-ci-low"]) == pytest.approx(r.ci95_low_s, rel=1e-12)
        assert cell["text"].startswith(format_time(r.mean_per_op_s))   # unit chosen per cell
        assert "[" in cell["text"]                                        # with its interval
    # rows are ops, in the study's order
    first = parsed.tables_of("measured")[0]["cells"]
    ops = [c["text"] for c in first if c.get("data-env") is None and c["text"] in ("write_sync", "write", "read")]
    assert ops == ["write_sync", "write", "read"]

    # (2) plots: time per op and distributions, one panel per (size, op)
    kinds = {f["attrs"]["data-kind"]: f for f in parsed.figures}
    n_panels = len(summary[["size_bytes", "op"]].drop_duplicates())
    assert int(kinds["time-per-op"]["attrs"]["data-panels"]) == n_panels
    assert int(kinds["distributions"]["attrs"]["data-panels"]) == n_panels
    assert_images(out, parsed)

    # (4) comparison: a row per (size, op), ratio = docker / linux of the store's means
    if compare:
        rows = parsed.cells_of("compare")
        ratios = {(int(c["data-size"]), c["data-op"]): c for c in rows if "data-ratio" in c}
        assert len(ratios) == n_panels
        for (size, op), c in ratios.items():
            m = summary.set_index(["env", "size_bytes", "op"])["mean_per_op_s"]
            assert float(c["data-ratio"]) == pytest.approx(m[("docker", size, op)] / m[("linux", size, op)])
            assert c["data-significant"] in ("yes", "no")

    # (0) the verdict first: per environment its ratio to native (the store's means), fixes
    # with intervals, the best isolated design; the plot of it
    assert parsed.tables[0]["attrs"]["data-kind"] == "verdict"
    assert parsed.sections[0]["id"] == "verdict"
    check_verdict(parsed, summary)

    # (3) measured vs modelled, parameters, and every scenario of the model
    check_model_sections(parsed, study_calibration)
    assert any("calibration was fitted on the study's 4 KiB figures" in w for w in parsed.warnings)

    # (5) a warning box for what makes figures incomparable: here, a software KVM
    md = json.loads((campaign / "metadata.json").read_text())
    if "hvt" in envs and md.get("kvm") == "software":
        assert any("software hypervisor" in w and "hvt" in w for w in parsed.warnings)

    # metadata of the campaign is shown
    meta = parsed.tables_of("metadata")
    assert meta and meta[0]["attrs"]["data-source"] == campaign.name
    texts = {c["text"] for c in meta[0]["cells"]}
    assert md["host"] in texts and md["kernel"] in texts


def test_same_campaign_twice_ratio_one_not_significant_and_block_device_warning(campaign, tmp_path, results_tmp):
    twin = tmp_path / "twin" / campaign.name
    shutil.copytree(campaign, twin)
    meta = json.loads((twin / "metadata.json").read_text())
    meta["block_devices"] = {k: "/dev/mmcblk0p2" for k in (meta.get("block_devices") or {"linux@local": 0})}
    meta["host"] = "raspberrypi"
    (twin / "metadata.json").write_text(json.dumps(meta))
    out = report_cmd.run([str(campaign), str(twin)], compare=[str(campaign), str(twin)],
                         out=str(tmp_path / "rep"))
    parsed = parse(out)
    rows = [c for c in parsed.cells_of("compare") if "data-ratio" in c]
    assert len(rows) == len(expected_cells(campaign))
    for c in rows:      # identical batches: ratio exactly 1, flagged as not significant
        assert float(c["data-ratio"]) == pytest.approx(1.0)
        assert c["data-significant"] == "no"
    box = " ".join(parsed.warnings)
    assert "block device" in box and "/dev/mmcblk0p2" in box
    assert "host" in box and "raspberrypi" in box
    assert "not significant" in box
    # two sources of the same directory name are told apart in the columns
    series = {c["data-series"] for c in parsed.cells_of("measured") if "data-series" in c}
    assert len(series) == 2 * len(set(expected_cells(campaign)["env"]))


def test_newest_campaign_is_the_default(campaign, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEIO_RESULTS", str(campaign.parent))
    out = report_cmd.run([], out=str(tmp_path / "r"))
    sources = [t["attrs"]["data-source"] for t in parse(out).tables_of("metadata")]
    assert sources == [campaign.name]


# -- the study's figures on their own ------------------------------------------------

def test_reference_on_a_fresh_machine(results_tmp):
    from report.data import reference_results
    ref = reference_results()
    first = report_cmd.run([], reference=True)
    second = report_cmd.run([], reference=True)
    assert first != second and first.parent == second.parent == results_tmp / "reports"
    parsed = parse(first)
    cells = [c for c in parsed.cells_of("measured") if "data-env" in c]
    assert len(cells) == len(ref) == 30
    got = {(c["data-env"], int(c["data-size"]), c["data-op"]): float(c["data-mean"]) for c in cells}
    for r in ref.itertuples():
        assert got[(r.env, int(r.size_bytes), r.op)] == pytest.approx(r.mean_per_op_s)
    # the study's column order (Tables 2 and 3)
    header = parsed.tables_of("measured")[0]["cells"]
    assert [c["text"] for c in header[:6]] == ["op", "linux", "docker", "qemu", "hvt", "xen"]
    assert {f["attrs"]["data-kind"] for f in parsed.figures} == {"verdict", "time-per-op"}
    # the verdict speaks in the study's own cases: 4 KiB and 1 GiB, all five environments
    verdict = parsed.cells_of("verdict")
    assert {int(c["data-size"]) for c in verdict if "data-size" in c} == {4096, 1 << 30}
    assert {c["data-env"] for c in verdict if c.get("data-kind") in ("native", "measured")} == \
        {"linux", "docker", "qemu", "hvt", "xen"}
    assert_images(first, parsed)
    assert any("published means only" in w for w in parsed.warnings)


# -- bad input ----------------------------------------------------------------------

def _no_report_written(root: Path):
    reports = root / "reports"
    assert not reports.exists() or not any(reports.iterdir())


def test_bad_inputs_are_one_line_user_errors(campaign, tmp_path, results_tmp):
    not_campaign = tmp_path / "empty"
    not_campaign.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    corrupt_meta = tmp_path / "corrupt-meta"
    shutil.copytree(campaign, corrupt_meta)
    (corrupt_meta / "metadata.json").write_text("{not json")
    corrupt_cell = tmp_path / "corrupt-cell"
    shutil.copytree(campaign, corrupt_cell)
    next((corrupt_cell / "cells").glob("*.json")).write_text('{"cell": {"cell_id": "x"}')
    bad_cal = tmp_path / "cal.json"
    bad_cal.write_text("{truncated")
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("earlier report")
    cases = [
        dict(campaigns=[str(tmp_path / "missing")]),
        dict(campaigns=[str(a_file)]),
        dict(campaigns=[str(not_campaign)]),
        dict(campaigns=[str(corrupt_meta)]),
        dict(campaigns=[str(corrupt_cell)]),
        dict(campaigns=[str(campaign)], calibration=str(tmp_path / "nope.json")),
        dict(campaigns=[str(campaign)], calibration=str(bad_cal)),
        dict(campaigns=[str(campaign)], compare=["linux"]),
        dict(campaigns=[str(campaign)], compare=["linux", "no-such-env"]),
        dict(campaigns=[str(campaign)], out=str(used)),
        dict(campaigns=[]),                      # no campaign under an empty results dir
    ]
    for kwargs in cases:
        with pytest.raises(UserError) as e:
            report_cmd.run(**kwargs)
        assert "\n" not in str(e.value) and str(e.value), kwargs
    assert (used / "keep.txt").read_text() == "earlier report"
    _no_report_written(results_tmp)


# -- the verdict -------------------------------------------------------------------

def check_verdict(parsed: ReportHTML, summary: pd.DataFrame):
    cells = parsed.cells_of("verdict")
    m = summary.set_index(["env", "size_bytes", "op"])["mean_per_op_s"]
    envs = set(summary["env"])
    designs = {c["data-design"]: c for c in cells if c.get("data-kind") in ("native", "measured")}
    assert {d.split(" ")[0] for d in designs} == envs
    sizes = {int(c["data-size"]) for c in cells if "data-size" in c}
    assert 4096 in sizes and len(sizes) == 2          # the study's two cases, large = shared size
    for c in cells:
        if "data-ratio" not in c or "data-size" not in c or not c["data-ratio"]:
            continue
        env = c["data-design"].split(" ")[0]
        key = (int(c["data-size"]), c["data-op"])
        if env in envs and c["data-design"] in designs and "linux" in envs:
            assert float(c["data-ratio"]) == pytest.approx(m[(env, *key)] / m[("linux", *key)])
    fixes = [c for c in cells if c.get("data-ratio") and "data-size" in c and c["data-design"] not in designs]
    if "hvt" in envs:
        assert fixes and all("[" in c["text"] for c in fixes)           # predicted with an interval
        assert any(c["data-design"].startswith("hvt-flush (flush=each-write, blocks=8)") for c in fixes)
    best = [c for c in cells if c.get("data-kind") == "best" and "data-best" in c]
    assert len(best) == len(sizes) * len(set(summary["op"]))
    verdict = [f for f in parsed.figures if f["attrs"].get("data-kind") == "verdict"]
    assert len(verdict) == 1


# -- measured vs modelled vs what-if -------------------------------------------------

def check_model_sections(parsed: ReportHTML, calibration_file: Path):
    import calibration
    import model
    cal = calibration.load(calibration_file)
    # every parameter, and a fit row per calibrated cell with the calibration's error
    params = {c["data-param"] for c in parsed.cells_of("params") if "data-param" in c}
    assert params == set(cal.params)
    fit = {(c["data-env"], int(c["data-size"]), c["data-op"]): float(c["data-rel-error"])
           for c in parsed.cells_of("fit") if "data-rel-error" in c}
    assert len(fit) == len(cal.fit_table)
    for r in cal.fit_table.itertuples():
        assert fit[(r.env, int(r.size_bytes), r.op)] == pytest.approx(r.rel_error)
    assert "measured-vs-modelled" in [f["attrs"]["data-kind"] for f in parsed.figures]

    # a subsection per scenario (the baseline, 1x by construction, has none): for each swept
    # parameter a plot, and a table that keeps only the predictions that differ: a row per
    # run of values with one prediction, none at the baseline; or the model's reason why not
    from report.whatif import SAME
    sections = {s["data-scenario"] for s in parsed.sections if "data-scenario" in s}
    assert sections == set(model.SCENARIOS) - {"baseline"}
    predicted = [c for c in parsed.cells_of("whatif") if "data-predicted" in c]
    fitted_envs = set(cal.fit_table["env"])
    for name, scenario in model.SCENARIOS.items():
        figs = [f for f in parsed.figures if f["attrs"].get("data-scenario") == name]
        cells = [c for c in predicted if c["data-scenario"] == name]
        if name == "baseline":
            assert not cells
            continue
        if not set(scenario.envs) & fitted_envs:
            assert not cells and any(name in w and "cannot be predicted" in w for w in parsed.warnings)
            continue
        sweeps = scenario.sweep or {"(defaults)": [None]}
        for param, values in sweeps.items():
            frame = pd.concat([model.predict(cal, name, {} if v is None else {param: v}, draws=0)
                               .assign(v=str(v) if v is not None else "default") for v in values])
            # a row per (env, size) and run of values: kept where any op moves off its baseline
            moved = frame[(frame["predicted_s"] / frame["baseline_s"] - 1).abs() > SAME]
            want = {}
            for r in moved.itertuples():
                want.setdefault((r.env, int(r.size_bytes)), set()).add(r.v)
            mine = [c for c in cells if c["data-param"] == param]
            rows = {}
            for c in mine:
                rows.setdefault((c["data-env"], int(c["data-size"]), c["data-values"]), set()).add(c["data-op"])
            got = {}
            for (env, size, listed), ops in rows.items():
                listed = set(listed.split(","))
                assert not (got.get((env, size), set()) & listed), "a value in two rows"
                got.setdefault((env, size), set()).update(listed)
                ever = frame[(frame["env"] == env) & (frame["size_bytes"] == size)
                             & ((frame["predicted_s"] / frame["baseline_s"] - 1).abs() > 1e-6)]
                assert ops == set(ever["op"])          # every op the scenario changes, in one row
            assert got == want, (name, param)
            if param != "(defaults)":
                assert bool(want) == any(f["attrs"]["data-param"] == param for f in figs), (name, param)
        for c in cells:
            assert float(c["data-predicted"]) > 0


def test_calibration_of_the_campaign_itself_found_as_the_newest(campaign, results_tmp, few_draws):
    """Calibrated on the campaign (`invoke calibrate --source DIR`, saved where calibrate
    saves): the report finds the newest calibration by itself, shows the campaign's own
    fit, and names the scenarios it cannot predict from it rather than dropping them."""
    import calibration
    cal = calibration.fit(calibration.load_results(str(campaign)))
    cal.save(results_tmp / "calibrations" / "20260101-000000.json")
    newest = cal.save(results_tmp / "calibrations" / "20260101-000001.json")
    out = report_cmd.run([str(campaign)])
    parsed = parse(out)
    assert newest.name in (out / "report.md").read_text()
    check_model_sections(parsed, newest)
    assert not any("calibration was fitted on" in w for w in parsed.warnings)
    assert_images(out, parsed)


# -- compact what-ifs and readable parameters (pure) -------------------------------

def test_whatif_table_keeps_only_rows_that_differ():
    """hvt-multiblock on a 4 KiB file: 8 blocks, so blocks 8..2048 predict the same time,
    and blocks=1 is the baseline: one row for 2, one for 4, one for 8..2048 (per env and
    size, every op in the row)."""
    from report.whatif import distinct_rows
    values = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    base = 8e-4
    pred = {1: base, 2: base / 2, 4: base / 4}
    rows = pd.DataFrame([{"env": "hvt", "size_bytes": 4096, "op": op, "baseline_s": base,
                          "predicted_s": pred.get(v, base / 8), "pi95_low_s": pred.get(v, base / 8) / 2,
                          "pi95_high_s": pred.get(v, base / 8) * 2, "speedup": base / pred.get(v, base / 8),
                          "sweep_value": v} for v in values for op in ("write", "read")])
    out = distinct_rows(rows, values)
    assert [r["sweep_values"] for r in out] == [[2], [4], values[3:]]
    assert [r["ops"]["read"]["predicted_s"] for r in out] == [base / 2, base / 4, base / 8]
    assert all(set(r["ops"]) == {"write", "read"} for r in out)
    # one op moving keeps the row; no op moving drops it
    flat = rows.assign(predicted_s=base, pi95_low_s=base / 2, pi95_high_s=base * 2, speedup=1.0)
    assert not distinct_rows(flat, values)
    one = flat.copy()
    one.loc[(one["op"] == "read") & (one["sweep_value"] == 16), "predicted_s"] = base / 3
    assert [r["sweep_values"] for r in distinct_rows(one, values)] == [[16]]


@pytest.mark.parametrize("value, unit, text", [
    (7.2e10, "B/s", "72 GB/s"), (27.7e6, "B/s", "27.7 MB/s"), (2.75e-11, "s/B", "28.8 µs/MiB"),
    (6.01e-5, "s", "60.1 µs"), (0.2, "fraction", "20%"), (1.5, "x", "1.5×"), (33554432, "B", "32 MiB"),
    (25276182528, "B", "23.5 GiB"), (3.0, "count", "3"), (0, "s", "0 s"),
])
def test_parameters_in_human_units(value, unit, text):
    from report.build import param_value
    assert param_value(value, unit) == text
    assert "e+" not in param_value(value, unit) and "e-" not in param_value(value, unit)


# -- in a real browser ------------------------------------------------------------

@pytest.mark.browser
def test_report_in_headless_chromium(campaign, study_calibration, few_draws, results_tmp, tmp_path):
    """The report as a person sees it: Debian's chromium loads it (headless, no driver);
    every image decodes, no section is empty, the verdict table comes first, and the
    page shows no NaN and no raw JSON. One self-contained file: nothing loads from elsewhere."""
    import os
    import re
    import browser
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/install installs it")
        pytest.skip("no chromium (scripts/install installs it)")
    out = report_cmd.run([str(campaign)], calibration=str(study_calibration), out=str(tmp_path / "r"))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert not re.search(r'<(?:link|script)\b|src="(?!data:)', html), "the report loads nothing from elsewhere"
    seen = browser.inspect(out / "index.html")
    figures = parse(out).figures
    assert len(seen["images"]) == len(figures) >= 3
    for img in seen["images"]:
        assert img["complete"] and img["width"] > 200 and img["height"] > 100, img
    assert seen["tables"][0] == "verdict"
    for sec in seen["sections"]:
        assert sec["blocks"] > 0 and sec["text"] > 40, sec
    text = seen["text"]
    assert not re.search(r"\b(?:NaN|nan|inf)\b", text)
    assert not re.search(r'[{\[]\s*"[\w.-]+"\s*:', text), "raw JSON on the page"
    assert seen["height"] > 1000


def test_every_plot_names_the_machine_and_its_caveat():
    from matplotlib.figure import Figure as MplFigure
    from report import plots
    fig = MplFigure()
    fig.add_subplot(1, 1, 1).plot([1, 2], [1, 2])
    with plots.noted("vm (x86_64): software KVM: guest code emulated"):
        png = plots._png(fig)
    assert png.startswith(b"\x89PNG") and "software KVM" in fig._suptitle.get_text()
    fig2 = MplFigure()
    fig2.add_subplot(1, 1, 1)
    plots._png(fig2)
    assert fig2._suptitle is None            # outside a report: no stale note


@pytest.mark.parametrize("lo, hi", [(14.2e-3, 15.9e-3), (1.1e-3, 9e-3), (2e-6, 3e-3), (0.9e-6, 1.3e-6)])
def test_time_axis_never_repeats_a_label(lo, hi):
    """Two significant digits printed '15 ms' on four ticks of a short log axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from report import plots
    fig = MplFigure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [lo, hi])
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    plots._time_y(ax)
    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)
              if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(labels) == len(set(labels)), labels


def test_a_calibration_older_than_the_model_is_one_line(tmp_path, results_tmp):
    """A calibration written before the model gained a (fixed) parameter is refused when it
    is loaded, in one line, rather than as a KeyError deep inside the what-if sweep."""
    import calibration
    results = calibration.load_results(None)
    cal = calibration.fit(results[results["size_bytes"] == 4096].copy())
    path = cal.save(tmp_path / "cal.json")
    data = json.loads(path.read_text())
    fixed = next(k for k, v in data["params"].items() if v["description"].endswith("[fixed]"))
    del data["params"][fixed]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="older model") as e:
        report_cmd.run([], reference=True, calibration=str(path))
    assert fixed in str(e.value) and "\n" not in str(e.value)


def test_sources_table_names_where_the_target_said_a_cache_size_came_from():
    """A cache size measured on the target (no sizes in its sysfs) is shown as measured, not
    as read from sysfs."""
    from report.sources import fact_rows
    facts = {"host": "board", "cpu_caches": {
        "l1d_bytes": 32768, "l2_bytes": 1 << 20,
        "source": {"l1d_bytes": "device tree", "l2_bytes": "measured: pointer-chase (the last level before memory)"}}}
    rows = {r[0].text: r[2].text for r in fact_rows(facts)}
    assert rows["L2 cache"].startswith("measured: pointer-chase")
    assert rows["L1 data cache"] == "device tree"
    assert rows["host name"] == "uname -n"
