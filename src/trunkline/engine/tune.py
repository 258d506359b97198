"""The closed-loop tuner: connections and part size from what the path answers.

Sans-I/O: the engine calls :meth:`Tuner.observe` with cumulative counters and the time;
the tuner returns a :class:`Decision` when the setting should change. The loop:

* **start** - 16 connections (the engine's ``INITIAL_CONNECTIONS``), fewer for small
  objects from a store that answers quickly (``start_level``: Little's law).
* **slow start** - double the connections while each step raises goodput by more than
  ``gain`` (5 %); when a step stops paying, go back to the previous level and hold.
* **back off** - on SlowDown/503 or an error burst, drop to the last level that ran clean
  (or x0.7), and remember a ceiling just below where it hurt; then grow additively up
  to it. On TTFB or RTT inflation (x2 over the minimum seen, with retransmits for RTT)
  for two intervals once slow start has ended, shed 15 %: more connections only queue;
  a shed that loses goodput is undone, and no shedding goes below that level again.
* **hold** - watch goodput; a drop of a quarter restarts the search, and every
  ``probe_every`` intervals one step is tried, up and down in turn: up (so a path that
  got better is used) and **trim** down by a quarter (kept while goodput stays within the
  bar, at most 10 %, of the level before the first trim; a failed trim waits twice as
  long before the next). So a transfer that started above what its path needs (a server or a WAN link
  that caps the rate) comes down to the fewest connections that carry it.
* **frugal** - a step must beat the noise: the bar is the larger of ``gain`` and twice the
  spread measured between intervals at one level, and a step under it is undone. So no
  step is taken that the work left could not measure (a short transfer grows no further
  than it can judge). Under a binding rate cap (``--bwlimit``: goodput at ``capped`` of
  the cap) the tuner does not grow, then or later: every idle connection costs the store
  a socket and a request slot. Below the cap, growth goes no further than the cap can
  use: goodput grows at best in proportion to connections, so at most
  ``connections x cap / goodput``.
* **part size** - once connections stop paying, doubled while a request's TTFB is over
  10 % of a part's transfer time (per-request overhead dominates); halved during slow
  start when memory, not the path, caps connections.

Each level is measured after one settling interval (new connections ramp up) over
``measure`` intervals, so one step takes (1 + measure) x ``interval`` seconds.
"""

from __future__ import annotations

import math

from ..errors import UsageError
from ..units import MiB
from .decision import Decision, pct
from .latency import Latency
from .tune_phases import TunerPhases

__all__ = ["Decision", "Tuner", "start_level"]

SMALL_OBJECT_BYTES = 1 << 20
"""An object moved in one request of at most this size is small: the interpreter's work
per object (request, answer, file), not the bytes, is what it costs."""
CLIENT_S_PER_SMALL_OBJECT = 0.001
"""One process's own time per small object, user and system (the system calls are on its
path too): 1.1-1.4 ms measured on the 2-core VM, 0.9 ms on 16 cores (bench/RESULTS.md,
issue 18); rounded down, so the estimate errs toward more connections."""


def start_level(initial: int, small: bool, round_trip_s: float | None,
                sharing: int = 1) -> int:
    """Connections the tuner starts with.

    Small objects from a store that answers quickly: enough connections for the store's
    answers to arrive while this process works on others (Little's law: one plus the
    answer time over the process's time per object), at least 2. More only add threads
    waiting for the interpreter lock: on loopback, one process moved 3,000 x 256 KiB
    24 % faster from this start than from the usual 16, with 21 % less CPU per object
    (bench/RESULTS.md). A store ~15 ms away or more gets ``initial``, as does anything
    else: large parts are moved by the compiled loop without the lock, and a long path
    needs many connections from the first second. Slow start grows from either level
    while growth pays. Unknown round trip: ``initial``. ``sharing`` runs of one process
    at once (a cluster worker's shards in flight) share that level."""
    if not small or round_trip_s is None:
        return initial
    level = max(2, 1 + math.ceil(round_trip_s / CLIENT_S_PER_SMALL_OBJECT))
    return min(initial, max(1, math.ceil(level / max(1, sharing))))


