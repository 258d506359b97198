"""What a running transfer looks like at one tick, read off the scheduler's counters.

Apart from the scheduler because it only reads: the workers' counters (each written by
one thread), the objects in flight with their bytes so far, the tuner's last decision.
"""

from __future__ import annotations

import time

from ..telemetry.snapshot import Snapshot
from ..units import human_bytes
from .ops import WorkerStats


def take_snapshot(run) -> Snapshot:
    """``run``: the scheduler's Runner (not imported: it imports this module)."""
    st = run.stats
    now = time.monotonic()
    return Snapshot(
        t=now,
        elapsed=now - run.started,
        done_bytes=sum(s.done_bytes for s in st),
        wire_bytes=sum(s.wire_bytes for s in st),
        total_bytes=run.total_bytes,
        objects=sum(s.objects for s in st),
        total_objects=run.total_objects,
        listing_done=run.listing_done,
        active=sum(1 for s in st if s.busy),
        retries=sum(s.retries for s in st),
        slowdowns=sum(s.slowdowns for s in st),
        errors=sum(s.errors for s in st),
        requests=sum(s.requests for s in st),
        ttfb_total=sum(s.ttfb_total for s in st),
        failed=len(run.completion.failures),
        in_flight=in_flight(st),
        decision=last_decision(run),
    )


def in_flight(stats: list[WorkerStats]) -> tuple[tuple[str, int, int], ...]:
    """(name, size, done) per object being moved: its finished parts plus the bytes of
    the parts in flight (each worker's count since its part started)."""
    now: dict[int, list] = {}
    for s in stats:
        job = s.job
        if job is None:
            continue
        row = now.setdefault(id(job), [job.plan.name, job.plan.size, job.done_bytes])
        row[2] += max(0, s.done_bytes - s.part_start)
    return tuple((n, size, min(size, done)) for n, size, done in now.values())


def last_decision(run) -> str:
    if run.tuner is None or not run.tuner.decisions:
        return ""
    d = run.tuner.decisions[-1]
    return f"{d.connections} connections, {human_bytes(d.part_size)} parts: {d.reason}"
