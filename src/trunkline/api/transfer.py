"""Run planned jobs under a resume journal and turn the outcome into a TransferResult.

Shared by ``copy`` and ``sync`` (both stream a plan into the same Runner), so a resume,
its journal's lifetime and the result's shape are written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ..engine.jobs import ObjectJob
from ..engine.journal import Journal, default_state_dir, journal_id
from ..engine.scheduler import Runner, RunOutcome
from ..options import TransferOptions
from ..results import TransferResult
from ..telemetry.snapshot import Snapshot
from ..url import Location


def run_journaled(
    s: Location,
    d: Location,
    opts: TransferOptions,
    jopts: dict,
    *,
    on_progress: Callable[[Snapshot], None] | None,
    plan: Callable[[Callable[[str], int]], Iterator[ObjectJob]],
) -> TransferResult:
    """Run the jobs ``plan(part_size_for)`` yields under a resume journal (cp and sync).

    The journal is removed when everything succeeded, kept for a rerun otherwise (or while
    it still lists multipart uploads to clean up)."""
    resume = opts.resume
    sdir = Path(opts.state_dir or default_state_dir())
    resumed = resume and (sdir / f"{journal_id(str(s), str(d), jopts)}.sqlite").exists()
    journal = (Journal.open if resume else Journal.fresh)(sdir, str(s), str(d), jopts)
    runner = Runner(opts, on_tick=on_progress, journal=journal, resumed=resumed)

    def part_size_for(name: str) -> int:
        # a resumed object keeps the part size it was started with, so parts line up
        return journal.recorded_part_size(name) or runner.part_size

    try:
        jobs = plan(part_size_for)
        # plan up to the first job before starting threads: usage errors (a missing source,
        # an unknown endpoint) surface here, and an unchanged tree costs only its listing
        first = next(jobs, None)
    except BaseException:
        journal.close()
        if not resumed:
            journal.remove()
        raise
    if first is None:
        leftovers = journal.pending_uploads() or journal.discarded_uploads()
        journal.close()
        if not leftovers:   # else keep it: gc lists and aborts those uploads
            journal.remove()
        return _result(s, d, None, runner)
    # only once there is something to send: an unchanged sync writes nothing to the
    # destination (the probe's objects would be new versions in a versioned bucket); a
    # listing of the bucket's root that runs meanwhile passes them by (is_probe_key)
    caps = _probe_destination(d, opts)
    used = {}
    dst_ep = _dst_endpoint(first)
    if caps is not None and dst_ep is not None:
        from ..storage import capabilities

        used = {"store": caps.to_dict(), "used": capabilities.apply(dst_ep, caps)}

    def all_jobs():
        yield first
        yield from jobs

    try:
        out = runner.run(all_jobs())
    finally:
        journal.close()
    if not out.failures:
        journal.remove()
    res = _result(s, d, out, runner)
    res.capabilities = used
    return res


def _dst_endpoint(job: ObjectJob):
    return job.plan.dst_ep


def _probe_destination(d: Location, opts: TransferOptions):
    """The destination store's capabilities (probed once per endpoint and process), or
    None for a local destination, with checksums off, or with TRUNKLINE_PROBE=0."""
    if d.is_local or not opts.checksums:
        return None
    from ..storage import capabilities

    if not capabilities.enabled():
        return None
    from ..config import resolve_endpoint
    from ..storage.s3 import S3Endpoint

    try:
        ep = S3Endpoint(resolve_endpoint(d.endpoint or "s3"))
    except Exception:  # noqa: BLE001 - the planner reports a bad endpoint as a usage error
        return None
    try:
        return capabilities.for_endpoint(ep, d.bucket)
    finally:
        ep.close()


# what a run's outcome and its result call alike
_SAME = ("failures", "retries", "slowdowns", "requests", "wire_bytes", "peak_buffer_bytes",
         "decisions", "resumed_bytes", "skipped_objects", "skipped_bytes", "verified",
         "unverified")


def _result(s: Location, d: Location, out: RunOutcome | None, runner: Runner) -> TransferResult:
    """The result of a run; ``out`` None: there was nothing to do."""
    from ..native.crc import BACKEND as crc32c_library

    res = TransferResult(src=str(s), dst=str(d), bytes=0, seconds=0.0, objects=0,
                         options=runner.opts.summary() | {"crc32c": crc32c_library})
    if out is not None:
        res.bytes, res.seconds, res.objects = out.done_bytes, out.seconds, out.objects
        res.connections = [c.to_dict() for c in out.connections]
        for name in _SAME:
            setattr(res, name, getattr(out, name))
    return res
