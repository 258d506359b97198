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

from ...wire.connection import Connection
from ..jobs import ObjectJob
from ..plan import Part
from ..receive import receive
from . import multipart
from .checks import check_whole, digest_for, expect_ranged, get_part
from .common import passes_through
from .context import PartContext

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
            if job.plan.multipart:
                expect_ranged(run, job, ctx.stats)
            conn, ans = get_part(ctx, job.plan.src_ep, job, part, whole=not job.plan.multipart)
            digest = digest_for(job, None if job.plan.multipart else ans)

            def received(k: int) -> None:
                ctx.stats.wire_bytes += k

            crc = receive(conn, ans.length, lambda off, left: mv[off:off + min(CHUNK, left)],
                          on_bytes=received, limit=run.limit_for(job.plan.src_ep), digest=digest)
            if not job.plan.multipart:
                check_whole(job, crc, digest)

        limit = run.limit_for(job.plan.dst_ep)

        def send_body(conn: Connection) -> None:
            for off in range(0, part.length, CHUNK):
                k = min(CHUNK, part.length - off)
                if limit is not None:
                    limit(k)
                conn.send(mv[off:off + k])
                ctx.moved(k)

        etag = multipart.put_part(ctx, job, part, send_body, crc if run.checksums else None)
        job.part_etags[part.number] = etag
        job.part_crcs[part.number] = crc
        if digest is not None:
            job.part_digests[part.number] = digest.value()
    finally:
        if part.length:
            run.memory.put(pbuf)
    return None


def _pass_through(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    """Each received MiB sent on at once; the CRC32C trails the body."""
    run = ctx.run
    src, dst = job.plan.src_ep, job.plan.dst_ep
    assert src is not None and dst is not None
    if job.plan.multipart:
        expect_ranged(run, job, ctx.stats)
    conn, ans = get_part(ctx, src, job, part, whole=not job.plan.multipart)
    digest = digest_for(job, None if job.plan.multipart else ans)
    buf = run.memory.get(CHUNK)
    sums: list[int] = []
    try:
        mv = memoryview(buf)
        src_limit, dst_limit = run.limit_for(src), run.limit_for(dst)

        def received(k: int) -> None:
            ctx.stats.wire_bytes += k

        def send_body(out: Connection) -> None:
            def sink(chunk: memoryview, _off: int) -> None:
                if dst_limit is not None:
                    dst_limit(len(chunk))
                out.send(chunk)
                ctx.moved(len(chunk))

            crc = receive(conn, ans.length, lambda off, left: mv[:min(CHUNK, left)],
                          sink=sink, on_bytes=received, limit=src_limit, digest=digest)
            if not job.plan.multipart:
                check_whole(job, crc, digest)   # raises before the trailer: no object
            sums.append(crc)

        etag = multipart.put_part(ctx, job, part, send_body, None, trailer=lambda: sums[0])
        job.part_etags[part.number] = etag
        job.part_crcs[part.number] = sums[0]
        if digest is not None:
            job.part_digests[part.number] = digest.value()
    finally:
        run.memory.put(buf)
    return None


finalize = multipart.finalize
