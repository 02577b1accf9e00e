"""The report's first section: the study's question answered for this device.

Per workload (the study's 4 KiB case and its large-file case, here the largest size every
environment was measured at), each environment's time and its ratio to native (linux),
measured; each proposed fix as a ratio to native, predicted (with its 95% interval) and,
where a verify campaign built it, measured; the best isolated design and how far it is
from native; and, from the model's ledger, where each environment's time goes.

A fix's ratio is the environment's measured ratio times the fix's speed-up (predicted by
the model against its calibrated baseline, or measured beside its baseline in one verify
run), so it stays on the measured scale whatever the model's level error.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from edgeio.units import format_size, format_time
from report import caveats, compare as cmp, data
from report.document import Cell, Figure, Paragraph, Section, Table

NATIVE = "linux"
STUDY_LARGE = 1 << 30          # the study's large-file case
SMALL = 4096


@dataclass
class Design:
    """A row of the verdict: an environment as measured, or a fix (scenario + held params)."""
    label: str
    env: str
    kind: str                                   # native | measured | fix
    caveat: str = ""
    cells: dict = field(default_factory=dict)   # (size, op) -> dict(ratio, low, high, time, measured)
    durable: bool = True        # its write_sync reaches the disk (hvt with flush=none does not)


def _num(x: float, digits: int = 3) -> str:
    """A ratio without an exponent: 0.00045, 0.26, 1.7, 89, 6,160, 130,000."""
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{round(x, digits - 1 - math.floor(math.log10(abs(x)))):,.0f}"
    places = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_ratio(x, digits: int = 3) -> str:
    """'0.26×', '714×', '6,200×': a ratio to native as a person reads it."""
    if x is None or not np.isfinite(x):
        return "—"
    return f"{_num(x, digits)}×"


_ratio = format_ratio


def _interval(lo, hi) -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return f" [{_num(lo, 2)}, {_num(hi, 2)}]"


def primary(sources):
    """The source the verdict speaks for: the first campaign, else the first source."""
    camps = [s for s in sources if s.kind == "campaign" and len(s.summary)]
    return (camps or [s for s in sources if len(s.summary)] or [None])[0]


def workloads(rows: pd.DataFrame) -> list[tuple[int, str]]:
    """The study's workloads as measured here: 4 KiB and the large-file case, every op."""
    envs = set(rows["env"])
    sizes = sorted({int(s) for s in rows["size_bytes"]})
    def shared(size):
        return len(set(rows.loc[rows["size_bytes"] == size, "env"]))
    picked = [SMALL] if SMALL in sizes else sizes[:1]
    large = [s for s in sizes if s > SMALL and (NATIVE not in envs or
                                                 NATIVE in set(rows.loc[rows["size_bytes"] == s, "env"]))]
    if large:
        # the largest size shared by the most environments, up to the study's 1 GiB
        best = max(large, key=lambda s: (shared(s), s <= STUDY_LARGE, s if s <= STUDY_LARGE else -s))
        picked.append(best)
    ops = sorted(set(rows["op"]), key=data.op_rank)
    return [(s, o) for s in picked for o in ops]


def env_caveats(metadata: dict, records: dict, envs, run_configs: dict | None = None) -> dict:
    """env -> the caveat that qualifies its figures ('' when none)."""
    out = {}
    run_configs = run_configs or {}
    emulated = any(isinstance(f, dict) and f.get("emulated") for f in (metadata.get("targets") or {}).values()) \
        or bool(metadata.get("emulated"))
    for env in envs:
        notes = []
        if emulated:
            notes.append("emulated board (QEMU TCG)")
        if env in caveats.VIRTUALIZED and metadata.get("kvm") == "software":
            notes.append("software KVM: guest code emulated")
        if env == "qemu" and "tcg" in {a.lower() for a in caveats.accelerators(metadata, records, env)}:
            notes.append("TCG: emulated CPU")
        if env == "hvt" and run_configs.get(env, {}).get("flush") == "none":
            notes.append("tender flush=none: its write_sync reaches only the host page cache")
        out[env] = "; ".join(notes)
    return out


