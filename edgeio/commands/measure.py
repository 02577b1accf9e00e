"""`invoke measure`: run the study's protocol in environments on targets, keep every sample."""

import platform
import subprocess
import sys
import time
from importlib import metadata as _pkgmeta
from pathlib import Path

from edgeio import paths, store
from edgeio.errors import UserError
from edgeio.parse import parse_choices, parse_int, parse_size, parse_sizes
from edgeio.units import format_size, format_time
from measure import adaptive
from measure import campaign as engine
from measure import plan as planning
from measure import protocol as protocol_mod
from measure.environments import ENVIRONMENTS, environment_class
from measure.environments.base import CellFailed, Unavailable
from measure.progress import Progress
from measure.table import study_table
from measure.targets import LocalTarget


def run(env: str = "all", size: str | None = None, op: str = "all", reps: str | None = None,
        out: str | None = None, params: list[str] | None = None, targets: list[str] | None = None,
        resume: str | None = None, cell_timeout="auto", order: str = "random",
        seed=0, io_size: str | None = None, sync: str = "fsync", direct: bool = False,
        cold: bool = False, batches=None, ci: str | None = None, budget: str | None = None,
        quiet: bool = False, exclude: str | None = None, retry_failed: bool = False,
        protocol: str | None = None, max_size: str | None = None,
        allow_other_machine: bool = False) -> Path:
    """Measure, store and print; returns the campaign directory.

    protocol: 'quick' (default: 4 KiB and 1 MiB, or --size) or 'calibrate' (sizes chosen
    from the target's facts, measure/protocol.py). Without --reps N every cell's batches
    are sized to last >= protocol.MIN_BATCH_S.
    Options arrive as typed (strings from the command line) and are parsed here, so a
    bad one is one line. A target that cannot be reached is one line too.
    """
    timeout = parse_cell_timeout(cell_timeout)
    if (allow_other_machine or retry_failed) and not resume:
        raise UserError(f"--{'allow-other-machine' if allow_other_machine else 'retry-failed'} goes with --resume DIR")
    try:
        if resume:
            return _resume(Path(resume), timeout, quiet, retry_failed, allow_other_machine)
        return _new(env, size, op, reps, out, params, targets, timeout, order, seed, io_size, sync,
                    direct, cold, batches, ci, budget, quiet, exclude, protocol, max_size)
    except CellFailed as e:        # a dropped or refused connection outside a cell (ConnectionLost)
        raise UserError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def parse_cell_timeout(value):
    """--cell-timeout: 'auto' (scaled from the cell's expected time), 'none', or a duration."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return "auto"
    if isinstance(value, str) and value.strip().lower() in ("none", "off"):
        return None
    try:
        return adaptive.parse_duration(value, "--cell-timeout")
    except UserError as e:
        raise UserError(f"--cell-timeout {value!r}: expected auto, none or a duration such as 600, 90s "
                        f"or 2h ({e})") from None


def _new(env, size, op, reps, out, params, targets, cell_timeout, order, seed, io_size, sync,
         direct, cold, batches, ci, budget, quiet, exclude, protocol, max_size) -> Path:
    # a batch holds at least one repetition (the probe caps batches at reps)
    batches = None if batches in (None, "") else parse_int("--batches", batches, lo=1, hi=planning.MAX_REPS)
    seed = parse_int("--seed", seed, lo=0)
    protocol = protocol or "quick"
    if protocol not in ("quick", "calibrate"):
        raise UserError(f"unknown protocol {protocol!r}: quick or calibrate")
    calibrating = protocol == "calibrate"
    if calibrating and (size or reps or cold or ci):
        raise UserError("--protocol calibrate chooses sizes, repetitions and cache modes itself: "
                        "leave out --size, --reps, --cold and --ci (cap sizes with --max-size)")
    if max_size and not calibrating:
        raise UserError("--max-size goes with --protocol calibrate")
    cap = parse_size(max_size, "--max-size") if max_size else None
    target_objs = [_target(t) for t in (targets or ["local"])]
    if any(not isinstance(t, LocalTarget) for t in target_objs):
        from measure.ssh import open_fleet
        open_fleet(target_objs)     # every SSH host at once: a key problem stops us here, before any cell
    names = _env_names(env)
    if not names:
        raise UserError(f"--env {env!r}: no environment named")
    excluded = [n for n in _env_names(exclude, "--exclude") if n in names] if exclude else []
    sizes = parse_sizes(size, "--size") if size is not None else list(planning.QUICK_SIZES)
    if not sizes:
        raise UserError(f"--size {size!r}: no size given, e.g. --size 4KiB,1MiB")
    ops = planning.parse_ops(op)
    if not ops:
        raise UserError(f"--op {op!r}: no op given: write_sync, write, read or all")
    user_params = planning.parse_params(params)
    # a small guest makes the beyond-memory regime affordable (docker keeps its 4 GiB limit,
    # the study's); recorded in the cells' params like a typed --param
    protocol_params = {"qemu": {"mem": str(protocol_mod.QEMU_CALIBRATE_MIB)}} \
        if calibrating and "mem" not in user_params else {}
    explicit = env != "all"
    adaptive_opts = None
    if reps == "auto":
        adaptive_opts = (adaptive.parse_ci(ci or "2%"), adaptive.parse_duration(budget or "10m", "--budget"))
    elif ci or (budget and not calibrating):
        raise UserError("--ci and --budget go with --reps auto (or --budget with --protocol calibrate)")
    budget_s = adaptive.parse_duration(budget) if calibrating and budget else protocol_mod.DEFAULT_BUDGET_S

    environments, skipped, env_params = {}, [], {}
    for t in target_objs:
        for name in names:
            if name in excluded:
                skipped.append((name, t.name, "excluded by --exclude"))
                continue
            cls = _class_or_skip(name, explicit, skipped)
            if cls is None:
                continue
            mine = {**protocol_params.get(name, {}),
                    **{k: v for k, v in user_params.items() if k in cls.params_spec}}
            instance = cls(t, mine)
            try:
                instance.check()
            except Unavailable as e:
                if explicit:
                    raise
                skipped.append((name, t.name, str(e)))
                continue
            environments[(name, t.name)] = instance
            env_params[name] = mine
    _unused = set(user_params) - {k for p in env_params.values() for k in p}
    if _unused:
        raise UserError(f"--param {', '.join(sorted(_unused))} is not accepted by "
                        f"{', '.join(sorted(env_params)) or 'any selected environment'}")
    if not environments:
        raise UserError("no environment can run here: " + "; ".join(r for _, _, r in skipped))

    facts = engine.target_metadata({t.name: t for t in target_objs})   # in parallel; unreachable = UserError
    cells, notes = [], []
    io_bytes = parse_size(io_size, "--io-size") if io_size else None
    pilots, priors = {}, {}
    for t in target_objs:
        here = [n for n in names if (n, t.name) in environments]
        if calibrating:
            pilots[t.name], priors[t.name] = _pilot(t, here, environments, env_params, quiet)
            specs, why = _calibrate_specs(here, t, environments, facts[t.name], budget_s, cap, ops,
                                          priors[t.name])
            notes += [f"{t.name}: {n}" for n in why]
            cells += planning.plan_from_specs(specs, target=t.name, params=env_params, order=order, seed=seed,
                                              io_size=io_bytes, sync=sync, direct=direct)
            continue
        mine = planning.make_plan(here, sizes, ops, None if reps == "auto" else _reps_arg(reps),
                                  target=t.name, params=env_params,
                                  order=order, seed=seed, batches=batches or 100,
                                  io_size=io_bytes, sync=sync, direct=direct, cache="cold" if cold else "warm")
        if reps in (None, "", "auto"):        # sized so every timed batch lasts long enough
            for cell in mine:
                protocol_mod.size_cell(cell, environments[(cell["env"], t.name)].effective_config(cell),
                                       facts[t.name].get("kvm") or "absent", batches)
        cells += mine
    _renumber(cells)
    if calibrating:      # an environment the budget left out is neither prepared nor recorded
        environments = {k: v for k, v in environments.items() if any((c["env"], c["target"]) == k for c in cells)}
    if adaptive_opts:
        adaptive.mark_plan(cells, *adaptive_opts)     # the sized cells become each cell's pilot round
    for cell in cells:
        cell["host"], cell["arch"] = facts[cell["target"]]["host"], facts[cell["target"]]["arch"]
    for key, instance in environments.items():
        instance.preflight([c for c in cells if (c["env"], c["target"]) == key])
    for name, tname, reason in skipped:
        _say(f"skipped {name} on {tname}: {reason}", quiet)
    first_priors = next(iter(priors.values()), None)
    estimate = protocol_mod.plan_estimate(cells, first_priors) if calibrating else None
    if calibrating:
        _say(f"protocol calibrate (budget {format_time(budget_s)}):\n{protocol_mod.describe(cells, first_priors)}",
             quiet)
        for note in notes:
            _say(f"note: {note}", quiet)
    elif "estimate_s" in (cells[0] if cells else {}):
        _say(f"protocol {protocol}: {len(cells)} cells, estimate "
             f"{format_time(sum(c['estimate_s'] for c in cells))}", quiet)

    if calibrating:
        sizes = sorted({c["size_bytes"] for c in cells})
    options = dict(env=env, exclude=exclude, size=[format_size(s) for s in sizes], op=ops, reps=reps, params=user_params,
                   targets=[t.name for t in target_objs], order=order, seed=seed, io_size=io_size,
                   sync=sync, direct=direct, cold=cold, batches=batches, ci=ci, budget=budget,
                   protocol=protocol, max_size=max_size,
                   protocol_info={"name": protocol, "min_batch_s": protocol_mod.MIN_BATCH_S,
                                  "priors": first_priors or protocol_mod.PRIORS, "notes": notes,
                                  **({"budget_s": budget_s, "pilot": pilots, "estimate": estimate}
                                     if calibrating else {})})
    parent = Path(out) if out else paths.results_dir()
    return _execute(parent, cells, environments, facts, skipped, options, cell_timeout, quiet)


def _execute(parent, cells, environments, facts, skipped, options, cell_timeout, quiet,
             existing: store.Campaign | None = None, retry_failed: bool = False, unavailable=()) -> Path:
    meta = _metadata(facts, environments, skipped, options)
    campaign = existing or store.Campaign.create(parent, meta, cells, name=_campaign_name(facts))
    with campaign.locked():          # one writer at a time, for the whole run
        try:
            engine.adopt(campaign, environments)     # what the cells create is named after the campaign
            if existing is not None:
                gone = engine.remove_leftovers(environments, skip=unavailable)
                if gone:
                    _say(f"removed what the killed run left: {'; '.join(gone)}", quiet)
            # once per campaign, targets in parallel; an environment that cannot start is reported, not fatal
            started = time.monotonic()
            not_ready = engine.prepare(environments)
            if existing is None:
                campaign.update_metadata(**_environment_metadata(environments))
            _say(f"campaign {campaign.path}: {len(cells)} cells in "
                 f"{', '.join(sorted({e for e, _ in environments}))}", quiet)
            with Progress(cells, campaign.records(set_aside_invalid=retry_failed),
                          mode="quiet" if quiet else "auto", title=campaign.path.name) as progress:
                try:
                    result = engine.run(campaign, cells, environments, cell_timeout=cell_timeout,
                                        progress=progress, unavailable=not_ready, retry_failed=retry_failed,
                                        on_cell=None if quiet or progress.mode == "rich" else _progress_line(len(cells)))
                except KeyboardInterrupt:
                    raise UserError(f"interrupted; every finished cell is stored: invoke measure --resume {campaign.path}") from None
            actual = time.monotonic() - started
            estimate = ((options or {}).get("protocol_info") or {}).get("estimate") or {}
            timing = {"estimate_s": estimate.get("total_s"), "actual_s": round(actual, 3)} \
                if estimate and existing is None else {}
            campaign.finish(environments={f"{e}@{t}": inst.metadata() for (e, t), inst in environments.items()},
                            counts={k: result[k] for k in ("ok", "failed", "skipped", "not_run")},
                            failed_cells=result["failed_cells"], not_run_cells=result["not_run_cells"],
                            **({"protocol_time": timing} if timing else {}))
        finally:
            for key, error in engine.teardown(environments).items():   # never hides the measurement
                _say(f"warning: teardown of {key[0]} on {key[1]} failed: {error}", False)
    summary = store.load_summary(campaign.path)
    print(study_table(summary))
    for line in engine.summary_lines(result, campaign.records()):
        print(line)
    timing = campaign.metadata().get("protocol_time") if existing is None else None
    if timing and timing.get("estimate_s"):
        print(f"protocol time: estimate {format_time(timing['estimate_s'])}, actual {format_time(timing['actual_s'])} "
              f"(actual/estimate {timing['actual_s'] / timing['estimate_s']:.2f})")
    print(f"results: {campaign.path}")
    return campaign.path


def _campaign_name(facts: dict) -> str | None:
    """A campaign of one remote device is named after it (stamp-host-arch[-emulated]); a
    local one keeps the store's default (stamp-this host)."""
    if len(facts) != 1 or next(iter(facts)) == "local":
        return None
    import datetime as _dt
    from measure.targets import target_slug
    f = next(iter(facts.values()))
    device = "-".join(x for x in (f.get("host") or "device", f.get("arch"), "emulated" if f.get("emulated") else "")
                      if x)
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{target_slug(device)}"


