"""`invoke verify`: predict a fix, write the prediction down, then build and measure it.

"A prediction nobody checked is a guess." The order is the point:
1. take the newest calibration of this target (or --calibration; one fitted for another
   machine is refused);
2. map the scenario to the environment parameters that build its fix, and check every
   cell can be built here (before anything is measured);
3. create a campaign directory and write predictions.csv into it (timestamped, its
   digest in metadata.json, never rewritten) before the first cell starts;
4. measure the fix cells and the baseline cells they are compared against, interleaved,
   with the campaign engine (a killed verify keeps its cells: --resume DIR);
5. write comparison.csv and comparison.json (verification.campaign) and print the
   speed-up predicted against measured, absolute times beside it, and the drift check.
The domain (plan, predictions, comparison, summary) lives in verification/; this module
asks for the inputs, runs the engine and prints.
"""

import math
import os
import sys
from pathlib import Path

import pandas as pd

from edgeio import exports, paths, store
from edgeio.errors import UserError
from edgeio.parse import parse_int, parse_params, parse_sizes
from edgeio.units import format_size, format_time
from verification import campaign as vcampaign, plan as vp, predictions as vpred
from verification.compare import compare
from verification.summary import drift_line, summarize

PREDICTIONS = vpred.FILE
COMPARISON = vcampaign.COMPARISON


def run(scenario: str, params: list[str] | None = None, calibration: str | None = None,
        target: str | None = None, size: str | None = None, op: str | None = None,
        reps: str | None = None, out: str | None = None, quiet: bool = False,
        resume: str | None = None, on_start=None, fmt: str | None = None, rounds=None) -> Path:
    """Verify `scenario`; returns the campaign directory. on_start(cell): called by the
    engine as each cell starts (tests hold the predictions file against it). fmt: json,
    csv or md: the comparison goes to stdout in that format (docs/formats.md), and every
    other line to stderr. rounds: runs of each cell (verification.plan.ROUNDS by default)."""
    fmt = exports.parse_format(fmt)
    n_rounds = vp.ROUNDS if rounds is None else parse_int("--rounds", rounds, lo=1, hi=vp.MAX_ROUNDS)
    if resume and rounds is not None:
        raise UserError("--rounds goes with a new verify: a resumed one keeps the rounds it was planned with")
    quiet = quiet or bool(fmt)
    if resume:
        return _resume(Path(resume), quiet, on_start, fmt)
    import model
    from measure import plan as planning
    from measure.environments import environment_class
    sc = model.scenarios.get(scenario)
    given = parse_params(params or [])
    sc.parse(given)                                     # bad values fail first
    sizes = parse_sizes(size, "--size") if size else None
    ops = planning.parse_ops(op) if op else None
    if reps:
        planning.reps_for(1, reps, quick=False)          # a bad --reps fails before the target is asked
    specs = {}
    for env in sc.envs:
        try:
            specs[env] = dict(environment_class(env).params_spec)
        except UserError:
            continue
    b = vp.build(sc, given, specs)
    target_obj = _target(target)
    if not b.fix:
        raise UserError(f"scenario {sc.name} has no buildable fix on target {target_obj.name}: "
                        f"{vp.reasons(b.unbuildable)}")
    facts = _facts(target_obj)
    cal, cal_path = _calibration(calibration, target_obj.name, facts)
    fitted = {w["env"] for w in cal.workloads()}
    envs = [e for e in sorted(b.fix) if e in fitted]
    if not envs:
        raise UserError(f"scenario {sc.name}: the calibration {cal_path} has no cells of "
                        f"{', '.join(sorted(b.fix))} to predict from (it has {', '.join(sorted(fitted)) or 'none'})")
    workloads = {e: vp.workloads(cal, e, sizes, ops, reps) for e in envs}
    plan = vp.source_plan(cal)
    baselines = {e: vp.baseline_params(plan, e) for e in envs}
    cells = vp.cells(vp.Build(b.scenario, b.values, {e: b.fix[e] for e in envs}, {}),
                     workloads, baselines, target_obj.name, rounds=n_rounds)
    for cell in cells:
        cell["host"], cell["arch"] = facts.get("host", ""), facts.get("arch", "")
        vp.check_buildable(b, cell["size_bytes"], cell["env"], cell["params"], specs[cell["env"]])
    environments = _environments(cells, {target_obj.name: target_obj})
    _check(environments, cells, sc.name, target_obj.name)

    # The prediction, written down before anything is measured.
    model_configs = [environments[(c["env"], c["target"])].effective_config(c) for c in cells]
    if not quiet:
        print(f"Predicting {len(cells)} cells of {sc.name} with {cal_path}...", file=sys.stderr, flush=True)
    asked = [dict(c, config=m) for c, m in zip(cells, model_configs)]
    reference = vpred.calibration_reference(cal, cells)      # keyed by cell, not by its reps
    if not reps:
        # baseline batches of at least the protocol's length by what calibration measured,
        # fix batches as long as their baseline's by the prediction (verification.plan; a
        # --reps given is kept as given); a point prediction suffices to size them
        point = vpred.predict_cells(cal, asked, draws=0)["predicted_s"].tolist()
        then = [r[0] for r in reference]
        per_op = [m if math.isfinite(m) and m > 0 else p for m, p in zip(then, point)]
        cells = vp.equal_durations(vp.long_enough(cells, per_op), point)
        asked = [dict(c, config=m) for c, m in zip(cells, model_configs)]
    predicted = vpred.predict_cells(cal, asked)
    stamp = store.now_iso()
    table = vpred.prediction_table(cells, predicted, model_configs, stamp, str(cal_path),
                                   reference, vpred.predict_speedups(cal, asked))
    text = table.to_csv(index=False)
    verify_meta = {"scenario": sc.name, "values": b.values, "fix": {e: b.fix[e] for e in envs},
                   "baseline": baselines, "unbuildable": b.unbuildable,
                   "calibration": str(cal_path), "calibration_source": str(cal.source),
                   "predictions": {"file": PREDICTIONS, "written_at": stamp,
                                   "sha256": vpred.digest(text),
                                   "cells": len(cells)}}
    options = {"scenario": sc.name, "params": params or [], "size": size, "op": op, "reps": reps,
               "target": target_obj.name, "calibration": str(cal_path)}
    parent = Path(out) if out else paths.results_dir() / "verify"
    from edgeio.commands.measure import _metadata
    meta = dict(_metadata({target_obj.name: facts}, environments, [], options), verify=verify_meta)
    campaign = store.Campaign.create(parent, meta, cells, name=_name(sc.name))
    _write_once(campaign.path / PREDICTIONS, text)
    return _measure(campaign, cells, environments, quiet, on_start, resumed=False, fmt=fmt)


