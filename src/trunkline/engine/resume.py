"""Binds the journal to a transfer: what a rerun may skip, and what each finished part records.

On resume (the same SRC, DST and options), for each object:
- done in the journal (and, for downloads, present with its size): skipped whole;
- a download with recorded parts: each part already in the ``.tlpart`` file is re-read and
  checked against its recorded CRC32C; only parts that fail (or were never recorded) are
  fetched again;
- a multipart upload/copy with an upload ID: ListParts reconciles; parts the store holds
  with the recorded ETag and size are skipped, the upload continues under the same ID.
The journal commits each part before the worker moves on, so a kill -9 loses at most the
parts in flight.
"""

from __future__ import annotations

import os

from ..storage.partial import read_stamp
from .integrity import file_digests
from .jobs import ObjectJob
from .journal import Journal
from .storage_names import job_dst


def journal_mtime(job: ObjectJob) -> float | None:
    return job.plan.mtime if job.plan.kind == "upload" else None


def finished_here(job: ObjectJob) -> bool:
    """Whether the download's file is one trunkline finished from this very source object
    and still holds the bytes it wrote: its stamp names the listed ETag and size, and the
    file's CRC32C is re-read and compared (a size alone proves nothing)."""
    stamp = read_stamp(job.plan.dst_path)
    if stamp is None or stamp.get("size") != job.plan.size or stamp.get("crc32c") is None:
        return False
    if job.plan.etag and stamp.get("etag") != job.plan.etag:
        return False
    try:
        st = os.stat(job.plan.dst_path, follow_symlinks=False)
        if st.st_size != job.plan.size:
            return False
        got = file_digests(job.plan.dst_path, max(job.plan.size, 1), want_md5=False).crc32c
    except OSError:
        return False
    return got == stamp["crc32c"]


def attach(journal: Journal, job: ObjectJob) -> bool:
    """Record ``job`` in the journal and mark what is already done; False = skip it whole.

    Single-part objects are only looked up here (a read); the runner records them done in
    batches, so many small objects cost no commit each."""
    if not job.plan.multipart:
        rec = journal.done_record(job.plan.name)
        if rec is None or rec[0] != job_dst(job) or rec[1] != job.plan.size or \
                rec[2] != job.plan.etag or rec[3] != journal_mtime(job):
            return True
        if job.plan.kind == "download":
            return not finished_here(job)
        return False
    ps = job.plan.parts[0].length if job.plan.multipart else job.plan.part_size
    rec = journal.object(job.plan.name, job_dst(job), job.plan.size, job.plan.etag, journal_mtime(job), ps)
    job.obj_id = rec.id
    if rec.discarded_upload_id and job.plan.dst_ep is not None:
        job.plan.dst_ep.abort_multipart(job.plan.dst_bucket, job.plan.dst_key, rec.discarded_upload_id)
        journal.forget_upload(rec.discarded_upload_id)
    if rec.done:
        if job.plan.kind != "download" or finished_here(job):
            return False
        journal.reopen(rec.id)  # it was done, but the file is gone or changed: copy again
        return True
    recorded = journal.parts(rec.id)
    if not recorded:
        return True
    if job.plan.kind == "download":
        job.resume_crcs = {n: p.crc32c for n, p in recorded.items()}
        return True
    if rec.upload_id and job.plan.dst_ep is not None and job.plan.multipart:
        try:
            held = job.plan.dst_ep.list_parts(job.plan.dst_bucket, job.plan.dst_key, rec.upload_id)
        except Exception:  # noqa: BLE001 - upload gone (aborted/expired): start over
            journal.forget_parts(rec.id)
            journal.set_upload_id(rec.id, None)
            return True
        job.upload_id = rec.upload_id
        stale = []
        for n, p in recorded.items():
            have = held.get(n)
            if have and p.etag and have[0].strip('"') == p.etag.strip('"') and have[1] == p.length:
                job.skip_parts.add(n)
                job.part_etags[n] = p.etag
                job.part_crcs[n] = p.crc32c
            else:
                stale.append(n)
        if stale:
            journal.forget_parts(rec.id, stale)
    return True


def abort_strays(journal_created: float, job: ObjectJob, completed_id: str) -> int:
    """After a resumed multipart object completes, abort uploads of the same key started
    since this journal began: a kill between CreateMultipartUpload and its journal record
    leaves one such orphan. Uploads older than the journal are someone else's: untouched."""
    if job.plan.dst_ep is None:
        return 0
    n = 0
    for upload_id, initiated in job.plan.dst_ep.uploads_for_key(job.plan.dst_bucket, job.plan.dst_key):
        # stores report Initiated with 1 s resolution: allow that much slack
        if upload_id != completed_id and initiated >= journal_created - 1.0:
            job.plan.dst_ep.abort_multipart(job.plan.dst_bucket, job.plan.dst_key, upload_id)
            n += 1
    return n