def _resume(path: Path, cell_timeout, quiet, retry_failed: bool, allow_other_machine: bool = False) -> Path:
    campaign = store.Campaign.open(path)
    with campaign.locked():     # before anything is read for running: a second writer stops here
        campaign, cells, records = engine.resume(campaign, retry_failed=retry_failed)
        return _resume_locked(campaign, cells, records, cell_timeout, quiet, retry_failed, allow_other_machine)


def _resume_locked(campaign, cells, records, cell_timeout, quiet, retry_failed, allow_other_machine=False) -> Path:
    targets = {name: _target(name) for name in engine.target_names(cells)}
    # the machine the campaign began on, or (--allow-other-machine) the change recorded
    for line in engine.check_same_machine(campaign, engine.target_metadata(targets), allow_other_machine):
        _say(f"warning: resuming on another machine, recorded in metadata.json: {line}", False)
    meta = campaign.metadata()
    environments = engine.environments_for(cells, targets)   # params: the command line's checks
    unavailable = set()
    for key, instance in environments.items():                # and the rest of them, as for a new one
        try:
            instance.check()
        except Unavailable:
            unavailable.add(key)      # its cells are reported as not run (engine.prepare says why)
            continue
        instance.preflight([c for c in cells if (c["env"], c.get("target", "local")) == key])
    todo = [c for c in cells if c["cell_id"] not in records
            or (retry_failed and records[c["cell_id"]]["status"] != "ok")]
    _say(f"resuming {campaign.path}: {len(cells) - len(todo)} of {len(cells)} cells already measured", quiet)
    return _execute(campaign.path.parent, cells, environments, meta.get("targets", {}), meta.get("skipped", []),
                    meta.get("options", {}), cell_timeout, quiet, existing=campaign,
                    retry_failed=retry_failed, unavailable=unavailable)


