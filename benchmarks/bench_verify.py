"""Prediction targets on this machine (issue 18): the speed-up a user sees, printed, not asserted.

  python benchmarks/bench_verify.py                     measure, calibrate, verify six fixes
  python benchmarks/bench_verify.py --campaign DIR      reuse a protocol campaign (skip measuring)
  python benchmarks/bench_verify.py --only hvt-ring-64,hvt-mapped
  python benchmarks/bench_verify.py --rounds 6          more runs of each cell (verify --rounds)

1. The calibration protocol's campaign (linux, docker, qemu, hvt; `invoke measure
   --protocol calibrate`): file cells plus the primitives (hvt's block call without its
   exit, a bare exit, a ring request without I/O, a guest copy). No fix is ever in it.
2. Six fixes, each predicted before it is measured (`invoke verify`, predictions.csv
   written before the first cell), fix and baseline interleaved in one run, at 4 KiB
   and 1 MiB: hvt-multiblock blocks=8, hvt-ring batch=64, hvt-mapped, hvt-blocksize
   4096, qemu-disk ide, guest-memory 512 MiB.
Judged on the speed-up, baseline time / fix time (model.predict.predict_speedups: the
ratio with its 95% interval; measured: the ratio of the cells' fastest batches with a CI
across batches and rounds; a cell is inside when the measured ratio is in the model's
interval widened by that CI, verification.speedup.expected_interval, and the width is
that interval's). Targets: speed-up error median <= 15% and largest <= 40%; no wrong
direction where the measured change exceeds 10%; intervals cover 80-99% of cells with a
median width (high/low) <= 2x.
Timings on a shared 2-core machine are noisy; every figure names its campaign.
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from edgeio.errors import UserError  # noqa: E402
from edgeio.units import format_size  # noqa: E402
from verification.speedup import SAME_MARGIN, judge, wrong_way  # noqa: E402

SIZES = "4KiB,1MiB"
# name -> (scenario, params)
WHATIFS = {
    "hvt-multiblock-8": ("hvt-multiblock", ["blocks=8"]),
    "hvt-ring-64": ("hvt-ring", ["batch=64"]),
    "hvt-mapped": ("hvt-mapped", []),
    "hvt-blocksize-4096": ("hvt-blocksize", ["block_size=4096"]),
    "qemu-disk-ide": ("qemu-disk", ["disk=ide"]),
    "guest-memory-512MiB": ("guest-memory", ["memory=512MiB"]),
}
TARGETS = {"median": 0.15, "largest": 0.40, "direction_change": SAME_MARGIN, "cover": (0.80, 0.99), "width": 2.0}


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def protocol_campaign(out: Path) -> Path:
    from edgeio.commands import measure
    print("measuring the calibration protocol: linux, docker, qemu, hvt (with the primitives)", flush=True)
    return measure.run(env="linux,docker,qemu,hvt", protocol="calibrate", out=str(out), quiet=True)


def speedup_table(cal, path: Path, name: str) -> pd.DataFrame:
    """One row per (env, size, op) of a verify: the predicted speed-up and its 95% interval
    (model.predict_speedups: a function of the calibration alone, which existed before the
    verify measured anything), the measured one with its bootstrap CI (verification's
    comparison, recomputed from the cell records)."""
    from model.predict import predict_speedups
    from verification import campaign as verification_campaign
    v = verification_campaign.load(path)
    pred, comp = v.predictions, v.comparison
    keys = ["env", "size_bytes", "op"]
    rows, pairs = [], []
    for r in comp[comp["role"] == "fix"].itertuples(index=False):
        cells = []
        for role in ("baseline", "fix"):
            p = pred[(pred["env"] == r.env) & (pred["size_bytes"].astype(int) == int(r.size_bytes))
                     & (pred["op"] == r.op) & (pred["role"] == role)]
            if not len(p):
                break
            cells.append({"env": r.env, "size_bytes": int(r.size_bytes), "op": r.op,
                          "reps": int(p["reps"].iloc[0]), "config": json.loads(p["model_config"].iloc[0])})
        if len(cells) != 2 or not float(r.measured_speedup) > 0:
            continue
        pairs.append(tuple(cells))
        rows.append({"whatif": name, **{k: getattr(r, k) for k in keys}, "measured": float(r.measured_speedup),
                     "m_low": float(r.measured_speedup_ci95_low), "m_high": float(r.measured_speedup_ci95_high)})
    sp = predict_speedups(cal, pairs)
    out = pd.DataFrame(rows)
    out["predicted"], out["p_low"], out["p_high"] = sp["predicted_speedup"], sp["low"], sp["high"]
    out["error"] = out["predicted"] / out["measured"] - 1
    # judged as verify judges (verification.speedup.judge: the expected interval, and the
    # 10% margin: a prediction within it, or whose interval holds no change, says "no
    # change", which no measurement contradicts in direction)
    judged = [judge(*x) for x in zip(out["predicted"], out["p_low"], out["p_high"], out["measured"],
                                     out["m_low"], out["m_high"])]
    for i, col in enumerate(("e_low", "e_high", "inside", "predicted_direction", "measured_direction")):
        out[col] = [j[i] for j in judged]
    out["width"] = out["e_high"] / out["e_low"]
    out["wrong_direction"] = [wrong_way(p, m) for p, m in zip(out["predicted_direction"], out["measured_direction"])]
    return out


def _direction(r) -> str:
    if r.wrong_direction:
        return f"{r.predicted_direction}->{r.measured_direction} WRONG"
    return f"{r.predicted_direction}/{r.measured_direction}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaign", help="a protocol campaign directory to calibrate on (default: measure one)")
    ap.add_argument("--out", help="where campaigns go (default: a temporary directory)")
    ap.add_argument("--only", help=f"comma-separated fixes (of {', '.join(WHATIFS)})")
    ap.add_argument("--rounds", help="runs (boots) of each verify cell (verify --rounds; default verify's)")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(WHATIFS)
    unknown = [n for n in names if n not in WHATIFS]
    if unknown:
        print(f"bench_verify: unknown fix {', '.join(unknown)} (known: {', '.join(WHATIFS)})", file=sys.stderr)
        return 2
    from edgeio.parse import parse_int
    from verification.plan import MAX_ROUNDS
    try:                 # before measuring: verify would refuse it only after the campaign
        rounds = None if args.rounds is None else parse_int("--rounds", args.rounds, lo=1, hi=MAX_ROUNDS)
    except UserError as e:
        print(f"bench_verify: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"bench_verify: --out {out}: {e.strerror}", file=sys.stderr)
        return 2
    t0 = time.monotonic()

    import calibration
    from edgeio.commands import verify
    campaign = Path(args.campaign) if args.campaign else protocol_campaign(out)
    t_measure = None if args.campaign else time.monotonic() - t0
    results = calibration.load_results(str(campaign))
    t1 = time.monotonic()
    cal = calibration.fit(results, validate=True)
    t_cal = time.monotonic() - t1
    cal_path = cal.save(out / "calibration.json")

    tables, notes, seconds = [], [], {}
    for name in names:
        scenario, params = WHATIFS[name]
        t = time.monotonic()
        try:
            path = verify.run(scenario, params, calibration=str(cal_path), size=SIZES,
                              out=str(out / "verify"), quiet=True, rounds=rounds)
        except UserError as e:
            notes.append(f"{name}: not verified: {e}")
            continue
        seconds[name] = time.monotonic() - t
        tables.append(speedup_table(cal, path, name))
    sp = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()

    measured = "reused" if t_measure is None else f"measured in {t_measure:.0f} s"
    from edgeio.records import PRIMITIVES
    prims = results[results["op"].isin(PRIMITIVES)]
    print(f"\nbench_verify: campaign {campaign} ({len(results)} cells, {len(prims)} primitives; {measured}), "
          f"calibration {cal_path} (fit + validation {t_cal:.0f} s)")
    for r in prims.itertuples(index=False):
        print(f"  primitive {r.env} {r.op:5s} {format_size(r.size_bytes):>7s} {r.measured_s * 1e6:11.3f} us")
    from model.machine import HARDWARE_GUEST_CODE
    from model.params import SPECS
    v = cal.values()             # what the primitives pin: the guest-code costs, the exit, qemu's trap
    print("  fitted guest costs: " + ", ".join(
        f"{n} {v[n] * 1e9:.3g} ns/B" if SPECS[n].unit == "s/B" else f"{n} {v[n] * 1e6:.3g} us"
        for n in (*HARDWARE_GUEST_CODE, "hypercall_s", "trap_s")))
    fit = cal.fit_table["rel_error"].abs()
    print(f"  in-sample fit: median |error| {fit.median():.1%}, largest {fit.max():.1%}")
    left = cal.metadata.get("whatif_unpinned") or {}
    if left:
        print("  what-ifs needing an unpinned parameter: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in left.items()))
    if len(sp):
        print(f"\n{'fix':20s} {'env':5s} {'size':>7s} {'op':10s} {'predicted [95% interval]':>27s} "
              f"{'measured [95% CI]':>25s} {'expected':>14s} {'error':>7s} inside direction")
        for r in sp.itertuples(index=False):
            p = f"{r.predicted:.2f}x [{r.p_low:.2f}, {r.p_high:.2f}]"
            m = f"{r.measured:.2f}x [{r.m_low:.2f}, {r.m_high:.2f}]"
            e = f"[{r.e_low:.2f}, {r.e_high:.2f}]"
            print(f"{r.whatif:20s} {r.env:5s} {format_size(int(r.size_bytes)):>7s} {r.op:10s} {p:>27s} {m:>25s} "
                  f"{e:>14s} {r.error:+7.1%} {'yes' if r.inside else 'NO ':6s} {_direction(r)}")
        a = sp["error"].abs()
        big = sp[sp["measured_direction"] != "same"]      # measured changed beyond the margin, CI included
        cover, width = float(sp["inside"].mean()), float(sp["width"].median())
        lo, hi = TARGETS["cover"]
        print(f"\n{'target (' + str(len(sp)) + ' fix cells)':52s} {'value':>10s} {'goal':>10s}  status")

        def line(what, value, goal, ok):
            print(f"{what:52s} {value:>10s} {goal:>10s}  {mark(ok)}")
        line("speed-up error: median", f"{a.median():.1%}", "<= 15%", a.median() <= TARGETS["median"])
        worst = sp.loc[a.idxmax()]
        line(f"speed-up error: largest ({worst['whatif']} {format_size(int(worst['size_bytes']))} {worst['op']})",
             f"{a.max():.1%}", "<= 40%", a.max() <= TARGETS["largest"])
        line(f"wrong direction (of {len(big)} cells measured >10% changed)", f"{int(sp['wrong_direction'].sum())}",
             "0", not sp["wrong_direction"].any())
        line("95% expected intervals covering the speed-up", f"{cover:.0%}", "80-99%", lo <= cover <= hi)
        line("median interval width (high/low)", f"{width:.2f}x", "<= 2x", width <= TARGETS["width"])
        for name, g in sp.groupby("whatif", sort=False):
            e = g["error"].abs()
            print(f"  {name:20s} median |error| {e.median():6.1%}  largest {e.max():7.1%}  inside "
                  f"{int(g['inside'].sum())}/{len(g)}  median width {g['width'].median():.2f}x  {seconds[name]:.0f} s")
        sp.to_csv(out / "speedups.csv", index=False)
    for n in notes:
        print(n)
    from verification.plan import ROUNDS
    print(f"verify rounds per cell: {rounds or ROUNDS}")
    print(f"total {time.monotonic() - t0:.0f} s; campaigns and speedups.csv under {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:          # an environment that cannot run here, a bad campaign: one line
        print(f"bench_verify: {e}", file=sys.stderr)
        sys.exit(1)
