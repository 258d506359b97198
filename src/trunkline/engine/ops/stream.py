"""Stream: between two stores through this host, part by part, never via disk.

Each part is received into a buffer from the run's memory budget (the bound on bytes held
in flight), checked, then PUT from that buffer.
"""

from __future__ import annotations

from ...wire.connection import Connection
from ..jobs import ObjectJob
from ..plan import Part
from ..receive import receive
from . import multipart
from .common import check_crc, get_part
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
        if part.length:
            conn, n, crc_hdr = get_part(ctx, job.plan.src_ep, job, part, whole=not job.plan.multipart)

            def received(k: int) -> None:
                ctx.stats.wire_bytes += k

            crc = receive(conn, n, lambda off, left: mv[off:off + min(CHUNK, left)],
                          on_bytes=received, limit=run.limit_for(job.plan.src_ep))
            check_crc(crc, crc_hdr, job)

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
    finally:
        if part.length:
            run.memory.put(pbuf)
    return None


finalize = multipart.finalize