def _check(environments, cells, scenario, target) -> None:
    """Every environment can run here and every cell can be built, before anything is made."""
    from measure.environments.base import Unavailable
    for env in environments.values():
        try:
            env.check()
        except Unavailable as e:
            raise UserError(f"scenario {scenario} has no buildable fix on target {target}: {e}") from None
        env.preflight(cells)


def _name(scenario: str) -> str:
    import datetime as _dt
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-verify-{scenario}"


def _write_once(path: Path, text: str) -> None:
    if path.exists():
        raise UserError(f"{path} exists; predictions are never rewritten")
    store.write_atomic(path, text)
    os.chmod(path, 0o444)


def _target(spec):
    from edgeio.commands.measure import _target as make
    return make(spec or "local")


def _facts(target) -> dict:
    from measure import campaign as engine
    return engine.target_metadata({target.name: target})[target.name]


# -- the calibration ------------------------------------------------------------------
def _matches(cal, facts: dict) -> str | None:
    """None if `cal` was fitted for this target's machine, else why not (calibration.matches)."""
    import calibration
    return calibration.matches(cal, facts)


def _calibration(path, target: str, facts: dict):
    import calibration
    if path:
        cal = calibration.load(path)
        why = _matches(cal, facts)
        if why:
            raise UserError(f"target {target}: {why}; calibrate on a campaign of this target "
                            f"(invoke calibrate --source DIR)")
        return cal, Path(path)
    d = paths.results_dir() / "calibrations"
    files = sorted(d.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True) if d.is_dir() else []
    for p in files:
        try:
            cal = calibration.load(p)
        except UserError:
            continue        # a corrupt file is not this target's calibration; the search goes on
        if _matches(cal, facts) is None:
            return cal, p
    raise UserError(f"no calibration for target {target} ({facts.get('host')}) in {d}: measure it and "
                    f"run invoke calibrate --source DIR, or pass --calibration FILE")


