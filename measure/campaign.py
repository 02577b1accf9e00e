"""The campaign engine: run a plan's cells, store each as soon as it exists.

Robust for campaigns of hours, on remote targets:
- every finished cell (ok or failed) is stored atomically at once, so a killed campaign
  loses at most the cell it was running; `resume` continues it without repeating a
  stored cell;
- a failed cell (probe error, timeout, crash of an environment) is stored with its log
  and the campaign goes on; a dropped SSH connection retries the cell once
  (`retries`) after reconnecting;
- a cell marked adaptive (measure/adaptive.py) runs in rounds until its interval is
  narrow enough or its budget is spent;
- several targets (a fleet) run in parallel, one thread per target, each in plan order;
- only the store's own errors (full disk, unwritable directory) stop the campaign.
"""

import signal
import threading
import time
import traceback
from collections import OrderedDict

from edgeio import stats, store
from edgeio.errors import UserError
from measure import adaptive
from measure.environments.base import CellFailed, Unavailable

# A watchdog for environments that do not honour their timeout: wait this much longer.
WATCHDOG_GRACE_S = 30.0

# The default cell timeout ("auto"): a cell running far beyond what it should take is
# stuck (a guest that sleeps, a wedged device) and must not hang the campaign forever.
TIMEOUT_FLOOR_S = 900.0     # never less: a guest boot under TCG, a slow SD card's fsyncs
TIMEOUT_FACTOR = 10.0       # x the time expected from the cells already finished
TIMEOUT_CEILING_S = 7 * 86400.0   # never more: beyond ~24 days poll() overflows; a week is no limit
# Before a cell like it has finished: what the slowest storage we target (an SD card)
# could take at worst per repetition: a latency plus a throughput.
A_PRIORI_PER_REP_S = 0.05
A_PRIORI_BYTES_PER_S = 2 << 20


class CellTimeout(CellFailed):
    """The environment did not return within the cell timeout (plus grace)."""


# -- plans over several targets --------------------------------------------------------
def fleet_plan(plan: list[dict], targets: list[str]) -> list[dict]:
    """The plan for every target: one copy of each cell per target, ids made unique.

    With one target the plan keeps its cell ids; with several, each id gets the
    target's slug ('0003-linux-4KiB-read-pi_pi1'), safe in file and container names.
    """
    from measure.targets import target_slug
    targets = list(dict.fromkeys(targets or ["local"]))
    if len(targets) == 1:
        return [dict(cell, target=targets[0]) for cell in plan]
    slugs, seen = {}, set()
    for t in targets:
        slug, i = target_slug(t), 1
        while slug in seen:
            i += 1
            slug = f"{target_slug(t)}-{i}"
        seen.add(slug)
        slugs[t] = slug
    return [dict(cell, target=t, cell_id=f"{cell['cell_id']}-{slugs[t]}") for cell in plan for t in targets]


def target_names(plan: list[dict]) -> list[str]:
    return list(dict.fromkeys(cell.get("target", "local") for cell in plan))


