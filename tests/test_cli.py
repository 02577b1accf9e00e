"""The `edgeio` console command and the machine-readable exports (--format json|csv|md)."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgeio

EDGEIO = Path(sys.executable).parent / "edgeio"     # the console script pip installed


def edgeio_cmd(*args, env_results=None, cwd="/"):
    """Run the installed `edgeio` from another directory (no tasks.py there)."""
    import os
    env = dict(os.environ)
    if env_results is not None:
        env["EDGEIO_RESULTS"] = str(env_results)
    return subprocess.run([str(EDGEIO), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def calibration_4k(tmp_path_factory):
    import calibration
    results = calibration.load_results(None)
    results = results[results["size_bytes"] == 4096].copy()
    results.attrs["source"] = "the study's 4 KiB figures"
    return calibration.fit(results).save(tmp_path_factory.mktemp("cal") / "study-4k.json")


@pytest.fixture(scope="module")
def two_campaigns(tmp_path_factory):
    """Two tiny real campaigns of the native environment (a few seconds each)."""
    from edgeio.commands import measure
    root = tmp_path_factory.mktemp("campaigns")
    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEIO_RESULTS", str(root))
        for seed in ("1", "2"):
            out.append(Path(measure.run(env="linux", size="4KiB", op="write,read", reps="200", batches=5,
                                        seed=seed, quiet=True, out=str(root / f"s{seed}"))))
    return out


def test_version_and_tasks_from_anywhere():
    assert EDGEIO.exists(), "pip install -e . installs the edgeio console script"
    r = edgeio_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"edgeio {edgeio.__version__}"
    r = edgeio_cmd("--list")
    for name in ("measure", "calibrate", "predict", "verify", "report", "main", "testbed"):
        assert name in r.stdout


def test_help_has_long_options_only_and_no_escapes():
    for name in ("measure", "predict", "report", "verify", "calibrate"):
        r = edgeio_cmd("--help", name)
        assert r.returncode == 0, r.stderr
        assert "%%" not in r.stdout
        options = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("-")]
        assert options and all(o.startswith("--") for o in options), (name, options)
        names = [o.split("=")[0].split()[0] for o in options]
        assert len(names) == len(set(names)), f"{name}: an option listed twice"
    measure_help = edgeio_cmd("--help", "measure").stdout
    assert "20 ms" in measure_help and "default 100" not in measure_help


def test_predict_json_has_the_documented_keys(calibration_4k, tmp_path):
    r = edgeio_cmd("predict", "--scenario", "hvt-ring", "--format", "json", "--calibration",
                   str(calibration_4k), env_results=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)                       # stdout is the JSON and nothing else
    assert doc["kind"] == "prediction" and doc["scenario"] == "hvt-ring"
    assert doc["edgeio_version"] == edgeio.__version__ and doc["schema_version"] == 1
    assert doc["params"] == {"batch": 64, "blocks": 1}      # the tender's default ring batch
    keys = {"scenario", "env", "size_bytes", "op", "baseline_s", "predicted_s", "pi95_low_s",
            "pi95_high_s", "speedup", "speedup_low", "speedup_high"}
    assert keys <= set(doc["columns"]) and doc["rows"]
    for row in doc["rows"]:
        assert set(row) == set(doc["columns"])
        assert row["pi95_low_s"] <= row["predicted_s"] <= row["pi95_high_s"]
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
        assert row["speedup"] == pytest.approx(row["baseline_s"] / row["predicted_s"])


def test_predict_out_format_from_extension_and_mismatch_refused(calibration_4k, tmp_path):
    base = ["predict", "--scenario", "hvt-ring", "--calibration", str(calibration_4k)]
    mismatch = tmp_path / "p.json"
    r = edgeio_cmd(*base, "--out", str(mismatch), "--format", "csv", env_results=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "json" in r.stderr
    assert not mismatch.exists()
    r = edgeio_cmd(*base, "--out", str(mismatch), env_results=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(mismatch.read_text())["kind"] == "prediction"
    as_csv = tmp_path / "p.csv"
    assert edgeio_cmd(*base, "--out", str(as_csv), env_results=tmp_path).returncode == 0
    rows = list(csv.DictReader(io.StringIO(as_csv.read_text())))
    assert rows and "speedup_low" in rows[0]
    r = edgeio_cmd(*base, "--format", "xml", env_results=tmp_path)
    assert r.returncode == 2 and "json, csv, md" in r.stderr and "Traceback" not in r.stderr


def test_report_compare_md_and_json(two_campaigns, tmp_path):
    a, b = two_campaigns
    r = edgeio_cmd("report", "--compare", str(a), "--compare", str(b), "--format", "md",
                   env_results=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("| size_bytes | op | series_a | series_b |")
    assert len(lines) == 2 + 2            # header, rule, a row per (size, op): write and read
    assert not (tmp_path / "reports").exists()      # no document written
    r = edgeio_cmd("report", "--compare", str(a), "--compare", str(b), "--format", "json",
                   env_results=tmp_path)
    doc = json.loads(r.stdout)
    assert doc["kind"] == "comparison" and len(doc["rows"]) == 2
    for row in doc["rows"]:
        assert row["ratio"] == pytest.approx(row["mean_b"] / row["mean_a"])
        assert row["ci95_low"] <= row["ratio"] <= row["ci95_high"]
    r = edgeio_cmd("report", "--campaign", str(a), "--format", "md", env_results=tmp_path)
    assert r.returncode == 2 and "--compare" in r.stderr
