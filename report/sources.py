"""The report's sources: each target's machine facts as a table (what, value, where from),
and the campaign's own record (command, commit, tool versions, times) in a few rows.

Where each fact comes from is measure/targets.py machine_facts and measure/facts.py gather
(docs/formats.md, "Machine facts"); this table only names it for a reader.
"""

from edgeio.units import format_size
from report.document import Cell, Section, Table

# (key path in a target's facts, what it is, how it is shown, where it comes from)
FACTS = [
    ("host", "host name", str, "uname -n"),
    ("arch", "architecture", str, "uname -m"),
    ("cpu_model", "CPU", str, "/proc/cpuinfo (model name; on a Pi its Model line)"),
    ("cpus", "CPUs", str, "nproc (else /proc/cpuinfo processors)"),
    ("memory_bytes", "memory", "size", "/proc/meminfo MemTotal"),
    ("cpu_caches.l1d_bytes", "L1 data cache", "size", "/sys/devices/system/cpu/cpu0/cache"),
    ("cpu_caches.l2_bytes", "L2 cache", "size", "/sys/devices/system/cpu/cpu0/cache"),
    ("cpu_caches.l3_bytes", "L3 cache", "size", "/sys/devices/system/cpu/cpu0/cache"),
    ("page_bytes", "page size", "size", "getconf PAGESIZE"),
    ("os", "operating system", str, "/etc/os-release PRETTY_NAME"),
    ("kernel", "kernel", str, "uname -r"),
    ("kvm", "KVM", "kvm", "/dev/kvm and the CPU flags vmx/svm in /proc/cpuinfo"),
    ("emulated", "emulated by QEMU (TCG)", "bool", "DMI vendor, device tree and clocksource (measure/facts.py)"),
    ("block_device.name", "block device", str, "/proc/self/mountinfo of the probe directory, /sys/dev/block"),
    ("block_device.kind", "device kind", str, "/sys/block/DEV (rotational, name)"),
    ("block_device.model", "device model", str, "/sys/block/DEV/device/model"),
    ("block_device.readahead_bytes", "readahead", "size", "/sys/block/DEV/queue/read_ahead_kb"),
    ("block_device.max_request_bytes", "largest request", "size", "/sys/block/DEV/queue/max_sectors_kb"),
    ("block_device.scheduler", "I/O scheduler", str, "/sys/block/DEV/queue/scheduler"),
    ("filesystem.type", "filesystem", str, "/proc/self/mountinfo"),
    ("filesystem.path", "probe directory", str, "where the probes write (PROBE_DIR)"),
    ("vm.dirty_ratio", "vm.dirty_ratio", "pct", "/proc/sys/vm/dirty_ratio"),
    ("vm.dirty_background_ratio", "vm.dirty_background_ratio", "pct", "/proc/sys/vm/dirty_background_ratio"),
    ("vm.dirty_bytes", "vm.dirty_bytes", "size0", "/proc/sys/vm/dirty_bytes"),
]

# Facts of the campaign itself, not of a machine.
RECORD = [
    ("campaign", "campaign", "the directory name"),
    ("command", "command", "as typed"),
    ("git_commit", "edgeio commit", "git rev-parse HEAD"),
    ("probe_version", "probe version", "probes/version.h"),
    ("start_time", "started", "clock of the controlling host"),
    ("end_time", "ended", "clock of the controlling host"),
]


def _get(facts: dict, path: str):
    value = facts
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _show(value, how) -> str:
    if how == "size":
        from report.build import param_value
        return param_value(value, "B") if isinstance(value, (int, float)) and value > 0 else str(value)
    if how == "size0":
        return "0 (the ratio applies)" if value == 0 else _show(value, "size")
    if how == "pct":
        return f"{value}%"
    if how == "bool":
        return "yes" if value else "no"
    if how == "kvm":
        return {"software": "software (no VT-x/AMD-V: guest kernel code is emulated)",
                "hardware": "hardware", "absent": "absent"}.get(str(value), str(value))
    return str(value)


