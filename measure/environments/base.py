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