def machine_note(sources) -> str:
    """One line for every plot: which machine, and what makes its figures an emulator's."""
    parts = []
    for s in sources:
        m = s.metadata or {}
        if s.kind == "reference":
            parts.append(f"{s.name}: {m.get('host', 'published figures')} (published means)")
            continue
        what = ", ".join(str(x) for x in (m.get("arch"), m.get("cpu_model")) if x)
        flags = []
        targets = m.get("targets") or {}
        if any(isinstance(f, dict) and f.get("emulated") for f in targets.values()) or m.get("emulated"):
            flags.append("emulated board (QEMU TCG): read ratios, not times")
        if m.get("kvm") == "software":
            flags.append("software KVM: guest code emulated")
        if "tcg" in {a.lower() for a in caveats.accelerators(m, s.records, "qemu")}:
            flags.append("qemu under TCG (emulated CPU)")
        parts.append(f"{m.get('host', s.name)} ({what})" + (": " + "; ".join(flags) if flags else ""))
    return " | ".join(dict.fromkeys(parts))


def _series_of_env(df: pd.DataFrame, source: str) -> dict:
    """env -> the series that stands for it in the verdict (the first in the study's order)."""
    rows = df[df["source"] == source]
    out = {}
    for s in data.series_order(rows):
        env = rows.loc[rows["series"] == s, "env"].iloc[0]
        out.setdefault(env, s)
    return out


def _run_configs(rows, series: dict) -> dict:
    """env -> its cells' configuration as run (the first cell's), where the summary has it."""
    import json
    out = {}
    if "run_config" not in rows:
        return out
    for env, s in series.items():
        for text in rows.loc[rows["series"] == s, "run_config"]:
            try:
                out[env] = json.loads(text) if isinstance(text, str) and text else {}
                break
            except ValueError:
                continue
    return out


def measured_designs(df, samples, src, wls) -> tuple[list[Design], dict]:
    series = _series_of_env(df, src.name)
    rows = df[df["source"] == src.name]
    run_configs = _run_configs(rows, series)
    cav = env_caveats(src.metadata, src.records, series, run_configs)
    native = {}
    if NATIVE in series:
        for size, op in wls:
            hit = rows[(rows["series"] == series[NATIVE]) & (rows["size_bytes"] == size) & (rows["op"] == op)]
            if len(hit):
                native[(size, op)] = float(hit["mean_per_op_s"].iloc[0])
    designs = []
    for env, s in sorted(series.items(), key=lambda kv: data.env_rank(kv[0])):
        d = Design(f"{env} (native)" if env == NATIVE else env, env,
                   "native" if env == NATIVE else "measured", cav.get(env, ""),
                   durable=run_configs.get(env, {}).get("flush") != "none")
        for size, op in wls:
            hit = rows[(rows["series"] == s) & (rows["size_bytes"] == size) & (rows["op"] == op)]
            if not len(hit):
                continue
            t = float(hit["mean_per_op_s"].iloc[0])
            base = native.get((size, op))
            cell = {"time": t, "ratio": t / base if base else math.nan, "low": math.nan, "high": math.nan}
            if base and env != NATIVE and len(samples):
                a = samples[(samples["series"] == series[NATIVE]) & (samples["size_bytes"] == size) & (samples["op"] == op)]
                b = samples[(samples["series"] == s) & (samples["size_bytes"] == size) & (samples["op"] == op)]
                if len(a) and len(b):
                    low, high = cmp.bootstrap_ratio_ci(a["seconds"], a["repetitions"], b["seconds"], b["repetitions"])
                    cell.update(low=low, high=high)
            d.cells[(size, op)] = cell
        designs.append(d)
    return designs, native


def _predict_defaults(cal, wanted: list[tuple[str, dict]]) -> dict:
    """(scenario, params) -> the model's prediction frame (or None when it cannot)."""
    from report import whatif
    out = {}
    for (name, params), res in zip(wanted, whatif.predict_many(cal, wanted)):
        out[(name, tuple(sorted(params.items())))] = None if isinstance(res, Exception) else res
    return out


