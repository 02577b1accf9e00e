"""invoke tasks: measure, calibrate, predict, verify, report, main (all of them), testbed, test, setup.

Every task turns a UserError into one line on stderr and exit status 2.
"""

import functools
import os
import sys

import invoke
from invoke import Exit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# No automatic short flags: invoke derives them per task from the first letter, so -o was
# --op in measure but --out in predict. Long options only, the same in every task.
task = functools.partial(invoke.task, auto_shortflags=False)


def _user_errors(fn):
    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from edgeio.errors import UserError
        try:
            return fn(c, *args, **kwargs)
        except UserError as e:
            from edgeio.parse import one_line
            raise Exit(f"error: {one_line(e)}", code=2)     # one line, whatever the input held
        except KeyboardInterrupt:
            raise Exit("interrupted: cells already measured are kept (resume with --resume DIR)", code=130)
    return wrapper


@task(iterable=["param", "target"], help={
    "env": "linux,docker,qemu,hvt,xen or all (default: all this machine supports)",
    "exclude": "environments to leave out of --env all, e.g. qemu,hvt",
    "size": "sizes, e.g. 4KiB,1GiB; k, kb and KiB all mean 1024 bytes (as fio reads them), each size "
            "once (default: a quick protocol)",
    "op": "write_sync,write,read or all",
    "reps": "repetitions: a number, 'paper' (4 KiB x 100000, 1 GiB x 10) or 'auto'",
    "out": "parent directory of the campaign (default: results/)",
    "param": "environment parameter key=value (repeatable), e.g. blocks_per_call=8",
    "target": "local, ssh://user@host[:port], an ssh_config Host alias or testbed:BOARD (repeatable)",
    "resume": "continue a killed campaign directory",
    "retry_failed": "with --resume: run the cells that failed again (old records kept)",
    "allow_other_machine": "with --resume: go on although the target is not the machine the campaign "
                           "recorded (host, arch, memory, kvm...); the change is recorded in metadata.json",
    "cell_timeout": "how long a cell may run before it is abandoned and marked failed: a duration "
                    "(600, 90s, 2h), 'none', or 'auto' (default: 10x its expected time, at least 15 min)",
    "seed": "seed of the random cell order (default 0)",
    "order": "random (default) or interleaved",
    "io_size": "bytes per call, e.g. 64k (= 64 KiB; default: whole file up to 1 MiB, else 1 MiB)",
    "sync": "fsync (default) or fdatasync for write_sync",
    "direct": "O_DIRECT",
    "cold": "drop caches before each read repetition",
    "ci": "with --reps auto: target 95% CI half-width, e.g. 2%",
    "budget": "with --reps auto: time budget per cell, e.g. 10m; with --protocol calibrate: for the campaign",
    "protocol": "quick (default: 4 KiB and 1 MiB, or --size) or calibrate (sizes from the target's facts)",
    "max_size": "with --protocol calibrate: cap every size, e.g. 1m (= 1 MiB; a quick try)",
    "quiet": "print no progress line per cell",
    "batches": "timed batches per cell (default: chosen so each batch lasts >= 20 ms)",
})
@_user_errors
def measure(c, env="all", size=None, op="all", reps=None, out=None, param=None, target=None,
            resume=None, cell_timeout="auto", order="random", seed="0", io_size=None, sync="fsync",
            direct=False, cold=False, batches=None, ci=None, budget=None, quiet=False, exclude=None,
            retry_failed=False, protocol=None, max_size=None, allow_other_machine=False):
    """Measure file I/O in environments; keep raw samples, print the study's table."""
    # Numbers stay strings here (string defaults): invoke's own int() would end a typo in a
    # traceback; the command's parsers turn it into one line.
    from edgeio.commands import measure as command
    command.run(env=env, size=size, op=op, reps=reps, out=out, params=param, targets=target,
                resume=resume, cell_timeout=cell_timeout, order=order, seed=seed, io_size=io_size,
                sync=sync, direct=direct, cold=cold, batches=batches, ci=ci, budget=budget, quiet=quiet,
                exclude=exclude, retry_failed=retry_failed, protocol=protocol, max_size=max_size,
                allow_other_machine=allow_other_machine)


@task(help={"source": "campaign directory or CSV (default: the study's Pi 4 figures)",
            "out": "where to write the parameter set JSON",
            "validate": "print leave-one-cell-out and leave-one-environment-out errors",
            "allow_priors": "fit even if the results set lacks cells that pin some parameters "
                            "(they keep their priors)",
            "machine": "machine profile JSON the results were measured on (needed for a CSV; "
                       "format: calibration/data/pi4_machine.json)"})
@_user_errors
def calibrate(c, source=None, out=None, validate=False, allow_priors=False, machine=None):
    """Fit the model's parameters to a results set."""
    from edgeio.commands import calibrate as command
    command.run(source=source, out=out, validate=validate, allow_priors=allow_priors, machine=machine)


