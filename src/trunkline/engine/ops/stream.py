"""Stream: between two stores through this host, part by part, never via disk.

Each part is received into a buffer from the run's memory budget (the bound on bytes held
in flight), checked, then PUT from that buffer; the object is held against the source
store's own checksum (ops/checks.py) before its upload is completed.
"""

from __future__ import annotations

from ...wire.connection import Connection
from ..jobs import ObjectJob
from ..plan import Part
from ..receive import receive
from . import multipart
from .checks import check_whole, digest_for, expect_ranged, get_part
from .context import PartContext

CHUNK = 1 << 20


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    """GET the part into a budgeted buffer, then PUT it."""
    assert job.plan.src_ep is not None
    run = ctx.run
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


finalize = multipart.finalize
