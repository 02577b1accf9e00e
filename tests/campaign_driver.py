"""Runs (or resumes) a small campaign of a real environment (linux or docker, the real
static probe), for the tests that kill campaigns. Prints one line per event, flushed:
START <cell id>, DONE <cell id> <status>, HELD <cell id> <pid>, REMOVED <what>,
FINISHED <ok> <skipped>.

    python tests/campaign_driver.py OUT ENV N_CELLS

A resume (OUT holds plan.json) runs like `invoke measure --resume`: lock, leftovers of
the killed run removed, then the cells not yet recorded.

Fault injection (environment variables; a mock of nothing: real probe, store, engine):
  EDGEIO_TEST_HOLD=<cell index>  that cell's probe is started with 10^8 repetitions, so
      it is surely still running when the test kills the campaign (the test waits for
      HELD, an event, not for time to pass); a resume runs the cell as planned.
  EDGEIO_TEST_KILL=<point>:<n>   SIGKILL this process (and what it started) at the n-th
      <point> of this run:
        cell-start   a cell is about to run
        log-written  a cell's log is stored, its record not yet
        record-torn  a record half written (in write_atomic, before the rename)
        recorded     a cell's record is in place
        finish-torn  samples.csv half written
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeio import store
from measure import campaign as engine
from measure import plan as planning
from measure.targets import LocalTarget

HOLD_REPS = 10 ** 8


def say(*words):
    print(*words, flush=True)


def die():
    os.killpg(os.getpgrp(), signal.SIGKILL)


class Kill:
    """Counts the fault points of this run; kills at the chosen one."""

    def __init__(self, spec: str):
        self.point, _, n = spec.partition(":")
        self.left = int(n or 1) if spec else 0

    def at(self, point: str) -> None:
        if point == self.point and self.left:
            self.left -= 1
            if not self.left:
                die()


def _exec_done(proc: subprocess.Popen, program: str, within: float = 120) -> None:
    """Until the child runs `program`: Popen returns once the vforked child has begun
    its exec, when /proc/PID still shows this Python (a test reading the held probe's
    name right after HELD would see python3)."""
    deadline = time.monotonic() + within
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] == program.encode():
                return
        except OSError:
            pass
        time.sleep(0.001)


class HoldingTarget(LocalTarget):
    """The local machine; the held cell's probe gets HOLD_REPS repetitions."""

    def __init__(self, hold_id: str | None):
        self.hold_id = hold_id

    def run(self, argv, timeout=None, input=None, check=False):
        if self.hold_id and "--reps" in argv and any(self.hold_id in a for a in argv):
            argv = list(argv)
            argv[argv.index("--reps") + 1] = str(HOLD_REPS)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            _exec_done(proc, argv[0])
            say("HELD", self.hold_id, proc.pid)
            out, err = proc.communicate()
            return subprocess.CompletedProcess(argv, proc.returncode, out, err)
        return super().run(argv, timeout=timeout, input=input, check=check)


def torn_writes(kill: Kill):
    """The record-torn, finish-torn and log-written kill points, inside the store's own
    write_atomic: at the fsync of a record's (samples.csv's) temporary file, cut to half
    its length first, so the kill leaves what a kill in the middle of write() would."""
    real_fsync, real_write = os.fsync, store.write_atomic

    def fsync(fd):
        name = Path(os.readlink(f"/proc/self/fd/{fd}"))
        point = ("record-torn" if name.parent.name == "cells" and ".json" in name.name
                 else "finish-torn" if ".samples.csv.tmp" in name.name else None)
        if point and point == kill.point and kill.left == 1:
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            real_fsync(fd)
        if point:
            kill.at(point)
        real_fsync(fd)

    def write_atomic(path, text):
        real_write(path, text)
        if Path(path).parent.name == "cells" and Path(path).suffix == ".log":
            kill.at("log-written")
    os.fsync = fsync
    store.write_atomic = write_atomic


def main(out: Path, env_name: str, n_cells: int):
    kill = Kill(os.environ.get("EDGEIO_TEST_KILL", ""))
    torn_writes(kill)
    resuming = (out / "plan.json").exists()
    if resuming:
        campaign = store.Campaign.open(out)
    else:
        plan = planning.make_plan([env_name], [4096 * (i + 1) for i in range(n_cells)], ["write"], 20,
                                  order="interleaved", batches=2)
        campaign = store.Campaign.create(out.parent, {"test": "kill"}, plan, name=out.name)
    with campaign.locked():
        campaign, plan, _ = engine.resume(campaign)
        hold = os.environ.get("EDGEIO_TEST_HOLD")
        target = HoldingTarget(plan[int(hold)]["cell_id"] if hold else None)
        envs = engine.environments_for(plan, {"local": target})
        engine.adopt(campaign, envs)
        if resuming:
            for what in engine.remove_leftovers(envs):
                say("REMOVED", what)
        (env,) = envs.values()
        env.check()
        env.prepare()

        def started(cell):
            say("START", cell["cell_id"])
            kill.at("cell-start")

        def finished(cell, rec):
            say("DONE", cell["cell_id"], rec["status"])
            kill.at("recorded")
        try:
            res = engine.run(campaign, plan, envs, on_start=started, on_cell=finished)
        finally:
            env.teardown()
        campaign.finish(counts={k: res[k] for k in ("ok", "failed", "skipped", "not_run")})
    say("FINISHED", res["ok"], res["skipped"])


if __name__ == "__main__":
    # ^C as a terminal sends it, whatever this process inherited: a runner started in the
    # background by a non-interactive shell (`cmd &`) ignores SIGINT, and so would this
    # driver and its probe, and the ^C test would wait for a probe of 10^8 repetitions
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