@task(iterable=["param"], help={"scenario": "what-if scenario ('list' to list them)",
                                "param": "scenario parameter key=value (repeatable)",
                                "calibration": "parameter set JSON (default: the newest)",
                                "out": "file for the predictions: .json, .csv or .md (the extension "
                                       "gives the format; a --format that contradicts it is refused)",
                                "format": "print json, csv or md instead of the table (docs/formats.md)"})
@_user_errors
def predict(c, scenario="list", param=None, calibration=None, out=None, format=None):
    """Predict what a proposed fix would do, with prediction intervals."""
    from edgeio.commands import predict as command
    command.run(scenario=scenario, params=param or [], calibration=calibration, out=out, fmt=format)


@task(iterable=["campaign", "compare", "verify"], help={
    "campaign": "campaign directory (repeatable; default: the newest)",
    "calibration": "parameter set JSON",
    "out": "output directory",
    "reference": "report the bundled study figures",
    "compare": "two campaign directories or envs to compare (repeatable)",
    "verify": "verify campaign directory (repeatable; default: those of the calibration)",
    "format": "with --compare: print the comparison as json, csv or md instead of writing a report"})
@_user_errors
def report(c, campaign=None, calibration=None, out=None, reference=False, compare=None, verify=None,
           format=None):
    """Write the HTML and Markdown report: measured vs modelled vs what-if."""
    from edgeio.commands import report as command
    command.run(campaigns=campaign or [], calibration=calibration, out=out, reference=reference,
                compare=compare or None, verify=verify or None, fmt=format)


@task(positional=["action", "board"], help={"action": "up, down or status",
            "board": "pi (emulated arm64 Cortex-A72 with KVM) or xen",
            "arch": "the board's arch, where it has several (xen: aarch64 or x86_64)",
            "timeout": "how long to wait for the board's sshd: a duration (600, 90s, 15m; default: the board's)"})
@_user_errors
def testbed(c, action, board, arch=None, timeout=None):
    """Emulated boards on loopback as SSH targets: up prints the ssh:// URL for --target."""
    from edgeio.commands import testbed as command
    command.run(action, board=board, arch=arch, timeout=timeout)


@task(help={"fast": "skip tests marked slow"})
def test(c, fast=False):
    """Run the whole test suite."""
    marker = " -m 'not slow'" if fast else ""
    c.run(f"{sys.executable} -m pytest -q -rs --durations=15{marker}", pty=False)


@task
def setup(c):
    """Install what the toolkit needs on Debian/Ubuntu (root): apt packages, Python deps, dockerd."""
    c.run("bash scripts/install")


@task(iterable=["param"], help={
    "scenario": "what-if scenario to build and measure (see invoke predict --scenario list)",
    "param": "scenario parameter key=value (repeatable), e.g. blocks=8",
    "calibration": "parameter set JSON (default: the newest fitted for this target)",
    "target": "local, ssh://user@host[:port], an ssh_config Host alias or testbed:BOARD",
    "size": "sizes to measure (default: the calibration's), e.g. 4KiB,1MiB; k, kb, KiB = 1024 bytes (as fio)",
    "op": "write_sync,write,read or all (default: the calibration's)",
    "reps": "repetitions per cell (default: the calibration campaign's)",
    "out": "parent directory of the verify campaign (default: results/verify/)",
    "resume": "continue a killed verify campaign directory",
    "quiet": "print no progress line per cell",
    "format": "print the comparison as json, csv or md on stdout (the rest on stderr)",
    "rounds": "runs (boots) of each cell, baseline beside fix in each; the measured speed-up's "
              "CI holds their spread (default 3)"})
@_user_errors
def verify(c, scenario=None, param=None, calibration=None, target=None, size=None, op=None,
           reps=None, out=None, resume=None, quiet=False, format=None, rounds=None):
    """Predict a fix, write the prediction down, then build it, measure it and compare."""
    from edgeio.commands import verify as command
    if not scenario and not resume:
        from edgeio.errors import UserError
        raise UserError("give --scenario NAME (invoke predict --scenario list) or --resume DIR")
    command.run(scenario=scenario, params=param or [], calibration=calibration, target=target,
                size=size, op=op, reps=reps, out=out, resume=resume, quiet=quiet, fmt=format, rounds=rounds)


@task(help={"pi": "calibrate on the bundled Raspberry Pi 4 figures instead of this machine's campaign",
            "target": "the device to run it against: ssh://user@host[:port], an ssh_config host alias "
                      "or testbed:BOARD (default: this machine)",
            "out": "directory for the campaign, calibration, verifies and report (default with --target: "
                   "results/main-<device>-<time>/)",
            "budget": "time budget of the calibration protocol, e.g. 10m (default 10m)",
            "exclude": "environments to leave out of the protocol, e.g. docker,xen"})
@_user_errors
def main(c, pi=False, target=None, out=None, budget=None, exclude=None):
    """The main job: measure (calibration protocol), calibrate on that campaign, verify
    hvt-multiblock and the paravirtual-driver question (predicted before measured), report;
    on this machine or against --target."""
    from edgeio.commands import main as command
    command.run(pi=pi, target=target, out=out, budget=budget, exclude=exclude)