def _pilot(target, names, environments, env_params, quiet) -> tuple[dict, dict]:
    """(the pilot's observations, the target's costs for the estimate): a few seconds of
    linux and hvt work on the target (measure/pilot.py)."""
    from measure import pilot
    classes = {n: type(environments[(n, target.name)]) for n in names if n in ("linux", "hvt")}
    _say(f"pilot on {target.name}: a few seconds of {' and '.join(classes) or 'nothing'} to size the "
         "protocol and its estimate on this target...", quiet)
    observed = pilot.run(target, classes, env_params)
    priors = protocol_mod.speeds_from_pilot(observed)
    hvt = (f", an hvt block call {format_time(priors['hvt_call_s_software'])}"
           if "hvt" in observed["envs"] else "")
    _say(f"pilot on {target.name} took {format_time(observed['elapsed_s'])}: a system call "
         f"{format_time(priors['call_s'])}, a MiB copied {format_time(priors['copy_s_per_byte'] * (1 << 20))}, "
         f"an fsync {format_time(priors['fsync_s'])}{hvt}, a cell's overhead {format_time(priors['cell_overhead_s'])}"
         f" (the rest: priors x {priors['scale']:.2g})", quiet)
    return observed, priors


def _calibrate_specs(names, target, environments, facts, budget_s, cap, ops, priors=None):
    """The calibration protocol's cells on one target, from its facts and each environment's config."""
    from measure.environments.base import free_bytes
    probe = {"size_bytes": protocol_mod.SMALL, "op": "read", "cache": "warm", "sync": "fsync"}
    configs = {n: environments[(n, target.name)].effective_config(dict(probe, env=n)) for n in names}
    try:
        free = free_bytes(target, (facts.get("filesystem") or {}).get("path") or "/var/tmp")
    except (UserError, TimeoutError):
        free = None
    specs, notes = protocol_mod.calibrate_specs(configs, facts, budget_s, cap, free, priors)
    return [s for s in specs if s.get("kind") == "primitive" or s["op"] in ops], notes


