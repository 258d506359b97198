"""``--bwlimit`` that binds: token buckets, overall and per endpoint.

Reservation ("debt") buckets: ``acquire(n)`` takes n tokens at once, even into the
negative, and sleeps until the debt is repaid. Sleep overshoot then never compounds (the
next caller's wait is computed from tokens, not from when anyone woke), so the long-run
rate is the cap to within burst/elapsed, whatever the number of threads. The engine calls
``acquire`` after each received or before each sent chunk (256 KiB - 1 MiB); the cost of a
call that need not wait is one lock and one clock read.

Each cap counts a byte once: the overall cap where the transfer takes it in (a download's
or a stream's receive, an upload's send), an endpoint's cap where the byte comes from or
goes to that endpoint. A stream between stores receives and sends each byte; its send
charges only the destination's own cap (``overall=False``), so ``--bwlimit 500M`` moves
500 MiB/s whichever way the bytes go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import UsageError

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_BURST_S = 0.02
"""Default burst: 20 ms of the rate (at least 256 KiB), small enough to bind at 1 s scale."""

MIN_BURST = 256 * 1024


class TokenBucket:
    """A thread-safe token bucket of ``rate`` bytes/s holding at most ``burst`` bytes.

    Starts full. ``clock`` and ``sleep`` are injectable so tests run in virtual time.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last", "_lock", "_clock", "_sleep")

    def __init__(
        self,
        rate_bytes_per_s: float,
        burst_bytes: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_bytes_per_s <= 0:
            raise UsageError("rate must be positive")
        self.rate = float(rate_bytes_per_s)
        if burst_bytes is None:
            burst_bytes = max(MIN_BURST, self.rate * DEFAULT_BURST_S)
        if burst_bytes <= 0:
            raise UsageError("burst must be positive")
        self.burst = float(burst_bytes)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, n: int) -> float:
        """Take ``n`` tokens now (going into debt if need be); return seconds to wait."""
        with self._lock:
            now = self._clock()
            t = self._tokens + (now - self._last) * self.rate
            self._last = now
            if t > self.burst:
                t = self.burst
            t -= n
            self._tokens = t
        return 0.0 if t >= 0 else -t / self.rate

    def acquire(self, n: int) -> None:
        """Block until ``n`` bytes may pass. Large ``n`` is split into burst-sized pieces so
        other threads interleave and no caller ever releases more than one burst at once."""
        piece = int(self.burst) or 1
        while n > 0:
            k = piece if n > piece else n
            n -= k
            wait = self.reserve(k)
            if wait > 0:
                self._sleep(wait)

    @property
    def tokens(self) -> float:
        """Tokens now (negative: outstanding debt); for tests and display."""
        with self._lock:
            t = self._tokens + (self._clock() - self._last) * self.rate
        return min(t, self.burst)


class RateLimiter:
    """An overall cap and per-endpoint caps; either may be ``None`` (unlimited).

    ``per_endpoint`` is one rate for every endpoint, or a mapping endpoint -> rate (endpoints
    absent from the mapping are unlimited). Both buckets are reserved together and the
    caller sleeps for the longer wait, so two binding caps do not add their delays.
    """

    def __init__(
        self,
        overall_bytes_per_s: float | None = None,
        per_endpoint: float | dict[str, float] | None = None,
        *,
        burst_s: float = DEFAULT_BURST_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._burst_s = burst_s
        self._clock = clock
        self._sleep = sleep
        self.overall = self._bucket(overall_bytes_per_s) if overall_bytes_per_s else None
        self._per = per_endpoint
        self._buckets: dict[str, TokenBucket | None] = {}
        self._lock = threading.Lock()

    def _bucket(self, rate: float) -> TokenBucket:
        burst = max(MIN_BURST, rate * self._burst_s)
        return TokenBucket(rate, burst, clock=self._clock, sleep=self._sleep)

    def endpoint(self, name: str) -> TokenBucket | None:
        """The bucket of one endpoint (created on first use), or None if unlimited."""
        b = self._buckets.get(name, False)
        if b is not False:
            return b  # type: ignore[return-value]
        with self._lock:
            if name not in self._buckets:
                per = self._per
                rate = per.get(name) if isinstance(per, dict) else per
                self._buckets[name] = self._bucket(rate) if rate else None
            return self._buckets[name]

    @property
    def enabled(self) -> bool:
        return self.overall is not None or bool(self._per)

    def acquire(self, endpoint: str, n: int, *, overall: bool = True) -> None:
        """Block until ``n`` bytes to or from ``endpoint`` may pass under every cap (with
        ``overall=False``, under the endpoint's cap alone: bytes the overall cap counted)."""
        ep = self.endpoint(endpoint)
        ov = self.overall if overall else None
        if ep is None and ov is None:
            return
        piece = int(min(b.burst for b in (ep, ov) if b is not None)) or 1
        while n > 0:
            k = piece if n > piece else n
            n -= k
            w1 = ep.reserve(k) if ep is not None else 0.0
            w2 = ov.reserve(k) if ov is not None else 0.0
            wait = w1 if w1 > w2 else w2
            if wait > 0:
                self._sleep(wait)
