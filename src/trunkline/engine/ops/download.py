"""Download: ranged GETs of an object, each written at its offset into a partial file that
is renamed into place once every part arrived and the whole object checked out.

Why here, alone: this is where a byte from the network lands on disk, so this is where
write safety lives: the partial file (storage/partial.py: no symlink followed, space
reserved up front, every write whole, fsync and rename by directory descriptor) and the
check against whatever the store keeps (ops/checks.py) before the rename.
"""

from __future__ import annotations

import os

from ...errors import IntegrityError
from ...storage.partial import PartialFile, finished_stamp
from ..checksums import PartDigest, needs_digest
from ..direct_io import DirectWriter, open_direct
from ..integrity import crc32c
from ..jobs import ObjectJob
from ..plan import Part
from ..receive import receive, receive_to_file
from .checks import (
    check_whole,
    comparable,
    digest_for,
    expect_ranged,
    get_part,
    ranged_matches,
    require_verified,
)
from .common import RESUMED, object_crc
from .context import PartContext, RunContext, WorkerStats


def _open(run: RunContext, job: ObjectJob) -> None:
    with job.lock:
        if job.partial is None:
            # dirs opened without following symlinks, the partial created O_EXCL|O_NOFOLLOW
            # and its space reserved: a full disk fails here, before a byte moves
            job.partial = PartialFile(job.plan.dst_path, job.plan.size,
                                      resume=bool(job.resume_crcs), folders=run.folders)
            job.fd = job.partial.fd
            job.tmp_path = job.partial.path
            dfd = open_direct(job.partial.name, job.plan.size, dir_fd=job.partial.dir_fd,
                              same_as=job.fd) if run.direct_io else None
            job.writer = DirectWriter(job.fd, dfd)


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    """Fetch one part into the partial file (or find it already there, on a resume)."""
    run = ctx.run
    _open(run, job)
    if job.plan.size == 0:
        job.verified = job.verified or "empty"
        return None
    assert job.plan.src_ep is not None and job.fd is not None
    if job.plan.multipart:
        expect_ranged(run, job, ctx.stats)
    buf = ctx.buffer
    want = job.resume_crcs.get(part.number)
    if want is not None:
        digest = digest_for(job, None)
        if _crc_on_disk(job.fd, part, buf, digest) == want:
            job.part_crcs[part.number] = want
            if digest is not None:
                job.part_digests[part.number] = digest.value()
            return RESUMED
    conn, ans = get_part(ctx, job.plan.src_ep, job, part, whole=not job.plan.multipart)
    digest = digest_for(job, None if job.plan.multipart else ans)
    assert job.writer is not None   # opened with job.fd above
    crc = receive_to_file(conn, ans.length, job.fd, part.offset, buf, writer=job.writer,
                          on_bytes=ctx.moved, limit=run.limit_for(job.plan.src_ep),
                          digest=digest)
    if not job.plan.multipart:
        check_whole(job, crc, digest)
    job.part_crcs[part.number] = crc
    if digest is not None:
        job.part_digests[part.number] = digest.value()
    return None


def verify(run: RunContext, job: ObjectJob, st: WorkerStats) -> None:
    """A download made of ranged GETs against what the store keeps (ops/checks.py): the
    part digests are folded and compared. On a mismatch every part is fetched again and
    the ones whose digest changed are rewritten (each counts as a retry); if the object
    still does not match, it fails. Nothing comparable: the object is reported unverified."""
    if not job.plan.multipart:
        return
    exp = comparable(job)
    if exp is None:
        return
    if ranged_matches(job):
        job.verified = exp.kind
        return
    assert job.plan.src_ep is not None and job.partial is not None
    scratch = WorkerStats()   # the re-fetch is wire traffic, not more done bytes
    ctx = PartContext(run, run.leases(), scratch, memoryview(bytearray(1 << 20)))
    ok = False
    algo = needs_digest(exp)
    partial = job.partial
    try:
        for part in job.plan.parts:
            c, ans = get_part(ctx, job.plan.src_ep, job, part, whole=False)
            digest = PartDigest(algo) if algo else None
            crc = receive(c, ans.length,
                          lambda off, left: ctx.buffer[: min(len(ctx.buffer), left)],
                          sink=_pwriter(partial, part.offset), on_bytes=ctx.moved,
                          digest=digest)
            if crc != job.part_crcs[part.number]:
                st.retries += 1
                job.part_crcs[part.number] = crc
            if digest is not None:
                job.part_digests[part.number] = digest.value()
        st.wire_bytes += scratch.wire_bytes
        st.requests += scratch.requests
        if not ranged_matches(job):
            raise IntegrityError(f"{exp.kind} mismatch on {job.plan.name}: the object differs "
                                 "from the store's checksum even after fetching it again")
        job.verified = exp.kind
        ok = True
    finally:
        ctx.conns.release_all(trusted=ok)


def _pwriter(partial: PartialFile, base: int):
    """A sink writing each chunk, whole, at ``base`` + its offset in the body."""
    return lambda chunk, off: partial.pwrite(chunk, base + off)


def _crc_on_disk(fd: int, part: Part, buf: memoryview, digest: PartDigest | None = None) -> int:
    """CRC32C of a part already in the partial file (a resume re-checks before trusting)."""
    crc = 0
    off = 0
    while off < part.length:
        k = os.preadv(fd, [buf[: min(len(buf), part.length - off)]], part.offset + off)
        if k == 0:
            break
        crc = crc32c(buf[:k], crc)
        if digest is not None:
            digest.update(buf[:k])
        off += k
    return crc


def finalize(run: RunContext, job: ObjectJob) -> None:
    """Every part arrived and checked: size, fsync, stamp, rename by directory fd (the
    size is checked by ``commit``: a short file raises ``PartialSizeMismatch``, an
    ``IntegrityError``, so nothing of it is resumed)."""
    assert job.partial is not None
    require_verified(run, job)
    if job.writer is not None:
        job.writer.close()
        job.writer = None
    crc = object_crc(job) if len(job.part_crcs) == len(job.plan.parts) else None
    job.partial.commit(job.plan.mtime, stamp=finished_stamp(job.plan.etag or job.seen_etag,
                                                            job.plan.size, crc),
                       dir_sync=run.dir_sync)
    job.partial = None
    job.fd = None
