"""Results sets for calibration: the bundled Pi 4 figures, a campaign directory, or a CSV.

A results set is a DataFrame, one row per cell: env, size_bytes, op, measured_s (the
statistic fitted), rel_se (its relative standard error; 0 where unknown), reps,
io_size_bytes, config (the cell's effective configuration, JSON), with attrs: source,
machine (the target's facts), profile, target, host, statistic.

Which statistic: a campaign's cells are fitted on their **median** time per op over
batches, a CSV on its mean_per_op_s (all that published figures give) unless it has a
median_per_op_s column. See model/README.md ("Which statistic is fitted").
"""

import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from edgeio.errors import UserError
from edgeio.records import PRIMITIVE_ENV, PRIMITIVES
from model.environments import ENVS, OPS, effective_config
from model.machine import campaign_cache_fallback, check as check_machine, load_profile, pi4_profile_path

REQUIRED = ["env", "size_bytes", "op", "mean_per_op_s"]
OPTIONAL = ["reps", "config", "io_size_bytes", "median_per_op_s", "ci95_low_s", "ci95_high_s"]
BUNDLED = "pi4_file_access.csv"
MEDIAN_SE = 1.2533          # sd of a sample median / sd of a sample mean (normal data)
MAD_SD = 1.4826             # sd / MAD (normal data)


def bundled_path() -> Path:
    return Path(str(resources.files("calibration") / "data" / BUNDLED))


def load_results(source: str | None = None, machine: str | None = None) -> pd.DataFrame:
    """None: the study's Pi 4 figures (with the Pi 4 machine profile); a directory: a
    campaign (facts from its metadata.json; `machine`, a profile file, overrides);
    a file: a CSV results set, whose machine is the profile `machine` names (required,
    except for the bundled figures)."""
    profile = load_profile(machine) if machine else None
    if source is None:
        df = _read_csv(bundled_path())
        df.attrs["source"] = f"bundled: study's Raspberry Pi 4 figures (calibration/data/{BUNDLED})"
        return _from_csv(df, "bundled Pi 4 figures", profile or load_profile(pi4_profile_path()))
    path = Path(source)
    if path.is_dir():
        return _from_campaign(path, profile)
    if not path.exists():
        raise UserError(f"{path}: no such results file or campaign directory")
    df = _read_csv(path)
    df.attrs["source"] = f"csv: {path.resolve()}"
    df = _check(df, str(path))            # bad rows are named before a missing machine
    if profile is None:
        if path.resolve() == bundled_path().resolve():
            profile = load_profile(pi4_profile_path())
        else:
            raise UserError(f"{path}: a CSV results set needs the machine it was measured on: "
                            "--machine PROFILE.json (format: calibration/data/pi4_machine.json)")
    return _from_csv(df, str(path), profile)


def _from_csv(df, where, profile) -> pd.DataFrame:
    df = _check(df, where)
    envs = profile.get("environments") or {}
    df["measured_s"] = df["median_per_op_s"] if "median_per_op_s" in df.columns else df["mean_per_op_s"]
    df["rel_se"] = _rel_se_from_ci(df) if "ci95_low_s" in df.columns else 0.0
    df["config"] = [json.dumps(effective_config(r.env, _cfg(getattr(r, "config", None), r), envs.get(r.env),
                                                profile["machine"]), sort_keys=True, default=str)
                    for r in df.itertuples()]
    df.attrs.update(machine=profile["machine"], profile=profile.get("profile"),
                    target=profile.get("profile"), host=profile["machine"].get("host", ""),
                    statistic="median_per_op_s" if "median_per_op_s" in df.columns else "mean_per_op_s")
    return df


def _cfg(text, row) -> dict:
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        c = {}
    else:
        try:
            c = json.loads(str(text))
        except ValueError:
            raise UserError(f"{row.env}: config {text!r} is not a JSON object") from None
    io = getattr(row, "io_size_bytes", None)
    if io is not None and io == io and io > 0:
        c.setdefault("io_size_bytes", int(io))
    return c


def _rel_se_from_ci(df) -> np.ndarray:
    half = (pd.to_numeric(df["ci95_high_s"], errors="coerce") - pd.to_numeric(df["ci95_low_s"], errors="coerce")) / 2
    rel = (half / 1.96 / df["mean_per_op_s"]).to_numpy(float)
    return np.where(np.isfinite(rel) & (rel > 0), rel, 0.0)