def _parallel(items, fn) -> dict:
    """fn(item) for each item in its own thread: {item: (result, exception)}."""
    out = {}

    def call(item):
        try:
            out[item] = (fn(item), None)
        except BaseException as e:  # handed back to the caller, which decides
            out[item] = (None, e)
    threads = [threading.Thread(target=call, args=(item,), daemon=True) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def target_metadata(targets: dict) -> dict:
    """Machine facts of every target (name -> facts), gathered in parallel.

    An unreachable target is a UserError now rather than an hour into the campaign.
    """
    results = _parallel(list(targets), lambda name: targets[name].facts())
    out = {}
    for name in targets:
        facts, err = results[name]
        if err is not None:
            if isinstance(err, UserError):
                raise err
            raise UserError(f"target {name}: {err}") from None
        out[name] = facts
    return out


def environments_for(plan: list[dict], targets: dict) -> dict:
    """One Environment per (env, target) of the plan, with the params its cells carry.

    The params go through the environment's own checks (Environment.validate_params),
    as on the command line; the cells of one environment and target must agree on them.
    """
    from measure.environments import environment_class
    envs, params = {}, {}
    for cell in plan:
        key = (cell["env"], cell.get("target", "local"))
        mine = cell.get("params") or {}
        if key not in envs:
            envs[key] = environment_class(cell["env"])(targets[key[1]], params=mine)
            params[key] = mine
        elif mine != params[key]:
            raise UserError(f"plan.json: cell {cell['cell_id']} has other {key[0]} params than the "
                            f"campaign's first {key[0]} cell on {key[1]}: a campaign has one configuration "
                            "per environment and target")
    return envs


def adopt(campaign, environments: dict) -> None:
    """Name what the environments create after the campaign (before prepare)."""
    tag = campaign.resource_tag()
    for env in environments.values():
        env.resource_tag = tag


def remove_leftovers(environments: dict, skip=()) -> list[str]:
    """What a killed run of the same campaign left on its targets, removed: call under
    the campaign's lock, after adopt() and before the first cell; skip: the keys of
    environments that cannot run now. Returns what went."""
    removed = []
    for (name, target), env in environments.items():
        if (name, target) in skip:
            continue
        try:
            removed += [f"{name} on {target}: {what}" for what in env.remove_leftovers()]
        except (UserError, CellFailed, TimeoutError, OSError) as e:
            raise UserError(f"cannot remove what the killed run left ({name} on {target}): {e}") from None
    return removed


def prepare(environments: dict, on_prepared=None) -> dict:
    """check() then prepare() every environment, targets in parallel: once per campaign.

    Returns {(env, target): reason} for those that cannot run; their cells are
    reported as not run rather than failed.
    """
    by_target = OrderedDict()
    for key in environments:
        by_target.setdefault(key[1], []).append(key)
    unavailable = {}

    def prepare_target(target):
        for key in by_target[target]:
            env = environments[key]
            try:
                env.check()
                env.prepare()
            except (UserError, CellFailed) as e:
                unavailable[key] = str(e)
            if on_prepared:
                on_prepared(key, unavailable.get(key))
    for target, (_, err) in _parallel(list(by_target), prepare_target).items():
        if err is not None:
            for key in by_target[target]:
                unavailable.setdefault(key, f"internal error while preparing: {err}")
    return unavailable


def teardown(environments: dict) -> dict:
    """Best effort: every environment's teardown; {(env, target): error} of those that failed."""
    errors = {}
    for key, env in environments.items():
        try:
            env.teardown()
        except Exception as e:  # a failed cleanup must not hide the campaign's results
            errors[key] = str(e)
    return errors


def resume(path, retry_failed: bool = False) -> tuple:
    """(campaign, plan, records) of an existing campaign directory (or an open Campaign,
    e.g. one whose lock is held), for `--resume DIR`.

    Everything is checked on the way in (store.Campaign.open): the plan, every record,
    and that a record is the one of its plan cell; a cell's params are checked again
    by its environment (environments_for) exactly as on the command line.
    """
    campaign = path if isinstance(path, store.Campaign) else store.Campaign.open(path)
    plan, records = campaign.plan(), campaign.records(set_aside_invalid=retry_failed)
    check_records_match_plan(campaign, plan, records, set_aside=retry_failed)
    return campaign, plan, records


def check_same_machine(campaign, facts: dict, allow_other: bool = False) -> list[str]:
    """A resume runs on the machine(s) the campaign recorded: `facts` (target -> facts,
    gathered now) against metadata.json's targets. Another machine is a UserError saying
    which facts differ, unless `allow_other`: then the change is recorded in metadata.json
    (machine_changes) and returned, one line per target."""
    from edgeio.identity import IDENTITY, differences
    meta = campaign.metadata()
    recorded = meta.get("targets") or {}
    if not recorded and len(facts) == 1:        # a campaign from before per-target facts: its top level
        recorded = {next(iter(facts)): {k: meta.get(k) for k in IDENTITY + ("memory_bytes",)}}
    changed = {}
    for name, now in facts.items():
        was = recorded.get(name)
        diffs = differences(was, now) if isinstance(was, dict) else []
        if diffs:
            changed[name] = diffs
    if not changed:
        return []
    lines = [f"target {name}: {'; '.join(d)} (recorded vs now)" for name, d in changed.items()]
    if not allow_other:
        raise UserError(f"{campaign.path}: recorded on another machine than this resume's: {' / '.join(lines)}; "
                        "its samples would mix two machines: resume where it began, or pass "
                        "--allow-other-machine to record the change and go on")
    history = list(meta.get("machine_changes") or [])
    history += [{"at": store.now_iso(), "target": name, "from": recorded[name], "to": facts[name],
                 "differences": changed[name]} for name in changed]
    campaign.update_metadata(machine_changes=history, targets={**recorded, **facts})
    return lines


def check_records_match_plan(campaign, plan: list[dict], records: dict, set_aside: bool = False) -> None:
    """A record stands for its plan cell: same env, target, size, op, repetitions, params.
    set_aside (--retry-failed): move a record that does not to cells/retried/ instead."""
    by_id = {c["cell_id"]: c for c in plan}
    for cell_id, rec in list(records.items()):
        cell = by_id.get(cell_id)
        if cell is None:
            continue        # not ours to run; it only adds rows to the tables
        wrong = next((k for k in ("env", "target", "size_bytes", "op", "reps", "params")
                      if rec["cell"].get(k) != cell.get(k)), None)
        if wrong is None:
            continue
        if set_aside:
            campaign.set_aside(cell_id)
            del records[cell_id]
            continue
        raise UserError(f"{campaign.cells_dir / (cell_id + '.json')}: field cell.{wrong} differs from "
                        f"plan.json's cell {cell_id}; to measure that cell again, resume with --retry-failed "
                        "(which sets the record aside in cells/retried/) or move the file aside yourself")


def default_timeout(cell: dict, estimator=None) -> float:
    """Seconds a cell may take before it is abandoned (cell_timeout='auto').

    TIMEOUT_FACTOR x what the cells finished so far predict (measure.progress.Estimator)
    or else the plan's own estimate_s, or, without either, the slowest storage we target
    at its worst; never below
    TIMEOUT_FLOOR_S. Adaptive cells get their budget on top.
    """
    if cell.get("adaptive"):
        return TIMEOUT_FLOOR_S + 1.5 * float(cell["adaptive"]["budget_s"])
    expected = estimator.estimate(cell) if estimator is not None else None
    if expected is None and isinstance(cell.get("estimate_s"), (int, float)) and cell["estimate_s"] > 0:
        expected = float(cell["estimate_s"])         # the protocol's own estimate (measure/protocol.py)
    if expected is not None:
        return min(TIMEOUT_CEILING_S, max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * expected))
    worst = int(cell["reps"]) * (A_PRIORI_PER_REP_S + int(cell["size_bytes"]) / A_PRIORI_BYTES_PER_S)
    return min(TIMEOUT_CEILING_S, max(TIMEOUT_FLOOR_S, worst))


