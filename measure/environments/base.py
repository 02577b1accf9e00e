"""The environment interface: check, prepare once, run cells, tear down.

Every environment (linux, docker, qemu, hvt, xen) runs one probe per cell and hands
back the probe's JSON (same format for the C probe and the unikernel probe) with the
metadata a reader needs to trust the figure.

Parameters: `params_spec` gives each --param key its default, `param_checks` its check;
both the command line and a resume (params read back from plan.json) go through them.
Resources: whatever an environment creates on a target (work directories, containers,
images) is named `resource_name(...)` after the campaign (`resource_tag`), so that
teardown, and a resume after a kill (`remove_leftovers`), finds exactly its own.
"""

import re
from dataclasses import dataclass, field

from edgeio.errors import UserError
from edgeio.limits import default_io_size
from edgeio.parse import parse_float, parse_int


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


def check_absolute_path(env: str, key: str):
    """A param check: an absolute path on the target, no control characters, no '..'."""
    def check(value: str) -> None:
        if value == "":
            return              # "" = the environment's default
        if not value.startswith("/") or re.search(r"[\x00-\x1f]", value) \
                or ".." in value.split("/"):
            raise UserError(f"{env}: --param {key}={value!r}: expected an absolute path without '..'")
    return check


def int_param(env: str, key: str, value: str, lo: int, hi: int) -> int:
    """A whole-number param in [lo, hi], or a one-line UserError naming it."""
    return parse_int(f"{env}: --param {key}=", value, lo, hi)


def float_param(env: str, key: str, value: str, above: float = 0.0, hi: float | None = None) -> float:
    """A finite number param above `above` (nan, inf refused), or a one-line UserError."""
    return parse_float(f"{env}: --param {key}=", value, hi=hi, above=above)


def check_int(env: str, key: str, lo: int, hi: int):
    """A param check: a whole number in [lo, hi]."""
    return lambda value: int_param(env, key, value, lo, hi) and None


def check_choice(env: str, key: str, choices):
    def check(value: str) -> None:
        if value not in choices:
            raise UserError(f"{env}: --param {key}={value!r}: use {', '.join(choices)}")
    return check


class Environment:
    name = "base"
    description = ""
    # --param keys this environment accepts, with their defaults (strings as typed).
    params_spec: dict = {}
    # key -> check(value: str), raising a one-line UserError; run on every value, typed or
    # read back from a campaign's plan.json. Cross-key rules stay in __init__, target-side
    # ones (a path exists there) in preflight.
    param_checks: dict = {}
    # Set by the campaign engine before prepare: what names this campaign's resources.
    resource_tag: str | None = None

    def __init__(self, target, params: dict | None = None, workdir: str | None = None):
        self.target = target
        self.params = self.validate_params(params)
        self.workdir = workdir

    @classmethod
    def validate_params(cls, params: dict | None) -> dict:
        """The full params (defaults filled in), or UserError naming the bad one."""
        params = dict(params or {})
        unknown = set(params) - set(cls.params_spec)
        if unknown:
            known = ", ".join(sorted(cls.params_spec)) or "none"
            raise UserError(f"env {cls.name}: unknown --param {', '.join(sorted(unknown))} (known: {known})")
        for key, value in params.items():
            if not isinstance(value, str):
                raise UserError(f"env {cls.name}: --param {key}: expected a string, got {value!r}")
            check = cls.param_checks.get(key)
            if check:
                check(value)
        return {**cls.params_spec, **params}

    # -- resources named after the campaign ---------------------------------------------
    def resource_name(self, suffix: str = "") -> str:
        """'edgeio-<campaign tag>-<env>[-suffix]' (lower case: Docker wants it so)."""
        base = f"edgeio-{self.resource_tag}-{self.name}" if self.resource_tag else f"edgeio-{self.name}"
        return (f"{base}-{suffix}" if suffix else base).lower()

    def make_workdir(self, parent: str) -> str:
        """A fresh directory on the target, named after the campaign: parent/edgeio-<tag>-<env>.XXXXXX"""
        return self.target.run(["mktemp", "-d", "-p", parent, f"{self.resource_name()}.XXXXXX"],
                               timeout=30, check=True).stdout.decode().strip()

    def workdir_parents(self) -> list[str]:
        """Where make_workdir puts this environment's directories (for remove_leftovers)."""
        return [self.params["dir"]] if self.params.get("dir") else []

    def remove_leftovers(self) -> list[str]:
        """Before a resume's first cell: remove what a killed run of this campaign left on
        the target: processes still using its work directories (a probe, a tender, QEMU),
        then the directories. Subclasses add their own (containers...). Returns what was
        removed. Only with a resource_tag: never another campaign's."""
        if not self.resource_tag:
            return []
        removed = []
        # mktemp's XXXXXX: a work directory of this campaign and environment, on a command line
        pattern = re.escape(self.resource_name()) + r"\.[A-Za-z0-9]{6}(/|$| )"
        proc = self.target.run(["pgrep", "-f", pattern], timeout=30)
        pids = [p for p in proc.stdout.decode(errors="replace").split() if p.isdigit()]
        if pids:
            self.target.run(["kill", "-KILL", *pids], timeout=30)
            removed += [f"process {pid}" for pid in pids]
        for parent in self.workdir_parents():
            proc = self.target.run(["find", parent, "-maxdepth", "1", "-name", f"{self.resource_name()}.*"],
                                   timeout=60)
            for path in proc.stdout.decode(errors="replace").splitlines():
                self.target.run(["rm", "-rf", "--one-file-system", path], timeout=300)
                removed.append(path)
        return removed

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
        from edgeio.records import PRIMITIVES
        return {
            "env": self.name,
            "kind": "primitive" if op in PRIMITIVES else "file",
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
