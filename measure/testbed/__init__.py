"""Emulated boards on loopback as SSH targets: `invoke testbed up pi|xen`, status, down.

    board = load("pi").build(None)     # images built into .cache/testbed/, cached
    state = up("pi")                   # boots, waits for sshd; state["url"] for --target
    status("pi"); down("pi")

A board module measure/testbed/<name>.py provides ARCHES and build(arch) -> Board
(measure.testbed.board). Boards are found by name, so adding one edits nothing here.
"""

import importlib
import re

from edgeio.errors import UserError

from .board import Board
from .machine import _banner, read_state, start, state_dir, stop, url

__all__ = ["Board", "load", "up", "down", "status", "state_dir", "credentials", "resolve_target",
           "NotUp"]


class NotUp(UserError):
    """A testbed used as a target, or asked about, is not running."""


def load(name: str):
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or "") or name in ("board", "boot", "debs", "machine", "rootfs"):
        raise UserError(f"unknown testbed board {name!r}: use pi or xen")
    try:
        module = importlib.import_module(f"measure.testbed.{name}")
    except ModuleNotFoundError:
        raise UserError(f"unknown testbed board {name!r}: use pi or xen") from None
    return module


def up(name: str, arch: str | None = None, timeout: float | None = None) -> dict:
    module = load(name)
    if arch is not None and arch not in module.ARCHES:
        raise UserError(f"testbed {name}: --arch {arch!r}: use {' or '.join(module.ARCHES)}")
    current = read_state(name)
    if current:
        if arch and current.get("arch") != arch:
            raise UserError(f"testbed {name} is already up as {current.get('arch')}: "
                            f"`invoke testbed down {name}` first")
        return {**current, "already_up": True}
    return start(module.build(arch), timeout=timeout)


def down(name: str) -> dict | None:
    load(name)
    return stop(name)


def status(name: str) -> dict | None:
    load(name)
    return read_state(name)


def credentials(port: int) -> tuple[str, str] | None:
    """(identity, known_hosts) of the running testbed whose sshd is 127.0.0.1:port, if any."""
    root = state_dir("")
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        state = read_state(directory.name) if (directory / "state.json").exists() else None
        if state and state.get("port") == port:
            return state["identity"], state["known_hosts"]
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            recorded = (directory / "known_hosts").read_text()
        except OSError:
            continue
        # the port it had when last up, and nothing else listens there now
        if recorded.startswith(f"[127.0.0.1]:{port} ") and not _banner(port):
            raise NotUp(f"testbed {directory.name} (127.0.0.1:{port}) is not up: start it with "
                        f"`invoke testbed up {directory.name}` and pass the URL it prints "
                        f"(or --target testbed:{directory.name})")
    return None


def resolve_target(name: str) -> dict:
    """The running state of testbed `name` (for --target testbed:NAME), else NotUp."""
    load(name)
    state = read_state(name)
    if not state:
        raise NotUp(f"testbed {name} is not up: start it with `invoke testbed up {name}`")
    return state