def fix_designs(cal, scenarios: dict, verified: list, measured: dict, wls) -> list[Design]:
    """A row per fix: each scenario at its defaults, and each verified (scenario, values)."""
    import model
    wanted = []
    for name, sc in scenarios.items():
        if name == "baseline" or not set(sc.envs) & set(measured):
            continue
        wanted.append((name, sc.parse({})))
    for v in verified:        # a verified fix at other values than the defaults: a row of its own
        name = v.verify.get("scenario")
        if name not in scenarios or not set(model.SCENARIOS[name].envs) & set(measured):
            continue
        try:
            values = model.SCENARIOS[name].parse(dict(v.verify.get("values") or {}))
        except Exception:      # values this model no longer accepts: the verify section says so
            continue
        if (name, values) not in wanted:
            wanted.append((name, values))
    frames = _predict_defaults(cal, wanted) if wanted else {}
    designs = []
    for name, params in wanted:
        sc = model.SCENARIOS[name]
        frame = frames.get((name, tuple(sorted(params.items()))))
        held = sc.parse(params)
        label = f"{name} ({', '.join(f'{k}={x}' for k, x in held.items())})" if held else name
        for env in [e for e in sc.envs if e in measured]:
            durable = held["flush"] != "none" if "flush" in held else measured[env].durable
            d = Design(label + (f" on {env}" if len(sc.envs) > 1 else ""), env, "fix", measured[env].caveat,
                       durable=durable)
            if frame is not None and len(frame):
                rows = frame[frame["env"] == env]
                for size, op in wls:
                    hit = rows[(rows["size_bytes"] == size) & (rows["op"] == op)]
                    base = measured[env].cells.get((size, op))
                    if not len(hit) or base is None or not np.isfinite(base["ratio"]):
                        continue
                    r = hit.iloc[0]
                    k = base["ratio"] / float(r["baseline_s"])
                    d.cells[(size, op)] = {"ratio": k * float(r["predicted_s"]), "low": k * float(r["pi95_low_s"]),
                                           "high": k * float(r["pi95_high_s"]), "measured": math.nan,
                                           "changed": abs(float(r["predicted_s"]) / float(r["baseline_s"]) - 1) > 1e-3}
            _attach_measured(d, name, held, env, verified, measured[env], wls)
            if any(c.get("changed") or np.isfinite(c.get("measured", math.nan)) for c in d.cells.values()):
                designs.append(d)
    return designs


def _attach_measured(d: Design, name, held, env, verified, base: Design, wls) -> None:
    """The speed-up a verify campaign measured beside its baseline (its fix rows'
    measured_speedup, verification/compare.py), applied to the environment's measured ratio."""
    import model
    for v in verified:
        comp = v.comparison
        if v.verify.get("scenario") != name or "measured_speedup" not in comp or "role" not in comp:
            continue
        if model.SCENARIOS[name].parse(dict(v.verify.get("values") or {})) != held:
            continue
        fixes = comp[(comp["role"] == "fix") & (comp["env"] == env)]
        for size, op in wls:
            rows = fixes[(fixes["size_bytes"] == size) & (fixes["op"] == op)]
            hit = rows["measured_speedup"].astype(float)
            ok = np.isfinite(hit) & (hit > 0)
            b = base.cells.get((size, op))
            if ok.any() and b is not None and np.isfinite(b["ratio"]):
                r = rows[ok].iloc[0]
                cell = d.cells.setdefault((size, op), {"ratio": math.nan, "low": math.nan, "high": math.nan})
                cell["measured"] = b["ratio"] / float(r["measured_speedup"])
                # the measured speed-up's bootstrap interval, where the verify had batches for one
                lo, hi = (float(r.get("measured_speedup_ci95_high", math.nan)),
                          float(r.get("measured_speedup_ci95_low", math.nan)))
                cell["measured_low"] = b["ratio"] / lo if lo > 0 else math.nan
                cell["measured_high"] = b["ratio"] / hi if hi > 0 else math.nan


