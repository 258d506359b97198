"""Latency as the tuner reads it: smoothed TTFB and RTT, each with the minimum seen.

Sans-I/O, apart from the tuner's phases because it is a signal, not a decision: "the path
got slower" means the smoothed value is a multiple of its minimum and at least a few
milliseconds above it (jitter on a LAN is not a queue), and for RTT only while segments
are being retransmitted (a deep buffer that fills without loss is not acted on).
"""

from __future__ import annotations


class Latency:
    """EWMA (0.7 old / 0.3 new) of TTFB and RTT, and their minimums, in seconds."""

    __slots__ = ("ttfb", "ttfb_min", "rtt", "rtt_min")

    def __init__(self) -> None:
        self.ttfb: float | None = None
        self.ttfb_min: float | None = None
        self.rtt: float | None = None
        self.rtt_min: float | None = None

    def add_ttfb(self, x: float) -> None:
        if x <= 0:
            return
        self.ttfb = x if self.ttfb is None else 0.7 * self.ttfb + 0.3 * x
        self.ttfb_min = x if self.ttfb_min is None else min(self.ttfb_min, x)

    def add_rtt(self, r: float) -> None:
        if r <= 0:
            return
        self.rtt = r if self.rtt is None else 0.7 * self.rtt + 0.3 * r
        self.rtt_min = r if self.rtt_min is None else min(self.rtt_min, r)

    def ratio(self) -> float:
        """The larger of TTFB/min and RTT/min, where each is meaningfully above its min."""
        r = 1.0
        if self.ttfb and self.ttfb_min and self.ttfb - self.ttfb_min > 0.010:
            r = self.ttfb / self.ttfb_min
        if self.rtt and self.rtt_min and self.rtt - self.rtt_min > 0.005:
            r = max(r, self.rtt / self.rtt_min)
        return r

    def inflated(self, factor: float, retransmits: int) -> bool:
        """TTFB over ``factor`` x its minimum (and 10 ms above it), or RTT over ``factor``
        x its minimum (and 5 ms above it) while segments were retransmitted."""
        ttfb = (self.ttfb is not None and self.ttfb_min is not None
                and self.ttfb - self.ttfb_min > 0.010 and self.ttfb > factor * self.ttfb_min)
        rtt = (self.rtt is not None and self.rtt_min is not None and retransmits > 0
               and self.rtt - self.rtt_min > 0.005 and self.rtt > factor * self.rtt_min)
        return ttfb or rtt