# -- measuring --------------------------------------------------------------------------
class _ByConfig:
    """One environment name on one target with several configurations in one campaign:
    the engine keys environments by (env, target), this hands each cell to the
    instance built with that cell's --param values."""

    def __init__(self, instances: dict):
        self.instances = instances            # config key -> Environment
        first = next(iter(instances.values()))
        self.target, self.name = first.target, first.name
        self._tag = None

    @property
    def resource_tag(self):
        return self._tag

    @resource_tag.setter
    def resource_tag(self, tag):
        """The engine names what a campaign creates after it; each configuration gets its own."""
        self._tag = tag
        for i, inst in enumerate(self.instances.values()):
            inst.resource_tag = f"{tag}-{i}" if tag else tag

    def remove_leftovers(self):
        return [what for inst in self.instances.values() for what in inst.remove_leftovers()]

    def _for(self, cell):
        return self.instances[vp.cell_key(cell)]

    def check(self):
        for inst in self.instances.values():
            inst.check()

    def preflight(self, cells):
        for key, inst in self.instances.items():
            inst.preflight([c for c in cells if c["env"] == self.name and vp.cell_key(c) == key])

    def prepare(self):
        for inst in self.instances.values():
            inst.prepare()

    def run(self, cell, timeout=None):
        return self._for(cell).run(cell, timeout=timeout)

    def effective_config(self, cell, probe=None, metadata=None):
        """The cell's configuration as run (before the run: as it will run), from its own instance."""
        return self._for(cell).effective_config(cell, probe, metadata)

    def teardown(self):
        errors = []
        for inst in self.instances.values():
            try:
                inst.teardown()
            except Exception as e:  # every instance gets its teardown
                errors.append(str(e))
        if errors:
            raise RuntimeError("; ".join(errors))

    def metadata(self):
        return {key: inst.metadata() for key, inst in self.instances.items()}


def _environments(cells, targets) -> dict:
    from measure.environments import environment_class
    groups = {}
    for cell in cells:
        key = (cell["env"], cell.get("target", "local"))
        inst = groups.setdefault(key, {})
        ck = vp.cell_key(cell)
        if ck not in inst:
            inst[ck] = environment_class(cell["env"])(targets[key[1]], params=cell.get("params") or {})
    return {key: _ByConfig(inst) for key, inst in groups.items()}


def _measure(campaign, cells, environments, quiet, on_start, resumed: bool, fmt=None) -> Path:
    import contextlib
    locked = getattr(campaign, "locked", None)       # one writer per campaign, where the store has it
    with locked() if locked else contextlib.nullcontext():
        return _measure_locked(campaign, cells, environments, quiet, on_start, resumed, fmt)


def _measure_locked(campaign, cells, environments, quiet, on_start, resumed, fmt=None) -> Path:
    from measure import campaign as engine
    from measure.progress import Progress
    try:
        engine.adopt(campaign, environments)          # resources named after the campaign
        if resumed:          # what a killed run left goes, even if it was killed before its first cell
            for what in engine.remove_leftovers(environments):
                print(f"removed what the killed run left: {what}", file=sys.stderr)
        unavailable = engine.prepare(environments)
        if unavailable:
            why = "; ".join(f"{k[0]}: {r}" for k, r in unavailable.items())
            raise UserError(f"cannot build the fix on this target ({why}); the predictions stay in "
                            f"{campaign.path}")
        with Progress(cells, campaign.records(), mode="quiet" if quiet else "auto",
                      title=campaign.path.name) as progress:
            try:
                result = engine.run(campaign, cells, environments, progress=progress, on_start=on_start)
            except KeyboardInterrupt:
                raise UserError(f"interrupted; every finished cell is stored: "
                                f"invoke verify --resume {campaign.path}") from None
        campaign.finish(environments={f"{e}@{t}": inst.metadata() for (e, t), inst in environments.items()},
                        counts={k: result[k] for k in ("ok", "failed", "skipped", "not_run")},
                        failed_cells=result["failed_cells"], not_run_cells=result["not_run_cells"])
    finally:
        for key, error in engine.teardown(environments).items():
            print(f"warning: teardown of {key[0]} on {key[1]} failed: {error}", file=sys.stderr)
    lines = sys.stderr if fmt else sys.stdout      # stdout carries only the export
    for line in engine.summary_lines(result, campaign.records())[1:]:
        print(line, file=lines)
    # The comparison from the predictions as written (read back, digest checked) and the
    # cell records: exactly what the report recomputes.
    _, verify_meta, predictions = vcampaign.open_campaign(campaign.path)
    comparison = compare(predictions, campaign.samples())
    csv, js = vcampaign.write(campaign.path, comparison)
    if fmt:
        sys.stdout.write(exports.render("verify", comparison, fmt, meta={
            "scenario": verify_meta.get("scenario"), "values": verify_meta.get("values") or {},
            "campaign": str(campaign.path), "calibration": verify_meta.get("calibration")}))
    else:
        print_comparison(comparison, verify_meta)
    print(f"results: {campaign.path} ({csv.name}, {js.name})", file=lines)
    return campaign.path


