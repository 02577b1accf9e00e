"""What the model needs to know of a target machine, read through the Target interface.

Only files and commands a Raspberry Pi OS (or a busybox initramfs) has are used: sh,
readlink, cat, head, tr, and /proc, /sys. The parsers are pure functions of the text
read, so they are tested on synthetic input (a Pi) as well as on this machine.
Keys and units: docs/formats.md ("Machine facts"); missing facts are None.
"""

import re

from edgeio.errors import UserError
from edgeio.parse import parse_size as _parse_size

CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"
VM_KEYS = ("dirty_ratio", "dirty_background_ratio", "dirty_bytes", "dirty_background_bytes",
           "dirty_expire_centisecs", "dirty_writeback_centisecs")
BLOCK_FILES = ("device/model", "device/type", "queue/rotational", "queue/read_ahead_kb",
               "queue/max_sectors_kb", "queue/scheduler")

# One round trip: the probe directory resolved, then "file<TAB>contents" of the fixed files.
_DUMP = r"""
p=$(readlink -f "$1" 2>/dev/null) || p=$1
printf 'path\t%s\n' "$p"
for f in /sys/devices/system/cpu/cpu0/cache/index*/level /sys/devices/system/cpu/cpu0/cache/index*/type \
         /sys/devices/system/cpu/cpu0/cache/index*/size /proc/sys/vm/dirty_* \
         /sys/class/dmi/id/sys_vendor /sys/firmware/devicetree/base/compatible \
         /sys/firmware/devicetree/base/model \
         /sys/devices/system/clocksource/clocksource0/available_clocksource; do
  [ -r "$f" ] && printf '%s\t%s\n' "$f" "$(head -c 4096 "$f" | tr '\000\n' '  ')"
done
exit 0
"""
# The block device behind sysfs node $1 (/sys/dev/block/MAJ:MIN or /sys/class/block/NAME):
# the whole disk if it is a partition, its first underlying device for device-mapper, and
# its queue files.
_BLOCK = r"""
n=$(readlink -f "$1" 2>/dev/null) && [ -d "$n" ] || exit 0
[ -e "$n/partition" ] && n=${n%/*}
d=${n##*/}
printf 'disk\t%s\n' "$d"
for s in /sys/block/$d/slaves/*; do [ -e "$s" ] && printf 'slave\t%s\n' "${s##*/}" && break; done
for f in device/model device/type queue/rotational queue/read_ahead_kb queue/max_sectors_kb queue/scheduler; do
  [ -r "/sys/block/$d/$f" ] && printf '%s\t%s\n' "$f" "$(head -c 4096 "/sys/block/$d/$f" | tr '\000\n' '  ')"
done
exit 0
"""


def parse_size(text: str | None) -> int | None:
    """sysfs cache sizes: '32K', '1024K', '1M', '512' -> bytes (None: not a size)."""
    try:
        return _parse_size(text or "", "cache size")
    except UserError:
        return None


def parse_dump(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "\t" in line:
            key, value = line.split("\t", 1)
            out[key] = value.strip()
    return out


def cpu_caches(files: dict[str, str]) -> dict:
    """{l1d_bytes, l2_bytes, l3_bytes} from cpu0's cache/index*/{level,type,size}."""
    out = {"l1d_bytes": None, "l2_bytes": None, "l3_bytes": None}
    indexes = {m.group(1) for k in files if (m := re.match(rf"{CACHE_DIR}/(index\d+)/", k))}
    for idx in sorted(indexes):
        get = lambda name: files.get(f"{CACHE_DIR}/{idx}/{name}", "")   # noqa: E731
        level, kind, size = get("level"), get("type"), parse_size(get("size"))
        if level == "1" and kind == "Data":
            out["l1d_bytes"] = size
        elif level in ("2", "3") and kind in ("Unified", "Data"):
            out[f"l{level}_bytes"] = size
    return out


def vm_settings(files: dict[str, str]) -> dict:
    out = {}
    for key in VM_KEYS:
        value = files.get(f"/proc/sys/vm/{key}", "")
        out[key] = int(value) if value.isdigit() else None
    return out


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_of(mountinfo: str, path: str) -> dict | None:
    """The mount holding `path` (resolved): {mount, type, source, dev} or None.

    The longest mount point that is a prefix of the path wins; of equal ones, the
    last mounted (it hides the others).
    """
    best = None
    for line in (mountinfo or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mount = _unescape(fields[4])
        inside = path == mount or mount == "/" or path.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) >= len(best["mount"])):
            best = {"mount": mount, "type": tail[0], "source": _unescape(tail[1]), "dev": fields[2]}
    return best


