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
# $2 is a root prefix for /sys and /proc (empty on a real target; a test's fake sysfs), cut
# off the names printed. Device-tree properties are big-endian binary: printed as hex.
_DUMP = r"""
p=$(readlink -f "$1" 2>/dev/null) || p=$1
printf 'path\t%s\n' "$p"
r=$2
for f in "$r"/sys/devices/system/cpu/cpu0/cache/index*/level "$r"/sys/devices/system/cpu/cpu0/cache/index*/type \
         "$r"/sys/devices/system/cpu/cpu0/cache/index*/size "$r"/proc/sys/vm/dirty_* \
         "$r"/sys/class/dmi/id/sys_vendor "$r"/sys/firmware/devicetree/base/compatible \
         "$r"/sys/firmware/devicetree/base/model \
         "$r"/sys/devices/system/clocksource/clocksource0/available_clocksource; do
  [ -r "$f" ] && printf '%s\t%s\n' "${f#"$r"}" "$(head -c 4096 "$f" | tr '\000\n' '  ')"
done
for f in "$r"/sys/firmware/devicetree/base/cpus/cpu@0/d-cache-size "$r"/sys/firmware/devicetree/base/cpus/*/cache-size \
         "$r"/sys/firmware/devicetree/base/cpus/*/cache-level "$r"/sys/firmware/devicetree/base/*/cache-size \
         "$r"/sys/firmware/devicetree/base/*/cache-level; do
  [ -r "$f" ] && printf '%s\t%s\n' "${f#"$r"}" "$(od -An -tx1 -v "$f" 2>/dev/null | tr -d ' \n')"
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


DT = "/sys/firmware/devicetree/base"
CACHE_KEYS = ("l1d_bytes", "l2_bytes", "l3_bytes")


def _dt_u32(hextext: str | None) -> int | None:
    """A device-tree cell (big-endian u32, as od printed it in hex) -> int."""
    text = (hextext or "").strip()
    return int(text[:8], 16) if re.fullmatch(r"[0-9a-f]{8,}", text) else None


def dt_caches(files: dict[str, str]) -> dict:
    """{l1d_bytes, l2_bytes, l3_bytes} from the device tree: cpu@0's d-cache-size and the
    cache nodes' (cpus/l2-cache0, /l3-cache...) cache-size by their cache-level."""
    out = {k: None for k in CACHE_KEYS}
    out["l1d_bytes"] = _dt_u32(files.get(f"{DT}/cpus/cpu@0/d-cache-size"))
    for key, value in sorted(files.items()):
        m = re.fullmatch(rf"({re.escape(DT)}/(?:cpus/)?[^/]+)/cache-size", key)
        level = _dt_u32(files.get(f"{m.group(1)}/cache-level")) if m else None
        if level in (2, 3) and out[f"l{level}_bytes"] is None:
            out[f"l{level}_bytes"] = _dt_u32(value)
    return out


# -- cache sizes measured: a pointer-chasing latency sweep (probes/cachesweep.c) ----------

MIN_SPREAD = 8.0   # memory at least 8x slower per load than the fastest level, or no level is told
MEMORY_STEP = 4.0  # a last-level cache's load is at least 4x faster than memory's


def _monotone(values: list[float]) -> list[float]:
    """The closest non-decreasing sequence (pool adjacent violators): a noisy point (a
    neighbour's burst in one trial) cannot fake a level, nor hide one by dipping."""
    blocks = []                     # [sum, count]
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, n = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += n
    return [b[0] / b[1] for b in blocks for _ in range(b[1])]


def last_level_from_sweep(points: list) -> int | None:
    """The last-level cache (bytes) a sweep [[bytes, ns per load], ...] shows: the largest
    working set whose load time is still MEMORY_STEP times below memory's (the median of
    the three largest sets). A last level is several times faster than memory (a Pi 4's
    L2 ~10 ns against ~100 ns); the steps between levels below it are smaller, and under
    emulation the rise is gradual, so the size is where it comes within MEMORY_STEP of
    memory. None when the sweep never leaves the caches."""
    import math
    pts = sorted((int(b), float(ns)) for b, ns in points if float(ns) > 0)
    if len(pts) < 4:
        return None
    smooth = _monotone([math.log(ns) for _, ns in pts])
    fast, memory = smooth[0], sorted(smooth[-3:])[1]
    if memory - fast < math.log(MIN_SPREAD):
        return None
    below = [size for (size, _), v in zip(pts, smooth) if v <= memory - math.log(MEMORY_STEP)]
    return below[-1] if below else None


def caches_from_sweep(points: list) -> dict:
    """{l1d_bytes, l2_bytes, l3_bytes} from a sweep: the last level as l2_bytes (the sweep
    does not count levels; the model and the protocol need the last one)."""
    return {"l1d_bytes": None, "l2_bytes": last_level_from_sweep(points), "l3_bytes": None}


