"""Gathering what a report shows: campaigns, the study's figures, a calibration.

A *source* is one set of measured figures: a campaign directory (per-batch samples,
so intervals and tests are possible) or the study's published means (no samples).
Everything downstream works on the concatenated per-cell summary of all sources,
whose rows carry a `series` label: the column a figure goes into.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from edgeio import paths, store
from edgeio.errors import UserError
from edgeio.units import format_size

# Column order of the study's tables; other environments follow alphabetically.
ENV_ORDER = ("linux", "docker", "qemu", "hvt", "xen")
OP_ORDER = ("write_sync", "write", "read")
REFERENCE_NAME = "study"

# The study's machine (from the reference environment table): every figure that
# leaves the tool says where it came from.
STUDY_METADATA = {
    "source": "published study, Tables 2 and 3 (mean seconds per operation)",
    "host": "Raspberry Pi 4 Model B",
    "arch": "aarch64",
    "os": "Ubuntu 20.04 LTS",
    "kernel": "5.4.0-1026 (xen guest: 5.10.0-rc3)",
    "block_device": "SD card",
    "kvm": "hardware",
    "environments": {
        "linux": {"memory": "4 GiB"}, "docker": {"memory": "4 GiB"},
        "qemu": {"memory": "2 GiB", "accel": "kvm"}, "hvt": {"memory": "512 MiB",
        "note": "tender fsyncs after each block write"}, "xen": {"memory": "1 GiB"},
    },
}

SERIES_KEYS = ["source", "env", "target", "arch", "config"]


@dataclass
class Source:
    name: str
    kind: str                     # "campaign" or "reference"
    metadata: dict
    samples: pd.DataFrame         # one row per batch (empty for the reference)
    summary: pd.DataFrame         # one row per cell
    path: Path | None = None
    records: dict = field(default_factory=dict)


def env_rank(env: str) -> tuple:
    return (ENV_ORDER.index(env), "") if env in ENV_ORDER else (len(ENV_ORDER), env)


def op_rank(op: str) -> tuple:
    return (OP_ORDER.index(op), "") if op in OP_ORDER else (len(OP_ORDER), op)


# -- campaigns -------------------------------------------------------------------

def is_campaign_dir(path: Path) -> bool:
    return (path / "metadata.json").is_file() and (path / "plan.json").is_file()


def newest_campaign(root: Path | None = None) -> Path:
    """The most recently created campaign directory under the results directory."""
    root = Path(root or paths.results_dir())
    found = []
    if root.is_dir():
        # Campaigns sit at most a few levels down (results/<name>, results/campaigns/<name>).
        for pattern in ("*/plan.json", "*/*/plan.json", "*/*/*/plan.json"):
            found += [p.parent for p in root.glob(pattern) if is_campaign_dir(p.parent)]
    # verify campaigns (results/verify/) have their own section; the default is a measurement
    found = [p for p in found if p.parent.name != "verify"] or found
    if not found:
        raise UserError(f"no campaign directory under {root}: run `invoke measure` first, "
                        "name a campaign directory, or use --reference")
    return max(found, key=lambda p: (p / "plan.json").stat().st_mtime)


def load_campaign(path) -> Source:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such campaign directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a campaign directory (a file)")
    campaign = store.Campaign.open(path)
    metadata = campaign.metadata()
    records = campaign.records()
    try:
        samples = campaign.samples()
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: corrupt results file ({type(e).__name__}: {e})") from None
    summary = store.summarize(samples) if len(samples) else pd.DataFrame(columns=store.SUMMARY_KEYS)
    name = path.name
    samples = samples.assign(source=name)
    summary = summary.assign(source=name)
    return Source(name=name, kind="campaign", metadata=metadata, samples=samples,
                  summary=summary, path=path, records=records)


# -- the study's figures ---------------------------------------------------------

def reference_results() -> pd.DataFrame:
    """The study's figures as shipped by calibration/ (env,size_bytes,op,mean_per_op_s,reps)."""
    try:
        from calibration import load_results
    except ImportError:
        load_results = None
    if load_results is not None:
        return load_results(None)
    # calibration/ does not offer the loader yet: read its bundled copy directly.
    path = paths.PROJECT_ROOT / "calibration" / "data" / "pi4_file_access.csv"
    if not path.is_file():
        raise UserError(f"the study's figures are not bundled ({path} missing)")
    return pd.read_csv(path)


def load_reference() -> Source:
    df = reference_results()
    missing = {"env", "size_bytes", "op", "mean_per_op_s"} - set(df.columns)
    if missing:
        raise UserError(f"the study's figures lack columns {', '.join(sorted(missing))}")
    summary = pd.DataFrame({
        "env": df["env"], "target": "pi4", "arch": "aarch64",
        "size_bytes": df["size_bytes"].astype(int), "op": df["op"],
        "io_size_bytes": 0, "config": df["config"] if "config" in df else "{}",
        "n_batches": 0, "repetitions": df["reps"] if "reps" in df else 0,
        "mean_per_op_s": df["mean_per_op_s"].astype(float),
        "median_per_op_s": float("nan"), "mad_per_op_s": float("nan"),
        "ci95_low_s": float("nan"), "ci95_high_s": float("nan"),
        "cv": float("nan"), "warnings": "", "source": REFERENCE_NAME,
    })
    samples = pd.DataFrame(columns=store.SAMPLE_COLUMNS + ["source"])
    return Source(name=REFERENCE_NAME, kind="reference", metadata=study_metadata(),
                  samples=samples, summary=summary)


