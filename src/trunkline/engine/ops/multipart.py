"""PUTs and multipart bookkeeping shared by upload, server-side copy and stream.

One place decides how an object reaches a store: one PUT, or a multipart upload started
once per object (its id journaled for a resume), parts PUT or copied, and completed with
a whole-object CRC32C where the bytes passed through us.
"""

from __future__ import annotations

from collections.abc import Callable

from ...storage import s3_data
from ...wire.connection import Connection
from .. import resume
from ..integrity import crc32c_to_b64
from ..jobs import ObjectJob
from ..plan import Part
from .checks import require_verified, store_checked
from .common import object_crc
from .context import PartContext, RunContext


def wants_object_crc(run: RunContext, job: ObjectJob) -> bool:
    """Multipart uploads whose bytes pass through us carry a whole-object CRC32C."""
    return (run.checksums and job.plan.kind in ("upload", "stream")
            and job.plan.dst_ep is not None and job.plan.dst_ep.supports_crc32c is not False)


def ensure_upload(run: RunContext, job: ObjectJob) -> str:
    """The object's multipart upload id, started by the first part that needs it."""
    with job.lock:
        if job.upload_id is None:
            assert job.plan.dst_ep is not None
            job.upload_id = job.plan.dst_ep.create_multipart(
                job.plan.dst_bucket, job.plan.dst_key, crc32c=wants_object_crc(run, job))
            if run.journal is not None and job.obj_id is not None:
                run.journal.set_upload_id(job.obj_id, job.upload_id)
        return job.upload_id


def put_part(ctx: PartContext, job: ObjectJob, part: Part,
             send_body: Callable[[Connection], None], crc: int | None, *,
             trailer: Callable[[], int] | None = None) -> str:
    """PUT an object or a part whose body ``send_body(conn)`` writes; returns the ETag.
    ``crc`` goes in the head; ``trailer`` (a part passed through: its CRC32C known only
    once sent) after the body, on a second connection to the store (``Leases.get``)."""
    ep = job.plan.dst_ep
    assert ep is not None
    query = None
    if job.plan.multipart:
        query = {"partNumber": str(part.number), "uploadId": ensure_upload(ctx.run, job)}
    conn = ctx.connection(ep, slot=1 if trailer is not None else 0)
    etag, ttfb = s3_data.put(ep, conn, job.plan.dst_bucket, job.plan.dst_key, job.plan.name,
                             length=part.length, send_body=send_body, query=query,
                             crc32c_b64=crc32c_to_b64(crc) if crc is not None else None,
                             trailer=trailer)
    ctx.stats.ttfb_total += ttfb
    ctx.stats.requests += 1
    return etag


def complete(run: RunContext, job: ObjectJob) -> None:
    """Complete the object's multipart upload (with its CRC32C where we have it)."""
    assert job.plan.dst_ep is not None and job.upload_id is not None
    parts = sorted(job.part_etags.items())
    upload_id = job.upload_id
    full = None
    if wants_object_crc(run, job) and len(job.part_crcs) == len(job.plan.parts):
        full = object_crc(job)
    job.plan.dst_ep.complete_multipart(job.plan.dst_bucket, job.plan.dst_key, upload_id, parts,
                                  part_crcs=job.part_crcs if full is not None else None,
                                  full_crc=full)
    job.upload_id = None
    if run.resumed_run:
        resume.abort_strays(run.journal_created, job, upload_id)


def finalize(run: RunContext, job: ObjectJob) -> None:
    """Every part is at the store: complete a multipart upload (one PUT needs nothing).
    What checked the object is recorded first; an unverified multipart object is not
    completed under ``--require-verified`` (a single PUT is already in place: reported)."""
    if job.plan.kind in ("upload", "stream"):
        store_checked(run, job)
    if job.plan.multipart:
        require_verified(run, job)
        complete(run, job)