# -- running -------------------------------------------------------------------------
class _Run:
    """Shared state of one run: counts, stop flag, the first fatal error."""

    def __init__(self, campaign, environments, unavailable, cell_timeout, retries, progress,
                 on_cell, on_start):
        self.campaign = campaign
        self.environments = environments
        self.unavailable = dict(unavailable or {})
        self.cell_timeout = cell_timeout
        self.retries = retries
        self.progress = progress
        self.on_cell = on_cell
        self.on_start = on_start
        self.stop = threading.Event()
        self.fatal = None
        self.lock = threading.Lock()
        self.result = {"ok": 0, "failed": 0, "skipped": 0, "not_run": 0, "failed_cells": [],
                       "not_run_cells": [], "interrupted": False, "warnings": []}
        self.facts = {}
        from measure.progress import Estimator
        self.estimator = Estimator()      # for the default cell timeout

    def timeout_for(self, cell: dict) -> float | None:
        if self.cell_timeout != "auto":
            return self.cell_timeout
        with self.lock:
            return default_timeout(cell, self.estimator)

    def learn(self, record: dict) -> None:
        if record.get("status") == "ok":
            self.estimator.add(record["cell"], record.get("wall_seconds"),
                               (record.get("probe") or {}).get("total_seconds"))

    def callback(self, name, *args):
        with self.lock:
            if name == "started":
                if self.progress:
                    self.progress.started(*args)
                if self.on_start:
                    self.on_start(*args)
            elif name == "finished":
                if self.progress:
                    self.progress.finished(*args)
                if self.on_cell:
                    self.on_cell(*args)
            elif name == "note" and self.progress:
                self.progress.note(*args)