def _target(spec: str):
    """'local', ssh://user@host[:port], an ssh_config Host alias or testbed:BOARD."""
    from measure.reach import parse_target
    return parse_target(spec)


def _env_names(env: str, what: str = "--env") -> list[str]:
    """'linux,docker' -> names; 'all' = every one; a name twice is refused."""
    return parse_choices(what, env, list(ENVIRONMENTS))


def _class_or_skip(name, explicit, skipped):
    try:
        return environment_class(name)
    except UserError as e:
        if explicit:
            raise
        skipped.append((name, "*", str(e)))
        return None


def _reps_arg(reps):
    if reps in (None, "", "paper", "quick", "auto"):
        return reps
    planning.reps_for(1, reps, quick=False)  # validates
    return reps


def _renumber(cells):
    """One index across every target's cells; remote cells carry their target's slug."""
    from measure.targets import target_slug
    for i, cell in enumerate(cells):
        cell["index"] = i
        suffix = cell["cell_id"].split("-", 1)[1]
        remote = f"-{target_slug(cell['target'])}" if cell["target"] != "local" else ""
        cell["cell_id"] = f"{i:04d}-{suffix}{remote}"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(paths.PROJECT_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "simpy", "statsmodels"):
        try:
            out[pkg] = _pkgmeta.version(pkg)
        except _pkgmeta.PackageNotFoundError:
            pass
    return out


