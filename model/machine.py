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

KIB, MIB = 1 << 10, 1 << 20

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
    check(data["machine"], str(path))
    data.setdefault("profile", path.stem)
    data.setdefault("source", str(path))
    return data


def pi4() -> dict:
    """The study's Raspberry Pi 4 profile (calibration/data/pi4_machine.json)."""
    return load_profile(pi4_profile_path())


def check(facts: dict, where: str = "machine facts") -> None:
    """A fact the model needs and has no generic default for is a UserError, one line."""
    if not isinstance(facts, dict):
        raise UserError(f"{where}: machine facts must be a JSON object")
    missing = [k for k in REQUIRED if not facts.get(k)]
    caches = facts.get("cpu_caches") or {}
    if "cpu_caches" not in missing and not (_pos(caches.get("l3_bytes")) or _pos(caches.get("l2_bytes"))):
        missing.append("cpu_caches.l2_bytes (or l3_bytes)")
    if missing:
        raise UserError(f"{where}: machine facts lack {', '.join(missing)}, which the model needs "
                        "(record them, or name a machine profile with --machine PROFILE.json)")
    if not _pos(facts.get("memory_bytes")):
        raise UserError(f"{where}: memory_bytes must be a positive number, got {facts.get('memory_bytes')!r}")


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


def machine_priors(facts: dict) -> dict:
    """Every prior that depends on the machine: the device's, the dirty limit's, and
    what guest code costs where the CPU does not virtualise (software KVM: guest
    kernel-mode code, which is all of a unikernel, is emulated instruction by
    instruction, ~1 µs each: /work/shared/notes/emulated-targets.md)."""
    out = device_priors(facts)
    out["dirty_ratio"] = dirty_ratio_prior(facts)
    if guest_code_emulated(facts):
        # ~100x the hardware priors: the geometric middle of 10-1000x (machine_prior_sds)
        for name, hardware in HARDWARE_GUEST_CODE.items():
            out[name] = 100 * hardware
        out["hypercall_s"] = 50e-6      # an exit is mostly host work, its guest side emulated
    return out


# Guest-code costs of the hvt path on hardware virtualisation (the params.py priors),
# and how far an emulated CPU slows them: a software KVM or an emulated board runs guest
# code 10-1000x slower than hardware (/work/shared/notes/emulated-targets.md; this
# machine: ~25 us per block call, ~400 ns/B per copied byte).
HARDWARE_GUEST_CODE = {"guest_call_s": 0.3e-6, "ring_post_s": 0.5e-6, "guest_copy_s_per_byte": 0.5e-9}
EMULATED_SLOWDOWN = (10.0, 1000.0)


def guest_code_emulated(facts: dict) -> bool:
    return kvm_kind(facts) == "software" or bool(facts.get("emulated"))


def machine_prior_sds(facts: dict) -> dict:
    """Prior spreads the machine widens: where guest code is emulated, its costs are
    known only to within the 10-1000x slow-down, so their priors' 95% range spans it
    (log sd = ln(1000/10) / (2 x 1.96); a linear cost's sd is relative, exp(sd_log) - 1)."""
    if not guest_code_emulated(facts):
        return {}
    lo, hi = EMULATED_SLOWDOWN
    sd_log = math.log(hi / lo) / (2 * 1.96)
    return {name: math.expm1(sd_log) for name in (*HARDWARE_GUEST_CODE, "hypercall_s")}
