"""Receive UDP datagrams in batches: ``recvmmsg`` (compiled ``_udp``) or a ``recvfrom`` loop.

Both give the same list of ``(payload, host, port)`` for what the socket holds, up to
``max_msgs`` (tests/integration/test_flows_udp.py checks them against each other).
``payload`` is None for a datagram longer than a slot (never the case with the default
64 KiB slots: no UDP payload is longer). ``TRUNKLINE_NATIVE=0`` selects the Python loop,
and so does a build without a C compiler. The compiled module lives here rather than in
``trunkline.native`` because a collector host needs nothing of the mover (that package
loads the mover's CRC32C library).
"""

from __future__ import annotations

import os
import socket
import struct

try:
    from . import _udp
except ImportError:  # built without a compiler: the recvfrom loop
    _udp = None

NATIVE = _udp is not None and os.environ.get("TRUNKLINE_NATIVE", "1") != "0"
"""Whether the compiled batch receive is in use."""

HEAD = struct.Struct("=IHHI16s")  # a frame's per-datagram head (see _udp.c)
TRUNC = 0xFFFFFFFF  # a head's length for a datagram longer than its slot
SLOT = 65536  # bytes per datagram slot: more than any UDP payload (65,527 over IPv6)
MAX_MSGS = 64  # datagrams per call by default (and per slot buffer: 4 MiB)


class BatchReceiver:
    """One reusable slot buffer; ``recv(sock)`` returns what the socket holds, in order."""

    def __init__(self, max_msgs: int = MAX_MSGS, native: bool | None = None):
        self.native = NATIVE if native is None else native and _udp is not None
        self.max_msgs = max_msgs
        # pages are touched only as far as datagrams reach into each slot
        self.buf = bytearray(SLOT * max_msgs) if self.native else None

    def recv(self, sock: socket.socket) -> list[tuple[bytes | None, str, int]]:
        """Up to ``max_msgs`` datagrams without blocking ([] when none is waiting)."""
        if self.native:
            return _udp.recv_many(sock.fileno(), self.buf, self.max_msgs, SLOT)
        out = []
        recv = sock.recvfrom
        for _ in range(self.max_msgs):
            try:
                data, addr = recv(SLOT, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            out.append((data, addr[0], addr[1]))
        return out

    def recv_frame(self, sock: socket.socket) -> tuple[int, bytes]:
        """The same datagrams as one frame for a pipe: -> (count, frame)."""
        if self.native:
            return _udp.recv_frame(sock.fileno(), self.buf, self.max_msgs, SLOT)
        batch = self.recv(sock)
        parts = []
        for data, host, port in batch:
            fam, scope, addr = _pack_host(host)
            parts.append(HEAD.pack(TRUNC if data is None else len(data), port, fam, scope,
                                   addr))
            if data is not None:
                parts.append(data)
        return len(batch), b"".join(parts)


def parse_frame(frame, native: bool | None = None) -> list[tuple[bytes | None, str, int]]:
    """A frame back into ``(payload, host, port)``, as ``BatchReceiver.recv`` gives them."""
    if (NATIVE if native is None else native and _udp is not None):
        return _udp.parse_frame(frame)
    out = []
    view = memoryview(frame)
    off, end = 0, len(view)
    while off < end:
        if end - off < HEAD.size:
            raise ValueError("parse_frame: a datagram runs past the frame")
        n, port, fam, scope, addr = HEAD.unpack_from(view, off)
        off += HEAD.size
        if n == TRUNC:
            data = None
        else:
            if n > end - off:
                raise ValueError("parse_frame: a datagram runs past the frame")
            data = bytes(view[off: off + n])
            off += n
        out.append((data, _unpack_host(fam, scope, addr), port))
    return out


def _pack_host(host: str) -> tuple[int, int, bytes]:
    if ":" not in host:
        return socket.AF_INET, 0, socket.inet_pton(socket.AF_INET, host)
    base, _, zone = host.partition("%")
    scope = (int(zone) if zone.isdigit() else socket.if_nametoindex(zone)) if zone else 0
    return socket.AF_INET6, scope, socket.inet_pton(socket.AF_INET6, base)


def _unpack_host(fam: int, scope: int, addr: bytes) -> str:
    if fam == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, addr[:4])
    if fam != socket.AF_INET6:
        return ""
    text = socket.inet_ntop(socket.AF_INET6, addr)
    if scope:
        try:
            text += "%" + socket.if_indextoname(scope)
        except OSError:
            text += f"%{scope}"
    return text
