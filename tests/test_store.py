"""The results store and the shared statistics and units."""

import json

import numpy as np
import pytest

from edgeio import stats, store
from edgeio.errors import UserError
from edgeio.units import format_size, format_time, parse_size

CELL = {"cell_id": "0000-linux-4KiB-read", "env": "linux", "target": "local", "size_bytes": 4096,
        "op": "read", "reps": 40, "params": {}, "host": "h", "arch": "x86_64"}


def probe(batches):
    return {"probe": "edgeio-fileprobe", "io_size": 4096, "batch_reps": [10] * len(batches),
            "batch_seconds": batches, "total_seconds": sum(batches)}


def test_campaign_records_samples_and_summary(tmp_path):
    c = store.Campaign.create(tmp_path, {"host": "h"}, [CELL])
    c.record_cell(CELL, "ok", probe([1e-5, 2e-5, 1e-5, 2e-5]), {"host": "h"}, log="ran")
    failed = dict(CELL, cell_id="0001-linux-4KiB-write", op="write")
    c.record_cell(failed, "failed", None, {}, log="boom", error="probe exit 1")
    c.finish()
    samples = store.load_samples(c.path)
    assert len(samples) == 4 and set(samples["cell_id"]) == {CELL["cell_id"]}
    summary = store.load_summary(c.path)
    assert summary.loc[0, "mean_per_op_s"] == pytest.approx(6e-5 / 40)
    assert (c.path / "cells" / "0001-linux-4KiB-write.log").read_text() == "boom"
    assert json.loads((c.path / "metadata.json").read_text())["end_time"]


def test_campaigns_are_never_overwritten(tmp_path):
    a = store.Campaign.create(tmp_path, {}, [], name="same")
    b = store.Campaign.create(tmp_path, {}, [], name="same")
    assert a.path != b.path and a.path.exists() and b.path.exists()


def test_corrupt_cell_file_is_named(tmp_path):
    c = store.Campaign.create(tmp_path, {}, [CELL])
    c.record_cell(CELL, "ok", probe([1e-5, 1e-5]), {})
    bad = c.cells_dir / "0009-x.json"
    bad.write_text('{"cell": {"cell_id": ')
    with pytest.raises(UserError, match="0009-x.json: corrupt results file"):
        store.load_samples(c.path)
    assert json.loads((c.cells_dir / f"{CELL['cell_id']}.json").read_text())["status"] == "ok"


def test_open_rejects_non_campaign(tmp_path):
    with pytest.raises(UserError, match="not a campaign directory"):
        store.Campaign.open(tmp_path)


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path):
    target = tmp_path / "missing-dir" / "f.json"
    with pytest.raises(UserError, match="cannot write"):
        store.write_atomic(target, "x")
    assert not list(tmp_path.rglob(".f.json.tmp*"))


def test_stats_interval_and_warnings():
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 1.0, 400)
    s = stats.summarize(values, np.ones_like(values))
    assert s["ci95_low_s"] < 10.0 < s["ci95_high_s"]
    assert 0.05 < s["cv"] < 0.15
    assert stats.summarize([1.0, 1.0, 1.0, 50.0] * 5, [1] * 20)["warnings"].startswith("unstable")
    assert "outliers" in " ".join(stats.stability_warnings([1.0] * 30 + [1.01] * 30 + [9.0]))


@pytest.mark.parametrize("text, value", [("4KiB", 4096), ("1GiB", 1 << 30), ("64M", 64 << 20),
                                         ("512", 512), ("1kB", 1000)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "4XB", "-1", "0", "1.5GiB", "GiB"])
def test_parse_size_rejects(text):
    with pytest.raises(UserError):
        parse_size(text)


def test_human_units():
    assert format_size(1 << 30) == "1 GiB" and format_size(1000) == "1000 B"
    assert format_time(2.35e-3) == "2.35 ms" and format_time(1.61e-6) == "1.61 µs"
    assert format_time(5388) == "5388 s" and format_time(5.2e-7) == "520 ns"


def test_summary_carries_the_warnings_recorded_with_a_cell(tmp_path):
    c = store.Campaign.create(tmp_path, {}, [CELL])
    c.record_cell(CELL, "ok", probe([1e-5, 1e-5, 1e-5]), {},
                  adaptive={"warnings": ["budget spent: 95% CI ±4% > 2%"]})
    c.finish()
    row = store.load_summary(c.path).iloc[0]
    assert "budget spent" in row["warnings"]
    import pandas as pd
    assert "budget spent" in pd.read_csv(c.path / "summary.csv").loc[0, "warnings"]


def test_interval_of_heavy_tailed_batches_stays_positive():
    secs = [1e-6] * 48 + [1e-3] * 2          # two stray slow batches, as on a shared machine
    s = stats.summarize(secs, [1] * 50)
    assert 0 < s["ci95_low_s"] < s["mean_per_op_s"] < s["ci95_high_s"]
    t_half = stats.ci95_halfwidth(np.asarray(secs))
    assert s["mean_per_op_s"] - t_half < 0, "the t interval would have gone below zero"