def _recorded_source(facts: dict, path: str) -> str | None:
    """Where the target said a fact came from, where it records that (cpu_caches.source:
    sysfs, the device tree or a pointer-chase sweep measured on the target)."""
    group, _, key = path.partition(".")
    recorded = _get(facts, f"{group}.source") if key else None
    return recorded.get(key) if isinstance(recorded, dict) and isinstance(recorded.get(key), str) else None


def fact_rows(facts: dict) -> list[list[Cell]]:
    rows = []
    for path, what, how, where in FACTS:
        value = _get(facts, path)
        if value in (None, "", {}):
            continue
        rows.append([Cell(what, {"fact": path}, header=True), Cell(_show(value, how)),
                     Cell(_recorded_source(facts, path) or where)])
    return rows


def _targets(metadata: dict) -> dict:
    """target name -> its facts; an old campaign without `targets` has them at the top."""
    targets = metadata.get("targets")
    if isinstance(targets, dict) and targets:
        return {t: f for t, f in targets.items() if isinstance(f, dict)}
    return {metadata.get("target") or "local": metadata}


def _env_rows(metadata: dict) -> list[list[Cell]]:
    """One row per environment: what ran (its own description, memory, kernel, image...)."""
    envs = metadata.get("environments") or {}
    rows = []
    items = envs.items() if isinstance(envs, dict) else ((e.get("env", "?"), e) for e in envs if isinstance(e, dict))
    for name, info in items:
        if not isinstance(info, dict):
            continue
        parts = []
        params = info.get("params") if isinstance(info.get("params"), dict) else {}
        given = ", ".join(f"{k}={v}" for k, v in params.items() if v not in (None, ""))
        if given:
            parts.append(f"parameters: {given}")
        for k, v in info.items():
            if k == "env" or isinstance(v, (dict, list)) or v in (None, ""):
                continue
            if k.endswith("_bytes") and isinstance(v, (int, float)) and v > 0:
                v = format_size(int(v))
            parts.append(f"{k.replace('_bytes', '').replace('_', ' ')}: {v}")
        rows.append([Cell(str(name), {"env": str(name)}, header=True), Cell("; ".join(parts[:9]) or "—")])
    return rows


def section(sources) -> Section:
    sec = Section("sources", "Sources: the machines and campaigns")
    for s in sources:
        meta = dict(s.metadata or {})
        where = f" ({s.path})" if s.path else ""
        if s.kind == "reference":
            rows = [[Cell(k.replace("_", " "), {"fact": k}, header=True), Cell(str(v)),
                     Cell("the study's environment table")]
                    for k, v in meta.items() if not isinstance(v, (dict, list))]
            sec.add(Table(f"{s.name}: machine facts", ["what", "value", "where it came from"], rows,
                          kind="metadata", attrs={"source": s.name}))
        else:
            for target, facts in _targets(meta).items():
                sec.add(Table(f"{s.name}{where}: machine facts of target {target}",
                              ["what", "value", "where it came from"], fact_rows(facts),
                              kind="metadata", attrs={"source": s.name, "target": target}))
            record = [[Cell(what, {"fact": key}, header=True), Cell(str(meta[key])), Cell(how)]
                      for key, what, how in RECORD if meta.get(key) not in (None, "")]
            versions = meta.get("versions")
            if isinstance(versions, dict) and versions:
                record.append([Cell("tool versions", {"fact": "versions"}, header=True),
                               Cell(", ".join(f"{k} {v}" for k, v in versions.items())),
                               Cell("the controlling host's Python packages")])
            if record:
                sec.add(Table(f"{s.name}: the campaign", ["what", "value", "where it came from"], record,
                              kind="campaign", attrs={"source": s.name}))
        envs = _env_rows(meta)
        if envs:
            sec.add(Table(f"{s.name}: environments as they ran", ["environment", "configuration"], envs,
                          kind="environments", attrs={"source": s.name}))
    return sec
