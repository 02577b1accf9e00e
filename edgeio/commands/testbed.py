"""`invoke testbed up|down|status BOARD`: emulated boards on loopback as SSH targets."""

import time

from edgeio.parse import parse_choice, parse_duration
from edgeio.units import format_time

ACTIONS = ("up", "down", "status")


def run(action: str, board: str = "pi", arch: str | None = None, timeout=None) -> dict | None:
    from measure import testbed
    parse_choice("testbed: action", action, ACTIONS)
    # checked before anything boots: a bad --timeout must not cost a board's boot
    timeout = None if timeout in (None, "") else parse_duration(timeout, "--timeout")
    if action == "up" and not testbed.status(board):
        print(f"testbed {board}: building the image if an input changed, then booting "
              "(emulated, TCG: this takes a while)...", flush=True)
    if action == "up":
        state = testbed.up(board, arch=arch, timeout=timeout)
        if state.get("already_up"):
            print(f"testbed {board} is already up ({state['arch']}, emulated): {state['url']}")
        else:
            print(f"testbed {board} is up ({state['arch']}, emulated) after "
                  f"{format_time(state['boot_s'])} to ssh, {format_time(state['ready_s'])} to ready: "
                  f"{state['url']}")
        _print_facts(state)
        print(state["url"])
        return state
    if action == "down":
        state = testbed.down(board)
        print(f"testbed {board} stopped" if state else f"testbed {board} was not up")
        return state
    state = testbed.status(board)
    if not state:
        print(f"testbed {board}: down")
        return None
    print(f"testbed {board}: up ({state['arch']}, emulated) for "
          f"{format_time(time.time() - state['started'])}: {state['url']}")
    _print_facts(state)
    return state


def _print_facts(state: dict) -> None:
    facts = state.get("facts") or {}
    for key in ("kernel", "cpu", "docker"):
        if facts.get(key):
            print(f"  {key}: {facts[key]}")
    for env, why in sorted((facts.get("missing") or {}).items()):
        print(f"  {env}: {why}")
    print(f"  key {state['identity']}, known_hosts {state['known_hosts']} "
          f"(used automatically for this target)")
