"""Upload: a local file to a store, one PUT or a multipart upload, each part read, summed
and sent by the compiled core.

The part's CRC32C goes in the request head, before the body, so each part is read twice:
once to sum it (``native.file_crc``: one call, the interpreter lock released for the whole
part), then to send it. The file may change between the two reads; the bytes sent are
checked once, by whoever can:

- a store that refuses a body whose CRC32C differs from the header (measured by the
  capability probe: ``verifies_crc32c``) checks them itself: they go with ``sendfile``,
  page cache to socket, no copy in user space (0.25 CPU s/GB here);
- otherwise we do (``Connection.send_file_summed``: read, sum, send in C on plain TCP;
  one more copy, 0.44 CPU s/GB): if the sum of the bytes sent differs from the first, the
  part fails before its last byte is sent, so the store never holds a whole body nobody
  summed.

A part no larger than the worker's buffer is read once and sent from it.

Those checks hold a part to itself; the object is held to one version of the file by its
(size, mtime) stamp: that of the listing at the open, that of the open after each part's
checksum pass. A write anywhere in the file during the upload fails the object
(``SourceChanged``, not retried) instead of storing old parts joined to new ones.
"""

from __future__ import annotations

import os

from ... import native
from ...errors import IntegrityError, SourceChanged
from ...storage.local import open_listed, source_stamp
from ...wire.connection import Connection
from ..integrity import crc32c
from ..jobs import ObjectJob
from ..plan import Part
from . import multipart
from .context import PartContext, RunContext

SLICE = 8 << 20
"""Bytes per call of the send loop: progress and rate caps move per slice, not per part."""


def run_part(ctx: PartContext, job: ObjectJob, part: Part) -> object:
    with job.lock:
        if job.fd is None:
            job.fd, job.src_stamp = open_listed(job.plan.src_path, job.plan.size, job.plan.mtime)
    fd = job.fd
    buf = ctx.buffer
    n = part.length
    try:
        crc = native.file_crc(fd, part.offset, n, buf)
    except native.ShortFile:
        raise SourceChanged(f"{job.plan.src_path} shrank during upload") from None
    if source_stamp(fd) != job.src_stamp:
        # a write since the open: this part, or one summed before it, may hold bytes of
        # either version; the object would be one the file never was (the sends re-read
        # only what this pass summed, so every part passing this check is one version)
        raise SourceChanged(f"{job.plan.src_path} changed during upload: copy it again")
    ep = job.plan.dst_ep
    limit = ctx.run.limit_for(ep)
    step = SLICE if limit is None else 1 << 20
    store_checks = (ctx.run.checksums and ep is not None and ep.supports_crc32c is not False
                    and ep.verifies_crc32c is True)

    if n <= len(buf):     # read once: the checksum pass left the whole part in buf
        def send_body(conn: Connection) -> None:
            if limit is not None:
                limit(n)
            conn.send(buf[:n])
            ctx.moved(n)
    elif store_checks:    # the store refuses a body that does not match the header
        def send_body(conn: Connection) -> None:
            for off in range(0, n, step):
                k = min(step, n - off)
                if limit is not None:
                    limit(k)
                conn.send_file(fd, part.offset + off, k, buf)
                ctx.moved(k)
    else:
        def send_body(conn: Connection) -> None:
            # all but the last byte, summed as sent; the last one only if the sums agree:
            # a body cut short is never stored, a whole one might be (whatever its sum)
            sent = 0
            body = n - 1
            for off in range(0, body, step):
                k = min(step, body - off)
                if limit is not None:
                    limit(k)
                sent = conn.send_file_summed(fd, part.offset + off, k, buf, sent)
                ctx.moved(k)   # progress per slice, so a slow store shows motion at once
            last = os.pread(fd, 1, part.offset + body)
            if len(last) != 1 or crc32c(last, sent) != crc:   # the exchange stays unfinished:
                raise IntegrityError(                          # its pool drops it
                    f"{job.plan.src_path} changed during upload (part {part.number}: the "
                    f"bytes read to send differ from the checksum pass)")
            conn.send(last)
            ctx.moved(1)
    etag = multipart.put_part(ctx, job, part, send_body, crc if ctx.run.checksums else None)
    job.part_etags[part.number] = etag
    job.part_crcs[part.number] = crc
    return None


def finalize(run: RunContext, job: ObjectJob) -> None:
    if job.fd is not None:
        os.close(job.fd)
        job.fd = None
    multipart.finalize(run, job)