def run_cache_sweep(target, arch: str) -> list:
    """The probe's --cache-sweep on `target` (built for `arch`, shipped like a cell's
    probe, removed after): [[bytes, ns per load], ...]. UserError if it cannot run."""
    import json
    from edgeio.errors import UserError
    from measure.probe_build import probe_binary
    local = probe_binary(arch)
    workdir = target.mkdtemp("edgeio-sweep-")
    try:
        target.put(local, f"{workdir}/fileprobe", mode=0o755)
        proc = target.run([f"{workdir}/fileprobe", "--cache-sweep"], timeout=300)
    finally:
        try:
            target.run(["rm", "-rf", workdir], timeout=30)
        except (UserError, TimeoutError):
            pass
    text = proc.stdout.decode(errors="replace").strip().splitlines()
    try:
        record = json.loads(text[-1]) if text else {}
    except ValueError:
        record = {}
    if proc.returncode != 0 or not record.get("points"):
        tail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"cache sweep failed (exit {proc.returncode}): {tail[0]}")
    return record["points"]


def measured_caches(target, arch: str, cache_key: str | None) -> tuple[dict, str]:
    """(sizes, source) from the sweep, remembered per boot of the target (cache_key: its
    host and boot id; the sweep takes seconds, under emulation tens of them)."""
    import json
    from edgeio.paths import cache_dir
    path = cache_dir("facts") / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', cache_key)}.json" if cache_key else None
    if path and path.exists():
        try:
            saved = json.loads(path.read_text())
            return saved["caches"], saved["source"]
        except (OSError, ValueError, KeyError):
            pass
    points = run_cache_sweep(target, arch)
    caches, source = caches_from_sweep(points), "measured: pointer-chase (the last level before memory)"
    if path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"caches": caches, "source": source, "points": points}))
        tmp.replace(path)
    return caches, source


def cache_facts(files: dict[str, str], sweep=None) -> dict:
    """cpu_caches with "source": {key: where its value came from}. sysfs first, then the
    device tree, then (when neither gives a last-level cache, which the model needs)
    sweep() -> (sizes, source), the pointer-chase on the target. A size no source gives
    stays null, its source saying what was tried: never a silent default."""
    found = {"sysfs": cpu_caches(files), "device tree": dt_caches(files)}
    out = {k: None for k in CACHE_KEYS}
    source = {}
    for where, sizes in found.items():
        for k in CACHE_KEYS:
            if out[k] is None and sizes.get(k):
                out[k], source[k] = sizes[k], where
    tried = "sysfs and the device tree give none"
    if sweep is not None and not (out["l2_bytes"] or out["l3_bytes"]):
        try:
            sizes, how = sweep()
        except Exception as e:     # noqa: BLE001 - any failure is recorded, the facts go on
            tried += f"; the pointer-chase sweep failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        else:
            for k in CACHE_KEYS:
                if out[k] is None and sizes.get(k):
                    out[k], source[k] = sizes[k], how
            tried += "; the pointer-chase sweep shows no such level"
    for k in CACHE_KEYS:
        source.setdefault(k, f"none: {tried}")
    return {**out, "source": source}


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


def gather(target, path: str, out, cpuinfo: str, arch: str = "", sys_root: str = "") -> dict:
    """The storage and memory facts of `target` for the probe directory `path`.

    out(argv) -> stdout text ('' on failure). sys_root: a prefix for /sys and /proc (a
    test's fake sysfs; a real target has none). arch: the target's, for the cache sweep.
    """
    files = parse_dump(out(["sh", "-c", _DUMP, "sh", path, sys_root]))
    resolved = files.pop("path", path) or path
    mount = mount_of(target.read_text("/proc/self/mountinfo") or "", resolved)
    node = None
    if mount and re.fullmatch(r"\d+:\d+", mount["dev"]) and not mount["dev"].startswith("0:"):
        node = f"/sys/dev/block/{mount['dev']}"
    elif mount and re.fullmatch(r"/dev/[A-Za-z0-9_.-]+", mount["source"]):
        # An anonymous device number (btrfs, a bind of one): the source names the device.
        node = f"/sys/class/block/{mount['source'][5:]}"
    block = parse_dump(out(["sh", "-c", _BLOCK, "sh", node])) if node else {}
    boot = (target.read_text("/proc/sys/kernel/random/boot_id") or "").strip()
    key = None if sys_root or not boot else f"{out(['uname', '-n'])}-{arch}-{boot}"
    return {
        "page_bytes": page_bytes(target, out),
        "cpu_caches": cache_facts(files, lambda: measured_caches(target, arch, key)),
        "block_device": block_device(block),
        "filesystem": {"type": mount["type"] if mount else None,
                       "mount": mount["mount"] if mount else None, "path": resolved},
        "vm": vm_settings(files),
        "emulated": is_emulated(files, cpuinfo),
    }