def _resume(path: Path, quiet, on_start, fmt=None) -> Path:
    from measure import campaign as engine
    campaign, cells, records = engine.resume(path)
    vcampaign.open_campaign(path)     # predictions as written, and the plan they were made for
    targets = {name: _target(name) for name in engine.target_names(cells)}
    # the predictions were made for the machine the campaign recorded: no override here
    engine.check_same_machine(campaign, engine.target_metadata(targets))
    environments = _environments(cells, targets)
    _check(environments, [c for c in cells if c["cell_id"] not in records],
           campaign.metadata()["verify"].get("scenario"), ", ".join(targets))
    if not quiet:
        print(f"resuming {path}: {len(records)} of {len(cells)} cells already measured", file=sys.stderr)
    return _measure(campaign, cells, environments, quiet, on_start, resumed=True, fmt=fmt)


# -- printing -----------------------------------------------------------------------------
def print_comparison(comparison: pd.DataFrame, verify_meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    s = summarize(comparison)
    console = Console(width=max(150, Console().width))
    scen = verify_meta.get("scenario", "")
    fix = comparison[(comparison["role"] == "fix") & comparison["predicted_speedup"].notna()]
    if len(fix):
        t = Table(title=f"verify {scen}: speed-up (baseline / fix) predicted before measured")
        for col in ("env", "size", "op", "config", "predicted", "95% interval", "measured", "95% CI",
                    "expected (interval + CI)", "error", "inside", "direction"):
            t.add_column(col, justify="left" if col in ("env", "op", "config", "direction") else "right")
        for r in fix.itertuples(index=False):
            agree = "" if str(r.direction_agrees) == "True" else " (NO)"
            t.add_row(r.env, format_size(int(r.size_bytes)), r.op, r.config, _x(r.predicted_speedup),
                      f"[{_x(r.speedup_low)}, {_x(r.speedup_high)}]", _x(r.measured_speedup),
                      f"[{_x(r.measured_speedup_ci95_low)}, {_x(r.measured_speedup_ci95_high)}]",
                      f"[{_x(r.speedup_expected_low)}, {_x(r.speedup_expected_high)}]",
                      f"{r.speedup_rel_error:+.1%}", "yes" if str(r.speedup_inside) == "True" else "NO",
                      f"{r.predicted_direction} / {r.measured_direction}{agree}")
        console.print(t)
    t = Table(title=f"verify {scen}: time per op predicted before measured")
    for col in ("env", "size", "op", "config", "role", "predicted", "95% interval", "measured",
                "95% CI", "error", "inside"):
        t.add_column(col, justify="right" if col not in ("env", "op", "config", "role") else "left")
    for r in comparison.itertuples(index=False):
        t.add_row(r.env, format_size(int(r.size_bytes)), r.op, r.config, r.role, format_time(r.predicted_s),
                  f"[{format_time(r.low_s)}, {format_time(r.high_s)}]", format_time(r.measured_s),
                  f"[{format_time(r.ci95_low_s)}, {format_time(r.ci95_high_s)}]", f"{r.rel_error:+.1%}",
                  "yes" if r.inside else "NO")
    console.print(t)
    line = drift_line(comparison)
    if line:
        print(line)
        re = comparison[comparison["role"] == "fix"]
        print("re-anchored on today's baseline (prediction x baseline measured now / baseline predicted): " + ", ".join(
            f"{format_size(int(r.size_bytes))} {r.op} {format_time(r.predicted_s)} raw, {format_time(r.reanchored_s)} "
            f"re-anchored vs {format_time(r.measured_s)} measured ({r.rel_error:+.1%}, {r.reanchored_rel_error:+.1%})"
            for r in re.itertuples(index=False)))
    if not s["cells"]:
        print("no cell was measured: nothing to compare")
        return
    sp = s["speedup"]
    if sp["cells"]:
        print(f"speed-up, {sp['cells']} fix cells: median |error| {sp['median_abs_rel_error']:.1%}, largest "
              f"{sp['max_abs_rel_error']:.1%} ({sp['worst']}), {sp['share_inside']:.0%} inside their 95% intervals, "
              f"{sp['wrong_direction']} the wrong way")
    print(f"time per op, {s['cells']} cells: median |error| {s['median_abs_rel_error']:.1%}, largest "
          f"{s['max_abs_rel_error']:.1%} ({s['worst']}), {s['share_inside']:.0%} inside their 95% intervals")


def _x(v) -> str:
    return f"{v:.3g}x" if v == v else "n/a"
