"""The minimum-rate guard: a body that trickles in fails, instead of holding a part forever.

Why: a read timeout only fires when *no* byte comes. A server (or a middlebox) that sends a
few bytes now and then never trips it, and holds a part and its connection for as long as
it likes. Like curl's ``--speed-limit``/``--speed-time``: a response body that arrives
slower than ``limit`` bytes/s for ``window`` seconds in a row fails as retryable
(``errors.TooSlow``) and its connection is closed, so the retry opens a fresh one.

How, and why not in the receive loops: one watchdog thread per run samples, about once a
second, each connection that is in the middle of a response body: the bytes the kernel
received on it (``TCP_INFO``; so a read blocked in the kernel, ours or the compiled
loop's, is measured while it waits, not only when it returns), and whether unread bytes
wait in its receive queue (``SIOCINQ``). Unread bytes mean the reader is the slow side
(a ``--bwlimit``, a slow disk): that time never counts against the server. A connection
slow for the whole window is shut down from the watchdog thread, which ends the blocked
read at once; the connection then raises ``TooSlow`` instead of "closed". The loops that
move the bytes do not change, and a healthy transfer pays one lock per response (the
first sample of a body is the watchdog's, at its next tick: a trickle fails within its
window plus one tick).
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
import time
from typing import Any, Protocol

from . import tcpinfo

__all__ = ["SpeedGuard"]


class Connection(Protocol):
    """What the guard needs of a connection (``wire/connection.py`` imports this module)."""

    sock: socket.socket | None
    stats: Any

    @property
    def pending(self) -> int: ...

    def too_slow(self, why: str) -> None: ...

_SIOCINQ = getattr(termios, "FIONREAD", 0x541B)   # bytes queued, unread (Linux: SIOCINQ)


class _Watch:
    __slots__ = ("conn", "received", "slow_since", "t")

    def __init__(self, conn: Connection, received: int | None, t: float) -> None:
        self.conn = conn
        self.received = received
        self.t = t
        self.slow_since: float | None = None


class SpeedGuard:
    """Closes watched connections whose body arrives below ``limit`` B/s for ``window`` s."""

    def __init__(self, limit: float, window: float, *, tick: float | None = None) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("limit and window must be > 0")
        self.limit = float(limit)
        self.window = float(window)
        self.tick = tick if tick is not None else min(1.0, window / 4)
        self.fired = 0                      # connections closed for being too slow
        self._watched: dict[int, _Watch] = {}   # by id: a Connection is not hashable
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- the connection's side -------------------------------------------------------

    def watch(self, conn: Connection) -> None:
        """``conn`` now waits for a response body."""
        with self._lock:
            if self._closed or id(conn) in self._watched:
                return
            # no TCP_INFO here (one call per response, with the lock held, most of a small
            # GET's guard cost): the watchdog's next tick takes the first sample
            self._watched[id(conn)] = _Watch(conn, None, 0.0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tl-speed-guard",
                                                daemon=True)
                self._thread.start()

    def unwatch(self, conn: Connection) -> None:
        """``conn``'s body is over (or it is closing): once this returns the watchdog no
        longer touches it, so its socket may be closed."""
        with self._lock:
            self._watched.pop(id(conn), None)

    def close(self) -> None:
        """Stop the watchdog (the run is over)."""
        with self._lock:
            self._closed = True
            self._watched.clear()
            self._wake.notify()
            th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout=5)

    # -- the watchdog ----------------------------------------------------------------

    def _run(self) -> None:
        # It ticks whether or not a body is watched: a wake-up per tick is nothing, while
        # waking it on each first watch cost a small GET a notify and a lock hand-off
        with self._lock:
            while not self._closed:
                self._wake.wait(self.tick)
                if not self._closed and self._watched:
                    self._check(time.monotonic())

    def _check(self, now: float) -> None:
        """Called with the lock held: one sample of every watched connection."""
        for key, w in list(self._watched.items()):
            conn = w.conn
            got = _received(conn)
            if w.received is None:  # watched since the last tick: this is its baseline
                w.received, w.t = got, now
                continue
            dt = now - w.t
            rate = (got - w.received) / dt if dt > 0 else float("inf")
            w.received, w.t = got, now
            if rate >= self.limit or _queued(conn) > 0:
                w.slow_since = None         # fast enough, or we are the slow side
                continue
            if w.slow_since is None:
                w.slow_since = now - dt     # slow since the previous sample
            if now - w.slow_since >= self.window:
                del self._watched[key]
                self.fired += 1
                conn.too_slow(f"body arrived below {self.limit:g} B/s for "
                              f"{now - w.slow_since:.1f} s (--min-rate)")


def _received(conn: Connection) -> int:
    """Bytes the kernel received on ``conn`` (TCP_INFO), or what we read where TCP_INFO
    does not say."""
    sock = conn.sock
    if sock is not None:
        try:
            info = tcpinfo.sample(sock)
        except OSError:
            info = None
        if info is not None:
            return info.bytes_received
    return conn.stats.bytes_in


def _queued(conn: Connection) -> int:
    """Body bytes that arrived but wait for the reader (kernel queue, or read with the
    head): while there are some, the reader is the slow side."""
    sock = conn.sock
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCINQ, b"\0\0\0\0")
        return struct.unpack("i", raw)[0] + conn.pending
    except (OSError, ValueError):
        return conn.pending


def shutdown(sock: socket.socket) -> None:
    """End every blocked read on ``sock`` now (the plain socket call, also under TLS)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
