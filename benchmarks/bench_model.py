"""Model and calibration targets (issue 3), printed.

  python benchmarks/bench_model.py            simulate, calibrate, validate
  python benchmarks/bench_model.py --quick    skip the validation (leave-one-out refits)
  python benchmarks/bench_model.py --campaign DIR [--machine PROFILE.json]
                                              also calibrate on a campaign of this machine

Targets (issues 3 and 10): the 30-cell Pi matrix simulated in <= 2 s; `invoke calibrate`
on the Pi figures <= 60 s and `--validate` <= 60 s on 2 cores; peak memory <= 1 GiB;
the Pi fit median |rel err| <= 10%, every cell <= 30%; leave-one-cell-out median <= 25%;
on this machine's calibration-protocol campaign: median <= 10%, largest <= 30%,
leave-one-cell-out median <= 20%. Timings are wall clock on a shared machine: noisy.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import calibration  # noqa: E402
from calibration.fit import cells_from  # noqa: E402
from model import Params, simulate  # noqa: E402


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the validation refits")
    ap.add_argument("--campaign", help="a campaign of this machine to calibrate on too")
    ap.add_argument("--machine", help="machine profile for --campaign (default: its recorded facts)")
    args = ap.parse_args()
    pi = calibration.load_results(None)
    cells = cells_from(pi)

    machine = pi.attrs["machine"]

    # 1. the full matrix, no memo, at the priors and (below) at the calibrated values
    def matrix(values):
        p = Params(values, machine=machine)
        t0 = time.perf_counter()
        for c in cells:
            simulate(p, c.cfg, c.workload)
        return time.perf_counter() - t0

    t_prior = min(matrix({}) for _ in range(3))

    # 2. calibrate, as `invoke calibrate` does (fit, print, save)
    os.environ["EDGEIO_RESULTS"] = tempfile.mkdtemp(prefix="bench-model-")
    from edgeio.commands import calibrate
    import contextlib
    import io
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        path = calibrate.run()
    t_cal = time.perf_counter() - t0
    cal = calibration.load(path)
    t_fit = min(matrix(cal.values()) for _ in range(3))
    err = cal.fit_table["rel_error"].abs()
    worst = cal.fit_table.loc[err.idxmax()]

    print("edgeio model benchmark (Raspberry Pi 4 figures, 30 cells)")
    print(f"  simulate the 30-cell matrix     {t_fit:6.2f} s calibrated, {t_prior:.2f} s at priors"
          f"   target <= 2 s    {mark(max(t_fit, t_prior) <= 2)}")
    print(f"  invoke calibrate (fit+save)     {t_cal:6.1f} s"
          f"                          target <= 60 s   {mark(t_cal <= 60)}")
    print(f"  fit median |rel error|          {err.median():6.1%}"
          f"                            target <= 10%    {mark(err.median() <= 0.10)}")
    print(f"  fit largest |rel error|         {err.max():6.1%}  ({worst.env} {worst.size_bytes} {worst.op})"
          f"   target <= 30%    {mark(err.max() <= 0.30)}")
    over = cal.fit_table[err > 0.30]
    for r in over.itertuples():
        print(f"      over 30%: {r.env} {r.size_bytes} {r.op}: measured {r.measured_s:.4g} s, "
              f"modelled {r.modelled_s:.4g} s ({r.rel_error:+.1%})")
    if not args.quick:
        t0 = time.perf_counter()
        v = calibration.validate(cal, pi)
        t_val = time.perf_counter() - t0
        for kind, g in v.groupby("kind", sort=False):
            a = g["rel_error"].abs()
            target = "target <= 25%    " + mark(a.median() <= 0.25) if kind == "leave-one-cell-out" else ""
            print(f"  {kind:26s}      median {a.median():5.1%}, largest {a.max():5.1%}   {target}")
        from calibration.validate import default_workers
        print(f"  validation refits               {t_val:6.1f} s (35 refits, {default_workers()} processes)"
              f"   target <= 60 s   {mark(t_val <= 60)}")
    if args.campaign:
        campaign(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory                     {peak:6.0f} MiB"
          f"                         target <= 1024   {mark(peak <= 1024)}")
    return 0


def campaign(args) -> None:
    """Calibrate (and validate) on a campaign of this machine, as `invoke calibrate
    --source DIR [--validate]` does, and print its fit against the issue-10 targets."""
    import contextlib
    import io
    from edgeio.commands import calibrate
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        path = calibrate.run(source=args.campaign, machine=args.machine, validate=not args.quick)
    t = time.perf_counter() - t0
    cal = calibration.load(path)
    ft = cal.fit_table
    err = ft["rel_error"].abs()
    worst = ft.loc[err.idxmax()]
    print(f"\nthis machine: {args.campaign} ({len(ft)} cells, {cal.metadata.get('statistic')})")
    print(f"  invoke calibrate{'' if args.quick else ' --validate'}  {t:6.1f} s")
    print(f"  fit median |rel error|          {err.median():6.1%}                            target <= 10%    "
          f"{mark(err.median() <= 0.10)}")
    print(f"  fit largest |rel error|         {err.max():6.1%}  ({worst.env} {worst.size_bytes} {worst.op})"
          f"   target <= 30%    {mark(err.max() <= 0.30)}")
    for env, g in ft.groupby("env"):
        a = g["rel_error"].abs()
        print(f"      {env:7s} median {a.median():6.1%}, largest {a.max():6.1%} ({len(g)} cells)")
    for name in ("emulated_cpu_factor", "emulated_copy_factor", "vm_cpu_factor", "hypercall_s"):
        p = cal.params[name]
        print(f"  {name:24s} {p['value']:.3g}  [{p['ci95_low']:.3g}, {p['ci95_high']:.3g}]"
              f"{'  (prior)' if '[prior' in p['description'] else ''}")
    print(f"  structural error (sd of log)    {cal.structural_log_sd():.3f}  "
          f"({cal.metadata['structural_error']['method']})")
    if cal.validation is not None:
        for kind, g in cal.validation.groupby("kind", sort=False):
            a = g["rel_error"].abs()
            target = ("target <= 20%    " + mark(a.median() <= 0.20)) if kind == "leave-one-cell-out" else ""
            print(f"  {kind:26s}      median {a.median():5.1%}, largest {a.max():5.1%}   {target}")


if __name__ == "__main__":
    sys.exit(main())
