"""Calibration: results sets, recovering known parameters, files, validation, the command."""

import json

import numpy as np
import pandas as pd
import pytest

import calibration
from edgeio import store
from edgeio.errors import UserError
from calibration.fit import cells_from
from model import Params, simulate
from model.environments import ENVS, study_reps
from model.machine import pi4, pi4_profile_path
from model.params import priors

PI = calibration.load_results(None)
PROFILE = pi4()
PI_PRIORS = priors(PROFILE["machine"])
PI_MACHINE = str(pi4_profile_path())

# Known parameters, each 3x or more away from the prior the fit starts from (issue 10:
# a fit that only stays near its priors must fail this).
TRUTH = {"syscall_s": 1.6e-6, "dram_copy_s_per_byte": 2.8e-9, "write_call_s": 1e-6,
         "container_syscall_s": 3.2e-6, "hypercall_s": 32e-6, "fsync_overhead_s": 0.45e-3,
         "vm_cpu_factor": 4.5, "dev_write_bps": 10e6, "dev_read_bps": 140e6, "dev_request_s": 0.09e-3,
         "guest_fsync_flushes": 1.0, "dirty_ratio": 0.06}
# the ones the study's 30 cells identify well (the others are confounded: e.g. the
# guest CPU factor with the per-call costs it multiplies)
KEY = ["dram_copy_s_per_byte", "hypercall_s", "dev_write_bps", "dev_read_bps"]


def synthetic(truth, noise=0.03, seed=7) -> pd.DataFrame:
    """The study's 30 cells as the model itself says they take under `truth`, plus noise,
    as a results set of the Pi 4 machine profile."""
    rng = np.random.default_rng(seed)
    p = Params(truth, machine=PROFILE["machine"])
    rows = []
    for c in cells_from(PI):
        t = simulate(p, c.cfg, c.workload).per_op_s
        rows.append({"env": c.env, "size_bytes": c.size_bytes, "op": c.op,
                     "mean_per_op_s": t * float(np.exp(rng.normal(0, noise))), "reps": c.reps})
    return calibration.results_set(pd.DataFrame(rows), PROFILE, "synthetic Pi cells")


@pytest.fixture(scope="module")
def recovered():
    return calibration.fit(synthetic(TRUTH))


def test_the_truth_is_far_from_the_priors():
    for name, v in TRUTH.items():
        r = v / PI_PRIORS[name]
        assert r >= 3 or r <= 1 / 3, (name, v, PI_PRIORS[name])


def test_calibration_recovers_known_parameters_within_their_intervals(recovered):
    params = recovered.params
    for name in KEY:
        v = params[name]
        assert v["ci95_low"] <= TRUTH[name] <= v["ci95_high"], (name, v, TRUTH[name])
        assert v["value"] == pytest.approx(TRUTH[name], rel=0.3), name
    # every parameter moved from its prior towards the truth
    import math
    for name, truth in TRUTH.items():
        fitted = params[name]["value"]
        assert abs(math.log(fitted / truth)) < abs(math.log(PI_PRIORS[name] / truth)), (name, fitted, truth)
    # the fit reproduces its data to about the noise
    assert recovered.fit_table["rel_error"].abs().median() < 0.05


def test_the_pi_figures_are_bundled_with_their_source():
    assert len(PI) == 30 and set(PI["env"]) == set(ENVS)
    assert "Raspberry Pi 4" in PI.attrs["source"]
    assert {r.reps for r in PI.itertuples()} == {100000, 10}
    assert all(r.reps == study_reps(r.size_bytes) for r in PI.itertuples())


def test_calibration_files_round_trip(recovered, tmp_path):
    path = recovered.save(tmp_path / "c.json")
    data = json.loads(path.read_text())
    assert data["format"] == "edgeio-calibration/1"
    assert set(data) == {"format", "created", "source", "machine", "target", "host", "metadata", "params",
                         "fit", "validation"}
    assert data["machine"]["memory_bytes"] == PROFILE["machine"]["memory_bytes"] and data["target"] == "pi4"
    back = calibration.load(path)
    assert back.values() == recovered.values()
    assert list(back.fit_table.columns) == ["env", "size_bytes", "op", "measured_s", "modelled_s", "rel_error"]
    assert back.fit_table["modelled_s"].tolist() == pytest.approx(recovered.fit_table["modelled_s"].tolist())
    for p in back.params.values():
        assert set(p) == {"value", "stderr", "ci95_low", "ci95_high", "unit", "description"}
        assert p["ci95_low"] <= p["value"] <= p["ci95_high"]


