"""Upload: a local file to a store, one PUT or a multipart upload, sent from the page cache.

Each part is read once to checksum it (the CRC32C header precedes the body), then sent
with ``sendfile`` (large parts) or from the buffer it was read into (small ones).
"""

from __future__ import annotations

import os

from ...errors import IntegrityError
from ...wire.connection import Connection
from ..integrity import crc32c
from ..jobs import ObjectJob
from ..plan import Part
from . import multipart
from .context import PartContext, RunContext

CHUNK = 1 << 20
"""Bytes per send step: progress and rate caps move per MiB, not per part."""


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    with job.lock:
        if job.fd is None:
            job.fd = os.open(job.plan.src_path, os.O_RDONLY)
    fd = job.fd
    buf = ctx.buffer
    n = part.length
    crc = 0
    small = n <= len(buf)
    # Checksum pass: the header must precede the body. Small bodies are read once into the
    # buffer and sent from it; large ones are summed from the page cache, then sendfile'd.
    off = 0
    while off < n:
        k = os.preadv(fd, [buf[: min(len(buf), n - off)]], part.offset + off)
        if k == 0:
            raise IntegrityError(f"{job.plan.src_path} shrank during upload")
        crc = crc32c(buf[:k], crc)
        off += k
    limit = ctx.run.limit_for(job.plan.dst_ep)

    if small:
        def send_body(conn: Connection) -> None:
            if limit is not None:
                limit(n)
            conn.send(buf[:n])
            ctx.moved(n)
    else:
        def send_body(conn: Connection) -> None:
            for off in range(0, n, CHUNK):
                k = min(CHUNK, n - off)
                if limit is not None:
                    limit(k)
                conn.send_file(fd, part.offset + off, k, buf)
                ctx.moved(k)   # progress per MiB sent, so a slow store shows motion at once
    etag = multipart.put_part(ctx, job, part, send_body, crc if ctx.run.checksums else None)
    job.part_etags[part.number] = etag
    job.part_crcs[part.number] = crc
    return None


def finalize(run: RunContext, job: ObjectJob) -> None:
    if job.fd is not None:
        os.close(job.fd)
        job.fd = None
    multipart.finalize(run, job)
