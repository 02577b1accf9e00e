"""The results store and the shared statistics and units."""

import json

import numpy as np
import pytest

from edgeio import stats, store
from edgeio.errors import UserError
from edgeio.parse import parse_size
from edgeio.units import format_size, format_time

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
                                         ("512", 512), ("1kB", 1024), ("4kb", 4096), ("1gb", 1 << 30)])  # as fio (kb_base 1024)
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


# -- a campaign directory is trusted only as far as it is checked ---------------------------
def _tampered_plan(tmp_path, **cell):
    c = store.Campaign.create(tmp_path, {}, [CELL], name="c")
    (c.path / "plan.json").write_text(json.dumps([dict(CELL, **cell)]))
    return c


@pytest.mark.parametrize("cell_id", ["../../../x", "/etc/passwd-x", ".hidden", "a/b", "-rf", "", 7,
                                     "x" * 129, "a\nb"])
def test_cell_ids_that_would_escape_the_directory_are_refused(tmp_path, cell_id):
    c = _tampered_plan(tmp_path, cell_id=cell_id)
    with pytest.raises(UserError, match=r"plan.json: corrupt results file: field \[0\].cell_id"):
        store.Campaign.open(c.path)
    with pytest.raises(UserError, match="invalid cell id"):     # and never written, whatever calls
        c.record_cell(dict(CELL, cell_id=cell_id), "ok", probe([1e-5]), {})
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".lock", "metadata.json", "plan.json"]


def test_paths_resolving_outside_the_directory_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    c = store.Campaign.create(tmp_path, {}, [CELL], name="c")
    (outside / "0000-linux-4KiB-read.json").write_text("{}")
    (c.cells_dir / CELL["cell_id"]).with_suffix(".json").symlink_to(outside / "0000-linux-4KiB-read.json")
    with pytest.raises(UserError, match="points outside the campaign directory"):
        c.records()
    (c.cells_dir / "0000-linux-4KiB-read.json").unlink()
    c.cells_dir.rmdir()
    c.cells_dir.symlink_to(outside)
    with pytest.raises(UserError, match="outside the campaign directory"):
        store.Campaign.open(c.path)


def test_a_newer_or_unknown_format_is_refused(tmp_path):
    c = store.Campaign.create(tmp_path, {}, [CELL], name="c")
    meta = json.loads((c.path / "metadata.json").read_text())
    assert meta["format"] == store.FORMAT_VERSION == 1 and meta["resource_tag"].startswith("c-")
    for version, message in ((2, "written by a newer edgeio"), ("1", "unknown format version"), (0, "unknown")):
        (c.path / "metadata.json").write_text(json.dumps(dict(meta, format=version)))
        with pytest.raises(UserError, match=f"metadata.json: field format: .*{message}"):
            store.Campaign.open(c.path)
    del meta["format"]                 # campaigns from before the field are version 1
    (c.path / "metadata.json").write_text(json.dumps(meta))
    assert store.Campaign.open(c.path).plan() == [CELL]


def _record(c, **changes):
    c.record_cell(CELL, "ok", probe([1e-5, 2e-5]), {"host": "h"}, log="ran")
    path = c.cells_dir / f"{CELL['cell_id']}.json"
    rec = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        obj = rec
        for p in parents:
            obj = obj[p]
        if value is KeyError:
            del obj[last]
        else:
            obj[last] = value
    path.write_text(json.dumps(rec))
    return path


@pytest.mark.parametrize("change, field", [
    ({"cell": "0000-linux-4KiB-read"}, "cell"),
    ({"cell__cell_id": KeyError}, "cell.cell_id"),
    ({"probe": [1, 2]}, "probe"),
    ({"probe__batch_seconds": ["fast", "slow"]}, r"probe.batch_seconds\[0\]"),
    ({"probe__batch_seconds": [1e-5, -2e-5]}, r"probe.batch_seconds\[1\]: expected at least 0"),
    ({"probe__batch_seconds": [1e-5]}, "probe.batch_seconds: 1 batches but 2"),
    ({"cell__size_bytes": "4096"}, "cell.size_bytes"),
    ({"status": "great"}, "status"),
    ({"cell__cell_id": "0001-linux-4KiB-read"}, "cell.cell_id: .*does not match the file name"),
    ({"log": "../../etc/shadow"}, "log"),
    ({"env_metadata": "h"}, "env_metadata"),
])
def test_malformed_records_name_file_and_field_and_say_how_to_go_on(tmp_path, change, field):
    c = store.Campaign.create(tmp_path, {}, [CELL], name="c")
    path = _record(c, **change)
    for read in (c.records, lambda: store.load_samples(c.path), lambda: store.load_summary(c.path)):
        with pytest.raises(UserError) as err:
            read()
        text = str(err.value)
        assert "\n" not in text and str(path) in text
        assert __import__("re").search(f"field {field}", text), text
        assert "--retry-failed" in text and "move the file aside" in text
    # the way on: --retry-failed sets it aside (kept) and the cell counts as not measured
    assert c.records(set_aside_invalid=True) == {}
    assert not path.exists() and (c.cells_dir / "retried" / f"{CELL['cell_id']}.1.json").exists()


def test_full_disk_at_the_very_start_leaves_no_stub(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    import subprocess
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs")
    try:
        free = __import__("os").statvfs(mnt)
        (mnt / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize))
        big_plan = [dict(CELL, cell_id=f"{i:04d}-linux-4KiB-read") for i in range(50)]
        with pytest.raises(UserError, match="No space left on device.*nothing was kept"):
            store.Campaign.create(mnt, {}, big_plan, name="c")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_a_parent_of_campaigns_is_named_with_what_it_holds(tmp_path):
    a = store.Campaign.create(tmp_path, {}, [CELL], name="first")
    b = store.Campaign.create(tmp_path, {}, [CELL], name="second")
    with pytest.raises(UserError) as err:
        store.Campaign.open(tmp_path)
    text = str(err.value)
    assert "not a campaign directory but holds 2 campaign(s): first, second" in text
    assert f"--resume {b.path}" in text and a.path.name in text


def test_one_writer_at_a_time(tmp_path):
    c = store.Campaign.create(tmp_path, {}, [CELL], name="c")
    other = store.Campaign(c.path)         # another writer (its own open file, as another process)
    with c.locked():
        with c.locked():                   # re-entrant for the holder
            pass
        with pytest.raises(UserError, match=r"in use by another edgeio run \(pid \d+ on .*, started 20"):
            with other.locked():
                pass
    with other.locked():                   # released
        pass
