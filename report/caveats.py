"""What makes figures incomparable: pure checks on metadata, one sentence each.

A reader must see, before any number, that a qemu figure came from an emulated CPU
(TCG) or a hypervisor that emulates guest kernel code (software KVM), or that two
columns were measured on different hosts, architectures or devices.
"""

import json

from edgeio.units import format_size

# Environments whose figures depend on how the CPU virtualizes.
VIRTUALIZED = {"qemu", "hvt", "xen"}
# Facts that must agree for two sources' figures to be compared directly.
MACHINE_FACTS = ("host", "arch", "cpu_model", "kernel", "block_device", "filesystem")


def _text(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def env_metadata(metadata: dict, env: str) -> dict:
    """Per-environment metadata, whether stored as {env: {...}} or [{env: ..., ...}]."""
    envs = metadata.get("environments") or {}
    if isinstance(envs, dict):
        merged = {}
        # Keys are the environment's name, or "env@target" when a campaign has several targets.
        for key, found in envs.items():
            if (key == env or str(key).split("@")[0] == env) and isinstance(found, dict):
                merged.update(found)
        return merged
    if isinstance(envs, list):
        for item in envs:
            if isinstance(item, dict) and item.get("env", item.get("name")) == env:
                return item
    return {}


def accelerators(metadata: dict, records: dict, env: str = "qemu") -> set[str]:
    """Accelerators an environment used, from campaign and per-cell metadata."""
    found = set()
    acc = env_metadata(metadata, env).get("accel")
    if acc:
        found.add(str(acc))
    for rec in (records or {}).values():
        cell = rec.get("cell") or {}
        if cell.get("env") == env and isinstance(rec.get("env_metadata"), dict):
            acc = rec["env_metadata"].get("accel")
            if acc:
                found.add(str(acc))
    return found


def source_warnings(name: str, metadata: dict, envs: set[str], records: dict | None = None) -> list[str]:
    """Warnings about one source on its own."""
    out = []
    virtual = sorted(envs & VIRTUALIZED)
    if metadata.get("kvm") == "software" and virtual:
        out.append(f"{name}: /dev/kvm is a software hypervisor on {metadata.get('host', 'this host')} "
                   f"(no VT-x/AMD-V): guest kernel code is emulated, so {', '.join(virtual)} figures "
                   "are not comparable with hardware KVM.")
    if metadata.get("kvm") == "absent" and "hvt" in envs:
        out.append(f"{name}: no /dev/kvm on {metadata.get('host', 'this host')}, yet hvt cells were recorded.")
    for env in sorted(envs & {"qemu"}):
        if "tcg" in {a.lower() for a in accelerators(metadata, records, env)}:
            out.append(f"{name}: {env} ran under TCG (an emulated CPU, no KVM): its figures measure "
                       "the emulator, not a virtual machine on hardware.")
    return out


def machine_fact(metadata: dict, fact: str):
    """A machine fact of a campaign; block devices may be stored per environment."""
    value = metadata.get(fact)
    if value in (None, "", {}) and fact == "block_device":
        per_env = metadata.get("block_devices") or {}
        if isinstance(per_env, dict) and per_env:
            value = ", ".join(sorted({str(v) for v in per_env.values()}))
    if value in (None, "", {}) and fact == "filesystem":
        envs = metadata.get("environments") or {}
        if isinstance(envs, dict):
            found = sorted({str(e["filesystem"]) for e in envs.values()
                            if isinstance(e, dict) and e.get("filesystem")})
            value = ", ".join(found) if found else None
    return value


def target_warnings(name: str, metadata: dict) -> list[str]:
    """A campaign that ran on several machines mixes their figures in one table."""
    targets = metadata.get("targets") or {}
    if not isinstance(targets, dict) or len(targets) < 2:
        return []
    hosts = {t: f"{f.get('host', '?')} ({f.get('arch', '?')})" for t, f in targets.items() if isinstance(f, dict)}
    if len(set(hosts.values())) < 2:
        return []
    listed = "; ".join(f"{t}: {h}" for t, h in hosts.items())
    return [f"{name}: cells ran on different machines ({listed}): compare environments within a target."]


def emulated_warnings(name: str, metadata: dict) -> list[str]:
    """A target that is an emulated board (invoke testbed) runs every instruction in QEMU's TCG."""
    facts = dict(metadata.get("targets") or {})
    if not facts and metadata.get("emulated"):
        facts = {metadata.get("target") or metadata.get("host") or "target": metadata}
    out = []
    for target, f in facts.items():
        if not isinstance(f, dict) or not f.get("emulated"):
            continue
        board = (f.get("testbed") or {}).get("board") if isinstance(f.get("testbed"), dict) else None
        what = f"an emulated {f.get('arch', '?')} board" + (f" (testbed {board})" if board else "")
        out.append(f"{name}: target {target} is {what} under QEMU's TCG emulator: every instruction, "
                   "its KVM and its disk are emulated, so absolute times say nothing about real hardware; "
                   "read its figures as ratios between environments on that board.")
    return out


def cross_warnings(sources: list[tuple[str, dict]]) -> list[str]:
    """Warnings when sources were measured on different machines or devices."""
    out = []
    if len(sources) < 2:
        return out
    for fact in MACHINE_FACTS:
        values = {name: _text(machine_fact(meta, fact)) for name, meta in sources
                  if machine_fact(meta, fact) not in (None, "")}
        if len(set(values.values())) > 1:
            listed = "; ".join(f"{n}: {v}" for n, v in values.items())
            out.append(f"sources differ in {fact.replace('_', ' ')} ({listed}): compare their figures as "
                       "ratios within a source, not across.")
    return out


def stability_warnings(name: str, summary) -> list[str]:
    """Cells whose batches were unstable (high CV, outliers), as the store flagged them."""
    if summary is None or not len(summary) or "warnings" not in summary:
        return []
    flagged = summary[summary["warnings"].fillna("").astype(str) != ""]
    if not len(flagged):
        return []
    cells = [f"{r.env} {format_size(int(r.size_bytes))} {r.op}" for r in flagged.itertuples()]
    listed = ", ".join(cells[:4]) + (f" and {len(cells) - 4} more" if len(cells) > 4 else "")
    return [f"{name}: {len(flagged)} of {len(summary)} cells have unstable batches ({listed}): "
            "their intervals are wide; see the per-cell notes."]


def calibration_warning(cal_source: str, campaign_names: list[str], campaign_paths: list[str]) -> list[str]:
    """The model explains the calibration's data, which may not be the reported campaign."""
    if not campaign_names:
        return []
    text = str(cal_source or "")
    if any(n and n in text for n in campaign_names + campaign_paths):
        return []
    return [f"the calibration was fitted on {text or 'an unnamed results set'}, not on the reported "
            "campaign(s): measured vs modelled and what-if figures refer to that data set."]
