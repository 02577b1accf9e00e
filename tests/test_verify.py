"""invoke verify: predictions written before the first cell starts, the fix built from the
scenario's mapping, comparison.csv consistent with what was predicted and measured, bad
input refused in one line before anything is measured, an interrupted verify resumable.

Real cells: linux and hvt (on /dev/kvm) at 4 KiB and 64 KiB with few repetitions; the
calibration is fitted on a real campaign made here (allow_priors: it is small)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import model
from edgeio.commands import _verify_compare as vc
from edgeio.commands import _verify_plan as vp
from edgeio.commands import verify
from edgeio.errors import UserError
from measure.environments import environment_class
from measure.targets import LocalTarget
from tests.conftest import have_kvm

ROOT = Path(__file__).resolve().parent.parent
needs_kvm = pytest.mark.skipif(not have_kvm(), reason="/dev/kvm absent or not accessible: hvt cells need KVM")


def _specs():
    out = {}
    for e in ("hvt", "qemu", "xen", "linux", "docker"):
        try:
            out[e] = dict(environment_class(e).params_spec)
        except UserError:
            pass
    return out


# -- the mapping from scenario to environment parameters (no cells) ----------------------

@pytest.mark.parametrize("scenario,params,env,expected", [
    ("hvt-multiblock", {"blocks": "8"}, "hvt", {"blocks_per_call": "8"}),
    ("hvt-multiblock", {"blocks": "64"}, "hvt", {"blocks_per_call": "64"}),
    ("hvt-flush", {"flush": "each-block", "blocks": "1"}, "hvt", {"flush": "each-write", "blocks_per_call": "1"}),
    ("hvt-flush", {"flush": "each-write", "blocks": "8"}, "hvt", {"flush": "each-write", "blocks_per_call": "8"}),
    ("hvt-flush", {"flush": "on-request", "blocks": "8"}, "hvt", {"flush": "on-request", "blocks_per_call": "8"}),
    ("hvt-flush", {"flush": "none", "blocks": "1"}, "hvt", {"flush": "none", "blocks_per_call": "1"}),
    ("hvt-blocksize", {"block_size": "4096"}, "hvt", {"sector_size": "4096"}),
    ("guest-memory", {"memory": "256MiB"}, "qemu", {"mem": "256"}),
    ("qemu-disk", {"disk": "ide"}, "qemu", {"disk": "ide"}),
    ("qemu-disk", {"disk": "ahci"}, "qemu", {"disk": "ahci"}),
])
def test_scenario_builds_its_fix_from_environment_parameters(scenario, params, env, expected):
    b = vp.build(model.scenarios.get(scenario), params, _specs())
    assert b.fix[env] == expected
    # every key it sets is a real --param of that environment in this checkout
    assert set(expected) <= set(_specs()[env])


def test_unbuildable_scenarios_say_why():
    specs = _specs()
    build = lambda name, **p: vp.build(model.scenarios.get(name), p, specs)   # noqa: E731
    ring, mapped = build("hvt-ring", batch="32"), build("hvt-mapped")
    if "transport" in specs["hvt"]:
        assert ring.fix["hvt"] == {"transport": "ring", "batch": "32", "blocks_per_call": "1"}
        assert mapped.fix["hvt"] == {"transport": "mapped"}
    else:
        assert "hvt" not in ring.fix and "transport" in ring.unbuildable["hvt"]
        assert "hvt" not in mapped.fix and "no --param transport" in mapped.unbuildable["hvt"]
    p = build("passthrough")
    assert p.fix == {} and "BitVisor" in p.unbuildable["qemu"]
    assert build("baseline").fix == {} and "changes nothing" in build("baseline").unbuildable["hvt"]
    # the study's tender fsynced per hypercall: with 8 blocks per call, an fsync per call
    assert build("hvt-flush", flush="each-block", blocks="8").fix["hvt"] == {"flush": "each-write",
                                                                            "blocks_per_call": "8"}


def test_cells_pair_every_fix_cell_with_its_baseline():
    b = vp.build(model.scenarios.get("hvt-multiblock"), {"blocks": "8"}, _specs())
    cells = vp.cells(b, {"hvt": [(4096, "write", 10), (65536, "read", 5)]}, {"hvt": {"mem": "64"}}, "local")
    assert [(c["size_bytes"], c["op"], c["role"]) for c in cells] == [
        (4096, "write", "baseline"), (4096, "write", "fix"), (65536, "read", "baseline"), (65536, "read", "fix")]
    assert cells[0]["params"] == {"mem": "64"}
    assert cells[1]["params"] == {"mem": "64", "blocks_per_call": "8"}
    assert len({c["cell_id"] for c in cells}) == 4
    envs = verify._environments(cells, {"local": LocalTarget()})
    cfg = [envs[("hvt", "local")].effective_config(c) for c in cells]
    # what the model is given is what the tender will run: its default flush (none), not the study's
    assert cfg[0]["flush"] == "none" and cfg[0]["blocks_per_call"] == 1 and cfg[1]["blocks_per_call"] == 8
    assert cfg[0]["memory_bytes"] == 64 << 20 and cfg[2]["io_size_bytes"] == 512 and cfg[3]["io_size_bytes"] == 4096
    # one env, two configurations: the engine's campaign tag reaches both, apart
    router = envs[("hvt", "local")]
    router.resource_tag = "camp"
    assert sorted(i.resource_tag for i in router.instances.values()) == ["camp-0", "camp-1"]


def test_unbuildable_block_count_is_refused():
    b = vp.build(model.scenarios.get("hvt-multiblock"), {"blocks": "64"}, _specs())
    with pytest.raises(UserError, match="64 blocks per call cannot be built on a 4 KiB file"):
        vp.check_buildable(b, 4096, "hvt", b.fix["hvt"], _specs()["hvt"])
    vp.check_buildable(b, 65536, "hvt", b.fix["hvt"], _specs()["hvt"])    # 128 blocks: 2 calls


def test_comparison_joins_on_the_cells_configuration():
    pred = pd.DataFrame({"env": ["hvt", "hvt"], "size_bytes": [4096, 4096], "op": ["read", "read"],
                         "config": ["{}", '{"blocks_per_call":"8"}'], "role": ["baseline", "fix"],
                         "predicted_s": [1e-3, 2e-4], "low_s": [5e-4, 1e-4], "high_s": [2e-3, 3e-4]})
    summ = pd.DataFrame({"env": ["hvt", "hvt"], "size_bytes": [4096, 4096], "op": ["read", "read"],
                         "config": ['{"blocks_per_call":"8"}', "{}"], "median_per_op_s": [4e-4, 1e-3],
                         "median_ci95_low_s": [3e-4, 9e-4], "median_ci95_high_s": [5e-4, 1.1e-3],
                         "mean_per_op_s": [9e-4, 3e-3]})    # judged on the median, as fitted
    comp = vc.compare(pred, summ)
    assert list(comp["measured_s"]) == [1e-3, 4e-4]
    assert list(comp["ci95_low_s"]) == [9e-4, 3e-4]
    assert comp["rel_error"].tolist() == pytest.approx([0.0, -0.5])
    assert comp["inside"].tolist() == [True, False]
    s = vc.summarize(comp)
    assert s["median_abs_rel_error"] == pytest.approx(0.25) and s["share_inside"] == 0.5
    from edgeio.stats import speedups
    sp = speedups(comp)         # predicted 1e-3/2e-4 = 5x, measured 1e-3/4e-4 = 2.5x
    assert len(sp) == 1 and sp.loc[0, "predicted_speedup"] == pytest.approx(5.0)
    assert sp.loc[0, "measured_speedup"] == pytest.approx(2.5) and sp.loc[0, "rel_error"] == pytest.approx(1.0)


# -- real cells --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A real linux+hvt campaign at 4 KiB and 64 KiB, and a calibration fitted on it."""
    if not have_kvm():
        pytest.skip("/dev/kvm absent: hvt cells need KVM")
    from edgeio.commands import calibrate, measure
    root = tmp_path_factory.mktemp("verify")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEIO_RESULTS", str(root / "results"))
    try:
        campaign = measure.run(env="linux,hvt", size="4KiB,64KiB", reps="20", batches=5,
                               out=str(root / "results"), quiet=True)
        cal = calibrate.run(source=str(campaign), out=str(root / "cal.json"), allow_priors=True)
    finally:
        mp.undo()
    return {"root": root, "campaign": campaign, "calibration": cal}


