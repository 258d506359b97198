"""The run's data connections: one pool per origin, and the record of every one closed.

Why apart from the scheduler: connection lifetime is ``wire/pool.py``'s; what a run adds
is one pool per origin (endpoints on one host share it), its read timeout, minimum rate
and bound, and the stats of each connection when it closes, which become the run's flow records
(``telemetry/flows_export.py``).
"""

from __future__ import annotations

import threading

from ..storage.s3 import S3Endpoint
from ..wire.connection import Connection, ConnectionStats
from ..wire.pool import ConnectionPool
from ..wire.speed_guard import SpeedGuard

__all__ = ["RunConnections"]


class RunConnections:
    """The pools of one run, keyed by origin."""

    def __init__(self, read_timeout: float, max_idle: int,
                 min_rate: tuple[float, float] | None = None):
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        # (bytes/s, seconds): one minimum-rate watchdog for the run's data connections
        self.speed_guard = SpeedGuard(*min_rate) if min_rate else None
        self._pools: dict[tuple, ConnectionPool] = {}
        self._closed: list[ConnectionStats] = []
        self._lock = threading.Lock()

    def pool_for(self, ep: S3Endpoint) -> ConnectionPool:
        """The pool of ``ep``'s origin, created on first use."""
        with self._lock:
            pool = self._pools.get(ep.origin)
            if pool is None:
                pool = ConnectionPool(lambda t: ep.new_connection(read_timeout=t),
                                      on_closed=self._on_closed,
                                      read_timeout=self.read_timeout, max_idle=self.max_idle,
                                      speed_guard=self.speed_guard)
                self._pools[ep.origin] = pool
        return pool

    def _on_closed(self, stats: ConnectionStats) -> None:
        with self._lock:
            self._closed.append(stats)

    def live(self) -> list[Connection]:
        """Every open connection of the run (for TCP_INFO sampling by the tuner)."""
        with self._lock:
            pools = list(self._pools.values())
        return [c for p in pools for c in p.live()]

    def closed_stats(self) -> list[ConnectionStats]:
        """What each closed connection carried: the raw material of flow records."""
        with self._lock:
            return list(self._closed)

    def close(self) -> None:
        """Close every idle connection (the run is over)."""
        with self._lock:
            pools = list(self._pools.values())
        for p in pools:
            p.close()
        if self.speed_guard is not None:
            self.speed_guard.close()
