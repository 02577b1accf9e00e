"""What-if predictions: scenarios, intervals, speed-ups, bad input, the predict command."""

import pandas as pd
import pytest

import calibration
import model
from edgeio.errors import UserError

COLUMNS = ["scenario", "env", "size_bytes", "op", "baseline_s", "predicted_s", "pi95_low_s",
           "pi95_high_s", "speedup", "speedup_low", "speedup_high", "assumes"]


@pytest.fixture(scope="module")
def cal():
    return calibration.fit(calibration.load_results(None))


@pytest.fixture(scope="module")
def cal_file(cal, tmp_path_factory):
    return cal.save(tmp_path_factory.mktemp("cal") / "pi.json")


def test_every_scenario_has_what_a_report_needs():
    assert {"hvt-multiblock", "hvt-flush", "hvt-blocksize", "hvt-ring", "passthrough",
            "guest-memory"} <= set(model.SCENARIOS)
    for name, sc in model.SCENARIOS.items():
        assert sc.name == name and sc.description
        assert set(sc.sweep) <= set(sc.defaults)
    assert model.SCENARIOS["hvt-multiblock"].sweep["blocks"] == [2 ** i for i in range(12)]


def test_multiblock_predictions(cal):
    df = model.predict(cal, "hvt-multiblock", {"blocks": "8"})
    assert list(df.columns) == COLUMNS + ["blocks"]
    assert set(df["env"]) == {"hvt"} and len(df) == 6 and set(df["blocks"]) == {8}
    assert (df["pi95_low_s"] <= df["predicted_s"]).all() and (df["predicted_s"] <= df["pi95_high_s"]).all()
    assert (df["speedup"] == df["baseline_s"] / df["predicted_s"]).all()
    r = df.set_index(["size_bytes", "op"])
    assert r.loc[(4096, "read"), "speedup"] > 4                 # 8 hypercalls become 1
    # the study's tender fsynced per hypercall: with 8 blocks per call, 8 times fewer fsyncs
    assert r.loc[(4096, "write_sync"), "speedup"] > 4
    assert set(df["assumes"]) == {"transport=hvt, blocks=8, block=512 B, "
                                  "flush=each-write (fsync per call, as the study's tender)"}


def test_multiblock_gain_grows_with_blocks_then_saturates(cal):
    s = [model.predict(cal, "hvt-multiblock", {"blocks": k}, draws=0).set_index(["size_bytes", "op"])
         .loc[(1 << 30, "read"), "speedup"] for k in (1, 8, 64, 1024, 2048)]
    assert s[0] == pytest.approx(1)
    assert s[0] < s[1] < s[2] < s[3] < s[4]
    assert s[4] < 1.05 * s[3]                                # the copy remains: it saturates


def test_flush_policies_order(cal):
    t = {f: model.predict(cal, "hvt-flush", {"flush": f, "blocks": 8}, draws=0)
         .set_index(["size_bytes", "op"]).loc[(4096, "write_sync"), "predicted_s"]
         for f in ("block", "call", "none")}
    # the study's tender fsynced per hypercall: per call, whatever the blocks per call
    assert t["block"] == pytest.approx(t["call"]) and t["call"] > 5 * t["none"]


def test_baseline_is_the_calibrated_model(cal):
    df = model.predict(cal, "baseline", {}, draws=0)
    assert (df["speedup"] == 1).all() and len(df) == 30
    fit = cal.fit_table.set_index(["env", "size_bytes", "op"])["modelled_s"]
    for r in df.itertuples():
        assert r.predicted_s == pytest.approx(fit[(r.env, r.size_bytes, r.op)])


def test_more_guest_memory_lets_1gib_reads_hit(cal):
    df = model.predict(cal, "guest-memory", {"memory": "3GiB"}, draws=0).set_index(["env", "size_bytes", "op"])
    assert df.loc[("qemu", 1 << 30, "read"), "speedup"] > 3
    assert df.loc[("xen", 1 << 30, "read"), "speedup"] > 3


