"""The run's bounds: how many workers may be active, and how many bytes part buffers hold.

Both are resized or consulted from several threads, so each is a small monitor here, apart
from the scheduler that sets them (the tuner moves the gate) and the kinds that draw on
the memory budget (streams between stores).
"""

from __future__ import annotations

import threading

__all__ = ["Gate", "MemoryBudget"]


class Gate:
    """A resizable limit on concurrently active workers (set by the tuner)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0
        self.cv = threading.Condition()

    def acquire(self) -> None:
        with self.cv:
            while self.active >= self.limit:
                self.cv.wait()
            self.active += 1

    def release(self) -> None:
        with self.cv:
            self.active -= 1
            self.cv.notify()

    def resize(self, limit: int) -> None:
        with self.cv:
            self.limit = max(1, limit)
            self.cv.notify_all()


class MemoryBudget:
    """Bounds the bytes held in part buffers (cross-endpoint streaming)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.cv = threading.Condition()
        self.free: dict[int, list[bytearray]] = {}
        self.peak = 0

    def get(self, n: int) -> bytearray:
        with self.cv:
            while self.used + n > self.limit and self.used > 0:
                self.cv.wait()
            self.used += n
            self.peak = max(self.peak, self.used)
            pool = self.free.get(n)
            if pool:
                buf = pool.pop()
                if not pool:
                    del self.free[n]
                return buf
        return bytearray(n)

    def put(self, buf: bytearray) -> None:
        with self.cv:
            self.used -= len(buf)
            pooled = sum(len(b) for bs in self.free.values() for b in bs)
            # keep pooled + used within the budget: drop the buffer instead of pooling it
            if pooled + len(buf) + self.used <= self.limit:
                self.free.setdefault(len(buf), []).append(buf)
            self.cv.notify_all()