def run(campaign: store.Campaign, plan: list[dict], environments: dict, cell_timeout="auto",
        on_cell=None, *, progress=None, unavailable: dict | None = None, retries: int = 1,
        retry_failed: bool = False, on_start=None) -> dict:
    """Run every cell of `plan` not yet recorded in `campaign`.

    environments maps (env name, target name) to a prepared Environment; cells whose
    key is missing or listed in `unavailable` ({key: reason}) are not run.
    cell_timeout: seconds, None (no limit) or "auto" (default_timeout: scaled from the
    time the cell is expected to take).
    on_start(cell) before a cell, on_cell(cell, record) after it is stored.
    progress: a measure.progress.Progress (or anything with started/note/finished).
    retries: how often a cell is retried after a dropped connection.
    retry_failed: on resume, run cells that failed before again (their old records
    are kept under cells/retried/).
    Returns {"ok", "failed", "skipped" (already recorded), "not_run": counts,
    "failed_cells", "not_run_cells": lists of dicts, "interrupted": bool, "warnings"}.
    Raises the store's UserError (full disk...) after the other targets stopped.
    The campaign's lock is held throughout (a second writer gets a UserError).
    """
    with campaign.locked():
        return _run_locked(campaign, plan, environments, cell_timeout, on_cell, progress, unavailable,
                           retries, retry_failed, on_start)


def _run_locked(campaign, plan, environments, cell_timeout, on_cell, progress, unavailable,
                retries, retry_failed, on_start) -> dict:
    campaign.remove_stale_temporaries()      # writes a killed run never finished
    done = campaign.records(set_aside_invalid=retry_failed)
    if retry_failed:
        for cell_id, rec in list(done.items()):
            if rec.get("status") != "ok":
                campaign.set_aside(cell_id)
                del done[cell_id]
    state = _Run(campaign, environments, unavailable, cell_timeout, retries, progress, on_cell, on_start)
    for rec in done.values():
        state.learn(rec)
    by_target = OrderedDict()
    for cell in plan:
        if cell["cell_id"] in done:
            state.result["skipped"] += 1
            continue
        by_target.setdefault(cell.get("target", "local"), []).append(cell)
    threads = [threading.Thread(target=_worker, args=(state, cells), name=f"campaign {target}", daemon=True)
               for target, cells in by_target.items()]
    previous = _stop_on_sigint(state)
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        # The running cells are not stored (a probe killed by ^C is no failure); resume reruns them.
        state.stop.set()
        state.result["interrupted"] = True
        for t in threads:
            t.join(5)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if state.fatal is not None:
        raise state.fatal
    return state.result


