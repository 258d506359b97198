"""One pool per origin: the only owner of a connection's life.

Why: connections used to live in two ad-hoc pools (a per-worker dict keyed by ``id(ep)``
in the scheduler and ``S3Endpoint._idle`` for control requests) and a few one-off
sockets, each deciding on its own when a connection could be reused, usually by setting
a flag on it from outside. Now a connection says itself whether it may carry another
request (``Connection.reusable``: open, kept alive, its last answer read to the end), and
the pool acts on that: ``acquire`` hands out an idle reusable connection or opens a new
one, ``release`` keeps it for the next request or closes it, ``discard`` closes it.
Every connection the pool closes is reported to ``on_closed`` (the scheduler turns those
into flow records), so none is lost to telemetry. A pool given a ``speed_guard`` hands it
to each connection it opens (the minimum-rate guard, ``speed_guard.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .connection import Connection, ConnectionStats
from .speed_guard import SpeedGuard

__all__ = ["ConnectionPool"]


IDLE_CHECK_S = 1.0
"""A connection idle longer than this is polled before reuse: servers close idle
keep-alive connections (nginx after 75 s, many stores sooner), and a request sent on one
fails and costs a retry. A connection idle less is used at once (no syscall per object)."""


class ConnectionPool:
    """Connections to one origin (scheme, host, port), reused LIFO (the warmest first)."""

    def __init__(self, new_connection: Callable[[float], Connection],
                 on_closed: Callable[[ConnectionStats], None] | None = None,
                 read_timeout: float = 60.0, max_idle: int = 256,
                 speed_guard: SpeedGuard | None = None):
        self._new = new_connection
        self.speed_guard = speed_guard
        self._on_closed = on_closed
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: list[tuple[Connection, float]] = []   # with when each went idle
        self._busy: set[int] = set()
        self._live: dict[int, Connection] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Connection:
        """A connected connection for one exchange (or a few, on the same origin)."""
        while True:
            with self._lock:
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
                if conn is not None:
                    self._busy.add(id(conn))
            if conn is None:
                break
            if conn.reusable and (time.monotonic() - since < IDLE_CHECK_S
                                  or not conn.peer_closed()):
                return conn
            self._forget_and_close(conn)
        conn = self._new(self.read_timeout)
        conn.speed_guard = self.speed_guard
        conn.connect()   # raises: nothing to forget
        with self._lock:
            self._live[id(conn)] = conn
            self._busy.add(id(conn))
        return conn

    def release(self, conn: Connection) -> None:
        """Done with ``conn``: kept for the next request if it may carry one, else closed."""
        with self._lock:
            self._busy.discard(id(conn))
            keep = (conn.reusable and not self._closed and id(conn) in self._live
                    and len(self._idle) < self.max_idle)
            if keep:
                self._idle.append((conn, time.monotonic()))
        if not keep:
            self._forget_and_close(conn)

    def discard(self, conn: Connection) -> None:
        """Close ``conn`` whatever it says: the caller no longer trusts it."""
        with self._lock:
            self._busy.discard(id(conn))
        self._forget_and_close(conn)

    def live(self) -> list[Connection]:
        """Every open connection, in use or idle (for TCP_INFO sampling)."""
        with self._lock:
            return list(self._live.values())

    def close(self) -> None:
        """Close the idle connections and refuse to keep any more; busy ones close when
        released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c, _ in idle:
            self._forget_and_close(c)

    def _forget_and_close(self, conn: Connection) -> None:
        with self._lock:
            known = self._live.pop(id(conn), None) is not None
        started = conn.stats.started
        conn.close()
        if known and started and self._on_closed is not None:
            self._on_closed(conn.stats)