def _environment_metadata(environments) -> dict:
    """What the environments know once prepared (versions, filesystems, block devices)."""
    envmeta = {f"{e}@{t}": inst.metadata() for (e, t), inst in environments.items()}
    block = {k: v.get("block_device") for k, v in envmeta.items() if v.get("block_device")}
    return {"environments": envmeta, "block_devices": block}


def _metadata(facts, environments, skipped, options) -> dict:
    from measure.probe_build import probe_version
    first = next(iter(facts.values()), {})
    return {
        "tool": "edgeio", "git_commit": _git_commit(), "probe_version": probe_version(),
        # the first target's flat facts at the top, as before; the structured ones (block_device,
        # filesystem, cpu_caches, vm) only per target: the top-level block_device/filesystem
        # strings are the environments' (block_devices below), which reports compare
        "versions": _versions(), **{k: v for k, v in first.items() if not isinstance(v, dict)},
        "targets": facts,
        "kvm_note": ("software KVM: no VT-x/AMD-V, guest kernel-mode code is emulated"
                     if first.get("kvm") == "software" else ""),
        **_environment_metadata(environments),
        "skipped": [list(s) for s in skipped], "options": options,
        "command": " ".join(sys.argv),
    }


def _progress_line(total: int):
    def on_cell(cell, record):
        if record["status"] == "ok":
            probe = record["probe"]
            per_op = probe["total_seconds"] / max(1, sum(probe["batch_reps"]))
            what = f"{format_time(per_op)}/op"
        else:
            what = f"FAILED: {record['error'][:120]}"
        print(f"[{cell['index'] + 1}/{total}] {cell['env']} {format_size(cell['size_bytes'])} "
              f"{cell['op']} x{cell['reps']} on {cell['target']}: {what}", file=sys.stderr, flush=True)
    return on_cell


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)
