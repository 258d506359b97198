"""Download: ranged GETs of an object, each written at its offset into a partial file that
is renamed into place once every part arrived and the whole object checked out.

Why here, alone: this is where a byte from the network lands on disk, so this is where
write safety lives (partial files, complete writes, the full-object check before rename).
"""

from __future__ import annotations

import os

from ...errors import IntegrityError
from ...storage import s3_data
from ...storage.local import partial_path
from ...storage.s3 import S3Endpoint
from ..direct_io import DirectWriter, open_direct
from ..integrity import b64_to_crc32c, crc32c
from ..jobs import ObjectJob
from ..plan import Part
from ..receive import receive, receive_to_file
from ..retry import retrying
from .common import RESUMED, check_crc, get_part, object_crc
from .context import PartContext, RunContext, WorkerStats


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    """Fetch one part into the partial file (or find it already there, on a resume)."""
    run = ctx.run
    with job.lock:
        if job.fd is None:
            run.ensure_dir(job.plan.dst_path)
            job.tmp_path = partial_path(job.plan.dst_path)
            # no O_TRUNC: a resumed download keeps the parts it already has
            job.fd = os.open(job.tmp_path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(job.fd).st_size != job.plan.size:
                os.ftruncate(job.fd, job.plan.size)
            dfd = open_direct(job.tmp_path, job.plan.size) if run.direct_io else None
            job.writer = DirectWriter(job.fd, dfd)
    if job.plan.size == 0:
        return None
    buf = ctx.buffer
    want = job.resume_crcs.get(part.number)
    if want is not None and _crc_on_disk(job.fd, part, buf) == want:
        job.part_crcs[part.number] = want
        return RESUMED
    assert job.plan.src_ep is not None
    conn, n, crc_hdr = get_part(ctx, job.plan.src_ep, job, part, whole=not job.plan.multipart)
    assert job.writer is not None   # opened with job.fd above
    crc = receive_to_file(conn, n, job.fd, part.offset, buf, writer=job.writer,
                          on_bytes=ctx.moved, limit=run.limit_for(job.plan.src_ep))
    check_crc(crc, crc_hdr, job)
    job.part_crcs[part.number] = crc
    return None


def verify(run: RunContext, job: ObjectJob, st: WorkerStats) -> None:
    """A download made of ranged GETs is checked against the store's full-object CRC32C
    (ranged answers carry none): the part CRCs are combined and compared. On a mismatch
    every part is fetched again and the ones whose CRC changed are rewritten (each counts
    as a retry); if the object still does not match, it fails. Stores that keep no
    full-object CRC32C (multipart uploads on SeaweedFS) leave nothing to compare."""
    if not job.plan.multipart:
        return
    if job.plan.size == 0 or len(job.part_crcs) != len(job.plan.parts) or job.plan.src_ep is None:
        return
    ep = job.plan.src_ep
    want = _store_crc(run, ep, job, st)
    if want is None or object_crc(job) == want:
        return
    scratch = WorkerStats()   # the re-fetch is wire traffic, not more done bytes
    ctx = PartContext(run, run.leases(), scratch, memoryview(bytearray(1 << 20)))
    ok = False
    try:
        fd = job.fd
        assert fd is not None
        for part in job.plan.parts:
            c, n, _ = get_part(ctx, ep, job, part, whole=False)
            crc = receive(c, n, lambda off, left: ctx.buffer[: min(len(ctx.buffer), left)],
                          sink=_pwriter(fd, part.offset), on_bytes=ctx.moved)
            if crc != job.part_crcs[part.number]:
                st.retries += 1
                job.part_crcs[part.number] = crc
        st.wire_bytes += scratch.wire_bytes
        st.requests += scratch.requests
        if object_crc(job) != want:
            raise IntegrityError(f"CRC32C mismatch on {job.plan.name}: the object differs from the "
                                 "store's checksum even after fetching it again")
        ok = True
    finally:
        ctx.conns.release_all(trusted=ok)


def _store_crc(run: RunContext, ep: S3Endpoint, job: ObjectJob, st: WorkerStats) -> int | None:
    """The store's full-object CRC32C (HEAD with checksum mode), None if it keeps none.
    Retried like a part: a reset on this one request must not fail a whole object."""
    pool = run.pool_for(ep)

    def once() -> int | None:
        conn = pool.acquire()
        try:
            head = s3_data.head(ep, conn, job.plan.src_bucket, job.plan.src_key, job.plan.name)
        except BaseException:
            pool.discard(conn)
            raise
        pool.release(conn)
        if head is None:
            raise s3_data.parse_error_xml(404, b"", "HEAD", job.plan.name)
        hdr = head.headers.get("x-amz-checksum-crc32c")
        return b64_to_crc32c(hdr) if hdr and "-" not in hdr else None

    def count(e: BaseException, tries: int, again: bool) -> None:
        if again:
            st.retries += 1

    return retrying(once, run.retry, stop=run.stop, on_error=count)


def _pwriter(fd: int, base: int):
    """A sink writing each chunk at ``base`` + its offset in the body."""
    return lambda chunk, off: os.pwrite(fd, chunk, base + off)


def _crc_on_disk(fd: int, part: Part, buf: memoryview) -> int:
    """CRC32C of a part already in the partial file (a resume re-checks before trusting)."""
    crc = 0
    off = 0
    while off < part.length:
        k = os.preadv(fd, [buf[: min(len(buf), part.length - off)]], part.offset + off)
        if k == 0:
            break
        crc = crc32c(buf[:k], crc)
        off += k
    return crc


def finalize(run: RunContext, job: ObjectJob) -> None:
    """Every part arrived: close, check the size, rename into place, set the mtime."""
    assert job.fd is not None
    if job.writer is not None:
        job.writer.close()
        job.writer = None
    size = os.fstat(job.fd).st_size
    os.close(job.fd)
    job.fd = None
    if size != job.plan.size:
        raise IntegrityError(f"local file has {size} bytes, expected {job.plan.size}")
    os.replace(job.tmp_path, job.plan.dst_path)
    if job.plan.mtime:
        os.utime(job.plan.dst_path, (job.plan.mtime, job.plan.mtime))
