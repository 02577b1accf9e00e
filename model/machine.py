"""A target machine's facts, as the model needs them: structure and priors.

The facts are data (INTERFACES.md: metadata.json["targets"][T] as recorded by
measure.targets.machine_facts, or a machine profile file {"profile", "source",
"machine"}). This module turns them into the model's structural constants and the
machine-dependent priors; nothing here is any particular machine's value.

  structure(facts) -> {param: value}   structural constants (kind "fixed" in params.py)
  device_priors(facts) -> {param: value}  priors of the device stage, by device kind
  load_profile(path) -> dict             a machine profile file (UserError if unusable)
"""

import json
import math
from importlib import resources
from pathlib import Path

from edgeio.errors import UserError
from edgeio.parse import Invalid, check_choice, check_dict, check_int, check_number, check_str
from edgeio.units import KIB, MIB  # noqa: F401

# Generic Linux defaults, used when a fact is absent (null). Sources: Linux
# mm/page-writeback.c (vm_dirty_ratio 20, dirty_background_ratio 10),
# include/linux/mm.h VM_READAHEAD_PAGES (128 KiB), include/linux/blkdev.h
# BLK_DEF_MAX_SECTORS (1280 KiB since 4.x; 512 KiB before), x86/arm64 base pages 4 KiB.
GENERIC = {
    "page_bytes": 4096,
    "readahead_bytes": 128 * KIB,
    "max_request_bytes": 1280 * KIB,
    "dirty_ratio": 20,
    "dirty_background_ratio": 10,
}

# Facts without which the model cannot be built (no generic value is honest).
REQUIRED = ("memory_bytes", "cpu_caches")

PI4_PROFILE = "pi4_machine.json"


def pi4_profile_path() -> Path:
    return Path(str(resources.files("calibration") / "data" / PI4_PROFILE))


def load_profile(path) -> dict:
    """A machine profile file; returns the profile (with "machine" facts checked)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such machine profile") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a machine profile ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("machine"), dict):
        raise UserError(f"{path}: not a machine profile (needs a \"machine\" object of facts)")
    check_profile(data, str(path))
    data.setdefault("profile", path.stem)
    data.setdefault("source", str(path))
    return data


def pi4() -> dict:
    """The study's Raspberry Pi 4 profile (calibration/data/pi4_machine.json)."""
    return load_profile(pi4_profile_path())


def check_profile(data, where: str = "machine profile") -> None:
    """A machine profile file (calibration/data/pi4_machine.json's format): every field of
    the right type, else one line naming the file and the field; never a default in place
    of a wrong value."""
    from model.environments import ENVS
    try:
        check_dict(data, "(top level)", optional=False)
        for key in ("profile", "source", "environments_source"):
            check_str(data.get(key), key)
        check_dict(data.get("sources"), "sources")
        envs = data.get("environments")
        check_dict(envs, "environments")
        for env, config in (envs or {}).items():
            check_choice(env, f"environments.{env}", ENVS)
            check_dict(config, f"environments.{env}", optional=False)
            for key, value in config.items():
                field = f"environments.{env}.{key}"
                if key in ENV_INTS:
                    check_int(value, field, lo=ENV_INTS[key], optional=True)
                elif isinstance(value, (dict, list)):
                    raise Invalid(field, f"expected a string, number or true/false, got {type(value).__name__}")
                elif isinstance(value, float):
                    check_number(value, field)          # nan and inf are no setting
    except Invalid as e:
        raise UserError(f"{where}: {e.field}: {e.why}") from None
    check(data.get("machine"), where, "machine.")


# Environment settings a profile gives as whole numbers, with their least value.
ENV_INTS = {"memory_bytes": 1, "block_size": 512, "blocks_per_call": 1, "batch": 1}