def scheduler(text: str | None) -> str | None:
    """'mq-deadline kyber [bfq] none' -> 'bfq'; 'none' -> 'none'."""
    if not text:
        return None
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else text.split()[0]


def device_kind(name: str, model: str | None, rotational: int | None, mmc_type: str | None,
                slave: str | None = None) -> str:
    """sd | emmc | nvme | ssd | hdd | virtual | unknown, from the kernel's names for it."""
    if name.startswith("dm-") and slave:
        return device_kind(slave, model, rotational, mmc_type)
    if name.startswith("mmcblk"):
        return "emmc" if (mmc_type or "").upper() == "MMC" else "sd"
    if name.startswith("nvme"):
        return "nvme"
    if re.match(r"(vd|xvd|loop|zram|nbd|rbd|ram)", name):
        return "virtual"
    if re.match(r"(sd|hd)", name):
        if re.search(r"QEMU|VBOX|VMware|Virtual", model or "", re.I):
            return "virtual"
        if rotational is not None:
            return "hdd" if rotational else "ssd"
    return "unknown"


def block_device(files: dict[str, str]) -> dict:
    name = files.get("disk")
    if not name:
        return {k: None for k in ("name", "model", "kind", "rotational", "readahead_bytes",
                                  "max_request_bytes", "scheduler")}
    num = lambda key: int(files[key]) if files.get(key, "").isdigit() else None   # noqa: E731
    rotational = num("queue/rotational")
    model = files.get("device/model") or None
    ra, mx = num("queue/read_ahead_kb"), num("queue/max_sectors_kb")
    return {
        "name": name, "model": model,
        "kind": device_kind(name, model, rotational, files.get("device/type"), files.get("slave")),
        "rotational": None if rotational is None else bool(rotational),
        "readahead_bytes": None if ra is None else ra * 1024,
        "max_request_bytes": None if mx is None else mx * 1024,
        "scheduler": scheduler(files.get("queue/scheduler")),
    }


def is_emulated(files: dict[str, str], cpuinfo: str) -> bool:
    """A machine QEMU emulates (TCG): a QEMU machine with no sign of KVM acceleration.

    x86: DMI vendor QEMU and no kvm-clock; arm64: the `virt` board (linux,dummy-virt), which
    on this project's testbeds runs under TCG (a KVM-accelerated arm64 guest offers the host's
    CPU, whose cpuinfo shows a real part, not QEMU's).
    """
    qemu_dmi = files.get("/sys/class/dmi/id/sys_vendor", "").startswith("QEMU")
    virt_board = "linux,dummy-virt" in files.get("/sys/firmware/devicetree/base/compatible", "")
    kvm_clock = "kvm-clock" in files.get(
        "/sys/devices/system/clocksource/clocksource0/available_clocksource", "")
    if qemu_dmi:
        return not kvm_clock
    return virt_board and "QEMU" not in cpuinfo and not kvm_clock


def page_bytes(target, out) -> int | None:
    """getconf PAGESIZE, else the kernel page size of a mapping of cat itself (busybox)."""
    text = out(["getconf", "PAGESIZE"])
    if text.isdigit():
        return int(text)
    smaps = target.read_text("/proc/self/smaps") or ""
    m = re.search(r"KernelPageSize:\s+(\d+) kB", smaps)
    return int(m.group(1)) * 1024 if m else None


def gather(target, path: str, out, cpuinfo: str) -> dict:
    """The storage and memory facts of `target` for the probe directory `path`.

    out(argv) -> stdout text ('' on failure).
    """
    files = parse_dump(out(["sh", "-c", _DUMP, "sh", path]))
    resolved = files.pop("path", path) or path
    mount = mount_of(target.read_text("/proc/self/mountinfo") or "", resolved)
    node = None
    if mount and re.fullmatch(r"\d+:\d+", mount["dev"]) and not mount["dev"].startswith("0:"):
        node = f"/sys/dev/block/{mount['dev']}"
    elif mount and re.fullmatch(r"/dev/[A-Za-z0-9_.-]+", mount["source"]):
        # An anonymous device number (btrfs, a bind of one): the source names the device.
        node = f"/sys/class/block/{mount['source'][5:]}"
    block = parse_dump(out(["sh", "-c", _BLOCK, "sh", node])) if node else {}
    return {
        "page_bytes": page_bytes(target, out),
        "cpu_caches": cpu_caches(files),
        "block_device": block_device(block),
        "filesystem": {"type": mount["type"] if mount else None,
                       "mount": mount["mount"] if mount else None, "path": resolved},
        "vm": vm_settings(files),
        "emulated": is_emulated(files, cpuinfo),
    }