def _verify_args(calibrated, **kw):
    return dict(dict(scenario="hvt-multiblock", params=["blocks=8"], calibration=str(calibrated["calibration"]),
                     size="4KiB,64KiB", op="write_sync,read", reps="20", quiet=True), **kw)


@needs_kvm
def test_verify_predicts_before_it_measures_and_compares(calibrated, tmp_path, results_tmp):
    seen = []

    def on_start(cell):
        # the engine is about to run this cell: the prediction must already be complete
        found = list(tmp_path.glob("*/predictions.csv"))
        assert len(found) == 1, "no predictions.csv when a cell started"
        meta = json.loads((found[0].parent / "metadata.json").read_text())["verify"]
        text = found[0].read_text()
        assert hashlib.sha256(text.encode()).hexdigest() == meta["predictions"]["sha256"]
        plan = json.loads((found[0].parent / "plan.json").read_text())
        assert len(pd.read_csv(found[0])) == len(plan) == meta["predictions"]["cells"]
        if not seen:
            assert not list((found[0].parent / "cells").glob("*.json"))
        seen.append(cell["cell_id"])

    path = verify.run(**_verify_args(calibrated, out=str(tmp_path), on_start=on_start))
    plan = json.loads((path / "plan.json").read_text())
    assert seen == [c["cell_id"] for c in plan] and len(plan) == 8     # 2 sizes x 2 ops x baseline/fix

    pred = pd.read_csv(path / "predictions.csv", keep_default_na=False, dtype={"config": str})
    summ = pd.read_csv(path / "summary.csv", keep_default_na=False, dtype={"config": str})
    comp = pd.read_csv(path / "comparison.csv", keep_default_na=False, dtype={"config": str})
    assert list(comp.columns[:12]) == ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s",
                                      "measured_s", "ci95_low_s", "ci95_high_s", "rel_error", "inside"]
    assert len(comp) == 8 and (pred["predicted_s"] > 0).all() and (pred["low_s"] < pred["high_s"]).all()
    keys = ["env", "size_bytes", "op", "config"]
    m = comp.merge(summ, on=keys).merge(pred, on=keys, suffixes=("", "_pred"))
    assert len(m) == 8
    assert m["measured_s"].tolist() == pytest.approx(m["median_per_op_s"].tolist(), rel=1e-12)
    assert m["predicted_s"].tolist() == pytest.approx(m["predicted_s_pred"].tolist(), rel=1e-12)
    assert m["rel_error"].tolist() == pytest.approx((m["predicted_s"] / m["measured_s"] - 1).tolist())
    assert (m["inside"].astype(str) == ((m["low_s"] <= m["measured_s"]) & (m["measured_s"] <= m["high_s"]))
            .astype(str)).all()
    # the prediction was written before any cell started
    written = json.loads((path / "metadata.json").read_text())["verify"]["predictions"]["written_at"]
    records = [json.loads(p.read_text()) for p in (path / "cells").glob("*.json")]
    assert all(r["started"] >= written for r in records)
    # the fix was built: the tender ran 8 blocks per call and made 8x fewer block exits
    by = {(r["cell"]["size_bytes"], r["cell"]["op"], r["cell"]["role"]): r["env_metadata"] for r in records}
    for size in (4096, 65536):
        base, fix = by[(size, "read", "baseline")], by[(size, "read", "fix")]
        assert base["blocks_per_call"] == 1 and fix["blocks_per_call"] == 8
        assert base["counters"]["exits"]["block_read"] == 8 * fix["counters"]["exits"]["block_read"]
    # the model was given the configuration as run (the tender's default flush, k blocks)
    cfgs = [json.loads(c) for c in pred["model_config"]]
    assert {c["blocks_per_call"] for c in cfgs} == {1, 8} and {c["flush"] for c in cfgs} == {"none"}
    # and the report shows it: band plot, error table with every cell's error, the calibration's fit
    import report
    inputs = report.gather([str(calibrated["campaign"])], calibration=None, verify=[str(path)])
    inputs.calibration, inputs.scenarios = None, {}        # the model sections are tested elsewhere
    where = report.write(report.document(inputs), str(tmp_path / "report"))
    md = (where / "report.md").read_text()
    section = md[md.index("## Predicted before measured"):]
    assert (where / f"verified-{path.name}.png").stat().st_size > 1000
    for r in comp.itertuples():
        assert f"{r.rel_error:+.1%}" in section
    assert "Fit of the calibration on its own campaign, per environment" in section
    assert "predicted before measured" in (where / "index.html").read_text().lower()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "invoke", "verify", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def _one_line_exit2(proc, needle):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr


