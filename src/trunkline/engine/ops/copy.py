"""Server-side copy: the store copies the object (or each part range) itself; no byte
passes through this host. Chosen when source and destination are one store. Each request
is conditional on the listed ETag (``x-amz-copy-source-if-match``), so a multipart copy
never joins parts of two versions of its source.

Not every store honours that condition (Ceph RGW 16.2 copies whatever the source is
now, measured: docs/stores.md). So before a multipart copy is completed, one HEAD of the
source must still find the ETag its parts named (``verify``); a source replaced
meanwhile fails the object and its upload is aborted, on any store."""

from __future__ import annotations

from ...errors import SourceChanged
from ..integrity import etags_equal
from ..jobs import ObjectJob
from ..plan import Part
from . import multipart
from .checks import store_head
from .context import PartContext, RunContext, WorkerStats


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    plan = job.plan
    ep = plan.dst_ep
    assert ep is not None
    # each request names the listed ETag: a source replaced since fails SourceChanged,
    # and the parts of a multipart copy all come from the one version that was listed
    if plan.multipart:
        etag = ep.upload_part_copy(plan.src_bucket, plan.src_key, plan.dst_bucket, plan.dst_key,
                                   multipart.ensure_upload(ctx.run, job), part.number,
                                   part.offset, part.length, if_match=_pinned_etag(ctx, job))
        job.part_etags[part.number] = etag
    else:
        ep.copy_object(plan.src_bucket, plan.src_key, plan.dst_bucket, plan.dst_key,
                       if_match=plan.etag)
    ctx.stats.requests += 1
    ctx.done_without_wire(part.length)
    return None


def _pinned_etag(ctx: PartContext, job: ObjectJob) -> str | None:
    """The ETag each part's copy names: the listed one, else (a listing without ETags)
    the one a HEAD finds before the first part, so the parts still agree on a version."""
    if job.plan.etag:
        return job.plan.etag
    with job.lock:
        if job.seen_etag is None:
            assert job.plan.src_ep is not None
            head = store_head(ctx.run, job.plan.src_ep, job, ctx.stats)
            job.seen_etag = head.headers.get("etag") or ""
    return job.seen_etag or None


def verify(run: RunContext, job: ObjectJob, st: WorkerStats) -> None:
    """Before a multipart copy is completed: the source still has the ETag every part
    named. Where the store honours the condition this only confirms it; where it ignores
    it, this is what keeps two versions out of one object. (A source replaced and put
    back, byte for byte, before this HEAD is not seen; nor is one without an ETag.)"""
    named = job.plan.etag or job.seen_etag
    if not job.plan.multipart or not named:
        return
    assert job.plan.src_ep is not None
    now = store_head(run, job.plan.src_ep, job, st).headers.get("etag")
    if not now or not etags_equal(named, now):
        raise SourceChanged(f"source changed during transfer: {job.plan.name} has ETag "
                            f"{now}, its parts were copied from {named}")


finalize = multipart.finalize
