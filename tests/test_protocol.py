"""Protocols (measure/protocol.py): batch sizing and the calibration protocol's choices.

The choices are checked on synthetic facts (a Raspberry Pi 4 and this 2-core VM), then
one real, scaled-down `--protocol calibrate` campaign runs here.
"""

import json
import statistics

import pytest

from conftest import have_kvm
from edgeio.errors import UserError
from measure import protocol as P

MIB, GIB = 1 << 20, 1 << 30
VM = {"dirty_ratio": 20, "dirty_background_ratio": 10, "dirty_bytes": 0, "dirty_background_bytes": 0,
      "dirty_expire_centisecs": 3000, "dirty_writeback_centisecs": 500}
PI = {"memory_bytes": 4 * GIB, "page_bytes": 4096, "cpus": 4, "arch": "aarch64", "kvm": "hardware",
      "emulated": False, "cpu_caches": {"l1d_bytes": 32 << 10, "l2_bytes": 1 * MIB, "l3_bytes": None},
      "block_device": {"name": "mmcblk0", "kind": "sd", "readahead_bytes": 128 << 10}, "vm": VM}
HERE = {"memory_bytes": 24 * GIB, "page_bytes": 4096, "cpus": 2, "arch": "x86_64", "kvm": "software",
        "emulated": False, "cpu_caches": {"l1d_bytes": 32 << 10, "l2_bytes": 1 * MIB, "l3_bytes": 32 * MIB},
        "block_device": {"name": "vda", "kind": "virtual"}, "vm": VM}


def configs(facts, qemu_accel):
    return {
        "linux": {"env": "linux", "io_size_bytes": 4096, "memory_bytes": facts["memory_bytes"], "cache": "warm"},
        "docker": {"env": "docker", "io_size_bytes": 4096, "memory_bytes": 4 * GIB, "volume": False},
        "qemu": {"env": "qemu", "io_size_bytes": 4096, "memory_bytes": 256 * MIB, "accel": qemu_accel,
                 "disk": "virtio"},
        "hvt": {"env": "hvt", "io_size_bytes": 512, "memory_bytes": 512 * MIB, "flush": "none",
                "blocks_per_call": 1, "block_size": 512},
    }


def plan(facts, accel, **kw):
    return P.calibrate_specs(configs(facts, accel), facts, **kw)


def sizes(specs, env, op=None):
    return sorted({s["size_bytes"] for s in specs if s["env"] == env and (op is None or s["op"] == op)})