class Tuner(TunerPhases):
    """Connections and part size for one transfer; see the module docstring."""

    gain = 0.05
    """A step must raise goodput by more than this to count as paying."""
    backoff = 0.7
    inflation = 2.0
    """TTFB/RTT over this multiple of the minimum seen counts as inflation."""
    drop = 0.25
    """Goodput this much below the held level restarts the search."""
    overhead = 0.10
    """TTFB above this share of a part's transfer time doubles the part size."""
    settle = 1
    measure = 2
    probe_every = 20
    trim = 0.75
    """A trim tries this share of the connections."""
    ceiling_ttl = 60.0
    """Seconds a SlowDown ceiling is remembered before growth may pass it again."""
    capped = 0.9
    """Goodput at this share of a rate cap means the cap binds: no growth."""

    def __init__(
        self,
        max_connections: int,
        max_memory: int,
        part_size: int,
        min_connections: int = 1,
        initial_connections: int | None = None,
        min_part_size: int = 5 * MiB,
        max_part_size: int = 512 * MiB,
        interval: float = 0.5,
        rate_cap: float | None = None,
    ) -> None:
        if max_connections < 1 or min_connections < 1 or min_connections > max_connections:
            raise UsageError("need 1 <= min_connections <= max_connections")
        if not 0 < min_part_size <= max_part_size or part_size <= 0 or max_memory <= 0:
            raise UsageError("part sizes and memory must be positive, min <= max")
        self.max_connections = max_connections
        self.min_connections = min_connections
        self.max_memory = max_memory
        self.min_part_size = min_part_size
        self.max_part_size = max_part_size
        self.interval = interval
        self.rate_cap = rate_cap
        """Bytes/s the transfer may not exceed (a bandwidth limit), if any."""
        self.part_size = min(max(part_size, min_part_size), max_part_size)
        start = initial_connections if initial_connections is not None else 4
        self.connections = self._clamp(start)
        self.decisions: list[Decision] = []
        self.phase = "slow_start"
        # interval bookkeeping
        self._t: float | None = None
        self._bytes = self._req = self._err = self._slow = self._retx = 0
        self._since_change = 0
        self._samples: list[float] = []
        self._dirty = False  # a SlowDown/error burst was seen at this level
        self._cooldown = 0
        # what was learned
        self._prev: tuple[int, float] | None = None  # (connections, goodput) before a step
        self._held, self._last_clean = 0.0, 0
        self._ceiling, self._ceiling_at = max_connections, 0.0
        self._hold_count = 0
        self.latency, self._ttfb_tot = Latency(), 0.0
        self._inflated = 0
        self._shed: tuple[int, float] | None = None  # (connections, goodput) before a shed
        self._shed_floor = 0
        self._cap_level = max_connections  # fewest connections seen reaching the rate cap
        self._trim_next, self._trim_wait, self._trim_skip = True, 1, 0
        self._trim_ref: float | None = None  # goodput held before the first trim
        self._remaining: int | None = None   # bytes left, once the listing is complete
        self.goodput = 0.0
        """Smoothed goodput in bytes/s (EWMA of interval goodput)."""
        self.noise = 0.0
        """Relative spread of interval goodput within one level (EWMA)."""

    # ------------------------------------------------------------ limits
    @property
    def cap(self) -> int:
        """Most connections now allowed: flag, memory (connections x part) and ceiling."""
        return self._cap_at(self.part_size)

    def _cap_at(self, part_size: int) -> int:
        mem = self.max_memory // part_size
        return max(self.min_connections, min(self.max_connections, mem))

    def rebound(self, max_memory: int, connections: int) -> None:
        """Set the memory bound and the starting level before the first observation (the
        engine learns whether parts are held in memory only from its first job)."""
        self.max_memory = max_memory
        self.connections = self._clamp(connections)

    def _clamp(self, c: int) -> int:
        return max(self.min_connections, min(int(c), self.cap))

    # ------------------------------------------------------------ the loop
    def observe(
        self,
        now: float,
        bytes_done: int,
        *,
        requests_done: int = 0,
        errors: int = 0,
        slowdowns: int = 0,
        ttfb_s: float | None = None,
        rtt_us: float | None = None,
        retransmits: int = 0,
        ttfb_total_s: float | None = None,
        remaining_bytes: int | None = None,
    ) -> Decision | None:
        """Feed cumulative counters; return a Decision when the tuner decided something
        (a change of setting, or a logged hold), else None.

        ``bytes_done``, ``requests_done``, ``errors``, ``slowdowns``, ``retransmits`` and
        ``ttfb_total_s`` (the sum of every request's TTFB) are totals since the start;
        ``ttfb_s`` (a recent mean TTFB) and ``rtt_us`` (smoothed RTT, from TCP_INFO) are
        current values. Give ``ttfb_total_s`` or ``ttfb_s``, not both: a mean since the
        start would hide inflation. ``remaining_bytes`` (once the listing is complete):
        in the tail, when fewer than two parts per connection are left, goodput falls
        because work runs out, not because of the setting, so nothing is measured then.
        """
        if ttfb_s:
            self.latency.add_ttfb(ttfb_s)
        if rtt_us:
            self.latency.add_rtt(rtt_us / 1e6)
        t0, b0, r0, e0, s0, x0 = self._t, self._bytes, self._req, self._err, self._slow, self._retx
        if t0 is not None and now - t0 < self.interval:
            return None
        self._remaining = remaining_bytes
        tail = remaining_bytes is not None and remaining_bytes < 2 * self.connections * self.part_size
        if t0 is not None and not tail and ttfb_total_s is not None and requests_done > r0:
            self.latency.add_ttfb((ttfb_total_s - self._ttfb_tot) / (requests_done - r0))
        self._t, self._bytes, self._req = now, bytes_done, requests_done
        self._err, self._slow, self._retx = errors, slowdowns, retransmits
        self._ttfb_tot = ttfb_total_s or 0.0
        if t0 is None or tail:   # the first call, or the tail: work runs out, nothing to measure
            if tail:
                self._samples.clear()
            return None
        g = max(0, bytes_done - b0) / (now - t0)
        self.goodput = g if self.goodput == 0 else 0.6 * self.goodput + 0.4 * g
        self._since_change += 1
        if self._ceiling < self.max_connections and now - self._ceiling_at > self.ceiling_ttl:
            self._ceiling = self.max_connections
        return self._step(now, g, requests_done - r0, errors - e0, slowdowns - s0,
                          retransmits - x0)

    def _step(self, now: float, g: float, d_req: int, d_err: int, d_slow: int,
              d_retx: int) -> Decision | None:
        c = self.connections
        hurt = d_slow > 0 or d_err >= max(2, 0.05 * d_req)
        if hurt and self._since_change > self.settle:
            self._dirty = True
        if self._cooldown > 0:
            self._cooldown -= 1
        elif hurt:
            what = f"{d_slow} SlowDown" if d_slow > 0 else f"{d_err} errors in {d_req} requests"
            return self._back_off(now, g, what)
        # Not during slow start: there each step must raise goodput to be kept, so latency
        # that rises while goodput rises is the price of filling the path, not a queue we
        # built for nothing (on a short transfer, shedding then cost a quarter of the rate).
        if self.latency.inflated(self.inflation, d_retx) and self.phase != "slow_start":
            self._inflated += 1
            if self._inflated >= 2 and c > max(self.min_connections, self._shed_floor):
                self._inflated = -(self.settle + 2)  # let the smoothed latency recover
                self._ceiling, self._ceiling_at = max(self.min_connections, c - 1), now
                self._shed = (c, self._held or self.goodput)
                self.phase, self._prev = "hold", None
                self._hold_count = 0
                self._held = 0.0
                return self._change(now, g, int(c * 0.85), None,
                                    f"latency x{self.latency.ratio():.1f} of minimum: shed")
        else:
            self._inflated = min(self._inflated + 1, 0) if self._inflated < 0 else 0
        if self._since_change <= self.settle:
            return None
        self._samples.append(g)
        if len(self._samples) < self.measure:
            return None
        level = sum(self._samples) / len(self._samples)
        if level > 0:
            spread = (max(self._samples) - min(self._samples)) / level
            self.noise = spread if self.noise == 0 else 0.7 * self.noise + 0.3 * spread
        self._samples.clear()
        if not self._dirty:
            self._last_clean = c
        shed, self._shed = self._shed, None
        if shed is not None and level < shed[1] * (1 - self.gain):
            # the latency was the price of goodput: go back, and shed no lower again
            self._shed_floor = shed[0]
            self._ceiling = self.max_connections
            return self._hold_at(now, level, f"shedding lost {pct(level, shed[1])}",
                                 back=shed[0], held=shed[1])
        if self.phase == "hold":
            part = self._grow_part(now, level)
            if part is not None:
                return part
        return getattr(self, f"_{self.phase}")(now, level)

    # ------------------------------------------------------------ reactions
    def _back_off(self, now: float, g: float, what: str) -> Decision | None:
        c = self.connections
        if self._last_clean >= c:
            self._last_clean = 0  # the level that was clean no longer is
        target = max(int(c * self.backoff), self._last_clean)
        self._ceiling = max(self.min_connections, c - max(1, c // 10))
        self._ceiling_at = now
        self._cooldown = self.settle + 1
        self.phase = "avoid"
        self._prev = None
        if target >= c and c <= self.min_connections:
            return self._log(now, g, f"{what} at the minimum of {c} connections")
        return self._change(now, g, min(target, self._ceiling), None, f"{what}: back off")

    @property
    def bar(self) -> float:
        """What a step must gain to count as paying: ``gain``, or twice the measured spread
        between intervals if larger (the difference of two noisy levels)."""
        return max(self.gain, 2 * self.noise)

    def _cap_binds(self, level: float) -> bool:
        """The rate cap binds at this level; the connections that reached it are then
        enough for the rest of the transfer (a later dip is not a reason to add more)."""
        binds = bool(self.rate_cap) and level >= self.capped * (self.rate_cap or 0)
        if binds:
            self._cap_level = min(self._cap_level, self.connections)
        return binds

    def _limit(self, level: float, part_size: int | None = None) -> int:
        """Most connections growth may reach now: flag/memory (at ``part_size``, the
        current one by default), SlowDown ceiling, rate cap, the work left to measure."""
        return min(self._cap_at(part_size or self.part_size), self._ceiling, self._cap_level,
                   self._cap_room(level), self._work_room(level, part_size or self.part_size))

    def _work_room(self, level: float, part_size: int) -> int:
        """Most connections whose step the work left can still measure: a step is judged
        after (settle + measure + 1) intervals, and nothing is measured once fewer than two
        parts per connection are left (``observe``'s tail). A step past that can never be
        undone, however little it pays: the 1 GiB of a stream between two stores grew
        16 -> 32 at its first measurement and ran all its length there, unmeasured, for
        no gain (the same wall at 18: bench/RESULTS.md), each connection a socket and a
        request slot of the store. Unknown until the listing is complete: no bound then."""
        if self._remaining is None:
            return self.max_connections
        left = self._remaining - level * (self.settle + self.measure + 1) * self.interval
        return max(self.min_connections, int(left // (2 * part_size)))

    def _cap_room(self, level: float) -> int:
        """Most connections a rate cap can use from ``level``: goodput grows at best in
        proportion to connections, so past ``connections x cap / level`` more only idle
        (each holding a socket and a request slot of the store). A capped upload measured
        at 88 % of its cap otherwise doubled 16 -> 32 and ended there (CI, 2026-11-30)."""
        if not self.rate_cap or level <= 0:
            return self.max_connections
        return max(self.min_connections,
                   math.ceil(self.connections * self.rate_cap / level - 1e-9))

    def _memory_bound(self) -> bool:
        mem = self.max_memory // self.part_size
        return mem < self.max_connections and mem < self._ceiling

    def _grow_part(self, now: float, level: float) -> Decision | None:
        """Once connections stopped paying: bigger parts while TTFB dominates a part's time.

        Not earlier: per byte of memory, more connections with small parts carry more
        (rate/part = 1/(TTFB + part/rate_per_connection) falls as parts grow).
        """
        c = self.connections
        ttfb = self.latency.ttfb
        if level <= 0 or ttfb is None:
            return None
        share = ttfb / (self.part_size / (level / c))
        bigger = self.part_size * 2
        if share > self.overhead and bigger <= self.max_part_size and c * bigger <= self.max_memory:
            return self._change(now, level, c, bigger,
                                f"TTFB {ttfb * 1e3:.0f} ms is {share:.0%} of a part: "
                                "bigger parts")
        return None

    # ------------------------------------------------------------ record
    def _change(self, now: float, g: float, c: int, part: int | None, reason: str) -> Decision:
        if part is not None:
            self.part_size = min(max(part, self.min_part_size), self.max_part_size)
        self.connections = self._clamp(c)
        self._dirty = False
        self._since_change = 0
        self._samples.clear()
        return self._log(now, g, reason)

    def _log(self, now: float, g: float, reason: str) -> Decision:
        d = Decision(self.connections, self.part_size, reason, g * 8, now)
        self.decisions.append(d)
        return d
