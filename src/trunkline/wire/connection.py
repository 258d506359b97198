"""A persistent HTTP/1.1 connection that receives bodies straight into caller buffers.

Design (why it is shaped like this):
- Blocking sockets with kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO) rather than Python's
  timeout mode, so that ``recv_into(..., MSG_WAITALL)`` fills a whole 1 MiB buffer in one
  syscall with the GIL released: one Python iteration per MiB instead of per 64 KiB.
- Uploads from files use ``sendfile`` (page cache -> socket, no user-space copy) on plain
  TCP; TLS falls back to pread + sendall through a reused buffer.
- Every connection samples TCP_INFO when asked and at close, for telemetry and flows.
- The connection only moves bytes; how a body ends is ``http1``'s (``response_framing``
  and the sans-I/O body readers). It follows each exchange, so it can say itself whether
  it may carry another request (``reusable``); the pool (``wire/pool.py``) asks it, and
  nobody outside ``wire/`` sets flags on it.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConnectionClosed, ProtocolError, ReadTimeout, TooSlow
from . import preconnect, speed_guard, tcpinfo
from .http1 import Framing, ResponseHead, body_reader, parse_response_head, response_framing
from .speed_guard import SpeedGuard

if TYPE_CHECKING:   # ssl is loaded by whoever made a TLS context (plain TCP needs none)
    import ssl

__all__ = ["Connection", "ConnectionClosed", "ConnectionStats", "ReadTimeout"]

SOCK_BUF = 4 * 1024 * 1024
HEAD_READ = 8192
"""Bytes per read while a response head is awaited. A head is a few hundred bytes; what
comes with it of the body goes through Python (copied out of the head buffer), while
what stays in the socket goes to the compiled loop without the interpreter lock: for a
256 KiB object that was up to 64 KiB per GET (bench/RESULTS.md, issue 18)."""
_NO_BODY = Framing("none")


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
    """One HTTP/1.1 connection to a store: requests out, heads and framed bodies in, never
    a byte past a body's end; its counters and TCP_INFO are the run's telemetry."""

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
    # the exchange in progress: the request's method, the response's framing, the body
    # bytes still to come; a connection is reusable only between complete exchanges
    _method: str = "GET"
    _in_flight: bool = False
    _framing: Framing = _NO_BODY
    _body_left: int = 0
    _keep_alive: bool = True
    _broken: bool = False
    # the minimum-rate guard watching this connection's bodies (set by its pool), and why
    # it closed the connection, if it did
    speed_guard: SpeedGuard | None = None
    _too_slow: str = ""

    def connect(self) -> None:
        # the CLI may have begun this one while it loaded, TLS included (wire/preconnect.py)
        early = preconnect.take(self.host, self.port, self.connect_timeout, self.tls,
                                self.server_hostname)
        raw = early or socket.create_connection((preconnect.socket_host(self.host), self.port),
                                                timeout=self.connect_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                raw.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
            except OSError:
                pass
        self.stats.local = raw.getsockname()[:2]
        self.stats.remote = raw.getpeername()[:2]
        self.stats.started = time.time()
        if self.tls is not None and early is None:
            # the handshake within the connect timeout: a server that takes the connection
            # and never answers it must not hold us forever (it did: no timeout was set)
            raw.settimeout(self.connect_timeout)
            raw = self.tls.wrap_socket(raw, server_hostname=self.server_hostname or self.host)
        raw.settimeout(None)
        self.sock = raw
        self.set_read_timeout(self.read_timeout)

    def set_read_timeout(self, seconds: float) -> None:
        """Seconds without a byte (sent or received) before ``ReadTimeout``."""
        self.read_timeout = seconds
        if self.sock is None:
            return
        tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    @property
    def plain(self) -> bool:
        return self.tls is None

    @property
    def reusable(self) -> bool:
        """Open, not failed, kept alive by the server, its last exchange complete
        (response read to the end of its body) and nothing past that body received: it
        may carry the next request."""
        return (self.sock is not None and not self._broken and self._keep_alive
                and not self._in_flight and self._pend_end == self._pend_start)

    def peer_closed(self) -> bool:
        """Whether an idle connection was closed (or written to) by the server meanwhile:
        between exchanges nothing may arrive, so anything readable (EOF, a reset, stray
        bytes) means it must not carry the next request. One poll, no wait."""
        if self.sock is None:
            return True
        p = select.poll()
        p.register(self.sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(p.poll(0))

    @property
    def usable(self) -> bool:
        """Read-only alias of ``reusable``."""
        return self.reusable

    # -- sending -----------------------------------------------------------------------

    def request(self, method: str, head: bytes) -> None:
        """Send a request head (its body, if any, follows with ``send``/``send_file``)."""
        if self._in_flight:   # the last answer was not read to its end: bytes would mix
            raise ProtocolError("connection busy with an unfinished exchange")
        if self.sock is None:
            self.connect()
        self._method = method
        self._in_flight = True
        self.send(head)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except BlockingIOError as e:
            self._broken = True
            raise ReadTimeout("send timed out") from e
        except OSError:
            self._broken = True
            raise
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
                    self._broken = True
                    raise ReadTimeout("send timed out") from e
                except OSError:
                    self._broken = True
                    raise
                if n == 0:
                    self._broken = True
                    raise ConnectionClosed("file shorter than expected while sending")
                offset += n
                self.stats.bytes_out += n
            return
        if buf is None:
            buf = memoryview(bytearray(1 << 20))
        while offset < end:
            n = os.preadv(fd, [buf[: min(len(buf), end - offset)]], offset)
            if n == 0:
                self._broken = True
                raise ConnectionClosed("file shorter than expected while sending")
            self.send(buf[:n])
            offset += n

    def send_file_summed(self, fd: int, offset: int, count: int, buf: memoryview,
                         crc: int = 0) -> int:
        """Send ``count`` bytes of file ``fd`` from ``offset``, read through ``buf``; returns
        the CRC32C of the bytes that went on the wire (extended from ``crc``), so the
        caller can hold them against the sum its request head announced. On plain TCP the
        compiled loop reads, sums and sends with the interpreter lock released
        (``trunkline.native``; its Python loop where it is not built)."""
        from .. import native
        from ..native.crc import crc32c

        if self.sock is None:
            self.connect()
        assert self.sock is not None
        try:
            if self.plain:
                out = native.file_to_sock(fd, self.sock, offset, count, buf, crc=crc)
                self.stats.bytes_out += count
                return out
            done = 0
            while done < count:
                k = os.preadv(fd, [buf[: min(len(buf), count - done)]], offset + done)
                if k == 0:
                    raise native.ShortFile(f"file ended after {done} of {count} bytes")
                crc = crc32c(buf[:k], crc)
                self.send(buf[:k])
                done += k
            return crc
        except native.ShortFile as e:
            self._broken = True
            raise ConnectionClosed(f"file shorter than expected while sending: {e}") from None
        except TimeoutError as e:
            self._broken = True
            raise ReadTimeout(f"send timed out: {e}") from None
        except OSError:
            self._broken = True
            raise

    # -- receiving ---------------------------------------------------------------------

    def _recv_raw(self, mv: memoryview, waitall: bool) -> int:
        assert self.sock is not None
        try:
            if waitall and self.plain:
                n = self.sock.recv_into(mv, len(mv), socket.MSG_WAITALL)
            else:
                n = self.sock.recv_into(mv, len(mv))
        except BlockingIOError as e:  # SO_RCVTIMEO expired
            self._broken = True
            raise self.cut_short(ReadTimeout(f"no data for {self.read_timeout:g}s")) from e
        except OSError as e:
            self._broken = True
            tls = sys.modules.get("ssl")
            if self.tls is not None and tls is not None and isinstance(e, tls.SSLError):
                raise self.cut_short(ConnectionClosed(f"TLS error: {e}")) from e
            raise self.cut_short(e) from None
        if n == 0 and len(mv):
            self._broken = True   # the peer closed: nothing more can come on this socket
            if self._too_slow:
                raise TooSlow(self._too_slow)
        self.stats.bytes_in += n
        return n

    def read_head(self) -> ResponseHead:
        """Read and parse the response head; leftover body bytes are kept for ``recv_into``.

        Interim answers (100 Continue) are skipped. The body's framing is fixed here."""
        if self.sock is None:
            raise ConnectionClosed("not connected")
        if self._pend_end > self._pend_start:
            # bytes beyond the previous response's body: the peer sent more than it framed
            self._broken = True
            raise ProtocolError("bytes after the end of the previous response")
        buf = self._head
        mv = memoryview(buf)
        filled = scanned = 0  # scanned: where the blank line can still start
        while True:
            end = buf.find(b"\r\n\r\n", scanned, filled)
            if end < 0:  # a head trickled in byte by byte is searched once, not n^2 / 2
                scanned = max(0, filled - 3)
            else:  # parse the head's bytes only, not the body bytes read with it
                try:
                    parsed = parse_response_head(mv[:end + 4])
                except ProtocolError:
                    self._broken = True
                    raise
                if parsed is not None:
                    head, used = parsed
                    if 100 <= head.status < 200:
                        if head.status == 101:
                            self._broken = True
                            raise ProtocolError("unexpected 101 Switching Protocols")
                        # an interim answer (100, 102, 103): the final one follows
                        buf[: filled - used] = buf[used:filled]
                        filled -= used
                        scanned = 0
                        continue
                    self._pend_start, self._pend_end = used, filled
                    self._start_body(head)
                    return head
            if filled >= len(buf):
                self._broken = True
                raise ProtocolError("response head too large")
            n = self._recv_raw(mv[filled:filled + HEAD_READ], waitall=False)
            if n == 0:
                raise ConnectionClosed(
                    "connection closed before response" if filled == 0 else "truncated head"
                )
            filled += n

    def _start_body(self, head: ResponseHead) -> None:
        try:
            self._framing = response_framing(head, self._method)
        except ProtocolError:
            self._broken = True
            raise
        self._keep_alive = head.keep_alive
        self._in_flight = True
        if self._framing.kind == "length":
            self._body_left = self._framing.length
            self._in_flight = self._body_left > 0
        elif self._framing.kind == "none":
            self._body_left = 0
            self._in_flight = False
        else:   # chunked or until-close: raw reads cannot tell where the body ends
            self._body_left = 0
        if self._in_flight and self.speed_guard is not None:
            self.speed_guard.watch(self)

    def _body_received(self, n: int) -> None:
        if self._framing.kind == "length":
            self._body_left -= n
            if self._body_left <= 0:
                self._body_left = 0
                self._body_done()

    def _body_done(self) -> None:
        self._in_flight = False
        if self.speed_guard is not None:
            self.speed_guard.unwatch(self)

    def recv_into(self, mv: memoryview) -> int:
        """Receive up to len(mv) body bytes (all of them unless the peer stops).

        Never reads past the end of a Content-Length body into the next answer."""
        if self._framing.kind == "length" and len(mv) > self._body_left:
            mv = mv[: self._body_left]
        n = self._copy_pending(mv)
        if n < len(mv):
            n += self._recv_raw(mv[n:], waitall=True)
        self._body_received(n)
        return n

    def _copy_pending(self, mv: memoryview) -> int:
        """Copy what fits of the body bytes read with the head into ``mv``; -> how many."""
        n = min(self._pend_end - self._pend_start, len(mv))
        mv[:n] = self._head[self._pend_start : self._pend_start + n]
        self._pend_start += n
        return n

    @property
    def pending(self) -> int:
        """Body bytes already read with the head (``recv_into`` hands them out first)."""
        return self._pend_end - self._pend_start

    def direct_body(self, n: int) -> socket.socket | None:
        """The raw socket, for a caller that takes the next ``n`` body bytes itself (the
        compiled receive loop): first those read with the head (``take_pending``), then
        the rest from the socket. None where that cannot be exact: TLS, a body framed
        other than by Content-Length, fewer than ``n`` bytes left. The caller then
        reports ``direct_done(k)`` for what it read from the socket, or
        ``direct_failed()``."""
        if (self.sock is None or not self.plain or self._framing.kind != "length"
                or n > self._body_left):
            return None
        return self.sock

    def take_pending(self, mv: memoryview) -> int:
        """Copy the body bytes read with the head into ``mv`` (as many as fit, never past
        the body's end) -> how many: the compiled loop counts them as the start of its
        first buffer instead of sending them through the Python loop."""
        n = self._copy_pending(mv[: self._body_left])
        self._body_received(n)
        return n

    def direct_done(self, n: int) -> None:
        self.stats.bytes_in += n
        self._body_received(n)

    def direct_failed(self) -> None:
        """The caller's read failed mid-body: the stream position is lost."""
        self._broken = True

    # -- the minimum-rate guard ----------------------------------------------------------

    def too_slow(self, why: str) -> None:
        """The guard's verdict (from its thread): end the blocked read now; the reader
        then raises ``TooSlow``. Only the guard calls this, with its lock held, on a
        connection it watches: ``close`` unwatches before the socket goes."""
        self._too_slow = why
        self._broken = True
        if self.sock is not None:
            speed_guard.shutdown(self.sock)

    def cut_short(self, exc: BaseException) -> BaseException:
        """The failure of a read that ended early: ``TooSlow`` when the guard ended it."""
        return TooSlow(self._too_slow) if self._too_slow else exc

    def _recv_some(self, mv: memoryview) -> int:
        """Whatever is pending, or one read: for bodies whose end only the reader sees."""
        if self.pending:
            return self._copy_pending(mv)
        return self._recv_raw(mv, waitall=False)

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

    def read_body(self, head: ResponseHead, limit: int = 1 << 20) -> bytes:
        """A small whole body (error XML, control responses), at most ``limit`` bytes.

        A body longer than ``limit`` is cut there and the connection is not reused."""
        fr = self._framing
        if fr.kind == "none":
            return b""
        if fr.kind == "length":
            if fr.length > limit:
                self._broken = True
                return self.read_exact(limit)
            return self.read_exact(self._body_left)
        reader = body_reader(fr)
        out = bytearray()
        chunk = memoryview(bytearray(65536))
        while not reader.done:
            k = self._recv_some(chunk)
            if k == 0:
                reader.eof()
                break
            out += reader.feed(bytes(chunk[:k]))
            if len(out) > limit:
                self._broken = True
                if fr.kind == "chunked":
                    raise ProtocolError("chunked body larger than limit")
                return bytes(out[:limit])
        if reader.leftover or not reader.reusable:
            self._broken = True   # bytes past the body's end: this connection is out of step
        self._body_done()
        return bytes(out)

    def sample_tcp(self) -> tcpinfo.TcpInfo | None:
        if self.sock is None:
            return self.stats.tcp
        info = tcpinfo.sample(self.sock)
        if info is not None:
            self.stats.tcp = info
        return info

    def close(self) -> None:
        if self.speed_guard is not None:
            self.speed_guard.unwatch(self)   # before the descriptor can be reused
        if self.sock is not None:
            self.sample_tcp()
            self.stats.ended = time.time()
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self._broken = True