def study_metadata() -> dict:
    """The study's machine; environments from the bundled environment table when present."""
    meta = dict(STUDY_METADATA)
    path = paths.PROJECT_ROOT / "calibration" / "data" / "pi4_environments.csv"
    try:
        table = pd.read_csv(path)
        meta["environments"] = {
            r.env: {"description": r.description, "memory": format_size(int(r.guest_memory_bytes)),
                    "os": r.os, "kernel": r.kernel}
            for r in table.itertuples()}
    except (OSError, ValueError, AttributeError):
        pass     # not bundled, or another layout: keep the summary above
    return meta


# -- calibration and scenarios ---------------------------------------------------

def newest_calibration(root: Path | None = None) -> Path | None:
    """The newest parameter set `invoke calibrate` saved (results/calibrations/*.json), if any."""
    folder = Path(root or paths.results_dir()) / "calibrations"
    found = sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    return found[-1] if found else None


def load_calibration(path):
    """A calibration parameter set (calibration.load), with errors as one line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a directory, not a calibration file (give the JSON `invoke calibrate` saved)")
    if not path.is_file():
        raise UserError(f"{path}: no such calibration file")
    try:
        import calibration
        load = calibration.load
    except (ImportError, AttributeError):
        raise UserError("the calibration package is not available in this checkout") from None
    try:
        cal = load(path)
    except UserError:
        raise
    except (ValueError, KeyError, TypeError) as e:   # json errors are ValueErrors
        raise UserError(f"{path}: corrupt calibration file ({type(e).__name__}: {e})") from None
    cal.report_path = str(path)       # where it came from, for the report's first lines
    return cal


def scenarios() -> dict:
    """The model's what-if scenarios by name, or {} when the model is not available."""
    try:
        import model
        return dict(model.SCENARIOS)
    except (ImportError, AttributeError):
        return {}


# -- series labels ---------------------------------------------------------------

def pretty_config(config: str) -> str:
    """'{"blocks":"8"}' -> 'blocks=8'."""
    import json
    try:
        d = json.loads(config) if config else {}
    except (TypeError, ValueError):
        return str(config)
    if not isinstance(d, dict):
        return str(config)
    return ", ".join(f"{k}={v}" for k, v in d.items())


def measured(sources: list[Source]) -> pd.DataFrame:
    """All sources' cells, one row each, with a `series` label (a table column).

    The label is the environment, plus whatever tells two series of that environment
    apart (source, target, arch, config): short where the data allow it.
    """
    frames = [s.summary for s in sources if len(s.summary)]
    if not frames:
        return pd.DataFrame(columns=store.SUMMARY_KEYS + ["source", "series", "mean_per_op_s"])
    df = pd.concat(frames, ignore_index=True)
    df["config"] = df["config"].fillna("{}").astype(str)
    df["target"] = df["target"].fillna("").astype(str)
    df["arch"] = df["arch"].fillna("").astype(str)
    many_sources = len({s.name for s in sources}) > 1
    labels = {}
    # What tells series apart is judged within one source: across sources the source says it.
    for _, group in df.groupby(["env", "source"]):
        env = group["env"].iloc[0]
        keys = group[SERIES_KEYS].drop_duplicates()
        vary = [k for k in ("target", "arch", "config") if keys[k].nunique() > 1]
        for _, k in keys.iterrows():
            parts = [pretty_config(k[v]) if v == "config" else k[v] for v in vary]
            parts = [p for p in parts if p]
            label = env + (f" ({'; '.join(parts)})" if parts else "")
            if many_sources:
                label += f" [{k['source']}]"
            labels[tuple(k)] = label
    df["series"] = [labels[tuple(r)] for r in df[SERIES_KEYS].itertuples(index=False)]
    # A series measured at several I/O sizes for one (size, op): one column per I/O size.
    split = set(df.loc[df.duplicated(["series", "size_bytes", "op"], keep=False), "series"])
    rows = df["series"].isin(split)
    df.loc[rows, "series"] = [f"{s} io={format_size(int(io)) if io else 'default'}"
                              for s, io in zip(df.loc[rows, "series"], df.loc[rows, "io_size_bytes"])]
    return df


def series_order(df: pd.DataFrame) -> list[str]:
    """Series in the study's column order: by environment, then by source as given."""
    sources = list(dict.fromkeys(df["source"]))
    first = df.drop_duplicates("series")
    return sorted(first["series"], key=lambda s: (
        env_rank(first.loc[first["series"] == s, "env"].iloc[0]),
        sources.index(first.loc[first["series"] == s, "source"].iloc[0]), s))


def per_op_samples(sources: list[Source], df: pd.DataFrame) -> pd.DataFrame:
    """Per-batch samples of every campaign, labelled with the same series as `df`."""
    frames = [s.samples for s in sources if s.kind == "campaign" and len(s.samples)]
    if not frames:
        return pd.DataFrame(columns=["series", "size_bytes", "op", "seconds", "repetitions", "per_op_s"])
    samples = pd.concat(frames, ignore_index=True)
    samples["config"] = samples["config"].fillna("{}").astype(str)
    for col in ("target", "arch"):
        samples[col] = samples[col].fillna("").astype(str)
    cell_keys = ["source"] + store.SUMMARY_KEYS
    samples["io_size_bytes"] = samples["io_size_bytes"].astype(int)
    labels = df[cell_keys + ["series"]].astype({"io_size_bytes": int})
    samples = samples.merge(labels, on=cell_keys, how="inner")
    samples["per_op_s"] = samples["seconds"] / samples["repetitions"]
    return samples