def test_ring_and_passthrough_remove_exits(cal):
    ring = model.predict(cal, "hvt-ring", {"batch": 64}, draws=0).set_index(["size_bytes", "op"])
    assert ring.loc[(4096, "read"), "speedup"] > 2
    pt = model.predict(cal, "passthrough", {"exits_per_request": 0}, draws=0).set_index(["env", "size_bytes", "op"])
    assert pt.loc[("qemu", 4096, "write_sync"), "speedup"] > 1.2      # no host fsync per guest flush


@pytest.mark.parametrize("scenario,params,match", [
    ("nope", {}, "unknown scenario"),
    ("hvt-multiblock", {"blockz": 8}, "unknown parameter blockz"),
    ("hvt-multiblock", {"blocks": 0}, "blocks=0: expected 1 to 65536"),
    ("hvt-multiblock", {"blocks": "many"}, "expected a whole number"),
    ("hvt-blocksize", {"block_size": 3000}, "power of two"),
    ("hvt-flush", {"flush": "sometimes"}, "use none, each-write"),
    ("guest-memory", {"memory": "-1GiB"}, "malformed size"),
    ("guest-memory", {"memory": "4GiB"}, "host no page cache"),
    ("passthrough", {"exits_per_request": -1}, "expected 0 to 1000"),
    ("passthrough", {"guest_cache_mib": -1}, "expected 0 to 4096"),
    ("passthrough", {"guest_cache_mib": 1024}, "does not fit"),
])
def test_bad_scenarios_and_values_are_user_errors(cal, scenario, params, match):
    with pytest.raises(UserError, match=match):
        model.predict(cal, scenario, params, draws=0)


def test_a_calibration_without_the_cells_a_scenario_needs(tmp_path):
    pi = calibration.load_results(None)
    small = calibration.fit(pi[(pi.env == "linux") & (pi.size_bytes == 4096)].reset_index(drop=True))
    with pytest.raises(UserError, match="needs cells of hvt"):
        model.predict(small, "hvt-multiblock", {"blocks": 8})


# -- the command --------------------------------------------------------------------------

def test_predict_command_prints_and_writes_csv(cal_file, tmp_path, capsys):
    from edgeio.commands import predict
    out = tmp_path / "p.csv"
    predict.run("hvt-multiblock", ["blocks=8"], calibration=str(cal_file), out=str(out))
    text = capsys.readouterr().out
    assert "hvt-multiblock" in text and "speed-up" in text and "µs" in text
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS + ["blocks"] and len(df) == 6
    with pytest.raises(UserError, match="never overwritten"):
        predict.run("hvt-multiblock", ["blocks=8"], calibration=str(cal_file), out=str(out))


def test_predict_uses_the_newest_calibration(cal, results_tmp, capsys):
    from edgeio.commands import predict
    newest = cal.save(results_tmp / "calibrations" / "20990101-000000.json")
    predict.run("hvt-ring", [], calibration=None)
    assert f"Using calibration {newest}" in capsys.readouterr().err      # stdout: the table only


def test_predict_lists_scenarios(capsys):
    from edgeio.commands import predict
    predict.run("list", [])
    predict.run(None, [])
    text = capsys.readouterr().out
    for name in model.SCENARIOS:
        assert text.count(name) >= 2
    assert "blocks" in text


@pytest.mark.parametrize("args,match", [
    (("nope", []), "unknown scenario"),
    (("hvt-multiblock", ["blocks"]), "key=value"),
    (("hvt-multiblock", ["=8"]), "key=value"),
    (("hvt-multiblock", ["nblocks=8"]), "unknown parameter"),
])
def test_predict_command_errors(results_tmp, args, match):
    from edgeio.commands import predict
    with pytest.raises(UserError, match=match):
        predict.run(*args)


def test_predict_command_with_a_corrupt_calibration(tmp_path):
    from edgeio.commands import predict
    bad = tmp_path / "c.json"
    bad.write_text('{"format": "edgeio-calibration/1", "params": ')
    with pytest.raises(UserError, match="c.json"):
        predict.run("hvt-multiblock", [], calibration=str(bad))


