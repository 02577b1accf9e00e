"""The environment interface: check, prepare once, run cells, tear down.

Every environment (linux, docker, qemu, hvt, xen) runs one probe per cell and hands
back the probe's JSON (same format for the C probe and the unikernel probe) with the
metadata a reader needs to trust the figure.
"""

from dataclasses import dataclass, field

from edgeio.errors import UserError


class Unavailable(UserError):
    """This environment cannot run on this target; the message says why."""


class CellFailed(Exception):
    """The cell ran and failed (guest panic, timeout, probe error); the campaign goes on."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


@dataclass
class CellResult:
    probe: dict                      # the probe's JSON output, parsed
    metadata: dict = field(default_factory=dict)   # per-cell facts (e.g. tender counters)
    log: str = ""                    # what ran and what it printed


class Environment:
    name = "base"
    description = ""
    # --param keys this environment accepts, with their defaults (strings as typed).
    params_spec: dict = {}

    def __init__(self, target, params: dict | None = None, workdir: str | None = None):
        self.target = target
        unknown = set(params or {}) - set(self.params_spec)
        if unknown:
            known = ", ".join(sorted(self.params_spec)) or "none"
            raise UserError(f"env {self.name}: unknown --param {', '.join(sorted(unknown))} (known: {known})")
        self.params = {**self.params_spec, **(params or {})}
        self.workdir = workdir

    def check(self) -> None:
        """Raise Unavailable with the reason if this environment cannot run on the target."""

    def preflight(self, cells: list[dict]) -> None:
        """Before anything is written: raise UserError if the cells cannot run (e.g. free disk)."""

    def prepare(self) -> None:
        """Once per campaign: build or ship what the cells need."""

    def run(self, cell: dict, timeout: float | None = None) -> CellResult:
        """Run the probe for one cell (keys: size_bytes, op, reps, io_size_bytes, probe options)."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Remove what prepare made on the target (images, files); keep results."""

    def metadata(self) -> dict:
        """Environment-level facts for the campaign metadata (versions, config)."""
        return {"env": self.name, "params": dict(self.params)}

    def effective_config(self, cell: dict, probe: dict | None = None, metadata: dict | None = None) -> dict:
        """The configuration a cell runs with, defaults filled in (docs/formats.md, "config").

        Before the run (probe None) it is what will run; after, what the probe and the
        environment report they used wins over what was asked.
        """
        probe = probe or {}
        size, op = int(cell["size_bytes"]), cell["op"]
        io = probe.get("io_size") or cell.get("io_size_bytes") or default_io_size(size)
        return {
            "env": self.name,
            "io_size_bytes": int(min(int(io), size)),
            # only write_sync syncs; the probe reports the call it would use for the others too
            "sync": (probe.get("sync") or cell.get("sync") or "fsync") if op == "write_sync" else "none",
            "direct": bool(probe.get("direct", cell.get("direct", False))),
            "cache": probe.get("cache") or cell.get("cache") or "warm",
            "memory_bytes": self.memory_bytes(),
        }

    def memory_bytes(self) -> int | None:
        """Memory this environment has: the host's unless an environment limits it."""
        if not hasattr(self, "_host_memory"):
            from measure.targets import _meminfo_total
            self._host_memory = _meminfo_total(self.target.read_text("/proc/meminfo"))
        return self._host_memory


# The probe's default bytes per call (probes/args.c): the whole file up to 1 MiB, else 1 MiB.
DEFAULT_IO_CAP = 1 << 20


def default_io_size(size: int) -> int:
    return min(int(size), DEFAULT_IO_CAP)


def probe_args(cell: dict) -> list[str]:
    """The C probe's arguments for a cell (docs/formats.md), without binary and --path."""
    args = ["--size", str(cell["size_bytes"]), "--reps", str(cell["reps"]), "--op", cell["op"],
            "--batches", str(cell.get("batches") or 100), "--sync", cell.get("sync") or "fsync"]
    if cell.get("io_size_bytes"):
        args += ["--io-size", str(cell["io_size_bytes"])]
    if cell.get("direct"):
        args.append("--direct")
    if cell.get("cache") == "cold":
        args.append("--cold")
    return args


def free_bytes(target, path: str) -> int | None:
    """Free bytes on the filesystem holding `path` on the target (None if unknown)."""
    proc = target.run(["df", "--output=avail", "-B1", path], timeout=30)
    lines = proc.stdout.decode(errors="replace").split()
    return int(lines[-1]) if proc.returncode == 0 and lines and lines[-1].isdigit() else None


def check_free_space(target, path: str, need: int, what: str) -> None:
    free = free_bytes(target, path)
    if free is not None and free < need:
        raise UserError(f"{what}: {path} has {free / 2**30:.2f} GiB free, the largest cell "
                        f"needs {need / 2**30:.2f} GiB (file plus margin)")


def filesystem_facts(target, path: str) -> dict:
    """Filesystem, mount options and block device behind `path` on the target."""
    proc = target.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--target", path], timeout=30)
    parts = proc.stdout.decode(errors="replace").split()
    if proc.returncode != 0 or len(parts) < 3:
        return {}
    return {"block_device": parts[0], "filesystem": parts[1], "mount_options": parts[2]}
