"""What the transfer kinds share: the checked GET of a part, the CRC check, cleanup.

The request and its checks are ``storage/s3_data``'s; this module only ties them to a
job and a try (counters, the try's connection).
"""

from __future__ import annotations

import os

from ...errors import IntegrityError
from ...storage import s3_data
from ...storage.s3 import S3Endpoint
from ...wire.connection import Connection
from ..integrity import b64_to_crc32c, crc32c_combine_all
from ..jobs import ObjectJob
from ..plan import Part
from .context import PartContext

RESUMED = object()
"""What a kind returns for a part a resume found already done."""


def get_part(ctx: PartContext, ep: S3Endpoint, job: ObjectJob, part: Part,
             whole: bool) -> tuple[Connection, int, str | None]:
    """Send a GET for ``part`` and check its head; returns (conn, body length, crc header)."""
    conn = ctx.connection(ep)
    ans = s3_data.get(ep, conn, job.plan.src_bucket, job.plan.src_key, job.plan.name, offset=part.offset,
                      length=part.length, whole=whole)
    ctx.stats.ttfb_total += ans.ttfb
    ctx.stats.requests += 1
    return conn, ans.length, ans.crc32c


def check_crc(crc: int, header: str | None, job: ObjectJob) -> None:
    """Compare a received body's CRC32C with the store's full-object header, if any."""
    if header and "-" not in header:
        try:
            expect = b64_to_crc32c(header)
        except Exception:  # noqa: BLE001 - unknown format: nothing to compare
            return
        if expect != crc:
            raise IntegrityError(f"CRC32C mismatch on {job.plan.name}: bytes damaged in flight")


def object_crc(job: ObjectJob) -> int:
    """The whole object's CRC32C, combined from its parts' (all of them known)."""
    return crc32c_combine_all([(job.part_crcs[p.number], p.length) for p in job.plan.parts])


def cleanup(job: ObjectJob, keep: bool = False) -> None:
    """After a failure: close; without a journal also remove the partial file and abort the
    multipart upload. With one, both stay for the rerun to resume (``gc`` cleans up)."""
    if job.writer is not None:
        job.writer.close()
        job.writer = None
    if job.fd is not None:
        try:
            os.close(job.fd)
        except OSError:
            pass
        job.fd = None
    if keep:
        return
    if job.tmp_path:
        try:
            os.unlink(job.tmp_path)
        except OSError:
            pass
    if job.upload_id and job.plan.dst_ep is not None:
        job.plan.dst_ep.abort_multipart(job.plan.dst_bucket, job.plan.dst_key, job.upload_id)