@needs_kvm
def test_bad_input_is_one_line_and_measures_nothing(calibrated, tmp_path):
    cal = str(calibrated["calibration"])
    out = tmp_path / "out"
    _one_line_exit2(_cli("--scenario", "hvt-multiblok", "--calibration", cal, "--out", str(out)),
                    "unknown scenario 'hvt-multiblok'")
    _one_line_exit2(_cli("--scenario", "hvt-multiblock", "--param", "blocks=64", "--size", "4KiB",
                         "--calibration", cal, "--out", str(out)),
                    "64 blocks per call cannot be built on a 4 KiB file")
    other = json.loads(Path(cal).read_text())
    for where in (other, other["metadata"]):     # every place a calibration names its machine
        if isinstance(where.get("machine"), dict):
            where["machine"]["host"] = "raspberrypi"
        if where.get("host"):
            where["host"] = "raspberrypi"
    foreign = tmp_path / "pi.json"
    foreign.write_text(json.dumps(other))
    _one_line_exit2(_cli("--scenario", "hvt-multiblock", "--calibration", str(foreign), "--out", str(out)),
                    "fitted for another machine (host raspberrypi vs")
    _one_line_exit2(_cli("--scenario", "passthrough", "--calibration", cal, "--out", str(out)),
                    "no buildable fix")
    # nothing was created, let alone measured
    assert not out.exists() or not list(out.iterdir())
    # with no --calibration, the newest calibration of *this* target is taken: here none exists
    _one_line_exit2(_cli("--scenario", "hvt-multiblock", "--out", str(out),
                         env={"EDGEIO_RESULTS": str(tmp_path / "empty")}), "no calibration for target local")