@pytest.mark.parametrize("facts,accel", [(PI, "kvm"), (HERE, "tcg")], ids=["pi4", "this-vm"])
def test_calibrate_covers_every_regime_it_can(facts, accel):
    specs, notes = plan(facts, accel, budget_s=600, free_bytes=50 * GIB)
    llc = facts["cpu_caches"]["l3_bytes"] or facts["cpu_caches"]["l2_bytes"]
    for env in ("linux", "docker", "qemu", "hvt"):
        assert {s["op"] for s in specs if s["env"] == env and s["size_bytes"] == 4096 and s["kind"] == "file"} == \
            {"write_sync", "write", "read"}, env
    for env in ("linux", "docker", "qemu"):
        got = sizes(specs, env, "read")
        assert any(4096 < s <= facts["cpu_caches"]["l2_bytes"] // 2 for s in got), (env, got)   # in cache
        assert any(s >= 2 * llc for s in got), (env, got)                                         # DRAM
    mem = configs(facts, accel)["qemu"]["memory_bytes"]
    assert max(sizes(specs, "qemu", "read")) > mem and max(sizes(specs, "qemu", "write")) > mem
    # the guest's dirty limit (20% of 256 MiB) is outrun by the beyond-memory write
    assert max(sizes(specs, "qemu", "write")) > 0.2 * mem
    assert max(sizes(specs, "linux")) < facts["memory_bytes"]
    assert any(n.startswith("linux: no file beyond") for n in notes)
    assert all(s["reason"] and s["estimate_s"] > 0 for s in specs)
    assert sum(s["estimate_s"] for s in specs) <= 600
    assert plan(facts, accel, budget_s=600, free_bytes=50 * GIB) == (specs, notes)   # reproducible


@pytest.mark.parametrize("facts,accel", [(PI, "kvm"), (HERE, "tcg")], ids=["pi4", "this-vm"])
def test_calibrate_measures_the_primitives_and_never_a_fix(facts, accel):
    specs, _ = plan(facts, accel, budget_s=600, free_bytes=50 * GIB)
    prim = [s for s in specs if s["kind"] == "primitive"]
    trap = [("qemu", "trap")] if facts["arch"] == "x86_64" else []      # port I/O: x86 guests only
    assert sorted((s["env"], s["op"]) for s in prim) == [("hvt", "call"), ("hvt", "copy"), ("hvt", "copy"),
                                                          ("hvt", "exit"), ("hvt", "flush"), ("hvt", "rep"),
                                                          ("hvt", "ring")] + trap
    assert all(s["kind"] == "file" for s in specs if s not in prim)
    ring = next(s for s in prim if s["op"] == "ring")
    assert ring["reps"] % (64 * ring["batches"]) == 0           # whole notifications in every batch
    # the smallest copy and a large one: its per-call and its per-byte cost
    assert sorted(s["size_bytes"] for s in prim if s["op"] == "copy") == [16, P.COPY_PRIMITIVE]
    # short: seconds each of timed work, by the estimate (a qemu guest boots besides)
    assert all(s["reps"] * s["per_op_estimate_s"] < 5 for s in prim)


@pytest.mark.parametrize("facts,accel", [(PI, "kvm"), (HERE, "tcg")], ids=["pi4", "this-vm"])
def test_every_environment_at_the_study_sizes(facts, accel):
    """Like for like: one large size (the study's 1 GiB, shrunk to the budget) and 4 KiB in
    every environment and op, besides each environment's own regimes."""
    specs, _ = plan(facts, accel, budget_s=600, free_bytes=50 * GIB)
    study = {s["size_bytes"] for s in specs if s["reason"].startswith("study size")}
    assert len(study) == 1
    large = study.pop()
    for env in ("linux", "docker", "qemu", "hvt"):
        for size in (4096, large):
            assert {s["op"] for s in specs if s["env"] == env and s["size_bytes"] == size
                    and s["kind"] == "file"} == {"write_sync", "write", "read"}, (env, size)
    assert MIB <= large <= GIB
    study_cost = sum(s["estimate_s"] for s in specs if s["size_bytes"] == large)
    assert study_cost <= 600 / P.STUDY_SHARE * 1.01
    bigger, _ = plan(facts, accel, budget_s=6000, free_bytes=50 * GIB)
    assert max(s["size_bytes"] for s in bigger if s["reason"].startswith("study size")) >= large
    capped, _ = plan(facts, accel, budget_s=600, max_size=2 * MIB)
    assert {s["size_bytes"] for s in capped if s["reason"].startswith("study size")} == {2 * MIB}
    assert len([s for s in capped if s["size_bytes"] == 2 * MIB]) == 4 * 3     # every env, every op


def test_pi_and_this_machine_get_different_plans():
    pi, _ = plan(PI, "kvm", budget_s=600)
    here, _ = plan(HERE, "tcg", budget_s=600)
    # hardware KVM makes a hypercall cheap: the hvt block-count file is larger on the Pi
    assert max(sizes(pi, "hvt")) > max(sizes(here, "hvt"))
    # a Pi has no L3: its DRAM file follows the 1 MiB L2, this machine's its 32 MiB L3
    own = lambda specs: [s for s in specs if not s["reason"].startswith("study size")]  # noqa: E731
    assert max(sizes(own(pi), "linux")) < max(sizes(own(here), "linux"))
    assert max(sizes(own(here), "linux")) >= 64 * MIB
    # more reps per batch where an op is cheaper (hvt call under hardware KVM)
    rep = lambda specs: next(s["reps"] // s["batches"] for s in specs  # noqa: E731
                             if s["env"] == "hvt" and s["size_bytes"] == 4096 and s["op"] == "read")
    assert rep(pi) > 5 * rep(here)


def test_budget_and_caps_shrink_the_plan():
    full, _ = plan(HERE, "tcg", budget_s=600)
    tight, notes = plan(HERE, "tcg", budget_s=30)
    assert sum(s["estimate_s"] for s in tight) < sum(s["estimate_s"] for s in full)
    assert not any(s["size_bytes"] > 256 * MIB for s in tight if s["env"] == "qemu")   # beyond-mem dropped
    assert any("qemu: no file beyond" in n for n in notes)
    capped, _ = plan(HERE, "tcg", budget_s=600, max_size=64 << 10)
    assert max(s["size_bytes"] for s in capped) == 64 << 10
    assert any("capped" in s["reason"] for s in capped)
    small_disk, notes = plan(HERE, "tcg", budget_s=600, free_bytes=512 * MIB)
    assert max(sizes(small_disk, "qemu")) <= 256 * MIB and any("free" in n for n in notes)


@pytest.mark.parametrize("cfg,size,op", [
    ({"env": "linux", "memory_bytes": 24 * GIB}, 4096, "read"),
    ({"env": "linux", "memory_bytes": 24 * GIB}, 4096, "write"),
    ({"env": "linux", "memory_bytes": 24 * GIB}, 4096, "write_sync"),
    ({"env": "qemu", "memory_bytes": 2 * GIB, "accel": "tcg"}, 4096, "read"),
    ({"env": "hvt", "io_size_bytes": 512}, 4096, "write"),
    ({"env": "hvt", "io_size_bytes": 512}, 1 * MIB, "read"),
])
def test_batches_last_long_enough(cfg, size, op):
    per_op = P.per_op_estimate(cfg, size, op, "software")
    reps, batches, why = P.batch_sizing(per_op)
    assert reps % batches == 0 and (reps // batches) * per_op >= P.MIN_BATCH_S * 0.999 or reps == batches
    assert batches >= P.LARGE_BATCHES and why
    # the old quick protocol: 4 KiB x 1000 reps in 100 batches = 10 reps per batch
    if size == 4096 and op != "write_sync" and cfg["env"] != "hvt":
        assert reps // batches >= 1000


def test_estimates_follow_the_configuration():
    base = {"env": "hvt", "io_size_bytes": 512, "flush": "none"}
    assert P.per_op_estimate(dict(base, io_size_bytes=4096), MIB, "write", "software") < \
        P.per_op_estimate(base, MIB, "write", "software") / 4          # 8 blocks per call
    assert P.per_op_estimate(dict(base, flush="each-write"), 4096, "write_sync", "software") > \
        P.per_op_estimate(base, 4096, "write_sync", "software")
    q = {"env": "qemu", "memory_bytes": 256 * MIB, "accel": "tcg"}
    assert P.per_op_estimate(q, 384 * MIB, "read") > 2 * P.per_op_estimate(dict(q, memory_bytes=2 * GIB), 384 * MIB, "read")
    assert P.per_op_estimate(q, 4096, "read") > P.per_op_estimate(dict(q, accel="kvm"), 4096, "read")


# -- the command ---------------------------------------------------------------------------

def test_bad_protocol_options(results_tmp):
    from edgeio.commands import measure
    for kwargs, message in [({"protocol": "bogus"}, "unknown protocol"),
                            ({"protocol": "calibrate", "size": "4KiB"}, "chooses sizes"),
                            ({"protocol": "calibrate", "reps": "10"}, "chooses sizes"),
                            ({"max_size": "1MiB"}, "--max-size goes with"),
                            ({"protocol": "calibrate", "max_size": "huge"}, "size")]:
        with pytest.raises(UserError, match=message):
            measure.run(env="linux", quiet=True, **kwargs)
    assert not results_tmp.exists() or not any(results_tmp.iterdir())     # nothing was created


@pytest.mark.slow
@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
def test_calibrate_protocol_small_run(results_tmp, capsys):
    """A real --protocol calibrate campaign, scaled down with --max-size."""
    from edgeio import store
    from edgeio.commands import measure
    # 4 min: the plan's estimate (~1 min here, quiet) comes from a pilot on this machine, so
    # on a loaded one it grows; with 2 min, load ~8 made it drop qemu for the budget
    path = measure.run(env="linux,qemu,hvt", op="read", protocol="calibrate", max_size="64KiB",
                       budget="4m")
    err = capsys.readouterr().err
    assert "protocol calibrate" in err and "estimate:" in err       # the plan, printed up front
    cells = json.loads((path / "plan.json").read_text())
    assert {c["env"] for c in cells} == {"linux", "qemu", "hvt"}
    assert all(c["reason"] and c["size_bytes"] <= 64 << 10 for c in cells)
    assert all(c["params"].get("mem") == "256" for c in cells if c["env"] == "qemu")
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["options"]["protocol_info"]["name"] == "calibrate"
    assert any("qemu: no file beyond" in n for n in meta["options"]["protocol_info"]["notes"])
    records = store.Campaign.open(path).records()
    assert len(records) == len(cells) and all(r["status"] == "ok" for r in records.values())
    # the primitives ran (whatever --op said), recorded with their kind
    prim = {r["cell"]["op"]: r for r in records.values() if r["cell"].get("kind") == "primitive"}
    assert set(prim) == {"call", "exit", "copy", "ring", "rep", "flush", "trap"}
    assert prim["trap"]["cell"]["env"] == "qemu" and prim["trap"]["probe"]["op"] == "trap"
    assert all(r["config"]["kind"] == "primitive" for r in prim.values())
    assert prim["ring"]["config"]["transport"] == "ring" and prim["exit"]["config"]["transport"] == "hvt"
    # each primitive in PRIMITIVE_ROUNDS runs of its own, pooled into one summary row
    rounds = {}
    for r in records.values():
        if r["cell"].get("kind") == "primitive":
            rounds.setdefault((r["cell"]["op"], r["cell"]["size_bytes"]), []).append(r["cell"]["round"])
    assert sorted(size for op, size in rounds if op == "copy") == [16, P.COPY_PRIMITIVE]
    assert all(sorted(v) == list(range(1, P.PRIMITIVE_ROUNDS + 1)) for v in rounds.values()), rounds
    summary = store.Campaign.open(path).summary()
    ring = summary[summary["op"] == "ring"]
    assert len(ring) == 1 and int(ring["n_batches"].iloc[0]) == sum(
        len(r["probe"]["batch_seconds"]) for r in records.values() if r["cell"]["op"] == "ring")
    for rec in records.values():
        assert rec["config"]["env"] == rec["cell"]["env"]
        if rec["cell"]["env"] == "qemu":
            assert rec["config"]["memory_bytes"] == 256 * MIB
        if rec["cell"]["env"] == "linux" and rec["cell"]["size_bytes"] == 4096:
            # sized from the estimate: a batch is far longer than the old 10 x 0.7 µs
            per_batch = statistics.median(rec["probe"]["batch_seconds"])
            assert per_batch >= P.MIN_BATCH_S / 4, per_batch


def test_a_spec_in_rounds_becomes_one_cell_per_round_with_its_batches_split():
    from measure.plan import plan_from_specs
    spec = {"env": "hvt", "kind": "primitive", "size_bytes": 512, "op": "ring", "cache": "warm",
            "reps": 64 * 20, "batches": 20, "rounds": 3, "per_op_estimate_s": 1e-5, "start_estimate_s": 1.0}
    cells = plan_from_specs([spec], order="interleaved")
    assert [c["round"] for c in cells] == [1, 2, 3] and [c["cell_id"][-3:] for c in cells] == ["-r1", "-r2", "-r3"]
    assert all(c["batches"] == 7 and c["reps"] == 64 * 7 for c in cells)     # whole notifications per batch
    assert all(c["estimate_s"] == round(1.0 + 64 * 7 * 1e-5, 3) for c in cells)
    assert len(plan_from_specs([dict(spec, rounds=1)])) == 1


# -- the estimate from a pilot on the target ----------------------------------------------

def _pilot(slow=1.0, hvt_call=None):
    """A pilot's observations on a machine `slow` times the priors' (per call and per byte)."""
    call, copy = P.PRIORS["call_s"] * slow, P.PRIORS["copy_s_per_byte"] * slow
    w4 = call + 4096 * copy
    w1 = call + MIB * copy
    cells = [{"size_bytes": 4096, "op": "write", "per_op_s": w4, "wall_s": 0.3 + 2000 * w4, "probe_s": 2000 * w4},
             {"size_bytes": 4096, "op": "write_sync", "per_op_s": w4 + 2e-3, "wall_s": 0.3, "probe_s": 0.0},
             {"size_bytes": MIB, "op": "write", "per_op_s": w1, "wall_s": 0.3, "probe_s": 0.0},
             {"size_bytes": MIB, "op": "read", "per_op_s": 2 * w1, "wall_s": 0.5, "probe_s": 0.0}]
    out = {"envs": {"linux": {"prepare_s": 1.5, "cells": cells}}, "ship_bytes_per_s": 3e6}
    if hvt_call:
        out["envs"]["hvt"] = {"prepare_s": 4.0, "cells": [
            {"size_bytes": 64 << 10, "op": "write", "per_op_s": 128 * hvt_call, "wall_s": 2.3,
             "probe_s": 0.0, "io_size_bytes": 512}]}
    return out


def test_pilot_scaling_arithmetic():
    p = P.speeds_from_pilot(_pilot(slow=20.0, hvt_call=400e-6))
    # what was measured is taken as measured
    assert p["call_s"] == pytest.approx(20 * P.PRIORS["call_s"], rel=1e-6)
    assert p["copy_s_per_byte"] == pytest.approx(20 * P.PRIORS["copy_s_per_byte"], rel=1e-6)
    assert p["fsync_s"] == pytest.approx(2e-3) and p["read_copy_factor"] == pytest.approx(2.0, rel=0.01)
    assert p["hvt_call_s_software"] == p["hvt_call_s_hardware"] == pytest.approx(400e-6)
    assert p["cell_overhead_s"] == pytest.approx(0.3)             # the median of wall - probe time
    assert p["start_s"]["hvt"] == pytest.approx(2.0) and p["prepare_s"]["hvt"] == 4.0
    # the hvt primitives scale with the hvt call measured, not with the native CPU
    ratio = 400e-6 / P.PRIORS["hvt_call_s_software"]
    assert p["primitive_s_software"]["exit"] == pytest.approx(P.PRIORS["primitive_s_software"]["exit"] * ratio)
    assert p["prepare_s"]["linux"] == 1.5 and p["ship_bytes_per_s"] == 3e6
    # what was not is the prior scaled by the machine's speed against the priors' machine
    assert p["scale"] == pytest.approx(20.0, rel=1e-6)
    assert p["start_s"]["qemu_kvm"] == pytest.approx(20 * P.PRIORS["start_s"]["qemu_kvm"])
    # estimates follow: a 4 KiB write costs 20x, a qemu disk image ships at the link's rate
    cfg = {"env": "linux", "io_size_bytes": 4096}
    assert P.per_op_estimate(cfg, 4096, "write", priors=p) == pytest.approx(20 * P.per_op_estimate(cfg, 4096, "write"))
    assert P.prepare_estimate("qemu", [4096], p) == pytest.approx(
        p["prepare_s"]["qemu"] + (P.QEMU_SHIP_BYTES + P.QEMU_IMAGE_BYTES + 4096) / 3e6)
    # no pilot: the priors unchanged
    assert P.speeds_from_pilot({})["call_s"] == P.PRIORS["call_s"]


def test_the_budget_leaves_out_what_does_not_fit_and_says_so():
    slow = P.speeds_from_pilot(_pilot(slow=30.0, hvt_call=2e-3))
    specs, notes = P.calibrate_specs(configs(PI, "kvm"), dict(PI, emulated=True), budget_s=300, priors=slow)
    est = P.plan_estimate(specs, slow)
    assert est["total_s"] <= 300, est
    assert "linux" in {s["env"] for s in specs}
    assert "qemu" not in {s["env"] for s in specs}            # its images over a 3 MB/s link alone
    assert any(n.startswith("qemu: left out") for n in notes), notes


def test_a_plan_well_inside_its_budget_gets_longer_batches(monkeypatch):
    slow = P.speeds_from_pilot(_pilot(slow=30.0, hvt_call=2e-3))
    facts = dict(PI, emulated=True)
    cfg = {k: v for k, v in configs(PI, "kvm").items() if k in ("linux", "hvt")}
    roomy, _ = P.calibrate_specs(cfg, facts, budget_s=3600, priors=slow)
    monkeypatch.setattr(P, "_stretch", lambda *a: None)
    base, _ = P.calibrate_specs(cfg, facts, budget_s=3600, priors=slow)
    assert [(s["env"], s["size_bytes"], s["op"]) for s in base] == [(s["env"], s["size_bytes"], s["op"]) for s in roomy]
    ratios = {r["reps"] / b["reps"] for b, r in zip(base, roomy)}
    assert len(ratios) == 1 and 2 <= ratios.pop() <= P.MAX_STRETCH
    assert all("longer" in r["reason"] for r in roomy) and not any("longer" in b["reason"] for b in base)
    assert P.plan_estimate(roomy, slow)["total_s"] <= 3600 * P.STRETCH_SHARE
