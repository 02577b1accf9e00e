"""docker: the static probe in a container built FROM scratch, on the target's Docker engine.

The file lives in the container's writable layer (overlay2 upper dir) by default, as in
the study, or in a bind-mounted host directory with --param volume=DIR.
"""

import hashlib
import shlex

from edgeio.errors import UserError
from measure.environments.base import (CellFailed, CellResult, Unavailable, check_absolute_path,
                                       check_free_space, check_int, filesystem_facts, probe_args)
from measure.environments.native import ProbeEnvironment

DOCKERFILE = 'FROM scratch\nCOPY fileprobe /fileprobe\nENTRYPOINT ["/fileprobe"]\n'
START_HINT = "start it with: dockerd --iptables=false --bridge=none &  (or: systemctl start docker)"
WORK_PARENT = "/var/tmp"      # the build context (probe, Dockerfile) goes there
LABEL = "edgeio.campaign"     # every image and container carries its campaign's resource tag


class DockerEnvironment(ProbeEnvironment):
    name = "docker"
    description = "Docker container on the native kernel"
    params_spec = {"mem": "4096", "volume": ""}    # MiB, as the study's 4 GiB; "" = writable layer
    param_checks = {"mem": check_int("docker", "mem", 6, 1 << 24),
                    "volume": check_absolute_path("docker", "volume")}

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
        self.mem_bytes = int(self.params["mem"]) << 20     # param_checks: 6 MiB (Docker's minimum) or more

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

    def workdir_parents(self):
        return [WORK_PARENT]

    def _labels(self, cell: dict | None = None) -> list[str]:
        labels = ["--label", f"{LABEL}={self.resource_tag or 'none'}"]
        return labels + (["--label", f"edgeio.cell={cell['cell_id']}"] if cell else [])

    def _data_name(self, cell: dict) -> str:
        """The probe's file in a volume directory, named after campaign and cell."""
        return f"{self.resource_name(cell['cell_id'])}.dat"

    def prepare(self):
        self.workdir = self.make_workdir(WORK_PARENT)
        probe = self.ship_probe(self.workdir)
        digest = hashlib.sha256(self.target.run(["sha256sum", probe], timeout=60).stdout).hexdigest()[:12]
        # One image per campaign (its tag in the image's), so that one campaign's teardown
        # never removes an image another one is using.
        owner = f"{self.resource_tag}-" if self.resource_tag else ""
        self.image = f"edgeio-probe:{owner}{self.target_arch()}-{digest}"
        dockerfile = f"{self.workdir}/Dockerfile"
        self.target.run(["sh", "-c", 'cat > "$1"', "sh", dockerfile], input=DOCKERFILE.encode(),
                        timeout=30, check=True)
        proc = self._docker("build", "-q", *self._labels(), "-t", self.image, self.workdir, timeout=600)
        if proc.returncode != 0:
            raise UserError(f"docker: image build failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")
        self.fs = filesystem_facts(self.target, self._data_dir())

    def run(self, cell, timeout=None):
        from measure.probe_build import parse_probe_output
        name = self.resource_name(f"{cell['cell_id']}-{self.workdir.rsplit('.', 1)[-1]}")
        mount, path = [], "/probe.dat"
        if self.params["volume"]:
            mount, path = ["-v", f"{self.params['volume']}:/data"], f"/data/{self._data_name(cell)}"
        argv = ["docker", "run", "--rm", "--name", name, *self._labels(cell), "--network", "none",
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
                self.target.run(["rm", "-f", f"{self.params['volume']}/{self._data_name(cell)}"], timeout=60)
        log = f"$ {shlex.join(argv)}\n{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
        if proc.returncode != 0:
            raise CellFailed(f"container exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}", log)
        return CellResult(probe=parse_probe_output(proc.stdout.decode(errors="replace")),
                          metadata={"image": self.image, **self.fs}, log=log)

    def remove_leftovers(self):
        """A killed run's containers (stopped first: one may still be measuring), its
        image, its files in the volume directory and its work directory."""
        if not self.resource_tag:
            return []
        removed = []
        where = ["--filter", f"label={LABEL}={self.resource_tag}"]
        ids = self._docker("ps", "-aq", *where, timeout=60).stdout.decode().split()
        if ids:
            self._docker("stop", "--time", "1", *ids, timeout=120)
            self._docker("rm", "-f", *ids, timeout=120)
            removed += [f"container {i}" for i in ids]
        images = sorted(set(self._docker("images", "-q", *where, timeout=60).stdout.decode().split()))
        if images:
            self._docker("rmi", "-f", *images, timeout=120)
            removed += [f"image {i}" for i in images]
        if self.params["volume"]:
            proc = self.target.run(["find", self.params["volume"], "-maxdepth", "1", "-type", "f",
                                    "-name", f"{self.resource_name()}-*.dat"], timeout=60)
            for path in proc.stdout.decode(errors="replace").splitlines():
                self.target.run(["rm", "-f", path], timeout=60)
                removed.append(path)
        return removed + super().remove_leftovers()

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
