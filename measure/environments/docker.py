"""docker: the static probe in a container built FROM scratch, on the target's Docker engine.

The file lives in the container's writable layer (overlay2 upper dir) by default, as in
the study, or in a bind-mounted host directory with --param volume=DIR.
"""

import hashlib
import shlex

from edgeio.errors import UserError
from measure.environments.base import (CellFailed, CellResult, Unavailable, check_free_space,
                                       filesystem_facts, probe_args)
from measure.environments.native import ProbeEnvironment

DOCKERFILE = 'FROM scratch\nCOPY fileprobe /fileprobe\nENTRYPOINT ["/fileprobe"]\n'
START_HINT = "start it with: dockerd --iptables=false --bridge=none &  (or: systemctl start docker)"


class DockerEnvironment(ProbeEnvironment):
    name = "docker"
    description = "Docker container on the native kernel"
    params_spec = {"mem": "4096", "volume": ""}    # MiB, as the study's 4 GiB; "" = writable layer

    def _docker(self, *args, timeout=120, check=False):
        return self.target.run(["docker", *args], timeout=timeout, check=check)

    def check(self):
        self.target_arch()
        if not self.target.which("docker"):
            raise Unavailable("docker: not installed on this target (apt-get install docker.io)")
        proc = self._docker("version", "--format", "{{.Server.Version}}", timeout=30)
        if proc.returncode != 0:
            raise Unavailable(f"docker: the Docker engine is not running; {START_HINT}")
        self.server_version = proc.stdout.decode().strip()
        try:
            self.mem_bytes = int(self.params["mem"]) << 20
        except ValueError:
            raise UserError(f"docker: --param mem takes MiB as an integer, got {self.params['mem']!r}") from None
        if self.mem_bytes < (6 << 20):
            raise UserError("docker: --param mem must be at least 6 MiB (Docker's minimum)")

    def _data_dir(self) -> str:
        """Host directory that will hold the probe's file."""
        if self.params["volume"]:
            return self.params["volume"]
        proc = self._docker("info", "--format", "{{.DockerRootDir}}", timeout=30)
        return proc.stdout.decode().strip() or "/var/lib/docker"

    def preflight(self, cells):
        need = max((c["size_bytes"] for c in cells), default=0)
        if self.params["volume"] and self.target.run(["test", "-d", self.params["volume"]]).returncode != 0:
            raise UserError(f"docker: volume directory {self.params['volume']} does not exist")
        check_free_space(self.target, self._data_dir(), need + (64 << 20), "docker")

    def prepare(self):
        self.workdir = self.target.mkdtemp("edgeio-docker.")
        probe = self.ship_probe(self.workdir)
        digest = hashlib.sha256(self.target.run(["sha256sum", probe], timeout=60).stdout).hexdigest()[:12]
        self.image = f"edgeio-probe:{self.target_arch()}-{digest}"
        dockerfile = f"{self.workdir}/Dockerfile"
        self.target.run(["sh", "-c", 'cat > "$1"', "sh", dockerfile], input=DOCKERFILE.encode(),
                        timeout=30, check=True)
        proc = self._docker("build", "-q", "-t", self.image, self.workdir, timeout=600)
        if proc.returncode != 0:
            raise UserError(f"docker: image build failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")
        self.fs = filesystem_facts(self.target, self._data_dir())

    def run(self, cell, timeout=None):
        from measure.probe_build import parse_probe_output
        name = f"edgeio-{cell['cell_id']}-{self.workdir.rsplit('.', 1)[-1]}".lower()
        mount, path = [], "/probe.dat"
        if self.params["volume"]:
            mount, path = ["-v", f"{self.params['volume']}:/data"], f"/data/probe-{cell['cell_id']}.dat"
        argv = ["docker", "run", "--rm", "--name", name, "--network", "none",
                "--memory", str(self.mem_bytes), "--memory-swap", str(self.mem_bytes),
                *mount, self.image, "--path", path] + probe_args(cell)
        # A retry after a dropped connection may find the first attempt's container still there.
        self._docker("rm", "-f", name, timeout=60)
        try:
            proc = self.target.run(argv, timeout=timeout)
        except TimeoutError:
            self._docker("rm", "-f", name, timeout=60)
            raise
        finally:
            if self.params["volume"]:
                self.target.run(["rm", "-f", f"{self.params['volume']}/probe-{cell['cell_id']}.dat"], timeout=60)
        log = f"$ {shlex.join(argv)}\n{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
        if proc.returncode != 0:
            raise CellFailed(f"container exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}", log)
        return CellResult(probe=parse_probe_output(proc.stdout.decode(errors="replace")),
                          metadata={"image": self.image, **self.fs}, log=log)

    def teardown(self):
        if getattr(self, "image", None):
            self._docker("rmi", "-f", self.image, timeout=120)
        if getattr(self, "workdir", None):
            self.target.run(["rm", "-rf", self.workdir], timeout=120)

    def memory_bytes(self):
        return getattr(self, "mem_bytes", int(self.params["mem"]) << 20)

    def effective_config(self, cell, probe=None, metadata=None):
        return {**super().effective_config(cell, probe, metadata), "volume": bool(self.params["volume"])}

    def metadata(self):
        return {**super().metadata(), "docker_version": getattr(self, "server_version", ""),
                "memory_limit_bytes": getattr(self, "mem_bytes", None),
                "storage": "volume" if self.params["volume"] else "writable layer",
                **getattr(self, "fs", {})}
