"""What the linux and docker environments share: shipping the static probe to the target."""

from edgeio.errors import UserError
from measure.environments.base import Environment

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class ProbeEnvironment(Environment):
    """An environment that runs the static C probe (probes/) on its target."""

    def target_arch(self) -> str:
        if not hasattr(self, "_arch"):
            proc = self.target.run(["uname", "-m"], timeout=30)
            machine = proc.stdout.decode().strip()
            if machine not in ARCHES:
                raise UserError(f"target {self.target.name}: no probe build for arch {machine!r}")
            self._arch = ARCHES[machine]
        return self._arch

    def ship_probe(self, workdir: str) -> str:
        """Build the static probe for the target's arch and copy it there; return its path."""
        from measure.probe_build import probe_binary
        local = probe_binary(self.target_arch())
        remote = f"{workdir}/fileprobe"
        self.target.put(local, remote, mode=0o755)
        return remote
