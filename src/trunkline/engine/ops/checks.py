"""What the store keeps for an object, and whether our bytes match it (downloads, streams).

Why apart: downloads and streams between stores receive the same way and must be held
against the same evidence (engine/checksums.py chooses it): the answer's headers for a
one-GET object, one HEAD before the first part of a ranged one. The verdict lands on the
job (``verified`` kind, or ``expect.reason`` when nothing fits).
"""

from __future__ import annotations

from ...errors import IntegrityError, NotVerified, SourceChanged
from ...storage import s3_data
from ...storage.s3 import S3Endpoint
from ...wire.connection import Connection
from ..checksums import Expectation, PartDigest, expectation, needs_digest, verdict
from ..integrity import etags_equal
from ..jobs import ObjectJob
from ..plan import Part
from ..retry import retrying
from .common import passes_through
from .context import PartContext, RunContext, WorkerStats


def get_part(ctx: PartContext, ep: S3Endpoint, job: ObjectJob, part: Part,
             whole: bool) -> tuple[Connection, s3_data.GetAnswer]:
    """Send the checked GET of ``part`` (``If-Match`` the listed ETag, or the first answer's
    when none was listed); returns (conn, answer)."""
    conn = ctx.connection(ep)
    etag = job.plan.etag or job.seen_etag
    ans = s3_data.get(ep, conn, job.plan.src_bucket, job.plan.src_key, job.plan.name, offset=part.offset,
                      length=part.length, whole=whole, etag=etag, total=job.plan.size)
    ctx.stats.ttfb_total += ans.ttfb
    ctx.stats.requests += 1
    if ans.etag and not etag:
        job.seen_etag = ans.etag
    return conn, ans


def digest_for(job: ObjectJob, ans: s3_data.GetAnswer | None) -> PartDigest | None:
    """The extra digest this part needs (beyond CRC32C); a one-GET object learns what the
    store keeps from ``ans``."""
    if not job.plan.multipart and ans is not None:
        job.expect = expectation(ans.headers or {}, ans.etag or job.plan.etag, size=job.plan.size,
                                 part_lengths=[job.plan.size], whole=True)
    algo = needs_digest(job.expect) if job.expect is not None else None
    return PartDigest(algo) if algo else None


def check_whole(job: ObjectJob, crc: int, digest: PartDigest | None) -> None:
    """A one-GET object against the store's checksum; a mismatch is retried."""
    exp = job.expect
    if exp is None or exp.algo is None:
        return
    value = digest.value() if digest is not None else crc
    if not verdict(exp, [(value, job.plan.size)]):
        raise IntegrityError(f"{exp.kind} mismatch on {job.plan.name}: bytes damaged in flight")
    job.verified = exp.kind


def expect_ranged(run: RunContext, job: ObjectJob, st: WorkerStats) -> None:
    """Before a ranged object's first part: one HEAD (checksum mode) says what the store
    keeps, so each part hashes with the store's algorithm as it arrives."""
    with job.lock:
        if job.expect is not None:
            return
        assert job.plan.src_ep is not None
        head = store_head(run, job.plan.src_ep, job, st)
        etag = head.headers.get("etag")
        if job.plan.etag and etag and not etags_equal(job.plan.etag, etag):
            raise SourceChanged(f"source changed during transfer: {job.plan.name} has ETag {etag}, "
                                f"listed {job.plan.etag}")
        if etag and not job.plan.etag:
            job.seen_etag = job.seen_etag or etag
        job.expect = expectation(head.headers, etag or job.plan.etag, size=job.plan.size,
                                 part_lengths=[p.length for p in job.plan.parts], whole=False)


def store_head(run: RunContext, ep: S3Endpoint, job: ObjectJob, st: WorkerStats):
    """HEAD with checksum mode, retried like a part (a reset must not fail the object)."""
    pool = run.pool_for(ep)

    def once():
        conn = pool.acquire()
        try:
            head = s3_data.head(ep, conn, job.plan.src_bucket, job.plan.src_key, job.plan.name)
        except BaseException:
            pool.discard(conn)
            raise
        pool.release(conn)
        if head is None:
            raise s3_data.parse_error_xml(404, b"", "HEAD", job.plan.name)
        return head

    def count(e: BaseException, tries: int, again: bool) -> None:
        if again:
            st.retries += 1

    return retrying(once, run.retry, stop=run.stop, on_error=count)


def ranged_matches(job: ObjectJob) -> bool:
    exp = job.expect
    assert exp is not None and exp.algo is not None
    digests = job.part_crcs if needs_digest(exp) is None else job.part_digests
    return verdict(exp, [(digests[p.number], p.length) for p in job.plan.parts])


def comparable(job: ObjectJob) -> Expectation | None:
    """The expectation a ranged object can be checked against now, else None (and, when
    resumed parts lack the store's digest, the reason lands on the job)."""
    if job.plan.size == 0 or len(job.part_crcs) != len(job.plan.parts) or job.plan.src_ep is None \
            or not job.plan.finalize:   # a range of an object: the driver sees the whole
        return None
    exp = job.expect
    if exp is None or exp.algo is None:
        return None
    if needs_digest(exp) is not None and len(job.part_digests) != len(job.plan.parts):
        job.expect = Expectation(None, reason=f"{exp.kind}: parts resumed at the store were "
                                              "not read again")
        return None
    return exp


def verify_stream(run: RunContext, job: ObjectJob, st: WorkerStats) -> None:
    """A ranged stream against the source's own checksum, before its upload completes."""
    if not job.plan.multipart:
        return
    exp = comparable(job)
    if exp is None:
        return
    if not ranged_matches(job):
        raise IntegrityError(f"{exp.kind} mismatch on {job.plan.name}: the bytes differ from the "
                             "source store's checksum")
    job.verified = exp.kind


def store_checked(run: RunContext, job: ObjectJob) -> None:
    """The destination store compared each part (and, multipart, the whole object) with
    the CRC32C we sent: verified by the store, unless the source's own check came first.
    Only a store the probe saw refuse a wrong CRC32C (or trailer) counts: one that takes
    any value (RGW, JuiceFS) compared nothing, and an unprobed one may not have."""
    if job.plan.size == 0 and job.verified is None:
        job.verified = "empty"
    ep = job.plan.dst_ep
    if job.verified is None and run.checksums and ep is not None and ep.supports_crc32c \
            and (ep.verifies_crc32c is True or passes_through(run.checksums, job.plan)):
        job.verified = "crc32c-by-store"


def unverified_reason(job: ObjectJob) -> str:
    if job.expect is not None and job.expect.reason:
        return job.expect.reason
    if job.plan.kind == "copy":
        return "server-side copy: the store moved the bytes"
    if job.plan.kind in ("upload", "stream"):
        ep = job.plan.dst_ep
        if ep is None or not ep.supports_crc32c:
            return "the destination store did not accept a checksum"
        if ep.verifies_crc32c is False:
            return "the destination store takes any CRC32C: it checked none"
        return "whether the destination store checks a CRC32C is unknown (not probed)"
    return "nothing to compare"


def require_verified(run: RunContext, job: ObjectJob) -> None:
    if job.verified is None and run.require_verified:
        raise NotVerified(f"unverified ({unverified_reason(job)}) and --require-verified "
                          "is set")
