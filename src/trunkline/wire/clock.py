"""The store's clock against this host's, from the ``Date`` of its answers.

Why: ``sync`` to a store decides "changed" by comparing a file's time (this host's clock,
or whoever wrote the file) with the object's LastModified (the store's clock). A store
whose clock is ahead makes an edit made within that lead after an upload look older than
the upload: the file stays behind, unchanged at the store. Each answer's ``Date`` (whole
seconds, truncated) was stamped between the request's send and its head's arrival, so it
bounds the offset; the bounds of many answers are intersected.
"""

from __future__ import annotations

import threading

from .http1 import http_date

__all__ = ["ClockSamples", "clock_offset"]


def clock_offset(dates: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """(the store's clock minus this host's, +/- error) from answers: (this host's time
    before, after, the answer's ``Date``). The store's time of an answer lies in [Date,
    Date + 1) and was taken between before and after, so each answer bounds the offset to
    [Date - after, Date + 1 - before]; all bounds are intersected (where they do not meet,
    a clock stepped: the median of the midpoints, +/- 1 s)."""
    if not dates:
        return None
    lo = max(d - after for before, after, d in dates)
    hi = min(d + 1 - before for before, after, d in dates)
    if lo <= hi:
        return (lo + hi) / 2, (hi - lo) / 2
    mids = sorted(d + 0.5 - (before + after) / 2 for before, after, d in dates)
    return mids[len(mids) // 2], 1.0


class ClockSamples:
    """The ``Date`` samples of one endpoint's answers (the last ``keep``), thread-safe."""

    def __init__(self, keep: int = 64) -> None:
        self._samples: list[tuple[float, float, float]] = []
        self._keep = keep
        self._lock = threading.Lock()
        self._known: tuple[float, float] | None = None   # offset() until the next add

    def add(self, before: float, after: float, date_header: str | None) -> None:
        date = http_date(date_header)
        if date is None or not after >= before:
            return
        with self._lock:
            self._samples.append((before, after, date))
            if len(self._samples) > self._keep:
                del self._samples[0]
            self._known = clock_offset(self._samples)

    def offset(self) -> tuple[float, float] | None:
        """(store minus host seconds, +/- error), None before any answer with a Date; asked
        once per decision of a sync, so kept, not computed per call."""
        return self._known
