"""The published series of benchmarks/bench_published.py: each file names its source and
its host's profile, every point has a positive time, the profile passes the machine
checks, and calibrating on the smallest points leaves points held out."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_published", ROOT / "benchmarks" / "bench_published.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
SERIES = sorted(bench.DATA.glob("*.csv"))


def test_at_least_three_series_from_three_hosts():
    from model.machine import load_profile
    hosts = {load_profile(p.parent / bench.load_series(p)[0]["machine"])["machine"]["host"] for p in SERIES}
    assert len(SERIES) >= 3 and len(hosts) == len(SERIES)


@pytest.mark.parametrize("path", SERIES, ids=[p.stem for p in SERIES])
def test_series_is_cited_and_usable(path):
    header, df = bench.load_series(path)
    assert "http" in header["source"] and header.get("read_from")
    assert (df["seconds"] > 0).all() and df["size_bytes"].gt(0).all()
    n, min_seconds = bench.calibration_rule(header)
    fit = bench.calibration_points(df, n, min_seconds)
    assert 0 < len(fit) < len(df)
    # the calibration points are the smallest of each op (of those that took at least
    # min_seconds, where the source calls its shortest runs noise: the file says so)
    if min_seconds:
        assert "noise" in header["calibrate_on"]
    for op, g in df.groupby("op"):
        g = g[g["seconds"] >= min_seconds]
        key = "size_bytes" if g["size_bytes"].nunique() > 1 else ("block_size" if g["block_size"].notna().any()
                                                                  else "io_size_bytes")
        assert set(g.sort_values(key).index[:n]) == set(fit) & set(g.index)


def test_a_throughput_becomes_seconds(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("# source: x\n# calibrate_on: 1\n# machine: m.json\n" + ",".join(bench.COLUMNS) + "\n"
                 "linux,read,104857600,,1048576,true,1,50.0 MiB/s,\n")
    _, df = bench.load_series(p)
    assert df.loc[0, "seconds"] == pytest.approx(2.0)


def test_a_calibration_threshold_keeps_the_shorter_points_held_out(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("# source: x\n# calibrate_on: 1 smallest size among those that took at least 0.5 s (noise)\n"
                 "# machine: m.json\n" + ",".join(bench.COLUMNS) + "\n"
                 "linux,read,1048576,,1048576,true,1,,0.2\n"
                 "linux,read,2097152,,1048576,true,1,,0.6\n"
                 "linux,read,4194304,,1048576,true,1,,1.2\n")
    header, df = bench.load_series(p)
    assert bench.calibration_rule(header) == (1, 0.5)
    assert list(bench.calibration_points(df, *bench.calibration_rule(header))) == [1]
    assert bench.calibration_rule({"calibrate_on": "2 smallest block sizes"}) == (2, 0.0)
