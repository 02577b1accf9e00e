"""What a person watching a campaign sees: the current cell per target, its ETA, the campaign's.

rich draws it on a terminal; nothing is drawn when stdout is not a terminal or when
the CI variable is set (the command prints its summary at the end either way).
ETAs come from the cells already finished (also those of a resumed campaign):
seconds per repetition of the same (env, target, op, size), else bytes per second of
the same (env, target, op), else of the target.
"""

import os
import sys
import threading
import time
from collections import defaultdict

from edgeio.units import format_size


def _fmt_duration(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _work(cell: dict) -> float:
    """Bytes a cell moves: the unit its duration scales with when nothing closer is known."""
    return float(cell["size_bytes"]) * float(cell.get("reps") or 1)


class Estimator:
    """Predicts a cell's wall time from the cells finished so far (pure bookkeeping)."""

    def __init__(self):
        self._per_rep = defaultdict(list)     # (env, target, op, size) -> seconds per rep
        self._rate = defaultdict(list)        # (env, target, op) -> seconds per byte
        self._target_rate = defaultdict(list)  # target -> seconds per byte

    def add(self, cell: dict, wall_seconds: float | None) -> None:
        if not wall_seconds or wall_seconds <= 0:
            return
        t = cell.get("target", "local")
        reps = float(cell.get("reps") or 1)
        self._per_rep[(cell["env"], t, cell["op"], cell["size_bytes"])].append(wall_seconds / reps)
        self._rate[(cell["env"], t, cell["op"])].append(wall_seconds / _work(cell))
        self._target_rate[t].append(wall_seconds / _work(cell))

    def estimate(self, cell: dict) -> float | None:
        t = cell.get("target", "local")
        if cell.get("adaptive"):
            return float(cell["adaptive"]["budget_s"])   # an upper bound; rounds stop earlier
        per_rep = self._per_rep.get((cell["env"], t, cell["op"], cell["size_bytes"]))
        if per_rep:
            return sum(per_rep) / len(per_rep) * float(cell.get("reps") or 1)
        for rates in (self._rate.get((cell["env"], t, cell["op"])), self._target_rate.get(t)):
            if rates:
                return sorted(rates)[len(rates) // 2] * _work(cell)
        return None

    def remaining(self, cells: list[dict]) -> float | None:
        """Seconds for cells of one target run one after another (None: unknown yet)."""
        total = 0.0
        for cell in cells:
            e = self.estimate(cell)
            if e is None:
                return None
            total += e
        return total


def quiet_by_default() -> bool:
    return not sys.stdout.isatty() or bool(os.environ.get("CI"))


class Progress:
    """Engine callbacks: started(cell), note(cell, text), finished(cell, record).

    mode: 'auto' (rich on a terminal, else quiet), 'rich', 'lines' (one line per
    finished cell, for logs) or 'quiet'.
    """

    def __init__(self, plan: list[dict], done: dict | None = None, mode: str = "auto",
                 console=None, title: str = "campaign"):
        if mode == "auto":
            mode = "quiet" if quiet_by_default() else "rich"
        self.mode = mode
        self.title = title
        self.plan = list(plan)
        self.estimator = Estimator()
        self.done_ids = set()
        self.counts = {"ok": 0, "failed": 0}
        for rec in (done or {}).values():
            self.done_ids.add(rec["cell"]["cell_id"])
            self.estimator.add(rec["cell"], rec.get("wall_seconds"))
        self.resumed = len(self.done_ids)
        self.current = {}              # target -> (cell, start monotonic, note)
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._live = None
        self.console = console

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self):
        if self.mode == "rich":
            from rich.console import Console
            from rich.live import Live
            self.console = self.console or Console()
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=2,
                              transient=False, redirect_stdout=True, redirect_stderr=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live:
            self._live.__exit__(*exc)
            self._live = None
        return False

    # -- engine callbacks ----------------------------------------------------------
    def started(self, cell: dict) -> None:
        with self._lock:
            self.current[cell.get("target", "local")] = [cell, time.monotonic(), ""]

    def note(self, cell: dict, text: str) -> None:
        with self._lock:
            cur = self.current.get(cell.get("target", "local"))
            if cur and cur[0]["cell_id"] == cell["cell_id"]:
                cur[2] = text

    def finished(self, cell: dict, record: dict) -> None:
        with self._lock:
            self.current.pop(cell.get("target", "local"), None)
            self.done_ids.add(cell["cell_id"])
            status = record.get("status", "failed")
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "ok":
                self.estimator.add(cell, record.get("wall_seconds"))
            if self.mode == "lines":
                eta = self.campaign_eta()
                print(f"[{len(self.done_ids)}/{len(self.plan)}] {cell['cell_id']} {cell.get('target', 'local')} "
                      f"{status} {record.get('wall_seconds') or 0:.1f} s"
                      + (f" ({record.get('error')})" if status != "ok" else "")
                      + f"  campaign ETA {_fmt_duration(eta)}", flush=True)

    # -- estimates -------------------------------------------------------------------
    def cell_eta(self, target: str) -> tuple[float | None, float | None]:
        """(elapsed, remaining) seconds of the target's current cell."""
        cur = self.current.get(target)
        if not cur:
            return None, None
        elapsed = time.monotonic() - cur[1]
        est = self.estimator.estimate(cur[0])
        return elapsed, None if est is None else max(0.0, est - elapsed)

    def campaign_eta(self) -> float | None:
        """Targets run in parallel: the campaign ends with its slowest target."""
        by_target = defaultdict(list)
        for cell in self.plan:
            if cell["cell_id"] not in self.done_ids:
                by_target[cell.get("target", "local")].append(cell)
        worst = 0.0
        for target, cells in by_target.items():
            cur = self.current.get(target)
            rest = [c for c in cells if not cur or c["cell_id"] != cur[0]["cell_id"]]
            remaining = self.estimator.remaining(rest)
            if remaining is None:
                return None
            _, cur_left = self.cell_eta(target)
            if cur and cur_left is None:
                return None
            worst = max(worst, remaining + (cur_left or 0.0))
        return worst

    # -- drawing -----------------------------------------------------------------------
    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        with self._lock:
            total = len(self.plan)
            done = len(self.done_ids)
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(no_wrap=True)
            grid.add_column(width=24)
            grid.add_column(no_wrap=True)
            eta = self.campaign_eta()
            failed = self.counts.get("failed", 0)
            grid.add_row(
                f"[bold]{self.title}[/]",
                f"{done}/{total} cells  [green]ok {self.counts.get('ok', 0) + 0}[/]"
                + (f"  [red]failed {failed}[/]" if failed else "")
                + (f"  resumed {self.resumed}" if self.resumed else ""),
                ProgressBar(total=max(total, 1), completed=done, width=24),
                f"elapsed {_fmt_duration(time.monotonic() - self.t0)}  ETA {_fmt_duration(eta)}")
            for target, (cell, t_start, note) in sorted(self.current.items()):
                elapsed, left = self.cell_eta(target)
                est = None if left is None else elapsed + left
                what = (f"{cell['cell_id']}  {cell['env']} {format_size(cell['size_bytes'])} {cell['op']}"
                        f" x{cell.get('reps')}")
                bar = ProgressBar(total=est or 1.0, completed=min(elapsed, (est or 1.0) * 0.99) if est else 0,
                                  width=24, pulse=est is None)
                grid.add_row(f"  {target}", what + (f"  [dim]{note}[/]" if note else ""), bar,
                             f"cell {_fmt_duration(elapsed)}  ETA {_fmt_duration(left)}")
            return grid
