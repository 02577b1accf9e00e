"""Simulation core: the clock (SimPy), cost ledgers, and exact aggregation of repeats.

Every stage charges its work to the *context* of the process that does it (the
application, a flusher thread, QEMU's I/O thread...). A context keeps a ledger:
  coef[param]  how many times the application paid each per-call cost (linear part),
  device_s     device service time the application waited for synchronously,
  wait_s       time spent queueing behind another process or being throttled.
For the application, elapsed time == sum(coef * value) + device_s + wait_s. When
wait_s is zero the cell is linear in the per-call costs, which is what lets the
calibration fit those costs by weighted least squares.
"""

import math
from collections import defaultdict

import simpy

# Aggregate mode moves data in pieces of at most this many bytes (flusher chunks,
# writer quanta). It bounds the error of treating a piece as one lump: one piece of
# CPU or device time per repetition (4 MiB at 30 MB/s is 0.14 s of a 35 s run).
AGG_CHUNK = 4 << 20


class Ledger:
    __slots__ = ("coef", "device_s", "wait_s")

    def __init__(self):
        self.coef = defaultdict(float)
        self.device_s = 0.0
        self.wait_s = 0.0

    def copy(self) -> "Ledger":
        out = Ledger()
        out.coef.update(self.coef)
        out.device_s, out.wait_s = self.device_s, self.wait_s
        return out

    def add_scaled_diff(self, after: "Ledger", before: "Ledger", k: float) -> None:
        """self += k * (after - before)."""
        for name, c in after.coef.items():
            d = c - before.coef.get(name, 0.0)
            if d:
                self.coef[name] += k * d
        self.device_s += k * (after.device_s - before.device_s)
        self.wait_s += k * (after.wait_s - before.wait_s)

    def scaled(self, k: float) -> "Ledger":
        out = Ledger()
        for name, c in self.coef.items():
            out.coef[name] = c * k
        out.device_s, out.wait_s = self.device_s * k, self.wait_s * k
        return out

    def linear_time(self, values: dict) -> float:
        return sum(c * values[n] for n, c in self.coef.items())


class Ctx:
    """A thread of execution that work is charged to."""

    def __init__(self, name: str):
        self.name = name
        self.ledger = Ledger()


class Sim:
    """One simulation run: a SimPy environment, the parameters and the granularity.

    mode "aggregate": runs of identical requests are charged at once, data moves in
    pieces of AGG_CHUNK, and repeats that start and end in the same quiet state are
    extrapolated. mode "request": every request is one event, caches track every
    page (LRU), nothing is extrapolated. Tests check both agree.
    """

    def __init__(self, params, mode: str = "aggregate"):
        if mode not in ("aggregate", "request"):
            raise ValueError(mode)
        self.env = simpy.Environment()
        self.p = params
        self.mode = mode
        self.caches = []     # PageCache instances (their state is the system's state)
        self.devices = []    # BlockDevice instances

    @property
    def now(self) -> float:
        return self.env.now

    def cpu(self, ctx: Ctx, terms: dict, factor: float = 1.0):
        """Charge per-call costs (name -> count) at `factor` (guest CPU slow-down)."""
        # the hot path of every simulation: plain dict reads, recording what was read
        # for the memo exactly as Params.__getitem__ would
        t = 0.0
        coef = ctx.ledger.coef
        p = self.p
        used = getattr(p, "used", None)
        get = dict.__getitem__
        for name, count in terms.items():
            if count:
                c = count * factor
                t += c * get(p, name)
                coef[name] += c
                if used is not None:
                    used.add(name)
        if t > 0:
            yield self.env.timeout(t)

    def wait(self, ctx: Ctx, event):
        t0 = self.env.now
        yield event
        ctx.ledger.wait_s += self.env.now - t0

    # -- exact aggregation ------------------------------------------------------------
    def quiet(self) -> bool:
        return all(c.quiet() for c in self.caches) and all(not d.busy for d in self.devices)

    def state(self, full: bool = False) -> tuple:
        """The system's state; `full` adds where background work is in flight (as times
        relative to now, rounded to 0.1 µs so equal phases compare equal)."""
        return (tuple(c.state(full) for c in self.caches)
                + (tuple(d.state() for d in self.devices) if full else ()))

    def repeat(self, ctx: Ctx, count: float, unit, top: bool = False):
        """Run `unit()` (a generator function) `count` times.

        Aggregate mode: the simulation is deterministic, so a unit that starts with no
        background activity and leaves the system in exactly the state it found it in
        will take exactly as long, and cost exactly the same, every further time. We run
        units until that happens and then advance the clock by the remaining count at
        once. At the top level (the probe's repetitions, after which nothing else is
        asked of the system) background work may be in flight: if a repetition ends in
        the same phase of that work as the previous one, the system is periodic and
        every further repetition repeats it. A fractional count (a fitted average such as flushes per guest fsync)
        charges that fraction of the last unit.
        """
        whole = math.floor(count + 1e-12)
        done = 0
        last = None
        periodic_prev = None
        while done < whole:
            quiet_before = self.mode == "aggregate" and self.quiet()
            s0 = self.state() if quiet_before else None
            t0, l0 = self.env.now, ctx.ledger.copy()
            yield from unit()
            done += 1
            last = (self.env.now - t0, ctx.ledger.copy(), l0)
            if quiet_before and self.quiet() and self.state() == s0:
                rest = count - done
                yield from self._advance(ctx, last, rest)
                return
            if top and self.mode == "aggregate" and done < whole:
                s1 = (self.state(full=True), round(last[0], 7))
                if s1 == periodic_prev:
                    yield from self._advance(ctx, last, count - done)
                    return
                periodic_prev = s1
        frac = count - whole
        if frac > 1e-12:
            if last is None:
                raise ValueError("a fractional repeat needs at least one whole unit")
            yield from self._advance(ctx, last, frac)

    def _advance(self, ctx, last, k):
        dt, after, before = last
        if k <= 0:
            return
        ctx.ledger.add_scaled_diff(after, before, k)
        if dt * k > 0:
            yield self.env.timeout(dt * k)