def _check_types(facts: dict, prefix: str) -> None:
    """The facts' types and ranges (docs/formats.md, "Machine facts"); None = not known."""
    for key in ("host", "arch", "kernel", "os", "cpu_model"):
        check_str(facts.get(key), prefix + key)
    check_int(facts.get("cpus"), prefix + "cpus", lo=0, hi=1 << 20, optional=True)
    check_number(facts.get("memory_bytes"), prefix + "memory_bytes", above=0, optional=True)
    check_int(facts.get("page_bytes"), prefix + "page_bytes", lo=512, hi=1 << 30, optional=True)
    check_choice(facts.get("kvm"), prefix + "kvm", ("hardware", "software", "absent"))
    check_choice(facts.get("emulated"), prefix + "emulated", (True, False))
    caches = facts.get("cpu_caches")
    check_dict(caches, prefix + "cpu_caches")
    for key in ("l1d_bytes", "l2_bytes", "l3_bytes"):
        check_int((caches or {}).get(key), f"{prefix}cpu_caches.{key}", lo=1, optional=True)
    dev = facts.get("block_device")
    check_dict(dev, prefix + "block_device")
    dev = dev or {}
    for key in ("name", "model", "scheduler"):
        check_str(dev.get(key), f"{prefix}block_device.{key}")
    check_choice(dev.get("kind"), f"{prefix}block_device.kind", tuple(DEVICE_PRIORS))
    check_choice(dev.get("rotational"), f"{prefix}block_device.rotational", (True, False))
    check_int(dev.get("readahead_bytes"), f"{prefix}block_device.readahead_bytes", lo=0, optional=True)
    check_int(dev.get("max_request_bytes"), f"{prefix}block_device.max_request_bytes", lo=512, optional=True)
    fs = facts.get("filesystem")
    check_dict(fs, prefix + "filesystem")
    for key in ("type", "mount", "path"):
        check_str((fs or {}).get(key), f"{prefix}filesystem.{key}")
    vm = facts.get("vm")
    check_dict(vm, prefix + "vm")
    for key, value in (vm or {}).items():
        hi = 100 if key.endswith("_ratio") else None
        check_int(value, f"{prefix}vm.{key}", lo=0, hi=hi, optional=True)


def check(facts: dict, where: str = "machine facts", prefix: str = "") -> None:
    """Facts of the wrong type, or a fact the model needs and has no generic default for,
    are a UserError, one line naming the field."""
    if not isinstance(facts, dict):
        raise UserError(f"{where}: {prefix.rstrip('.') or 'machine facts'}: expected an object of machine facts")
    try:
        _check_types(facts, prefix)
    except Invalid as e:
        raise UserError(f"{where}: {e.field}: {e.why}") from None
    missing = [k for k in REQUIRED if not facts.get(k)]
    caches = facts.get("cpu_caches") or {}
    if "cpu_caches" not in missing and not (_pos(caches.get("l3_bytes")) or _pos(caches.get("l2_bytes"))):
        missing.append("cpu_caches.l2_bytes (or l3_bytes)")
    if missing:
        raise UserError(f"{where}: machine facts lack {', '.join(missing)}, which the model needs "
                        "(record them, or name a machine profile with --machine PROFILE.json)")
    if not _pos(facts.get("memory_bytes")):
        raise UserError(f"{where}: memory_bytes must be a positive number, got {facts.get('memory_bytes')!r}")


# The last-level cache a campaign's facts fall back to when its target gave none (no sysfs
# size, no device-tree one, and the pointer-chase sweep failed): the Raspberry Pi 4's
# 1 MiB L2 (the study's board). Used only with its source said (campaign_cache_fallback).
FALLBACK_LLC_BYTES = MIB


def campaign_cache_fallback(facts: dict) -> tuple[dict, str | None]:
    """(facts, note): a campaign's facts with a last-level cache the model can use. When
    the target gave none, FALLBACK_LLC_BYTES with its source recorded in
    cpu_caches.source and a note saying so (a campaign measure made is never refused
    for a fact measure could not get)."""
    caches = dict(facts.get("cpu_caches") or {})
    if _pos(caches.get("l3_bytes")) or _pos(caches.get("l2_bytes")):
        return facts, None
    tried = ((caches.get("source") or {}).get("l2_bytes") or "the campaign recorded no cache sizes") \
        if isinstance(caches.get("source"), dict) else "the campaign recorded no cache sizes"
    why = f"assumed: {FALLBACK_LLC_BYTES >> 20} MiB, a Raspberry Pi 4's L2 ({tried})"
    caches["l2_bytes"] = FALLBACK_LLC_BYTES
    caches["source"] = {**(caches.get("source") if isinstance(caches.get("source"), dict) else {}),
                        "l2_bytes": why}
    return {**facts, "cpu_caches": caches}, f"last-level cache {why}"