def _stop_on_sigint(state: _Run):
    """^C reaches the probe too, which then fails: set the stop flag first, so the
    workers see an interruption, not a failure. Returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return None      # someone else (a test runner, the caller) handles ^C

    def on_sigint(signum, frame):
        state.stop.set()
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, on_sigint)
    return previous


def _worker(state: _Run, cells: list[dict]):
    try:
        for cell in cells:
            if state.stop.is_set():
                return
            key = (cell["env"], cell.get("target", "local"))
            reason = state.unavailable.get(key)
            if reason is None and key not in state.environments:
                reason = f"env {key[0]} not prepared on {key[1]}"
            if reason is not None:
                with state.lock:
                    state.result["not_run"] += 1
                    state.result["not_run_cells"].append(
                        {"cell_id": cell["cell_id"], "env": key[0], "target": key[1], "reason": reason})
                continue
            state.callback("started", cell)
            record = _run_cell(state, state.environments[key], cell)
            if record is None:          # stopped, or the environment turned out unavailable
                continue
            with state.lock:
                if record["status"] == "ok":
                    state.result["ok"] += 1
                else:
                    state.result["failed"] += 1
                    state.result["failed_cells"].append(
                        {"cell_id": cell["cell_id"], "env": key[0], "target": key[1],
                         "error": record.get("error", ""), "log": record.get("log", "")})
                state.learn(record)
            state.callback("finished", cell, record)
    except BaseException as e:   # the store failed (full disk...): stop every target
        with state.lock:
            if state.fatal is None:
                state.fatal = e if isinstance(e, UserError) else UserError(f"campaign stopped: {e}")
        state.stop.set()


def _call(state: _Run, env, cell: dict, timeout: float | None):
    """env.run(cell), with a watchdog in case the environment ignores its timeout."""
    if timeout is None:
        return env.run(cell, timeout=None)
    box = {}

    def target():
        try:
            box["result"] = env.run(cell, timeout=timeout)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e
    worker = threading.Thread(target=target, daemon=True, name=f"cell {cell['cell_id']}")
    worker.start()
    worker.join(timeout + max(WATCHDOG_GRACE_S, 0.1 * timeout))
    if worker.is_alive():
        raise CellTimeout(f"timed out after {timeout:g} s (the environment did not stop; abandoned)")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _measure(state: _Run, env, cell: dict, deadline: float | None):
    """(probe, metadata, log, extra record keys) of one attempt at a cell."""
    left = None if deadline is None else max(0.05, deadline - time.monotonic())
    if not cell.get("adaptive"):
        result = _call(state, env, cell, left)
        return result.probe, result.metadata, result.log, {}
    return _measure_adaptive(state, env, cell, deadline)


def _measure_adaptive(state: _Run, env, cell: dict, deadline: float | None):
    from measure.ssh import ConnectionLost
    ci, budget = float(cell["adaptive"]["ci"]), float(cell["adaptive"]["budget_s"])
    probes, logs, metadata = [], [], {}
    t0 = time.monotonic()
    round_batches = int(cell.get("batches") or 1)
    per_batch = adaptive.pilot_batch_reps(cell)
    this_round, calibration, decision = cell, None, None
    while True:
        t_round = time.monotonic()
        left = None if deadline is None else max(0.05, deadline - t_round)
        if this_round is not cell:   # past the pilot, a round must not run far beyond the budget
            cap = max(10.0, adaptive.ROUND_TIMEOUT_FACTOR * (budget - (t_round - t0)))
            left = cap if left is None else min(left, cap)
        try:
            result = _call(state, env, this_round, left)
        except CellFailed as e:
            if not probes or isinstance(e, ConnectionLost):
                raise
            logs.append(f"round {len(probes) + 1} failed: {e}\n{e.log}")
            decision = adaptive.Decision(True, f"round {len(probes) + 1} failed", 0, decision.rel_halfwidth)
            break
        except TimeoutError as e:
            if not probes:
                raise
            logs.append(f"round {len(probes) + 1} timed out: {e}")
            decision = adaptive.Decision(True, "cell timeout", 0, decision.rel_halfwidth)
            break
        round_s = time.monotonic() - t_round
        probe = result.probe
        metadata = {**metadata, **(result.metadata or {})}
        logs.append(f"--- {'pilot' if this_round is cell else 'round'}: {this_round['reps']} reps in "
                    f"{this_round.get('batches')} batches\n" + (result.log or ""))
        if this_round is cell:
            per_op = probe["total_seconds"] / max(1, probe["reps"])
            wanted = adaptive.batch_reps(per_op, per_batch)
            overhead = max(0.0, round_s - probe["total_seconds"])   # start-up, e.g. docker run
            per_batch_s = per_op * wanted
            affordable = int((adaptive.ROUND_SHARE * (budget - round_s) - overhead) / per_batch_s) \
                if per_batch_s > 0 else 0
            if wanted > per_batch and affordable >= 2:
                # The pilot's batches are too short to mean much: it only calibrates.
                calibration = {"reps": probe["reps"], "batches": len(probe.get("batch_seconds", [])),
                               "batch_reps": per_batch, "seconds": probe["total_seconds"],
                               "per_op_s": per_op, "new_batch_reps": wanted}
                per_batch = wanted
                this_round = adaptive.round_cell(cell, min(round_batches, affordable), per_batch)
                state.callback("note", cell, f"calibrated: {per_batch} reps per batch")
                continue
        probes.append(probe)
        merged = adaptive.merge_probes(probes)
        values = stats.per_op(merged["batch_seconds"], merged["batch_reps"])
        n_round = max(1, len(probe.get("batch_seconds", [])))
        decision = adaptive.decide(values, time.monotonic() - t0, round_s / n_round, ci, budget,
                                   rounds=len(probes), round_batches=round_batches)
        state.callback("note", cell, f"round {len(probes)}: ±{decision.rel_halfwidth:.1%} (target ±{ci:.1%})")
        if decision.stop or state.stop.is_set():
            break
        if deadline is not None and time.monotonic() >= deadline:
            decision = adaptive.Decision(True, "cell timeout", 0, decision.rel_halfwidth)
            break
        this_round = adaptive.round_cell(cell, decision.next_batches, per_batch)
    merged = adaptive.merge_probes(probes)
    values = stats.per_op(merged["batch_seconds"], merged["batch_reps"])
    info = {"ci_target": ci, "budget_s": budget, "rounds": len(probes), "batches": int(len(values)),
            "batch_reps": per_batch, "ci_achieved": decision.rel_halfwidth, "stopped": decision.reason,
            "seconds": time.monotonic() - t0, "calibration": calibration,
            "warnings": adaptive.warnings(values, ci, decision)}
    return merged, metadata, "\n".join(logs), {"adaptive": info}


def _target_facts(state: _Run, target) -> dict:
    name = getattr(target, "name", "local")
    if name not in state.facts:
        try:
            state.facts[name] = target.facts()
        except (UserError, CellFailed, TimeoutError, OSError):
            return {}
    return state.facts[name]


def _run_cell(state: _Run, env, cell: dict):
    """Run one cell (retrying after a dropped connection), store it, return its record."""
    from measure.ssh import ConnectionLost
    started = store.now_iso()
    timeout = state.timeout_for(cell)
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    logs, attempts = [], 0
    probe, metadata, status, error, extra = None, {}, "failed", "", {}
    while True:
        attempts += 1
        try:
            probe, metadata, log, extra = _measure(state, env, cell, deadline)
            logs.append(log or "")
            status = "ok"
            break
        except ConnectionLost as e:
            logs.append(f"attempt {attempts}: {e}\n{e.log}")
            error = f"connection lost: {e}"
            if attempts > state.retries or state.stop.is_set():
                break
            try:
                reconnect = getattr(env.target, "reconnect", None)
                if reconnect:
                    reconnect()
            except (ConnectionLost, UserError) as e2:
                logs.append(f"reconnect failed: {e2}")
                error = f"connection lost, reconnect failed: {e2}"
                break
            logs.append(f"reconnected; retrying the cell (attempt {attempts + 1})")
        except Unavailable as e:
            key = (cell["env"], cell.get("target", "local"))
            with state.lock:
                state.unavailable[key] = str(e)
                state.result["not_run"] += 1
                state.result["not_run_cells"].append(
                    {"cell_id": cell["cell_id"], "env": key[0], "target": key[1], "reason": str(e)})
            return None
        except (CellFailed, TimeoutError, UserError) as e:
            logs.append(getattr(e, "log", "") or "")
            error = str(e) or type(e).__name__
            break
        except Exception as e:  # a bug in an environment must not lose the campaign
            logs.append(traceback.format_exc())
            error = f"internal error: {type(e).__name__}: {e}"
            break
    # A failure at the moment of ^C is the interruption itself: not stored, resume reruns it.
    if status != "ok" and (state.stop.is_set() or state.stop.wait(0.25)):
        return None
    facts = _target_facts(state, env.target)
    metadata = dict(metadata or {})
    for k in ("host", "arch"):
        if k not in metadata and k in facts:
            metadata[k] = facts[k]
    return state.campaign.record_cell(
        cell, status, probe if status == "ok" else None, metadata, log="\n".join(x for x in logs if x),
        error=error if status != "ok" else "", started=started,
        wall_seconds=time.monotonic() - t0, attempts=attempts, timeout_s=timeout,
        config=_effective_config(env, cell, probe if status == "ok" else None, metadata), **extra)


def _effective_config(env, cell, probe, metadata) -> dict | None:
    """The cell's configuration as run (None if even that cannot be told: it never hides the cell)."""
    try:
        return env.effective_config(cell, probe, metadata)
    except Exception:   # noqa: BLE001 - a record without config beats a lost record
        return None


