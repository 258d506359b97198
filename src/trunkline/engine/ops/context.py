"""What a transfer kind may use: a small typed context, and nothing of the scheduler.

Why: the kinds (download, upload, copy, stream) used to be module functions called with
an untyped ``(runner, job, part, conns, buf, st, counted)`` tuple that reached into the
scheduler's privates, and counted progress through a ``counted=[0]`` out-parameter. Now a
kind sees a ``RunContext`` (per run: settings, stop event, retry policy, journal, rate
caps, memory budget) and a ``PartContext`` (per try of a part: its connections, its
worker's counters and buffer, the bytes it counted), and never imports the scheduler;
the scheduler builds these and calls the kinds through ``ops.KINDS``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ...storage.partial import DirSync, FolderCache
from ...storage.s3 import S3Endpoint
from ...wire.connection import Connection
from ...wire.pool import ConnectionPool
from ..budget import MemoryBudget
from ..journal import Journal
from ..retry import RetryPolicy


@dataclass
class WorkerStats:
    """Per-worker counters: each written by one thread only, summed by the monitor."""

    wire_bytes: int = 0       # payload bytes moved on the wire (includes retried bytes)
    done_bytes: int = 0       # payload bytes of completed work (net of failed attempts)
    objects: int = 0
    requests: int = 0
    retries: int = 0
    slowdowns: int = 0
    errors: int = 0
    ttfb_total: float = 0.0
    resumed_bytes: int = 0    # parts found done (on disk or at the store) by a resume
    busy: bool = False
    job: object | None = None  # the object this worker moves now (for the live view)
    part_start: int = 0       # done_bytes when its current part started


class Leases:
    """The connections one try holds, one per origin, all handed back to their pool when
    the try ends (dropped if the try failed in a way that makes them suspect)."""

    def __init__(self, pool_for: Callable[[S3Endpoint], ConnectionPool]):
        self._pool_for = pool_for
        self._held: dict[tuple, tuple[ConnectionPool, Connection]] = {}

    def get(self, ep: S3Endpoint, slot: int = 0) -> Connection:
        """The try's connection ``slot`` to ``ep``'s origin: a stream that passes a part
        through sends on slot 1 while slot 0 still receives (the same origin on both
        sides, a copy within one store, needs two)."""
        held = self._held.get((ep.origin, slot))
        if held is not None and not held[1].reusable:
            # its server closed it after the last answer (``Connection: close``, as nginx
            # says at keepalive_requests): the next exchange needs a new one
            held[0].discard(held[1])
            held = None
        if held is None:
            pool = self._pool_for(ep)
            held = (pool, pool.acquire())
            self._held[(ep.origin, slot)] = held
        return held[1]

    def release_all(self, trusted: bool) -> None:
        for pool, conn in self._held.values():
            if trusted:
                pool.release(conn)
            else:
                pool.discard(conn)
        self._held.clear()


RateCharge = Callable[[int], None]


class LimitFor(Protocol):
    """The run's rate caps for one endpoint: all of them, or (``overall=False``) the
    endpoint's own, for bytes the overall cap already counted."""

    def __call__(self, ep: S3Endpoint | None, *, overall: bool = True) -> RateCharge | None: ...


@dataclass(frozen=True)
class RunContext:
    """Per run: what every kind may consult, shared by all workers."""

    checksums: bool                     # send and check CRC32C
    direct_io: bool                     # downloads around the page cache
    retry: RetryPolicy
    stop: threading.Event
    memory: MemoryBudget
    journal: Journal | None
    resumed_run: bool                   # a rerun: stray uploads of the last run may exist
    journal_created: float
    pool_for: Callable[[S3Endpoint], ConnectionPool]
    limit_for: LimitFor
    ensure_dir: Callable[[str], None]
    require_verified: bool = False      # an object nothing could check fails
    dir_sync: DirSync | None = None     # renamed downloads' folders, fsync'ed per batch
    folders: FolderCache | None = None  # downloads' folders, opened once per run

    def leases(self) -> Leases:
        return Leases(self.pool_for)


@dataclass
class PartContext:
    """Per try of one part: its connections, its worker's counters and buffer."""

    run: RunContext
    conns: Leases
    stats: WorkerStats
    buffer: memoryview
    counted: int = field(default=0)   # done bytes counted by this try (taken back if it fails)

    def connection(self, ep: S3Endpoint, slot: int = 0) -> Connection:
        """This try's connection (``slot``: ``Leases.get``) to ``ep``'s origin."""
        return self.conns.get(ep, slot)

    def moved(self, n: int) -> None:
        """``n`` more bytes of this part are done (wire and progress)."""
        self.stats.wire_bytes += n
        self.stats.done_bytes += n
        self.counted += n

    def done_without_wire(self, n: int) -> None:
        """``n`` bytes done by the store itself (server-side copy)."""
        self.stats.done_bytes += n
        self.counted += n
