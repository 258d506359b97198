"""A persistent HTTP/1.1 connection that receives bodies straight into caller buffers.

Design (why it is shaped like this):
- Blocking sockets with kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO) rather than Python's
  timeout mode, so that ``recv_into(..., MSG_WAITALL)`` fills a whole 1 MiB buffer in one
  syscall with the GIL released: one Python iteration per MiB instead of per 64 KiB.
- Uploads from files use ``sendfile`` (page cache -> socket, no user-space copy) on plain
  TCP; TLS falls back to pread + sendall through a reused buffer.
- Every connection samples TCP_INFO when asked and at close, for telemetry and flows.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

from ..errors import ConnectionClosed, ProtocolError, ReadTimeout
from . import tcpinfo
from .http1 import ResponseHead, parse_response_head

__all__ = ["Connection", "ConnectionClosed", "ConnectionStats", "ReadTimeout"]

SOCK_BUF = 4 * 1024 * 1024


@dataclass
class ConnectionStats:
    """What one TCP connection carried: the raw material of a flow record."""

    local: tuple[str, int] = ("", 0)
    remote: tuple[str, int] = ("", 0)
    started: float = 0.0
    ended: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    requests: int = 0
    tcp: tcpinfo.TcpInfo | None = None
    ttfb_total: float = 0.0   # sum of time-to-first-byte over requests

    def to_dict(self) -> dict:
        d = {
            "local": f"{self.local[0]}:{self.local[1]}",
            "remote": f"{self.remote[0]}:{self.remote[1]}",
            "started": self.started,
            "ended": self.ended,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "requests": self.requests,
        }
        if self.tcp is not None:
            d.update(
                rtt_us=self.tcp.rtt_us,
                min_rtt_us=self.tcp.min_rtt_us,
                retransmits=self.tcp.total_retrans,
                snd_cwnd=self.tcp.snd_cwnd,
                delivery_rate_bps=self.tcp.delivery_rate * 8,
                segs_in=self.tcp.segs_in,
                segs_out=self.tcp.segs_out,
            )
        return d


@dataclass
class Connection:
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    sock: socket.socket | None = None
    _head: bytearray = field(default_factory=lambda: bytearray(65536 + 4))
    _pend_start: int = 0
    _pend_end: int = 0
    usable: bool = True

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                raw.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
            except OSError:
                pass
        raw.settimeout(None)
        tv = struct.pack("ll", int(self.read_timeout), int((self.read_timeout % 1) * 1e6))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self.stats.local = raw.getsockname()[:2]
        self.stats.remote = raw.getpeername()[:2]
        self.stats.started = time.time()
        if self.tls is not None:
            raw = self.tls.wrap_socket(raw, server_hostname=self.server_hostname or self.host)
        self.sock = raw

    @property
    def plain(self) -> bool:
        return self.tls is None

    # -- sending -----------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except BlockingIOError as e:
            raise ReadTimeout("send timed out") from e
        self.stats.bytes_out += len(data)

    def send_file(self, fd: int, offset: int, count: int, buf: memoryview | None = None) -> None:
        """Send ``count`` bytes of file ``fd`` from ``offset``: sendfile on plain TCP."""
        assert self.sock is not None
        end = offset + count
        if self.plain:
            out = self.sock.fileno()
            while offset < end:
                try:
                    n = os.sendfile(out, fd, offset, min(end - offset, 1 << 30))
                except BlockingIOError as e:
                    raise ReadTimeout("send timed out") from e
                if n == 0:
                    raise ConnectionClosed("file shorter than expected while sending")
                offset += n
                self.stats.bytes_out += n
            return
        if buf is None:
            buf = memoryview(bytearray(1 << 20))
        while offset < end:
            n = os.preadv(fd, [buf[: min(len(buf), end - offset)]], offset)
            if n == 0:
                raise ConnectionClosed("file shorter than expected while sending")
            self.sock.sendall(buf[:n])
            offset += n
            self.stats.bytes_out += n

    # -- receiving ---------------------------------------------------------------------

    def _recv_raw(self, mv: memoryview, waitall: bool) -> int:
        assert self.sock is not None
        try:
            if waitall and self.plain:
                n = self.sock.recv_into(mv, len(mv), socket.MSG_WAITALL)
            else:
                n = self.sock.recv_into(mv, len(mv))
        except BlockingIOError as e:  # SO_RCVTIMEO expired
            raise ReadTimeout(f"no data for {self.read_timeout:g}s") from e
        except ssl.SSLError as e:
            raise ConnectionClosed(f"TLS error: {e}") from e
        self.stats.bytes_in += n
        return n

    def read_head(self) -> ResponseHead:
        """Read and parse the response head; leftover body bytes are kept for ``recv_into``."""
        if self.sock is None:
            raise ConnectionClosed("not connected")
        if self._pend_end > self._pend_start:
            # bytes beyond the previous response's body: the peer sent more than it framed
            self.usable = False
            raise ProtocolError("bytes after the end of the previous response")
        buf = self._head
        mv = memoryview(buf)
        filled = 0
        try:
            while True:
                if filled:
                    parsed = parse_response_head(bytes(buf[:filled]))
                    if parsed is not None:
                        head, used = parsed
                        if 100 <= head.status < 200:
                            if head.status == 101:
                                raise ProtocolError("unexpected 101 Switching Protocols")
                            # an interim answer (100, 102, 103): the final one follows
                            buf[: filled - used] = buf[used:filled]
                            filled -= used
                            continue
                        self._pend_start, self._pend_end = used, filled
                        return head
                if filled >= len(buf):
                    raise ProtocolError("response head too large")
                n = self._recv_raw(mv[filled:], waitall=False)
                if n == 0:
                    raise ConnectionClosed(
                        "connection closed before response" if filled == 0 else "truncated head"
                    )
                filled += n
        except ProtocolError:
            self.usable = False   # desynchronised: a retry must use a fresh connection
            raise

    def recv_into(self, mv: memoryview) -> int:
        """Receive up to len(mv) body bytes (all of them unless the peer stops)."""
        pend = self._pend_end - self._pend_start
        if pend:
            n = min(pend, len(mv))
            mv[:n] = self._head[self._pend_start : self._pend_start + n]
            self._pend_start += n
            if n == len(mv):
                return n
            got = self._recv_raw(mv[n:], waitall=True)
            return n + got
        return self._recv_raw(mv, waitall=True)

    def read_exact(self, n: int) -> bytes:
        out = bytearray(n)
        mv = memoryview(out)
        got = 0
        while got < n:
            k = self.recv_into(mv[got:])
            if k == 0:
                raise ConnectionClosed(f"body truncated at {got} of {n} bytes")
            got += k
        return bytes(out)

    def read_chunked(self, limit: int = 1 << 20) -> bytes:
        """A chunked body (small bodies only, e.g. error documents)."""
        out = bytearray()
        line = bytearray()
        one = memoryview(bytearray(1))
        while True:
            line.clear()
            while not line.endswith(b"\r\n"):
                if self.recv_into(one) == 0:
                    raise ConnectionClosed("chunked body truncated")
                line += one
                if len(line) > 1024:
                    raise ProtocolError("chunk size line too long")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers until empty line
                while True:
                    line.clear()
                    while not line.endswith(b"\r\n"):
                        if self.recv_into(one) == 0:
                            return bytes(out)
                        line += one
                    if line == b"\r\n":
                        return bytes(out)
            if len(out) + size > limit:
                raise ProtocolError("chunked body larger than limit")
            out += self.read_exact(size)
            self.read_exact(2)

    def read_body(self, head: ResponseHead, limit: int = 1 << 20) -> bytes:
        """A small whole body (error XML, control responses)."""
        if head.chunked:
            return self.read_chunked(limit)
        n = head.content_length
        if n is None:
            # read to close
            out = bytearray()
            chunk = memoryview(bytearray(65536))
            while len(out) < limit:
                k = self.recv_into(chunk)
                if k == 0:
                    break
                out += chunk[:k]
            self.usable = False
            return bytes(out)
        if n > limit:
            self.usable = False
            return self.read_exact(limit)
        return self.read_exact(n)

    def sample_tcp(self) -> tcpinfo.TcpInfo | None:
        if self.sock is None:
            return self.stats.tcp
        info = tcpinfo.sample(self.sock)
        if info is not None:
            self.stats.tcp = info
        return info

    def close(self) -> None:
        if self.sock is not None:
            self.sample_tcp()
            self.stats.ended = time.time()
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.usable = False
