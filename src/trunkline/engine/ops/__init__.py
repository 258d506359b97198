"""The transfer kinds: download, upload, server-side copy, stream — one module each.

Each kind moves one part per call (``run_part(ctx, job, part)``, one try: the scheduler
retries) and completes an object once all its parts are done (``finalize(run, job)``);
a download also checks the whole object first (``verify``). Kinds see only the typed
contexts of ``ops.context``, never the scheduler, so the scheduler can change without
touching them, and write-safety and response checks live next to the bytes they guard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..jobs import ObjectJob
from ..plan import Part
from . import checks, copy, download, stream, upload
from .common import RESUMED, cleanup
from .context import (
    Leases,
    MemoryBudget,
    PartContext,
    RunContext,
    WorkerStats,
)

__all__ = ["KINDS", "RESUMED", "Kind", "Leases", "MemoryBudget", "PartContext", "RunContext",
           "WorkerStats", "cleanup"]


@dataclass(frozen=True)
class Kind:
    """How one kind of transfer moves a part, checks and completes an object."""

    run_part: Callable[[PartContext, ObjectJob, Part], object]
    finalize: Callable[[RunContext, ObjectJob], None]
    verify: Callable[[RunContext, ObjectJob, WorkerStats], None] | None = None


KINDS: dict[str, Kind] = {
    "download": Kind(download.run_part, download.finalize, download.verify),
    "upload": Kind(upload.run_part, upload.finalize),
    "copy": Kind(copy.run_part, copy.finalize, copy.verify),
    "stream": Kind(stream.run_part, stream.finalize, checks.verify_stream),
}