def best(designs: list[Design], wl) -> tuple[str, float, str] | None:
    """(label, ratio, how) of the isolated design (not native) nearest native at a workload.

    Measured designs (environments, verified fixes) compete on their measured ratio; a fix
    only predicted wins only if its whole 95% interval lies below the best measured ratio
    (a point prediction with a wide interval does not beat a measurement). A design whose
    write_sync does not reach the disk (hvt's tender with flush=none) is not a candidate for
    write_sync."""
    measured, predicted = [], []
    for d in designs:
        c = d.cells.get(wl)
        if d.kind == "native" or c is None or (wl[1] == "write_sync" and not d.durable):
            continue            # a write_sync that syncs nothing is no candidate
        if d.kind == "measured" and np.isfinite(c["ratio"]):
            measured.append((c["ratio"], d.label))
        elif np.isfinite(c.get("measured", math.nan)):
            measured.append((c["measured"], d.label + " (verified)"))
        elif np.isfinite(c.get("ratio", math.nan)) and np.isfinite(c.get("high", math.nan)):
            predicted.append((c["ratio"], c["high"], d.label))
    top = min(measured) if measured else None
    sure = [p for p in predicted if top is None or p[1] < top[0]]
    if sure:
        ratio, _, label = min(sure)
        return label, ratio, "predicted"
    if top is None:
        return None
    return top[1], top[0], "measured"


def _cell_text(d: Design, c: dict | None) -> str:
    if c is None:
        return "—"
    if d.kind == "native":
        return f"{format_time(c['time'])} · 1×"
    if d.kind == "measured":
        return f"{format_time(c['time'])} · {_ratio(c['ratio'])}{_interval(c['low'], c['high'])}"
    text = f"{_ratio(c['ratio'])}{_interval(c['low'], c['high'])}" if np.isfinite(c["ratio"]) else ""
    if np.isfinite(c.get("measured", math.nan)):
        text += ("; " if text else "") + (f"measured {_ratio(c['measured'])}"
                                          f"{_interval(c.get('measured_low'), c.get('measured_high'))}")
    return text or "—"


def _wl_label(size: int, op: str, large: bool) -> str:
    what = format_size(size) + (" (large file)" if large else "")
    return f"{what} {op}"


def section(sources, df, samples, cal=None, scenarios=None, verified=None, plots=None) -> Section | None:
    """The verdict section, or None when there is nothing measured to judge."""
    sec = Section("verdict", "Verdict: is an isolated environment fit for this device?")
    src = primary(sources)
    if src is None or not len(df):
        return None
    rows = df[df["source"] == src.name]
    wls = workloads(rows)
    designs, native = measured_designs(df, samples, src, wls)
    if not native:
        sec.add(Paragraph(f"{src.name} has no native ({NATIVE}) figures: no ratio to native can be given."))
    by_env = {d.env: d for d in designs}
    if cal is not None and scenarios and native:
        designs += fix_designs(cal, scenarios, verified or [], by_env, wls)
    large = {wl: wl[0] != SMALL for wl in wls}
    columns = ["design"] + [_wl_label(*wl, large[wl]) for wl in wls]
    table_rows = []
    for d in designs:
        label = d.label + (f" — {d.caveat}" if d.caveat and d.kind != "fix" else "")
        cells = [Cell(label, {"design": d.label, "kind": d.kind, "env": d.env}, header=True)]
        for wl in wls:
            c = d.cells.get(wl)
            attrs = {"design": d.label, "size": wl[0], "op": wl[1]}
            if c is not None:
                attrs.update(ratio=repr(float(c["ratio"])) if np.isfinite(c["ratio"]) else "")
                if np.isfinite(c.get("measured", math.nan)):
                    attrs["measured-ratio"] = repr(float(c["measured"]))
            cells.append(Cell(_cell_text(d, c), attrs))
        table_rows.append(cells)
    if native:
        bests = [best(designs, wl) for wl in wls]
        table_rows.append([Cell("best isolated design", {"kind": "best"}, header=True)]
                          + [Cell("—" if b is None else f"{b[0]}: {_ratio(b[1])} native ({b[2]})",
                                  {"kind": "best", "ratio": "" if b is None else repr(float(b[1])),
                                   "best": "" if b is None else b[0]})
                             for b in bests])
    answer = answers(designs, wls, large)
    if answer:
        sec.add(Paragraph("In short: " + " ".join(answer)))
    where = f"{src.name}" + (f", {src.metadata.get('host')}" if src.metadata.get("host") else "")
    sec.add(Table(f"Time per operation and ratio to native ({NATIVE} = 1×) on {where}", columns, table_rows,
                  kind="verdict", attrs={"source": src.name}))
    sec.add(Paragraph(
        "Environments: mean time per operation, measured · its ratio to native with a 95% bootstrap "
        "interval over batches. Fixes (one row each, naming every parameter it holds; it inherits its "
        "environment's caveat): predicted ratio to native [95% prediction interval] = the environment's "
        "measured ratio times the fix's predicted speed-up; 'measured' = times the speed-up an "
        "`invoke verify` campaign measured beside its baseline [that speed-up's 95% bootstrap interval]. The large-file case is the largest size "
        f"the environments share here (the study's is {format_size(STUDY_LARGE)})."))
    if cal is not None:
        sentences = where_time_goes(cal, designs, wls)
        if sentences:
            sec.add(Paragraph("Where the time goes (the model's per-stage ledger, calibrated): "
                              + " ".join(sentences)))
    if plots is not None:
        sec.add(Figure("verdict", plots(designs, wls, large),
                       "Ratio to native per workload (log scale; 1× = native). Bars: environments as "
                       "measured (95% CI); hatched: fixes as predicted (95% prediction interval); "
                       "diamonds: fixes as measured by a verify campaign.", kind="verdict"))
    return sec


