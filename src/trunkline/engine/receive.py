"""The one receive loop: a body's bytes off a connection, checksummed while hot.

Why one: downloads (into a reused buffer, then written at their offset), streams between
stores (straight into a part buffer), the full-object re-check and ``verify``'s reads all
receive a checked body the same way: one ``recv_into`` per chunk (the GIL released for a
whole MiB), CRC32C over the chunk while it is in cache, then the caller's sink. Written
once, it is also the one place the native hot loop will replace.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import native
from ..errors import ConnectionClosed, ReadTimeout
from ..wire.connection import Connection
from .checksums import PartDigest
from .integrity import crc32c

__all__ = ["receive", "receive_crc", "receive_to_file"]

NATIVE_SLICE = 8 * 2**20
"""Bytes per call of the compiled loop: progress is reported (and a stop seen) between."""


def receive(conn: Connection, n: int, window: Callable[[int, int], memoryview], *,
            sink: Callable[[memoryview, int], None] | None = None,
            on_bytes: Callable[[int], None] | None = None,
            limit: Callable[[int], None] | None = None,
            digest: PartDigest | None = None) -> int:
    """Receive ``n`` body bytes; returns their CRC32C (and feeds ``digest``: the store's own
    algorithm, when it keeps another than CRC32C).

    ``window(offset, left)`` says where the next chunk goes (a reused buffer, or a slice of
    the destination); ``sink(chunk, offset)`` then consumes it (a write at the offset),
    ``on_bytes(k)`` counts it, ``limit(k)`` charges the rate caps before it is read."""
    crc = 0
    got = 0
    while got < n:
        mv = window(got, n - got)
        if limit is not None:
            limit(len(mv))
        k = conn.recv_into(mv)
        if k == 0:
            raise ConnectionClosed(f"body truncated at {got} of {n} bytes")
        chunk = mv[:k]
        crc = crc32c(chunk, crc)
        if digest is not None:
            digest.update(chunk)
        if sink is not None:
            sink(chunk, got)
        got += k
        if on_bytes is not None:
            on_bytes(k)
    return crc


def receive_crc(conn: Connection, n: int, buf: memoryview) -> int:
    """CRC32C of the next ``n`` body bytes, read through ``buf`` and dropped."""
    return receive(conn, n, lambda off, left: buf[: min(len(buf), left)])


def receive_to_file(conn: Connection, n: int, fd: int, offset: int, buf: memoryview, *,
                    writer, on_bytes: Callable[[int], None] | None = None,
                    limit: Callable[[int], None] | None = None,
                    digest: PartDigest | None = None) -> int:
    """Receive ``n`` body bytes and write them at ``offset`` (``writer``: the object's
    ``DirectWriter``, whose O_DIRECT descriptor takes the aligned bulk); returns their
    CRC32C. Where it applies (a plain connection, no rate cap, the compiled core built)
    the bytes go through ``trunkline.native`` with the interpreter lock released, in
    slices of ``NATIVE_SLICE``, the body bytes that came with the head included, and a
    CRC-32 (with ISA-L) or CRC64NVME (PCLMULQDQ) the store keeps summed there too;
    otherwise (a rate cap, a second digest such as MD5 or SHA-256) through the Python
    loop above. Same bytes, same sums, same errors either way."""
    def window(off: int, left: int) -> memoryview:
        return buf[: min(len(buf), left)]

    def sink_at(base: int) -> Callable[[memoryview, int], None]:
        return lambda chunk, off: writer.pwrite(chunk, base + off)

    second = digest is not None and native.sums_second(digest.algo)
    sock = (conn.direct_body(n) if native.NATIVE and limit is None
            and (digest is None or second) else None)
    if sock is None:
        return receive(conn, n, window, sink=sink_at(offset), on_bytes=on_bytes, limit=limit,
                       digest=digest)
    # the bytes that came with the head start the loop's first buffer: it writes them
    # with what follows, so its O_DIRECT writes stay aligned and they cost no Python loop
    have = conn.take_pending(buf[: min(len(buf), n)])
    got = crc = 0
    while got < n:
        k = min(NATIVE_SLICE, n - got)
        try:
            dfd = writer.dfd
            crc, left, sum2 = native.recv_to_file(
                sock, fd, offset + got, k, buf, direct_fd=dfd, crc=crc, have=have,
                crc32=digest.crc if second and digest.algo == "crc32" else None,
                crc64=digest.crc if second and digest.algo == "crc64nvme" else None)
            if dfd is not None and left is None:
                writer.direct_refused()   # closed with the writer, never under a neighbour
        except ConnectionError as e:
            conn.direct_failed()
            raise conn.cut_short(ConnectionClosed(f"body truncated: {e}")) from None
        except TimeoutError as e:
            conn.direct_failed()
            raise conn.cut_short(ReadTimeout(str(e))) from None
        except BaseException:
            conn.direct_failed()
            raise
        if second:
            digest.crc = sum2
        conn.direct_done(k - have)
        got += k
        have = 0
        if on_bytes is not None:
            on_bytes(k)
    return crc
