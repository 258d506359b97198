"""The tuner's phases: what it does with each measured level (see ``tune.py``'s docstring).

A mixin of :class:`trunkline.engine.tune.Tuner`, apart so that each file stays small: the
loop, the limits and the reactions to trouble are in ``tune.py``; slow start, growth after
a back-off, hold, the probe up and the trim down are here.
"""

from __future__ import annotations

from .decision import Decision, pct


class TunerPhases:
    """Slow start, avoid, hold, probe and trim; state and helpers live in ``Tuner``."""

    def _slow_start(self, now: float, level: float) -> Decision | None:
        c = self.connections
        prev = self._prev
        if self._cap_binds(level):
            # growth is bounded by what the cap can use (``_cap_room``), so a step that
            # reached the cap and paid was the least that did: keep it. One that gained
            # within the noise is undone (the cap bound before it, unseen under the noise)
            paid = prev is not None and level > prev[1] * (1 + self.bar)
            back = prev[0] if prev is not None and not paid else c
            self._prev = None
            return self._hold_at(now, level, f"rate cap binds ({pct(level, self.rate_cap or 0)}"
                                 " of it)", back=min(back, c))
        if prev is None or level > prev[1] * (1 + self.bar):
            limit = self._limit(level)
            why = "start" if prev is None else f"goodput {pct(level, prev[1])}"
            part = None
            if (c >= limit and self._memory_bound() and self._cap_at(self.part_size) <= c
                    and self.part_size // 2 >= self.min_part_size):
                # memory, not the path, stops growth: smaller parts buy more connections
                part = self.part_size // 2
                limit = self._limit(level, part)
                why += ", memory-bound: halve parts"
            if c >= limit:
                if self._work_room(level, part or self.part_size) <= c:
                    return self._hold_at(now, level, f"too little work left to measure a "
                                                     f"step from {c} connections")
                return self._hold_at(now, level, f"at the limit ({c} connections)")
            self._prev = (c, level)
            return self._change(now, level, min(limit, c * 2), part, f"{why}: grow")
        back = prev[0]  # the step did not pay: fewer connections for the same goodput
        self._prev = None
        msg = f"{prev[0]} -> {c} connections gave {pct(level, prev[1])}: hold at {back}"
        self.phase = "hold"
        self._held = max(level, prev[1])
        self._hold_count = 0
        if back != c:
            return self._change(now, level, back, None, msg)
        return self._log(now, level, msg)

    def _avoid(self, now: float, level: float) -> Decision | None:
        """After a back-off: grow by an eighth per step up to the ceiling."""
        c = self.connections
        prev = self._prev
        if prev is not None and level <= prev[1] * (1 + self.bar) and prev[0] < c:
            self._prev = None
            return self._hold_at(now, level, f"growth to {c} gave {pct(level, prev[1])}",
                                 back=prev[0],
                                 held=prev[1])
        limit = self._limit(level)
        if self._cap_binds(level):
            return self._hold_at(now, level, "rate cap binds")
        if c >= limit:
            return self._hold_at(now, level, f"at the ceiling ({c} connections)")
        self._prev = (c, level)
        return self._change(now, level, min(limit, c + max(1, c // 8)), None,
                            "clean since back-off: grow slowly")

    def _hold(self, now: float, level: float) -> Decision | None:
        c = self.connections
        self._hold_count += self.measure
        if self._held and level < self._held * (1 - self.drop):
            self.phase, self._prev, self._held = "slow_start", None, level
            self._trim_ref = None
            return self._slow_start(now, level)
        self._held = level if not self._held else 0.8 * self._held + 0.2 * level
        if self._hold_count >= self.probe_every:
            self._hold_count = 0
            limit = self._limit(level)
            grow = c < limit and not self._cap_binds(level)
            lower = max(self.min_connections, self._shed_floor, int(c * self.trim))
            if lower < c and (self._trim_next or not grow):
                self._trim_next = False
                if self._trim_skip > 0:   # a recent trim failed: wait longer
                    self._trim_skip -= 1
                else:
                    self.phase, self._prev = "trim", (c, level)
                    self._trim_ref = self._trim_ref or self._held or level
                    return self._change(now, level, lower, None, "trim one step down")
            else:
                self._trim_next = True
            if grow:
                self.phase = "probe"
                self._prev = (c, level)
                return self._change(now, level, min(limit, max(c + 1, int(c * 1.25))), None,
                                    "probe one step up")
        return None

    def _trim(self, now: float, level: float) -> Decision | None:
        prev, ref = self._prev, self._trim_ref or 0.0
        assert prev is not None
        self._prev = None
        # fewer connections carry the same: keep them. The tolerance is the noise bar but
        # at most twice ``gain``: on a noisy machine (bar 40 %+) a trim must not be kept
        # for a loss that large (seen in bench/soak.py under load: "6 -> 4 kept -39%").
        if level >= ref * (1 - min(self.bar, 2 * self.gain)):
            self._trim_next, self._trim_wait = True, 1
            return self._hold_at(now, level, f"{prev[0]} -> {self.connections} connections "
                                 f"kept {pct(level, ref)}")
        self._trim_ref, self._trim_skip = None, self._trim_wait
        self._trim_wait = min(16, self._trim_wait * 2)
        return self._hold_at(now, level, f"trim gave {pct(level, ref)}", back=prev[0],
                             held=prev[1])

    def _probe(self, now: float, level: float) -> Decision | None:
        prev = self._prev
        assert prev is not None
        if level > prev[1] * (1 + self.bar) and not self._cap_binds(level):
            self.phase, self._trim_ref = "slow_start", None
            return self._slow_start(now, level)
        self._prev = None
        return self._hold_at(now, level, f"probe gave {pct(level, prev[1])}", back=prev[0],
                             held=prev[1])

    def _hold_at(self, now: float, level: float, why: str, back: int | None = None,
                 held: float | None = None) -> Decision | None:
        self.phase = "hold"
        self._hold_count = 0
        self._held = held if held is not None else level
        if back is not None and back != self.connections:
            return self._change(now, level, back, None, f"{why}: back to {back}")
        return self._log(now, level, f"{why}: hold")
