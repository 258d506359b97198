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

try:
    from . import _udp
except ImportError:  # built without a compiler: the recvfrom loop
    _udp = None

NATIVE = _udp is not None and os.environ.get("TRUNKLINE_NATIVE", "1") != "0"
"""Whether the compiled batch receive is in use."""

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
