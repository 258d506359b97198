"""Snapshot: what a running transfer looks like at one tick.

Why here and not in the engine: the progress display, the cluster driver and the API's
``on_progress`` callers all read it, and none of them should have to import the
scheduler to name it (telemetry sits beside the engine, never above it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Snapshot:
    """What the progress display and the tuner see, every tick."""

    t: float
    elapsed: float
    done_bytes: int
    wire_bytes: int
    total_bytes: int
    objects: int
    total_objects: int
    listing_done: bool
    active: int
    retries: int
    slowdowns: int
    errors: int
    requests: int
    ttfb_total: float
    failed: int
    in_flight: tuple[tuple[str, int, int], ...] = field(default=())
    """(name, size, bytes done) of each object a worker is moving now."""
    decision: str = ""
    """The tuner's last decision, in words ("" when it decided nothing yet)."""