def answers(designs, wls, large) -> list[str]:
    """A sentence per isolated environment: its range against native, and its best fix where
    it is furthest from native."""
    out = []
    for d in designs:
        if d.kind != "measured":
            continue
        ratios = {wl: c["ratio"] for wl, c in d.cells.items() if np.isfinite(c["ratio"])
                  and (d.durable or wl[1] != "write_sync")}       # a write_sync that syncs nothing
        if not ratios:
            continue
        worst = max(ratios, key=ratios.get)
        text = (f"{d.env} runs at {_ratio(min(ratios.values()))} to {_ratio(ratios[worst])} native "
                f"(worst: {_wl_label(*worst, large.get(worst, False))})")
        fixes = [(f.cells[worst]["ratio"], f) for f in designs
                 if f.kind == "fix" and f.env == d.env and worst in f.cells and np.isfinite(f.cells[worst]["ratio"])
                 and f.cells[worst]["ratio"] < ratios[worst] * 0.99]
        if not fixes:
            text += "; no fix the model knows makes that workload faster"
        else:
            r, f = min(fixes, key=lambda x: x[0])
            c = f.cells[worst]
            text += (f"; its best fix there, {f.label}, is predicted at {_ratio(r)}"
                     f"{_interval(c['low'], c['high'])}")
            if np.isfinite(c.get("measured", math.nan)):
                text += f" and measured at {_ratio(c['measured'])}"
        out.append(text + (f" ({d.caveat})." if d.caveat else "."))
    return out


def where_time_goes(cal, designs, wls) -> list[str]:
    """One sentence per measured environment, at the workload where it is furthest from native."""
    from model.ledger import cell_ledger, sentence
    fitted = {w["env"] for w in cal.workloads()}
    out = []
    for d in designs:
        if d.kind == "fix" or d.env not in fitted or not d.cells:
            continue
        wl = max(d.cells, key=lambda k: d.cells[k]["ratio"] if np.isfinite(d.cells[k]["ratio"]) else 0)
        try:
            total, stages = cell_ledger(cal, d.env, *wl)
        except Exception as e:         # a configuration the model refuses: say so, not crash
            out.append(f"{d.env}: the model cannot break it down ({type(e).__name__}).")
            continue
        ratio = d.cells[wl]["ratio"]
        at = f"{format_size(wl[0])} {wl[1]}" + (f", {_ratio(ratio)} native" if np.isfinite(ratio) and d.kind != "native" else "")
        out.append(f"{d.env} ({at}): {sentence(stages, total)}.")
    return out
