"""Stream: between two stores through this host, part by part, never via disk.

To a store whose probe found a trailing CRC32C checked (``trailer_crc32c``), a part passes
through: each MiB received from the source is sent on at once, and its CRC32C, known only
at the end, follows the body as a trailer the store checks before it keeps the part. One
MiB of the memory budget per part in flight, and the PUT overlaps the GET.

Elsewhere a part is received into a buffer from the run's memory budget (the bound on
bytes held in flight), checked, then PUT from that buffer with its CRC32C in the head.

Either way the object is held against the source store's own checksum (ops/checks.py)
before its upload is completed; a one-request object is checked before its trailer goes,
so a damaged one is never completed (the PUT is left short and its connection dropped).
"""

from __future__ import annotations

from collections.abc import Callable

from ...storage import s3_data
from ...wire.connection import Connection
from ..checksums import PartDigest
from ..jobs import ObjectJob
from ..plan import Part
from ..receive import receive
from . import multipart
from .checks import check_whole, digest_for, expect_ranged, get_part
from .common import passes_through
from .context import PartContext, RateCharge, RunContext

CHUNK = 1 << 20


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    """GET the part and PUT it: passed through, or through a budgeted buffer."""
    assert job.plan.src_ep is not None and job.plan.dst_ep is not None
    run = ctx.run
    if part.length and passes_through(run.checksums, job.plan):
        return _pass_through(ctx, job, part)
    pbuf = run.memory.get(part.length) if part.length else bytearray()
    try:
        mv = memoryview(pbuf)
        crc = 0
        digest = None
        if part.length:
            conn, ans, digest = _get(ctx, job, part)
            crc = _receive(ctx, job, conn, ans.length, digest,
                           lambda off, left: mv[off:off + min(CHUNK, left)])
        limit = _send_limit(run, job)

        def send_body(conn: Connection) -> None:
            for off in range(0, part.length, CHUNK):
                k = min(CHUNK, part.length - off)
                if limit is not None:
                    limit(k)
                conn.send(mv[off:off + k])
                ctx.moved(k)

        etag = multipart.put_part(ctx, job, part, send_body, crc if run.checksums else None)
        _done(job, part, etag, crc, digest)
    finally:
        if part.length:
            run.memory.put(pbuf)
    return None


def _pass_through(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    """Each received MiB sent on at once; the CRC32C trails the body."""
    run = ctx.run
    conn, ans, digest = _get(ctx, job, part)
    buf = run.memory.get(CHUNK)
    sums: list[int] = []
    try:
        mv = memoryview(buf)
        limit = _send_limit(run, job)

        def send_body(out: Connection) -> None:
            def sink(chunk: memoryview, _off: int) -> None:
                if limit is not None:
                    limit(len(chunk))
                out.send(chunk)
                ctx.moved(len(chunk))

            # checked before the trailer goes: a damaged one-request object is never kept
            sums.append(_receive(ctx, job, conn, ans.length, digest,
                                 lambda off, left: mv[:min(CHUNK, left)], sink))

        etag = multipart.put_part(ctx, job, part, send_body, None, trailer=lambda: sums[0])
        _done(job, part, etag, sums[0], digest)
    finally:
        run.memory.put(buf)
    return None


def _send_limit(run: RunContext, job: ObjectJob) -> RateCharge | None:
    """The send leg's caps: the destination's own, unless it is the source (whose cap the
    receive leg charged, as it charged the overall cap: a byte counts once per cap)."""
    src, dst = job.plan.src_ep, job.plan.dst_ep
    if dst is None or (src is not None and src.cfg.name == dst.cfg.name):
        return None
    return run.limit_for(dst, overall=False)


def _get(ctx: PartContext, job: ObjectJob, part: Part
         ) -> tuple[Connection, s3_data.GetAnswer, PartDigest | None]:
    """The part's checked GET, its body next on the connection: (connection, answer,
    the digest of the store's own algorithm that the body must feed)."""
    assert job.plan.src_ep is not None
    if job.plan.multipart:
        expect_ranged(ctx.run, job, ctx.stats)
    conn, ans = get_part(ctx, job.plan.src_ep, job, part, whole=not job.plan.multipart)
    return conn, ans, digest_for(job, None if job.plan.multipart else ans)


def _receive(ctx: PartContext, job: ObjectJob, conn: Connection, n: int,
             digest: PartDigest | None, window: Callable[[int, int], memoryview],
             sink: Callable[[memoryview, int], None] | None = None) -> int:
    """The GET's ``n`` body bytes through ``window`` (and ``sink``); a one-request object
    is held against the source's checksum at its end. -> the bytes' CRC32C."""
    def received(k: int) -> None:
        ctx.stats.wire_bytes += k

    crc = receive(conn, n, window, sink=sink, on_bytes=received,
                  limit=ctx.run.limit_for(job.plan.src_ep), digest=digest)
    if not job.plan.multipart:
        check_whole(job, crc, digest)
    return crc


def _done(job: ObjectJob, part: Part, etag: str, crc: int, digest: PartDigest | None) -> None:
    """What the store said of the part, and its sums, for completion and the journal."""
    job.part_etags[part.number] = etag
    job.part_crcs[part.number] = crc
    if digest is not None:
        job.part_digests[part.number] = digest.value()


finalize = multipart.finalize