# -- the end ----------------------------------------------------------------------------
def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_lines(result: dict, records: dict | None = None) -> list[str]:
    """What to print at the end: counts, then every failed and not-run cell with its reason.

    records (campaign.records()) adds the adaptive cells' warnings.
    """
    head = f"{result['ok']} cells ok, {result['failed']} failed"
    if result.get("not_run"):
        head += f", {result['not_run']} not run"
    if result.get("skipped"):
        head += f", {result['skipped']} already done (resumed)"
    if result.get("interrupted"):
        head += " (interrupted: resume with --resume)"
    lines = [head]
    for c in result.get("failed_cells", []):
        lines.append(f"failed: {c['cell_id']} on {c['target']}: {_one_line(c['error'])} (log: {c['log']})")
    grouped = OrderedDict()
    for c in result.get("not_run_cells", []):
        grouped.setdefault((c["env"], c["target"], c["reason"]), []).append(c["cell_id"])
    for (env, target, reason), ids in grouped.items():
        lines.append(f"not run: {len(ids)} {env} cells on {target}: {reason}")
    for rec in (records or {}).values():
        info = rec.get("adaptive")
        if info and info.get("warnings"):
            lines.append(f"warning: {rec['cell']['cell_id']}: {'; '.join(info['warnings'])}")
    return lines