@needs_kvm
def test_interrupted_verify_keeps_its_cells_and_resumes(calibrated, tmp_path):
    started = []

    def stop_at_third(cell):
        started.append(cell["cell_id"])
        if len(started) == 3:
            raise KeyboardInterrupt        # as if killed: the engine stops the campaign here
    with pytest.raises(UserError):
        verify.run(**_verify_args(calibrated, op="read", out=str(tmp_path), on_start=stop_at_third))
    path = next(tmp_path.glob("*verify-hvt-multiblock"))
    kept = sorted(p.name for p in (path / "cells").glob("*.json"))
    assert len(kept) == 2 and not (path / "comparison.csv").exists()
    digest = hashlib.sha256((path / "predictions.csv").read_bytes()).hexdigest()
    again = []
    verify.run(scenario=None, resume=str(path), quiet=True, on_start=lambda c: again.append(c["cell_id"]))
    plan = json.loads((path / "plan.json").read_text())
    assert again == [c["cell_id"] for c in plan][2:]                   # the two kept cells are not rerun
    assert sorted(p.name for p in (path / "cells").glob("*.json"))[:2] == kept
    assert len(pd.read_csv(path / "comparison.csv")) == len(plan) == 4
    assert hashlib.sha256((path / "predictions.csv").read_bytes()).hexdigest() == digest   # never rewritten


@needs_kvm
def test_resume_refuses_tampered_predictions(calibrated, tmp_path):
    def stop(cell):
        raise KeyboardInterrupt
    with pytest.raises(UserError):
        verify.run(**_verify_args(calibrated, op="read", size="4KiB", out=str(tmp_path), on_start=stop))
    path = next(tmp_path.glob("*verify-hvt-multiblock"))
    p = path / "predictions.csv"
    os.chmod(p, 0o644)
    p.write_text(p.read_text().replace("baseline", "baseline ", 1))
    with pytest.raises(UserError, match="differ from what was written before measuring"):
        verify.run(scenario=None, resume=str(path), quiet=True)
    assert not list((path / "cells").glob("*.json"))
