"""linux: the probe as a native process, its file on the target's filesystem."""

import shlex

from edgeio.errors import UserError
from measure.environments.base import (CellFailed, CellResult, check_absolute_path, check_free_space,
                                       filesystem_facts, probe_args)
from measure.environments.native import ProbeEnvironment

# /var/tmp rather than /tmp: /tmp is a tmpfs on some systems, and a RAM file is no storage test.
DEFAULT_DIR = "/var/tmp"


class LinuxEnvironment(ProbeEnvironment):
    name = "linux"
    description = "native Linux process"
    params_spec = {"dir": DEFAULT_DIR}
    param_checks = {"dir": check_absolute_path("linux", "dir")}

    def check(self):
        self.target_arch()

    def preflight(self, cells):
        if self.target.run(["test", "-d", self.params["dir"]], timeout=30).returncode != 0:
            raise UserError(f"linux: --param dir={self.params['dir']}: no such directory on {self.target.name}")
        need = max((c["size_bytes"] for c in cells), default=0)
        check_free_space(self.target, self.params["dir"], need + (64 << 20), "linux")

    def prepare(self):
        self.workdir = self.make_workdir(self.params["dir"])
        self.probe = self.ship_probe(self.workdir)
        self.fs = filesystem_facts(self.target, self.workdir)

    def run(self, cell, timeout=None):
        from measure.probe_build import parse_probe_output
        data = f"{self.workdir}/probe-{cell['cell_id']}.dat"
        argv = [self.probe, "--path", data] + probe_args(cell)
        try:
            proc = self.target.run(argv, timeout=timeout)
        finally:
            self.target.run(["rm", "-f", data], timeout=60)
        log = f"$ {shlex.join(argv)}\n{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
        if proc.returncode != 0:
            raise CellFailed(f"probe exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}", log)
        return CellResult(probe=parse_probe_output(proc.stdout.decode(errors="replace")),
                          metadata=dict(self.fs), log=log)

    def teardown(self):
        if getattr(self, "workdir", None):
            self.target.run(["rm", "-rf", self.workdir], timeout=120)

    def metadata(self):
        return {**super().metadata(), **getattr(self, "fs", {})}
