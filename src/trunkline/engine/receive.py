"""The one receive loop: a body's bytes off a connection, checksummed while hot.

Why one: downloads (into a reused buffer, then written at their offset), streams between
stores (straight into a part buffer), the full-object re-check and ``verify``'s reads all
receive a checked body the same way: one ``recv_into`` per chunk (the GIL released for a
whole MiB), CRC32C over the chunk while it is in cache, then the caller's sink. Written
once, it is also the one place the native hot loop will replace.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConnectionClosed
from ..wire.connection import Connection
from .checksums import PartDigest
from .integrity import crc32c

__all__ = ["receive", "receive_crc"]


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
