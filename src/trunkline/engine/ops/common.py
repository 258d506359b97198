"""What the transfer kinds share: the object's CRC32C from its parts, cleanup, and whether
a stream passes its parts through.

The request and its checks are ``storage/s3_data``'s; this module only ties them to a
job and a try (counters, the try's connection).
"""

from __future__ import annotations

import os

from ..integrity import crc32c_combine_all
from ..jobs import ObjectJob, ObjectPlan

RESUMED = object()
"""What a kind returns for a part a resume found already done."""


def passes_through(checksums: bool, plan: ObjectPlan) -> bool:
    """Whether a stream's parts pass through to a store that checks their CRC32C trailer
    (``ops/stream.py``). One rule: the runner asks it (such a stream holds no part in
    memory) and so does the report of what checked an object."""
    return (checksums and plan.kind == "stream" and plan.dst_ep is not None
            and plan.dst_ep.trailer_crc32c)


def object_crc(job: ObjectJob) -> int:
    """The whole object's CRC32C, combined from its parts' (all of them known)."""
    return crc32c_combine_all([(job.part_crcs[p.number], p.length) for p in job.plan.parts])


def cleanup(job: ObjectJob, keep: bool = False) -> None:
    """After a failure: close; without a journal also remove the partial file and abort the
    multipart upload. With one, both stay for the rerun to resume (``gc`` cleans up)."""
    if job.writer is not None:
        job.writer.close()
        job.writer = None
    if job.partial is not None:   # a download's partial file: kept for a resume, or removed
        if keep:
            job.partial.close()
        else:
            job.partial.discard()
        job.partial = None
        job.fd = None
    if job.fd is not None:
        try:
            os.close(job.fd)
        except OSError:
            pass
        job.fd = None
    if keep:
        return
    if job.upload_id and job.plan.dst_ep is not None:
        job.plan.dst_ep.abort_multipart(job.plan.dst_bucket, job.plan.dst_key, job.upload_id)