def test_passthrough_guest_cache_serves_hvt_blocks_in_the_guest(cal):
    """Without a cache of its own, passthrough sends every hvt block call to the card (slower
    than the tender's host page cache); a guest cache serves the small file in the guest,
    while a 1 GiB file larger than the cache still goes to the card, in readahead requests."""
    key = ["env", "size_bytes", "op"]
    none = model.predict(cal, "passthrough", {}, draws=0).set_index(key)
    cached = model.predict(cal, "passthrough", {"guest_cache_mib": 64}, draws=0).set_index(key)
    assert none.loc[("hvt", 4096, "read"), "speedup"] < 1
    assert cached.loc[("hvt", 4096, "read"), "speedup"] > 1
    assert cached.loc[("hvt", 4096, "read"), "predicted_s"] < none.loc[("hvt", 4096, "read"), "predicted_s"] / 10
    values = cal.values()
    assert cached.loc[("hvt", 1 << 30, "read"), "predicted_s"] >= (1 << 30) / values["dev_read_bps"]
    # qemu and xen already have a guest page cache: the parameter is hvt's only
    for env in ("qemu", "xen"):
        assert cached.loc[(env, 4096, "read"), "predicted_s"] == none.loc[(env, 4096, "read"), "predicted_s"]


def test_predict_explains_the_rows_that_get_slower(cal_file, capsys):
    from edgeio.commands import predict
    predict.run("passthrough", [], calibration=str(cal_file))
    text = capsys.readouterr().out
    explain = model.SCENARIOS["passthrough"].explain
    table, _, notes = text.partition("  slower:")
    assert explain and notes
    slow_lines = [line for line in text.splitlines() if line.startswith("  slower:")]
    assert slow_lines and all(line.endswith(explain) for line in slow_lines)
    assert any(line.startswith("  slower: hvt 4 KiB read") for line in slow_lines)
    predict.run("passthrough", ["guest_cache_mib=64"], calibration=str(cal_file))
    cached = capsys.readouterr().out
    assert "slower: hvt 4 KiB" not in cached
    assert cached.count("slower:") < len(slow_lines)


# -- predictions of cells as they will run (invoke verify) ---------------------------------

def test_predict_cells_models_each_cell_as_it_will_run(cal):
    cells = [{"env": "hvt", "size_bytes": 4096, "op": op, "config": {"flush": "none"}}
             for op in ("write_sync", "write")]
    cells += [{"env": "hvt", "size_bytes": 4096, "op": "write_sync", "config": '{"flush": "each-write"}'},
              {"env": "hvt", "size_bytes": 4096, "op": "read", "config": {"blocks_per_call": 8}},
              {"env": "hvt", "size_bytes": 4096, "op": "read", "config": {}},
              {"env": "qemu", "size_bytes": 256 << 20, "op": "read", "config": {"disk": "ide", "mem": "128"}},
              {"env": "qemu", "size_bytes": 256 << 20, "op": "read", "config": {"disk": "virtio", "mem": "128"}}]
    df = model.predict_cells(cal, cells, draws=4)
    assert list(df.columns) == ["env", "size_bytes", "op", "config", "predicted_s", "low_s", "high_s"]
    assert len(df) == len(cells) and list(df["op"]) == [c["op"] for c in cells]      # input order
    assert (df["low_s"] < df["predicted_s"]).all() and (df["predicted_s"] < df["high_s"]).all()
    t = df["predicted_s"].tolist()
    # the tender's default flush (none) syncs nothing: write_sync is a write plus one flush request
    assert t[0] == pytest.approx(t[1] + cal.values()["hypercall_s"] + cal.values()["guest_flush_s"], rel=1e-6)
    assert t[2] > 20 * t[0]                     # each-write: an fsync per write call
    assert t[4] > 4 * t[3]                      # 8 blocks per call: 8x fewer exits
    assert t[5] > t[6]                          # an emulated IDE disk traps more per request


def test_predict_cells_bad_cells(cal):
    for bad, match in [({"env": "hvt", "op": "read"}, "needs env, size_bytes and op"),
                       ({"env": "vmware", "size_bytes": 4096, "op": "read"}, "no environment"),
                       ({"env": "hvt", "size_bytes": 4096, "op": "append"}, "unknown op"),
                       ({"env": "hvt", "size_bytes": 4096, "op": "read", "config": "{x"}, "JSON"),
                       ({"env": "qemu", "size_bytes": 4096, "op": "read", "config": {"disk": "scsi"}}, "disk")]:
        with pytest.raises(UserError, match=match):
            model.predict_cells(cal, [bad], draws=0)