def _from_campaign(path: Path, profile) -> pd.DataFrame:
    from edgeio import store
    camp = store.Campaign.open(path)
    samples = camp.samples()                # read once: the summary and the primitives share it
    summary = camp.summary(samples)
    if summary.empty:
        raise UserError(f"{path}: campaign has no successful cells to calibrate on")
    targets = sorted(set(summary["target"]))
    if len(targets) > 1:
        raise UserError(f"{path}: campaign has cells of targets {', '.join(targets)}; a calibration is of one "
                        "machine: calibrate a campaign of one target")
    target = targets[0]
    meta = camp.metadata()
    facts = dict(profile["machine"]) if profile else campaign_facts(meta, target)
    notes = []
    if not profile:
        facts, note = campaign_cache_fallback(facts)
        notes += [note] if note else []
    check_machine(facts, f"{path} (target {target})")
    records = [r for r in camp.records().values() if r.get("status") == "ok"]
    df = summary.rename(columns={"repetitions": "reps"}).copy()
    df["env"] = df["env"].astype(str)
    # the median over batches, its standard error from the MAD (robust: see the module doc)
    med, mad, n = df["median_per_op_s"], df["mad_per_op_s"], df["n_batches"].clip(lower=1)
    df["measured_s"] = med.where(med > 0, df["mean_per_op_s"])
    df["rel_se"] = (MEDIAN_SE * MAD_SD * mad / np.sqrt(n) / df["measured_s"]).fillna(0.0)
    _primitives_at_fastest(df, samples)
    df["config"] = [json.dumps(effective_config(r.env, _record_config(records, r), None, facts),
                               sort_keys=True, default=str) for r in df.itertuples()]
    df.attrs["source"] = f"campaign: {path.resolve()}"
    df = _check(df, str(path))
    df.attrs.update(machine=facts, profile=(profile or {}).get("profile"), target=target, notes=notes,
                    host=facts.get("host") or meta.get("host", ""), statistic="median_per_op_s",
                    measured_fixed=guest_cache(records))
    return df


def _primitives_at_fastest(df: pd.DataFrame, samples: pd.DataFrame) -> None:
    """A primitive's row, in place: the median over its runs of each run's fastest batch,
    its relative standard error the runs' log spread / sqrt(runs). A primitive is guest
    code with no I/O, so a neighbour only adds to it: with two busy loops beside (bv11)
    the runs' medians of the call primitive were 40-43 us and of the ring's 44-85 us, their
    fastest batches 25.2-25.3 and 43.1-46.3 us, as on the quiet machine (25.3, 44.3), and a
    model composed of inflated primitives mispredicted what a fix changes. File cells keep
    the median: what they wait for (a flush, a device) varies of itself."""
    from edgeio.store import SUMMARY_KEYS
    prim = samples[samples["op"].isin(PRIMITIVES)]
    if prim.empty:
        return
    prim = prim.assign(per_op=prim["seconds"] / prim["repetitions"].clip(lower=1))
    for key, group in prim.groupby(SUMMARY_KEYS, sort=False):
        fastest = group.groupby("cell_id", sort=False)["per_op"].min()
        fastest = fastest[fastest > 0]
        if fastest.empty:
            continue
        row = np.ones(len(df), bool)
        for k, v in zip(SUMMARY_KEYS, key):
            row &= (df[k].astype(str) == str(v)).to_numpy()
        logs = np.log(fastest.to_numpy(float))
        se = float(np.std(logs, ddof=1) / math.sqrt(logs.size)) if logs.size > 1 else math.nan
        df.loc[row, "measured_s"] = float(np.median(fastest))
        if math.isfinite(se):
            df.loc[row, "rel_se"] = se


def guest_cache(records) -> dict:
    """The guest page cache's capacity, as a Linux guest (qemu) reported it after reading a
    file beyond its memory: {guest_cache_share: Cached / MemTotal, guest_kernel_reserve:
    memory - MemTotal} (medians over such cells), or {} when no cell read beyond memory."""
    share, kernel = [], []
    for rec in records:
        cell, meta, cfg = rec.get("cell") or {}, rec.get("metadata") or {}, rec.get("config") or {}
        mem, total, cached = cfg.get("memory_bytes"), meta.get("guest_mem_total_bytes"), meta.get("guest_cached_bytes")
        if (cell.get("env") != "qemu" or cell.get("op") != "read" or not all(
                isinstance(v, (int, float)) and v > 0 for v in (mem, total, cached))
                or int(cell.get("size_bytes", 0)) <= mem):
            continue
        share.append(min(1.0, cached / total))
        kernel.append(max(0.0, mem - total))
    if not share:
        return {}
    return {"guest_cache_share": float(np.median(share)), "guest_kernel_reserve": float(np.median(kernel))}