def _pos(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _fact(facts: dict, *path, default=None):
    v = facts
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
    return v if _pos(v) else default


def llc_bytes(facts: dict) -> float:
    """The last-level CPU cache: a file that fits it is copied at cache speed."""
    c = facts.get("cpu_caches") or {}
    return float(_fact(c, "l3_bytes") or _fact(c, "l2_bytes"))


def structure(facts: dict, where: str = "machine facts") -> dict:
    """The model's structural constants for a machine (values for params.py's fixed specs)."""
    check(facts, where)
    dev = facts.get("block_device") or {}
    vm = facts.get("vm") or {}
    page = _fact(facts, "page_bytes", default=GENERIC["page_bytes"])
    dirty = _fact(vm, "dirty_ratio", default=GENERIC["dirty_ratio"])
    background = _fact(vm, "dirty_background_ratio", default=GENERIC["dirty_background_ratio"])
    return {
        "page_bytes": float(page),
        "cpu_cache_bytes": llc_bytes(facts),
        "host_memory_bytes": float(facts["memory_bytes"]),
        "readahead_bytes": float(_fact(dev, "readahead_bytes", default=GENERIC["readahead_bytes"])),
        "writeback_request_bytes": float(_fact(dev, "max_request_bytes", default=GENERIC["max_request_bytes"])),
        "dirty_background_share": min(1.0, float(background) / float(dirty)),
        # Xen blkif: BLKIF_MAX_SEGMENTS_PER_REQUEST (11) segments of one page each
        "xen_request_bytes": 11.0 * page,
    }


def dirty_ratio_prior(facts: dict) -> float:
    """vm.dirty_ratio as a share (the fitted dirty_ratio's prior: the effective limit is a
    share of *dirtyable* memory, which the facts do not record, so it is fitted)."""
    return float(_fact(facts.get("vm") or {}, "dirty_ratio", default=GENERIC["dirty_ratio"])) / 100.0


# Device priors by kind (weak: the fit moves them). Orders of magnitude of the device
# classes (SD UHS-I class 10: tens of MB/s, ~0.3 ms per request; SATA SSD ~500 MB/s;
# NVMe GB/s; HDD ~150 MB/s and ms seeks; a virtual disk: whatever the host's is).
DEVICE_PRIORS = {
    "sd": (45e6, 30e6, 0.3e-3, 0.5e-3),
    "emmc": (150e6, 60e6, 0.2e-3, 0.5e-3),
    "ssd": (500e6, 400e6, 50e-6, 1e-3),
    "nvme": (2e9, 1e9, 20e-6, 0.5e-3),
    "hdd": (150e6, 140e6, 5e-3, 10e-3),
    "virtual": (2e9, 1e9, 50e-6, 0.3e-3),     # usually backed by the host's page cache
    "unknown": (200e6, 100e6, 0.2e-3, 1e-3),
}


def device_kind(facts: dict) -> str:
    kind = str((facts.get("block_device") or {}).get("kind") or "unknown")
    return kind if kind in DEVICE_PRIORS else "unknown"


def device_priors(facts: dict) -> dict:
    r, w, req, flush = DEVICE_PRIORS[device_kind(facts)]
    return {"dev_read_bps": r, "dev_write_bps": w, "dev_request_s": req, "dev_flush_s": flush}


def kvm_kind(facts: dict) -> str:
    k = str(facts.get("kvm") or "absent")
    return k if k in ("hardware", "software", "absent") else "absent"


def guest_code(facts: dict) -> str:
    """How fast a guest's kernel-mode code runs here: "emulated" (instruction by
    instruction: a software KVM, or any KVM on a machine that is itself emulated, such as
    an emulated Pi board whose EL2 is QEMU's though its `kvm` fact reads "hardware"),
    "hardware" (the CPU virtualises) or "none" (no KVM). The emulated fact wins."""
    if facts.get("emulated") is True or kvm_kind(facts) == "software":
        return "emulated"
    return "hardware" if kvm_kind(facts) == "hardware" else "none"


# A machine that is itself emulated (an emulated board under TCG) runs its own kernel's code
# through the emulator too: its CPU-bound priors are the native ones times this. The pilot
# of the calibration protocol measured a system call and a copy 70-120x the native priors on
# the emulated Pi board on a 2-core x86 host; 50 with the priors' spread covers both ends.
EMULATED_MACHINE_SLOWDOWN = 50.0
EMULATED_MACHINE_CPU = ("syscall_s", "cache_copy_s_per_byte", "dram_copy_s_per_byte", "write_call_s",
                        "write_s_per_byte", "page_dirtying_s", "page_io_s", "container_syscall_s",
                        "xen_syscall_s", "guest_call_s", "guest_rep_s")


# What a copy between the page cache and a buffer costs per byte, by CPU class: the
# params.py priors (0.25 ns/B in cache, 0.9 ns/B from DRAM with page lookups) are a
# Cortex-A72's (a Pi 4 copies ~1-4 GB/s: 0.9 ns/B is the slow end of that range, page
# lookups included); an x86_64 server core copies ~10-20 GB/s from DRAM and several times
# that from its LLC, so its DRAM prior is the slow end of its range in the same way,
# 10 GB/s = 0.1 ns/B (0.15 ns/B before, 6.7 GB/s, was below the range it cited).
# The one x86_64 page-cache read in the published series agrees: Solo5 issue 325's spt
# column (a Xeon E3-1270 v6 reading the same page-cached 1 GB file with one pread per
# 16 KiB block, no VM exit) took 0.103 s, so its copy cost at most 0.096 ns/B.
# A fit with few cells (two points of a published sweep, whose difference pins the
# per-call cost but leaves the per-byte share, 1-3% of each point, to this prior at the
# model's nominal 10% error per cell) leans on these: a Pi's 0.9 ns/B made that Xeon's hvt
# reads +123% at 16 KiB, 0.15 ns/B +27%.
COPY_PRIORS = {"x86_64": {"cache_copy_s_per_byte": 0.05e-9, "dram_copy_s_per_byte": 0.1e-9}}


def machine_priors(facts: dict) -> dict:
    """Every prior that depends on the machine: the device's, the dirty limit's, and
    what guest code costs where it is emulated (guest_code: guest kernel-mode code, which
    is all of a unikernel, is emulated instruction by instruction, ~1 µs each:
    /work/shared/notes/emulated-targets.md)."""
    out = device_priors(facts)
    out["dirty_ratio"] = dirty_ratio_prior(facts)
    out.update(COPY_PRIORS.get(str(facts.get("arch") or ""), {}))
    if facts.get("emulated") is True:
        from model.params import SPECS
        out.update({n: SPECS[n].prior * EMULATED_MACHINE_SLOWDOWN for n in EMULATED_MACHINE_CPU})
    if guest_code(facts) == "emulated":
        # ~100x the hardware priors: the geometric middle of 10-1000x (machine_prior_sds)
        for name, hardware in HARDWARE_GUEST_CODE.items():
            out[name] = 100 * hardware
        out["hypercall_s"] = 50e-6      # an exit is mostly host work, its guest side emulated
    return out


# Guest-code costs of the hvt path on hardware virtualisation (the params.py priors),
# and how far an emulated CPU slows them: a software KVM or an emulated board runs guest
# code 10-1000x slower than hardware (/work/shared/notes/emulated-targets.md; this
# machine: ~25 us per block call, ~400 ns/B per copied byte).
HARDWARE_GUEST_CODE = {"guest_call_s": 0.3e-6, "ring_post_s": 0.5e-6, "guest_rep_s": 0.02e-6,
                       "guest_copy_s_per_byte": 0.5e-9, "guest_copy_call_s": 0.02e-6, "guest_flush_s": 0.1e-6}
EMULATED_SLOWDOWN = (10.0, 1000.0)


def machine_prior_sds(facts: dict) -> dict:
    """Prior spreads the machine widens: where guest code is emulated, its costs are
    known only to within the 10-1000x slow-down, so their priors' 95% range spans it
    (log sd = ln(1000/10) / (2 x 1.96); a linear cost's sd is relative, exp(sd_log) - 1)."""
    if guest_code(facts) != "emulated":
        return {}
    lo, hi = EMULATED_SLOWDOWN
    sd_log = math.log(hi / lo) / (2 * 1.96)
    return {name: math.expm1(sd_log) for name in (*HARDWARE_GUEST_CODE, "hypercall_s")}