def test_intervals_cover_the_measured_cells_and_are_not_degenerate(cal):
    """The 95% prediction intervals of the calibration's own cells (parameter draws plus
    the structural error measured out of sample) contain most measured values; intervals
    collapsed to zero width contain none, and absurdly wide ones are refused too."""
    cells = [{"env": w["env"], "size_bytes": w["size_bytes"], "op": w["op"], "config": w["config"],
              "reps": w["reps"]} for w in cal.workloads()]
    df = model.predict_cells(cal, cells, draws=8)
    measured = cal.fit_table["measured_s"].to_numpy()
    inside = (df["low_s"].to_numpy() <= measured) & (measured <= df["high_s"].to_numpy())
    assert inside.mean() >= 0.8, inside.mean()
    ratio = (df["high_s"] / df["low_s"]).median()
    assert 1.2 < ratio < 4, ratio
    assert cal.structural_log_sd() > 0


def test_every_scenario_maps_to_the_environment_parameters_that_build_it():
    sc = model.SCENARIOS
    assert sc["hvt-multiblock"].env_params({"blocks": 8}) == {"hvt": {"blocks_per_call": "8"}}
    assert sc["hvt-flush"].env_params({"flush": "each-write", "blocks": 1}) == \
        {"hvt": {"flush": "each-write", "blocks_per_call": "1"}}
    # the study's tender fsynced per hypercall: the edgeio tender's each-write, per call
    assert sc["hvt-flush"].env_params({"flush": "block", "blocks": 8}) == \
        {"hvt": {"flush": "each-write", "blocks_per_call": "8"}}
    assert sc["hvt-blocksize"].env_params({"block_size": 4096}) == {"hvt": {"sector_size": "4096"}}
    assert sc["hvt-ring"].env_params({"batch": 16}) == \
        {"hvt": {"transport": "ring", "batch": "16", "blocks_per_call": "1"}}
    assert sc["hvt-mapped"].env_params({}) == {"hvt": {"transport": "mapped"}}
    assert sc["guest-memory"].env_params({"memory": "256MiB"}) == {"qemu": {"mem": "256"}}
    assert sc["qemu-disk"].env_params({"disk": "ahci"}) == {"qemu": {"disk": "ahci"}}
    assert sc["passthrough"].env_params({}) is None and sc["passthrough"].unbuildable
    with pytest.raises(UserError, match="use virtio, ide, ahci"):
        sc["qemu-disk"].env_params({"disk": "scsi"})
    # what the mapping builds is what the model predicts for the scenario
    from model.environments import config_for
    from model.machine import pi4
    m = pi4()["machine"]
    for name, params in [("hvt-multiblock", {"blocks": 8}), ("hvt-blocksize", {"block_size": 4096}),
                         ("qemu-disk", {"disk": "ide"}), ("guest-memory", {"memory": "256MiB"}),
                         ("hvt-ring", {"batch": 16}), ("hvt-mapped", {})]:
        s = sc[name]
        for env, kv in s.env_params(params).items():
            assert s.apply(config_for(env, {}, m), s.parse(params)) == config_for(env, kv, m), name


def test_qemu_disk_scenario(cal):
    df = model.predict(cal, "qemu-disk", {"disk": "ide"}, draws=0).set_index(["size_bytes", "op"])
    assert (df["speedup"] <= 1 + 1e-9).all()             # an emulated disk is never faster
    assert df.loc[(1 << 30, "read"), "speedup"] < 1      # the 1 GiB read misses: requests cost more


def test_a_calibration_from_another_machine_is_detected(cal, tmp_path):
    import calibration as calib
    from model.machine import pi4
    assert calib.matches(cal, pi4()["machine"]) is None
    here = dict(pi4()["machine"], host="vm", arch="x86_64", memory_bytes=24 << 30)
    why = calib.matches(calib.load(cal.save(tmp_path / "c.json")), here)
    assert why and "arch aarch64 vs x86_64" in why and "memory" in why and "\n" not in why