def campaign_facts(meta: dict, target: str) -> dict:
    """The target's facts from a campaign's metadata (INTERFACES.md), the campaign's own
    top-level facts for older campaigns."""
    t = (meta.get("targets") or {}).get(target) or {}
    facts = t.get("machine") if isinstance(t.get("machine"), dict) else t
    if not facts:
        facts = {k: meta.get(k) for k in ("host", "arch", "kernel", "cpu_model", "cpus", "memory_bytes", "kvm")}
    return dict(facts)


def _record_config(records, row) -> dict:
    """The effective configuration the cell's record carries (issue 10), else its --param
    values plus the probe options of the cell."""
    from edgeio.store import config_key
    for rec in records:
        cell = rec["cell"]
        if (cell.get("env") == row.env and int(cell.get("size_bytes", -1)) == int(row.size_bytes)
                and cell.get("op") == row.op and config_key(cell.get("params", {})) == row.config
                and cell.get("target", "local") == row.target):
            if isinstance(rec.get("config"), dict):
                return dict(rec["config"])
            c = dict(cell.get("params") or {})
            for k in ("sync", "direct", "cache"):
                if cell.get(k) is not None:
                    c[k] = cell[k]
            if int(row.io_size_bytes or 0) > 0:
                c["io_size_bytes"] = int(row.io_size_bytes)
            return c
    return {}


def _read_csv(path) -> pd.DataFrame:
    import warnings
    try:
        with warnings.catch_warnings():
            # a row longer than the header: pandas would make its first field the row's index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False)
    except pd.errors.ParserWarning:
        raise UserError(f"{path}: not a results CSV (a row has more fields than the header)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a results CSV ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def _check(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Columns present, sizes and times positive, environments and ops the model knows."""
    source = df.attrs.get("source", where)
    attrs = dict(df.attrs)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{where}: results set lacks column(s) {', '.join(missing)} "
                        f"(need {','.join(REQUIRED)}; optional {','.join(OPTIONAL)})")
    if df.empty:
        raise UserError(f"{where}: results set has no rows")
    df = df.copy()
    df["env"] = df["env"].astype(str).str.strip()
    df["op"] = df["op"].astype(str).str.strip()
    nums = ["size_bytes", "mean_per_op_s"] + [c for c in ("reps", "median_per_op_s", "measured_s")
                                              if c in df.columns]
    for col in nums:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    bad = df[~(df["size_bytes"] > 0) | ~(df["mean_per_op_s"] > 0) | ~np.isfinite(df["mean_per_op_s"])]
    if len(bad):
        r = bad.iloc[0]
        raise UserError(f"{where}: row {bad.index[0] + 2}: size_bytes and mean_per_op_s must be positive numbers "
                        f"(got {r['size_bytes']!r}, {r['mean_per_op_s']!r})")
    unknown = sorted(set(df["env"]) - set(ENVS))
    if unknown:
        raise UserError(f"{where}: the model has no environment {', '.join(unknown)} (known: {', '.join(ENVS)})")
    badops = sorted(set(df["op"]) - set(OPS) - set(PRIMITIVES))
    if badops:
        raise UserError(f"{where}: unknown op {', '.join(badops)} (known: {', '.join(OPS)}; "
                        f"primitives {', '.join(PRIMITIVES)})")
    prim = df[[PRIMITIVE_ENV.get(op, env) != env for env, op in zip(df["env"], df["op"])]]
    if len(prim):
        op = prim["op"].iloc[0]
        raise UserError(f"{where}: row {prim.index[0] + 2}: the primitive {op!r} is a micro-probe of "
                        f"{PRIMITIVE_ENV[op]}, not of {prim['env'].iloc[0]}")
    df["size_bytes"] = df["size_bytes"].astype("int64")
    df = df.reset_index(drop=True)
    df.attrs.update(attrs)
    df.attrs["source"] = source
    return df
