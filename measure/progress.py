"""What a person watching a campaign sees: the current cell per target, its ETA, the campaign's.

rich draws it on a terminal; nothing is drawn when stdout is not a terminal or when
the CI variable is set (the command prints its summary at the end either way).
ETAs come from the cells already finished (also those of a resumed campaign); see
Estimator for the rule.
"""

import math
import os
import sys
import threading
import time
from collections import defaultdict

from edgeio.records import PRIMITIVES



def _fmt_duration(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _short(target: str) -> str:
    return target[len("ssh://"):] if target.startswith("ssh://") else target


def _median(values):
    v = sorted(values)
    return v[len(v) // 2] if v else None


class Estimator:
    """Predicts a cell's wall time from the cells finished so far (pure bookkeeping).

    wall = overhead (process start, SSH round trips, store; per env and target)
         + reps x time per repetition, the latter taken from, in order:
      1. the same env, target, op and size;
      2. the same target, op and size in other environments;
      3. the same env, target and op at two or more other sizes: a + b x size;
      4. the same env, target and op at one other size, scaled by the square root of
         the size ratio (a 4 KiB fsync costs about what a 64 KiB one does, a read of
         64 KiB 16 times a 4 KiB one: the root is the compromise);
      5. any op of the target, the same way.
    A primitive (edgeio.records.PRIMITIVES) goes no further than rung 3's own op: its
    repetition is one call or trap, unlike any file op's (a qemu trap is 50 ns here, the
    file ops beside it microseconds to seconds), and rung 5 once gave its 21 million
    repetitions a timeout that overflowed. Unknown: the plan's estimate serves.
    A random-order campaign of the study's protocol runs each (env, op, size) once, so
    rungs 2-5 carry most of its estimates.
    """

    def __init__(self):
        self._per_rep = defaultdict(list)    # (env, target, op, size) -> seconds per rep
        self._overhead = defaultdict(list)   # (env, target) -> seconds outside the probe's timing

    def add(self, cell: dict, wall_seconds: float | None, probe_seconds: float | None = None) -> None:
        if not wall_seconds or wall_seconds <= 0:
            return
        t = cell.get("target", "local")
        reps = float(cell.get("reps") or 1)
        timed = probe_seconds if probe_seconds and 0 < probe_seconds <= wall_seconds else wall_seconds
        self._per_rep[(cell["env"], t, cell["op"], cell["size_bytes"])].append(timed / reps)
        self._overhead[(cell["env"], t)].append(wall_seconds - timed)

    def _rep_time(self, env, target, op, size) -> float | None:
        same = self._per_rep.get((env, target, op, size))
        if same:
            return sum(same) / len(same)
        others = [v for (e, t, o, sz), vs in self._per_rep.items() if (t, o, sz) == (target, op, size) for v in vs]
        if others:
            return _median(others)
        for scope in ("env and op",) if op in PRIMITIVES else ("env and op", "op", "any"):
            sizes = {}
            for (e, t, o, sz), vs in self._per_rep.items():
                if t != target or (scope != "any" and o != op) or (scope == "env and op" and e != env):
                    continue
                sizes.setdefault(sz, []).extend(vs)
            if len(sizes) >= 2:
                xs = sorted(sizes)
                ys = [_median(sizes[x]) for x in xs]
                mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
                b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
                if b >= 0 and my - b * mx + b * size > 0:
                    return my - b * mx + b * size
            if sizes:
                nearest = min(sizes, key=lambda x: abs(math.log(x / size)))
                return _median(sizes[nearest]) * math.sqrt(size / nearest)
        return None

    def estimate(self, cell: dict) -> float | None:
        if cell.get("adaptive"):
            return float(cell["adaptive"]["budget_s"])   # an upper bound; rounds stop earlier
        t = cell.get("target", "local")
        per_rep = self._rep_time(cell["env"], t, cell["op"], cell["size_bytes"])
        if per_rep is None:
            return None
        overhead = _median(self._overhead.get((cell["env"], t), [])) \
            or _median([v for (e, tt), vs in self._overhead.items() if tt == t for v in vs]) or 0.0
        return overhead + per_rep * float(cell.get("reps") or 1)

    def remaining(self, cells: list[dict]) -> float | None:
        """Seconds for cells of one target run one after another (None: unknown yet)."""
        total = 0.0
        for cell in cells:
            e = self.estimate(cell)
            if e is None:
                return None
            total += e
        return total


def _probe_seconds(record: dict) -> float | None:
    return (record.get("probe") or {}).get("total_seconds")


def quiet_by_default() -> bool:
    return not sys.stdout.isatty() or bool(os.environ.get("CI"))


class StatusLine:
    """One line redrawn in place ('\\r') on a terminal, for any command's progress;
    off a terminal (a log, CI) nothing at all: a log gets the command's results only."""

    def __init__(self, prefix: str = "", stream=None):
        self.prefix = prefix
        self.stream = stream or sys.stdout
        self.shown = 0

    def __call__(self, text: str) -> None:
        if quiet_by_default():
            return
        line = f"{self.prefix}{text}"
        print(line.ljust(self.shown), end="\r", file=self.stream, flush=True)
        self.shown = len(line)

    def clear(self) -> None:
        if self.shown:
            print(" " * self.shown, end="\r", file=self.stream, flush=True)
            self.shown = 0


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
            self.estimator.add(rec["cell"], rec.get("wall_seconds"), _probe_seconds(rec))
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
                self.estimator.add(cell, record.get("wall_seconds"), _probe_seconds(record))
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
    def _labels(self) -> list[str]:
        return [self.title] + ["  " + _short(c.get("target", "local")) for c in self.plan]

    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        with self._lock:
            total = len(self.plan)
            done = len(self.done_ids)
            # Fixed columns around one that gives way (the cell id) on a narrow terminal.
            grid = Table.grid(padding=(0, 2), expand=True)
            grid.add_column(no_wrap=True, width=min(24, max(len(t) for t in self._labels())), overflow="ellipsis")
            grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
            grid.add_column(width=24, no_wrap=True)
            grid.add_column(no_wrap=True, width=29)
            eta = self.campaign_eta()
            failed = self.counts.get("failed", 0)
            grid.add_row(
                f"[bold]{self.title}[/]",
                f"{done}/{total} cells  [green]ok {self.counts.get('ok', 0)}[/]"
                + (f"  [red]failed {failed}[/]" if failed else "")
                + (f"  (resumed with {self.resumed})" if self.resumed else ""),
                ProgressBar(total=max(total, 1), completed=done, width=24),
                f"elapsed {_fmt_duration(time.monotonic() - self.t0)}  ETA {_fmt_duration(eta)}")
            for target, (cell, _, note) in sorted(self.current.items()):
                elapsed, left = self.cell_eta(target)
                est = None if left is None else elapsed + left
                bar = ProgressBar(total=est or 1.0, completed=min(elapsed, est * 0.99) if est else 0,
                                  width=24, pulse=est is None)
                grid.add_row(f"  {_short(target)}", f"{cell['cell_id']} x{cell.get('reps')}"
                             + (f"  [dim]{note}[/]" if note else ""), bar,
                             f"cell {_fmt_duration(elapsed)}  ETA {_fmt_duration(left)}")
            return grid
