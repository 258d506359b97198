"""Server-side copy: the store copies the object (or each part range) itself; no byte
passes through this host. Chosen when source and destination are one store."""

from __future__ import annotations

from ..jobs import ObjectJob
from ..plan import Part
from . import multipart
from .context import PartContext


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    ep = job.plan.dst_ep
    assert ep is not None
    if job.plan.multipart:
        etag = ep.upload_part_copy(job.plan.src_bucket, job.plan.src_key, job.plan.dst_bucket, job.plan.dst_key,
                                   multipart.ensure_upload(ctx.run, job), part.number,
                                   part.offset, part.length)
        job.part_etags[part.number] = etag
    else:
        ep.copy_object(job.plan.src_bucket, job.plan.src_key, job.plan.dst_bucket, job.plan.dst_key)
    ctx.stats.requests += 1
    ctx.done_without_wire(part.length)
    return None


finalize = multipart.finalize