@pytest.mark.parametrize("text", ["{not json", json.dumps({"format": "other/1"}), json.dumps([1, 2]),
                                  json.dumps({"format": "edgeio-calibration/1", "params": {}})])
def test_corrupt_or_foreign_calibration_files_are_named(tmp_path, text):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(UserError, match="bad.json"):
        calibration.load(bad)


def test_a_csv_missing_columns_is_named(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("env,size,op\nlinux,4096,read\n")
    with pytest.raises(UserError, match="size_bytes, mean_per_op_s"):
        calibration.load_results(str(f))


@pytest.mark.parametrize("row,match", [("vmware,4096,read,1e-6", "no environment vmware"),
                                       ("linux,4096,append,1e-6", "unknown op append"),
                                       ("linux,4096,read,-1", "positive"),
                                       ("linux,4096,read,abc", "positive")])
def test_bad_rows_are_user_errors(tmp_path, row, match):
    f = tmp_path / "r.csv"
    f.write_text("env,size_bytes,op,mean_per_op_s\n" + row + "\n")
    with pytest.raises(UserError, match=match):
        calibration.load_results(str(f))


def test_missing_source_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such"):
        calibration.load_results(str(tmp_path / "nothing"))


def test_a_campaign_directory_is_a_results_set(tmp_path):
    camp = store.Campaign.create(tmp_path, {"host": "h", "targets": {"local": dict(PROFILE["machine"], host="h")}},
                                 [], name="c1")
    for i, (env, op, secs) in enumerate([("linux", "read", 1.6e-6), ("linux", "write", 1.4e-5),
                                         ("docker", "read", 4.8e-6)]):
        cell = {"cell_id": f"c{i}", "env": env, "target": "local", "size_bytes": 4096, "op": op,
                "params": {}}
        probe = {"batch_reps": [1000, 1000], "batch_seconds": [secs * 1000, secs * 1000 * 1.02], "io_size": 4096}
        camp.record_cell(cell, "ok", probe, {"host": "h", "arch": "x86_64"})
    camp.finish()
    df = calibration.load_results(str(camp.path))
    assert sorted(zip(df.env, df.op)) == [("docker", "read"), ("linux", "read"), ("linux", "write")]
    assert set(df["reps"]) == {2000}
    assert df.loc[df.op == "write", "mean_per_op_s"].iloc[0] == pytest.approx(1.4e-5 * 1.01)
    assert "campaign" in df.attrs["source"]
    # the fitted statistic is the median over batches, weighed by its own uncertainty
    assert df.attrs["statistic"] == "median_per_op_s"
    assert df.loc[df.op == "write", "measured_s"].iloc[0] == pytest.approx(1.4e-5 * 1.01)
    assert (df["rel_se"] > 0).all()
    assert df.attrs["machine"]["memory_bytes"] == PROFILE["machine"]["memory_bytes"]


def test_a_primitive_is_fitted_on_its_runs_fastest_batches(tmp_path):
    """A primitive's runs, each with some batches time-shared with a neighbour (2x): its
    measured_s is the median of the runs' fastest batches, not of all batches; a file
    cell with the same batches keeps its median."""
    camp = store.Campaign.create(tmp_path, {"host": "h", "targets": {"local": dict(PROFILE["machine"], host="h")}},
                                 [], name="c1")
    shared = {1: [1, 2, 2, 2, 1, 2, 2], 2: [2, 2, 1, 2, 2, 2, 2], 3: [1.01, 2, 2, 2, 2, 2, 2]}
    for run, factors in shared.items():
        for env, op in (("hvt", "call"), ("linux", "write")):
            cell = {"cell_id": f"{op}-r{run}", "env": env, "target": "local", "size_bytes": 512 if env == "hvt" else 4096,
                    "op": op, "params": {}, **({"kind": "primitive"} if env == "hvt" else {})}
            probe = {"batch_reps": [1000] * 7, "batch_seconds": [25e-6 * f * 1000 for f in factors]}
            camp.record_cell(cell, "ok", probe, {"host": "h", "arch": "x86_64"})
    camp.finish()
    df = calibration.load_results(str(camp.path))
    call = df[df.op == "call"].iloc[0]
    assert call["measured_s"] == pytest.approx(25e-6) and call["median_per_op_s"] == pytest.approx(50e-6)
    assert 0 < call["rel_se"] < 0.01                       # the runs' minima agree to 1%
    assert df.loc[df.op == "write", "measured_s"].iloc[0] == pytest.approx(50e-6)


def test_validation_on_a_small_set(tmp_path):
    small = PI[PI.env.isin(["linux", "docker"]) & (PI.size_bytes == 4096)].reset_index(drop=True)
    cal = calibration.fit(small)
    v = calibration.validate(cal, small)
    assert list(v.columns) == ["kind", "env", "size_bytes", "op", "measured_s", "predicted_s", "rel_error"]
    assert (v["kind"] == "leave-one-cell-out").sum() == 6
    assert (v["kind"] == "leave-one-env-out").sum() == 6
    assert np.allclose(v["rel_error"], v["predicted_s"] / v["measured_s"] - 1)
    back = calibration.load(cal.save(tmp_path / "v.json"))
    assert len(back.validation) == 12
    # parameters nothing in this set informs are marked as priors
    assert "[prior" in back.params["hypercall_s"]["description"]
    assert "[prior" not in back.params["container_syscall_s"]["description"]
    # the refits run in worker processes by default: one process gives the same table
    serial = calibration.validate(cal, small, workers=1)
    pd.testing.assert_frame_equal(serial, v)


# -- the command --------------------------------------------------------------------------

def small_csv(tmp_path):
    f = tmp_path / "small.csv"
    PI[PI.env.isin(["linux", "hvt"]) & (PI.size_bytes == 4096)].to_csv(f, index=False)
    return f


def test_a_csv_needs_its_machine(tmp_path, results_tmp):
    from edgeio.commands import calibrate
    with pytest.raises(UserError, match="--machine"):
        calibrate.run(source=str(small_csv(tmp_path)), allow_priors=True)


def test_calibrate_command_saves_and_never_overwrites(tmp_path, results_tmp, capsys):
    from edgeio.commands import calibrate
    src = small_csv(tmp_path)
    path = calibrate.run(source=str(src), allow_priors=True, machine=PI_MACHINE)
    assert path.parent == results_tmp / "calibrations" and path.suffix == ".json"
    out = capsys.readouterr().out
    assert "measured" in out and "hvt" in out and "µs" in out
    second = calibrate.run(source=str(src), allow_priors=True, machine=PI_MACHINE)
    assert second != path and path.exists() and second.exists()
    mine = tmp_path / "mine.json"
    assert calibrate.run(source=str(src), out=str(mine), allow_priors=True, machine=PI_MACHINE) == mine
    with pytest.raises(UserError, match="never overwritten"):
        calibrate.run(source=str(src), out=str(mine), allow_priors=True, machine=PI_MACHINE)
    assert calibration.load(mine).metadata["cells"] == 6


@pytest.mark.parametrize("kwargs,match", [({"source": "/nonexistent/x.csv"}, "no such"),
                                          ({"out": "/tmp/x.txt"}, ".json")])
def test_calibrate_command_errors(results_tmp, kwargs, match):
    from edgeio.commands import calibrate
    with pytest.raises(UserError, match=match):
        calibrate.run(**kwargs)


def test_a_results_set_missing_cells_a_parameter_needs_is_refused(tmp_path, results_tmp):
    """linux and docker at 4 KiB only: nothing pins the DRAM copy cost that a file larger
    than the machine's LLC (Pi: 1 MiB L2, so 4 MiB) would; the error names it and the
    cells, in one line."""
    from edgeio.commands import calibrate
    f = tmp_path / "partial.csv"
    PI[PI.env.isin(["linux", "docker"]) & (PI.size_bytes == 4096)].to_csv(f, index=False)
    with pytest.raises(UserError) as e:
        calibrate.run(source=str(f), machine=PI_MACHINE)
    msg = str(e.value)
    assert "\n" not in msg and "--allow-priors" in msg
    assert "dram_copy_s_per_byte" in msg and "linux 4 MiB read" in msg
    assert "hypercall_s" not in msg            # no hvt cell: hvt's parameters are not asked for
    assert not list((results_tmp / "calibrations").glob("*.json")) if (results_tmp / "calibrations").exists() else True
    path = calibrate.run(source=str(f), allow_priors=True, machine=PI_MACHINE)
    assert "[prior" in calibration.load(path).params["dram_copy_s_per_byte"]["description"]


def test_a_set_with_every_cell_of_its_environments_needs_no_priors(tmp_path):
    from calibration.coverage import missing_cells
    from calibration.fit import cells_from
    m = PROFILE["machine"]
    assert missing_cells(cells_from(PI), m) == {}
    hvt = PI[PI.env == "hvt"].reset_index(drop=True)
    assert missing_cells(cells_from(hvt), m) == {}
    no_read = PI[(PI.env == "xen") & (PI.op != "read")].reset_index(drop=True)
    missing = missing_cells(cells_from(no_read), m)
    assert "dev_read_bps" in missing and ("xen", 1 << 30, "read") in missing["dev_read_bps"]


def test_a_partial_campaign_is_refused_with_the_way_out(tmp_path, results_tmp):
    """A campaign of this machine with only some environments and sizes: one clear line."""
    from edgeio.commands import calibrate
    camp = store.Campaign.create(tmp_path, {"host": "h", "targets": {"local": dict(PROFILE["machine"], host="h")}},
                                 [], name="partial")
    for i, (op, secs) in enumerate([("read", 1.6e-6), ("write", 1.4e-5), ("write_sync", 2.4e-3)]):
        cell = {"cell_id": f"c{i}", "env": "linux", "target": "local", "size_bytes": 4096, "op": op,
                "params": {}}
        probe = {"batch_reps": [1000, 1000], "batch_seconds": [secs * 1000] * 2, "io_size": 4096}
        camp.record_cell(cell, "ok", probe, {"host": "h", "arch": "x86_64"})
    camp.finish()
    with pytest.raises(UserError, match=r"campaign: .*lacks cells .*dram_copy_s_per_byte.*--allow-priors"):
        calibrate.run(source=str(camp.path))


def test_leave_one_env_out_does_not_leak_the_left_out_environment(recovered):
    """Without hvt's cells, the hypercall cost only hvt pins (fitted at 3x its prior) is
    back at its prior; the costs the kept cells pin are refitted, not reset."""
    from calibration.validate import refit_without
    from model.simulate import Simulator
    cells = cells_from(synthetic(TRUTH))
    full = recovered.values()
    hvt = [i for i, c in enumerate(cells) if c.env == "hvt"]
    values = refit_without(cells, hvt, full, Simulator(), PI_PRIORS)
    assert full["hypercall_s"] != pytest.approx(PI_PRIORS["hypercall_s"], rel=0.05)
    assert values["hypercall_s"] == PI_PRIORS["hypercall_s"]
    assert values["syscall_s"] != PI_PRIORS["syscall_s"]
    # and the prediction for a left-out cell uses that prior
    c = cells[hvt[0]]
    sim = Simulator()
    assert sim(values, c.cfg, c.workload).per_op_s != pytest.approx(sim(full, c.cfg, c.workload).per_op_s)


def test_a_per_call_cost_only_waiting_cells_carry_is_fitted():
    """A write beyond the dirty limit waits for the device: its per-call cost enters only
    once the CPU overtakes the device (a hinge, no gradient at the prior), and no WLS row
    carries it. Two such cells, small calls and large ones (bmcd's dd by block size), pin
    it; a fit that left it at its prior modelled both alike and missed the large calls."""
    import math
    small = {**PROFILE, "machine": {**PROFILE["machine"], "memory_bytes": 128 * 2 ** 20}}
    truth = {"write_call_s": 200e-6, "dev_write_bps": 5e6}
    p = Params(truth, machine=small["machine"])
    size = 200 * 2 ** 20

    def cell(io):
        return {"env": "linux", "size_bytes": size, "op": "write_sync", "reps": 1,
                "config": json.dumps({"io_size_bytes": io})}

    given = [cell(512), cell(512 * 1024), cell(4 * 2 ** 20)]
    shape = calibration.results_set(pd.DataFrame(given).assign(mean_per_op_s=1.0), small, "synthetic dd")
    cells = cells_from(shape, small["machine"])
    times = [simulate(p, c.cfg, c.workload) for c in cells]
    assert not any(t.linear for t in times)                  # both wait: no WLS row
    assert times[0].per_op_s > 1.5 * times[1].per_op_s      # the small calls are CPU-bound
    results = calibration.results_set(pd.DataFrame(given[:2]).assign(mean_per_op_s=[t.per_op_s for t in times[:2]]),
                                      small, "synthetic dd")
    cal = calibration.fit(results)
    fitted = cal.values()["write_call_s"]
    assert abs(math.log(fitted / truth["write_call_s"])) < 0.3, fitted
    assert cal.fit_table["rel_error"].abs().max() < 0.15
    held_out = simulate(Params(cal.values(), machine=small["machine"]), cells[2].cfg, cells[2].workload).per_op_s
    assert held_out == pytest.approx(times[2].per_op_s, rel=0.15)
