"""A loopback TCP proxy that emulates a WAN path and injects HTTP/1.1 response faults.

Per direction of each connection: bytes read from one side are released to the other
``delay_s`` later (RTT = 2 x delay); at most ``window_bytes`` may be unacknowledged, a byte
counting as acknowledged ``delay_s`` after it was delivered (so one connection carries at
most window/RTT, as TCP does); an optional token bucket caps the aggregate rate of all
connections per direction. Faults act on responses (server -> client), found by a small
HTTP/1.1 framer that follows keep-alive connections (Content-Length, chunked, HEAD, 1xx).

Not emulated: connection set-up latency (accept is local), loss and reordering. With
``http=False`` the bytes pass without framing (TLS through the proxy): delay, window and
rate apply, faults and request counts do not.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..engine.ratelimit import TokenBucket

FaultKind = Literal["reset", "truncate", "slowdown", "stall", "flip"]
BUFSIZE = 256 * 1024
DEFAULT_QUEUE_CAP = 64 * 2**20
"""Bytes in flight per direction when a delay is set without a window (bounds memory)."""
MAX_HEAD = 64 * 1024


@dataclass
class Fault:
    """One fault rule; it strikes the next ``times`` matching responses after ``skip``.

    kinds: ``reset`` (RST after ``at_byte`` body bytes), ``truncate`` (clean close after
    ``at_byte`` body bytes), ``slowdown`` (an S3 503 SlowDown instead of the response),
    ``stall`` (pause ``stall_s`` at ``at_byte``, or until ``until`` is set if sooner: a
    test that acts during the pause releases it, no race with a clock), ``flip`` (XOR 0xFF the byte at ``at_byte``).
    Body faults only match Content-Length bodies longer than ``at_byte``; ``reset`` and
    ``truncate`` at byte 0 also match answers without a body (the head is never sent).
    ``request=True``: a ``flip`` in the request's body on its way to the store instead
    (a PUT damaged in flight, which only the store's own check can catch).
    """

    kind: FaultKind
    times: int = 1
    at_byte: int = 0
    stall_s: float = 0.0
    until: threading.Event | None = None
    method: str | None = "GET"
    path_contains: str | None = None
    skip: int = 0
    request: bool = False
    fired: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.request and self.kind != "flip":
            raise ValueError("a request fault flips a byte of the body; nothing else")

    def wait_fired(self, timeout: float) -> bool:
        """Wait (bounded) until this fault struck at least once: a test that acts while a
        stall holds an answer starts acting only then. -> whether it struck."""
        deadline = time.monotonic() + timeout
        while not self.fired and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.fired > 0

    def _wants(self, method: str, path: str, length: int | None) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        if self.kind in ("reset", "truncate") and self.at_byte == 0 and not length:
            return True  # no body (a PUT's answer): the connection dies instead of the head
        if self.kind != "slowdown" and (length is None or length <= self.at_byte):
            return False
        return True


@dataclass
class Rewrite:
    """Replace whole response bodies: ``fn(body) -> new body`` for matching requests.

    For hostile-server tests (e.g. a listing that names ``../../x``). The matching
    response is buffered (at most ``max_body`` bytes; a larger one passes untouched),
    de-chunked, rewritten and sent with a fresh Content-Length. ``times=None``: always.
    """

    fn: Callable[[bytes], bytes]
    method: str | None = "GET"
    path_contains: str | None = None
    times: int | None = None
    max_body: int = 1 << 20
    fired: int = 0


def _dechunk(raw: bytes) -> bytes:
    """The payload of a complete chunked body (trailers dropped)."""
    out = bytearray()
    i = 0
    while True:
        j = raw.index(b"\r\n", i)
        size = int(raw[i:j].split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return bytes(out)
        out += raw[j + 2:j + 2 + size]
        i = j + 2 + size + 2


def _with_body(head: bytes, body: bytes) -> bytes:
    """``head`` without its framing headers, plus a Content-Length for ``body``."""
    lines = head.decode("latin-1").split("\r\n")
    keep = [ln for ln in lines[1:] if ln and not ln.lower().startswith(
        ("content-length:", "transfer-encoding:"))]
    return "\r\n".join([lines[0], *keep, f"Content-Length: {len(body)}", "", ""]).encode(
        "latin-1") + body


@dataclass
class ProxyStats:
    """Counters, updated under the proxy's lock; read them after the traffic has settled."""

    connections: int = 0
    requests: int = 0
    responses: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    faults: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------ HTTP/1.1 framing

@dataclass
class _Req:
    method: str
    path: str


@dataclass
class _Head:
    raw: bytes
    final: bool
    length: int | None  # Content-Length body size; None when chunked/none/until-close
    req: _Req | None


class _Framer:
    """Sans-I/O: splits one direction's bytes into (head, body piece, end) events.

    Requests push (method, path) onto ``pending``; responses read it to know whether a
    body follows (HEAD) and pop it on their final (non-1xx) head.
    """

    def __init__(self, responses: bool, pending: deque[_Req]) -> None:
        self.responses = responses
        self.pending = pending
        self.state = "head"
        self.buf = bytearray()
        self.remaining = 0
        self.offset = 0

    def feed(self, data: memoryview) -> list[tuple]:
        ev: list[tuple] = []
        i, n = 0, len(data)
        while i < n:
            st = self.state
            if st == "body":
                k = min(self.remaining, n - i)
                ev.append(("body", data[i:i + k], self.offset))
                self.offset += k
                self.remaining -= k
                i += k
                if self.remaining == 0:
                    self.state = "head"
                    ev.append(("end", None, None))
            elif st == "until_close":
                ev.append(("body", data[i:], self.offset))
                self.offset += n - i
                i = n
            elif st == "chunk_data":
                k = min(self.remaining, n - i)
                ev.append(("body", data[i:i + k], -1))
                self.remaining -= k
                i += k
                if self.remaining == 0:
                    self.state = "chunk_size"
            else:  # head, chunk_size, trailer: line-oriented, accumulate
                old = len(self.buf)
                self.buf += data[i:]
                sep = b"\r\n\r\n" if st == "head" else b"\r\n"
                end = self.buf.find(sep, max(0, old - len(sep) + 1))
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        raise ValueError("HTTP head or chunk line too long")
                    i = n
                    break
                stop = end + len(sep)
                raw = bytes(self.buf[:stop])
                i += stop - old
                self.buf.clear()
                if st == "head":
                    ev.append(("head", memoryview(raw), self._head(raw)))
                    if self.state == "head":
                        ev.append(("end", None, None))
                elif st == "chunk_size":
                    ev.append(("body", memoryview(raw), -1))
                    size = int(raw.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        self.state = "trailer"
                    else:
                        self.state, self.remaining = "chunk_data", size + 2
                else:  # trailer line; an empty one ends the message
                    ev.append(("body", memoryview(raw), -1))
                    if raw == b"\r\n":
                        self.state = "head"
                        ev.append(("end", None, None))
        return ev

    def _head(self, raw: bytes) -> _Head:
        lines = raw.decode("latin-1").split("\r\n")
        first = lines[0].split(" ", 2)
        hdr: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdr[k.strip().lower()] = v.strip()
        chunked = "chunked" in hdr.get("transfer-encoding", "").lower()
        cl = hdr.get("content-length")
        length = int(cl) if cl is not None and not chunked else None
        self.offset = 0
        if not self.responses:
            req = _Req(first[0], first[1] if len(first) > 1 else "")
            self.pending.append(req)
            self._body(chunked, length, until_close=False)
            return _Head(raw, True, length, req)
        status = int(first[1])
        if 100 <= status < 200:
            self.state = "head"
            return _Head(raw, False, None, self.pending[0] if self.pending else None)
        req = self.pending.popleft() if self.pending else None
        if (req is not None and req.method == "HEAD") or status in (204, 304):
            self.state = "head"
            return _Head(raw, True, None, req)
        self._body(chunked, length, until_close=True)
        return _Head(raw, True, length, req)

    def _body(self, chunked: bool, length: int | None, until_close: bool) -> None:
        if chunked:
            self.state = "chunk_size"
        elif length:
            self.state, self.remaining = "body", length
        elif length == 0 or not until_close:
            self.state = "head"
        else:
            self.state = "until_close"


def slowdown_response(resource: str, request_id: str, head_only: bool = False) -> bytes:
    """An S3-style 503 SlowDown, as AWS sends it (XML error body, keep-alive)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        "<Message>Please reduce your request rate.</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    head = (
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nx-amz-request-id: {request_id}\r\n"
        "Server: trunkline-proxy\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    return head if head_only else head + body


# ------------------------------------------------------------------ forwarding

_EOF, _RESET, _CLOSE = object(), object(), object()


class _Stall:
    __slots__ = ("seconds", "until")

    def __init__(self, seconds: float, until: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.until = until


class _Pipe:
    """One direction of one connection: reader thread, and a sender thread if delayed."""

    def __init__(self, conn: _Conn, src: socket.socket, dst: socket.socket, up: bool) -> None:
        self.conn, self.src, self.dst, self.up = conn, src, dst, up
        px = conn.proxy
        self.delay = px.delay_s
        self.window = px.window_bytes or (DEFAULT_QUEUE_CAP if self.delay > 0 else None)
        self.queued = self.delay > 0 or px.window_bytes is not None
        self.bucket = px._up_bucket if up else px._down_bucket
        self.cond = threading.Condition()
        self.queue: deque = deque()
        self.acks: deque = deque()
        self.inflight = 0
        self.closed = False
        self.framer = _Framer(responses=not up, pending=conn.pending)
        self.swallow = False
        self.active: Fault | None = None
        self.held: tuple[Rewrite, bytes, bytearray] | None = None  # a body being rewritten
        self.threads = [threading.Thread(target=self._read, daemon=True)]
        if self.queued:
            self.threads.append(threading.Thread(target=self._send, daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    # -- reader side
    def _read(self) -> None:
        buf = bytearray(BUFSIZE)
        mv = memoryview(buf)
        try:
            while True:
                room = self._room()
                if self.conn.dead:
                    return
                if self.queued:
                    data = self.src.recv(min(BUFSIZE, room))
                    n = len(data)
                    chunk = memoryview(data)
                else:
                    n = self.src.recv_into(mv, BUFSIZE)
                    chunk = mv[:n]
                if n == 0 or self.conn.dead:
                    if n == 0:
                        self._emit(_EOF)
                    return
                if self.bucket is not None:
                    self.bucket.acquire(n)
                self.conn.proxy._count("bytes_up" if self.up else "bytes_down", n)
                if not self.conn.proxy.http:
                    self._emit(memoryview(bytes(chunk)))   # opaque (TLS): no framing, no faults
                elif not self._transform(chunk):
                    return
        except (OSError, ValueError):
            self.conn.abort()
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            self.conn.thread_done()

    def _room(self) -> int:
        if self.window is None:
            return BUFSIZE
        with self.cond:
            while True:
                now = time.monotonic()
                while self.acks and self.acks[0][0] <= now:
                    self.inflight -= self.acks.popleft()[1]
                if self.inflight < self.window or self.conn.dead:
                    return max(1, self.window - self.inflight)
                wait = self.acks[0][0] - now if self.acks else 0.05
                self.cond.wait(max(wait, 0.0005))

    def _transform(self, chunk: memoryview) -> bool:
        """Apply framing-aware faults; emit what goes downstream. False: stop reading."""
        for kind, a, b in self.framer.feed(chunk):
            if kind == "head":
                if self.up:
                    self.conn.proxy._count("requests", 1)
                    self.active = self.conn.proxy._match(b, request=True)
                    self._emit(a)
                    continue
                if not b.final:
                    self._emit(a)
                    continue
                self.conn.proxy._count("responses", 1)
                rw = self.conn.proxy._match_rewrite(b, bytes(a))
                if rw is not None:
                    self.held, self.swallow, self.active = (rw, bytes(a), bytearray()), False, None
                    continue
                fault = self.conn.proxy._match(b)
                self.active = None
                if fault is not None and fault.kind == "slowdown":
                    self.swallow = True
                    rid = f"trunkline-proxy-{next(self.conn.proxy._ids)}"
                    head_only = b.req is not None and b.req.method == "HEAD"
                    path = b.req.path if b.req else "/"
                    self._emit(memoryview(slowdown_response(path, rid, head_only)))
                elif fault is not None and fault.kind in ("reset", "truncate") and not b.length:
                    self._emit(_RESET if fault.kind == "reset" else _CLOSE)
                    return False
                else:
                    self.swallow = False
                    self.active = fault
                    self._emit(a)
            elif kind == "body":
                if self.held is not None:
                    self.held[2].extend(a)
                    continue
                if self.swallow:
                    continue
                f = self.active
                if f is None or b < 0 or not (b <= f.at_byte < b + len(a)):
                    self._emit(a)
                    continue
                k = f.at_byte - b
                if k:
                    self._emit(a[:k])
                self.active = None
                if f.kind == "reset":
                    self._emit(_RESET)
                    return False
                if f.kind == "truncate":
                    self._emit(_CLOSE)
                    return False
                if f.kind == "stall":
                    self._emit(_Stall(f.stall_s, f.until))
                    self._emit(a[k:])
                else:  # flip
                    self._emit(memoryview(bytes([a[k] ^ 0xFF])))
                    if k + 1 < len(a):
                        self._emit(a[k + 1:])
            else:  # end of a message
                if self.held is not None:
                    rw, head, body = self.held
                    self.held = None
                    if b"chunked" in head.lower():
                        body = bytearray(_dechunk(bytes(body)))
                    self._emit(memoryview(_with_body(head, rw.fn(bytes(body)))))
                self.swallow = False
                self.active = None
        return True

    def _emit(self, item) -> None:
        if not self.queued:
            self._perform(item)
            return
        if isinstance(item, memoryview) and not isinstance(item.obj, bytes):
            item = memoryview(bytes(item))
        with self.cond:
            self.queue.append((time.monotonic() + self.delay, item))
            if isinstance(item, memoryview):
                self.inflight += len(item)
            self.cond.notify_all()

    # -- sender side
    def _send(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.closed and not self.conn.dead:
                        self.cond.wait(0.5)
                    if not self.queue or self.conn.dead:
                        return
                    due, item = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self._perform(item) is False:
                    return
                if isinstance(item, memoryview):
                    with self.cond:
                        self.acks.append((max(due, time.monotonic()) + self.delay, len(item)))
                        self.cond.notify_all()
        except OSError:
            self.conn.abort()
        finally:
            self.conn.thread_done()

    def _perform(self, item) -> bool:
        if isinstance(item, memoryview):
            self.dst.sendall(item)
            return True
        if isinstance(item, _Stall):
            self.conn.proxy._count_fault("stall")
            if item.until is not None:
                item.until.wait(item.seconds)
            else:
                time.sleep(item.seconds)
            return True
        if item is _EOF:
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.conn.half_closed()
            return False
        self.conn.proxy._count_fault("reset" if item is _RESET else "truncate")
        self.conn.kill(rst=item is _RESET)
        return False


class _Conn:
    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.upstream = client, upstream
        self.pending: deque[_Req] = deque()
        self.dead = False
        self.finished = False
        self._halves = 0
        self._lock = threading.Lock()
        self.pipes = [_Pipe(self, client, upstream, up=True),
                      _Pipe(self, upstream, client, up=False)]
        self._alive = sum(len(p.threads) for p in self.pipes)

    def thread_done(self) -> None:
        """The last thread of a connection closes its sockets (a reset then goes out)."""
        with self._lock:
            self._alive -= 1
            last = self._alive == 0
        if last:
            self.abort()
            for s in (self.client, self.upstream):
                try:
                    s.close()
                except OSError:
                    pass
            self.finished = True

    def start(self) -> None:
        for p in self.pipes:
            p.start()

    def half_closed(self) -> None:
        with self._lock:
            self._halves += 1
            both = self._halves == 2
        if both:
            self.abort()

    def kill(self, rst: bool) -> None:
        """End the connection; with ``rst`` the client sees a TCP reset, else a clean EOF."""
        if rst:
            try:
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.abort(graceful=not rst)

    def abort(self, graceful: bool = True) -> None:
        with self._lock:
            if self.dead:
                return
            self.dead = True
        for s in (self.upstream, self.client):
            try:
                s.shutdown(socket.SHUT_RDWR if (graceful or s is self.upstream)
                           else socket.SHUT_RD)
            except OSError:
                pass
        for p in self.pipes:
            with p.cond:
                p.cond.notify_all()

    def join(self, timeout: float) -> None:
        for p in self.pipes:
            for t in p.threads:
                if t is not threading.current_thread():
                    t.join(timeout)


class Proxy:
    """A WAN-emulating, fault-injecting proxy on 127.0.0.1; use as a context manager.

    ``delay_s`` one way per direction; ``window_bytes`` per connection and direction;
    ``rate_bps`` aggregate bits/s per direction (token bucket); ``faults`` act on responses
    (and request bodies: ``Fault.request``);
    ``rewrites`` replace whole (small) response bodies.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        delay_s: float = 0.0,
        window_bytes: int | None = None,
        rate_bps: float | None = None,
        faults: list[Fault] | None = None,
        rewrites: list[Rewrite] | None = None,
        http: bool = True,
    ) -> None:
        if delay_s < 0 or (window_bytes is not None and window_bytes <= 0):
            raise ValueError("delay_s must be >= 0 and window_bytes > 0")
        if window_bytes is not None and delay_s == 0:
            raise ValueError("a window caps bytes per round trip: give delay_s > 0 too")
        self.upstream = upstream
        self.delay_s = delay_s
        self.window_bytes = window_bytes
        self.rate_bps = rate_bps
        self.faults = list(faults or [])
        self.rewrites = list(rewrites or [])
        if not http and (self.faults or self.rewrites):
            raise ValueError("faults and rewrites act on HTTP/1.1: give http=True")
        self.http = http   # False: the bytes pass as they are (TLS), only delayed and paced
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._up_bucket = TokenBucket(rate_bps / 8) if rate_bps else None
        self._down_bucket = TokenBucket(rate_bps / 8) if rate_bps else None
        self._conns: list[_Conn] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(256)
        ls.settimeout(0.1)
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, client, upstream)
            with self._lock:
                self.stats.connections += 1
                self._conns = [c for c in self._conns if not c.finished] + [conn]
            conn.start()

    def close(self) -> None:
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.abort()
        for c in conns:
            c.join(5)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- bookkeeping, shared by every connection thread
    def _count(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self.stats.faults[kind] += 1

    def _match(self, head: _Head, request: bool = False) -> Fault | None:
        if head.req is None:
            return None
        with self._lock:
            for f in self.faults:
                if f.request != request or f.fired >= f.times or not f._wants(
                        head.req.method, head.req.path, head.length):
                    continue
                f.seen += 1
                if f.seen <= f.skip:
                    continue
                f.fired += 1
                if f.kind in ("slowdown", "flip"):
                    self.stats.faults[f.kind] += 1
                return f
        return None

    def _match_rewrite(self, head: _Head, raw: bytes) -> Rewrite | None:
        if head.req is None or not self.rewrites:
            return None
        chunked = b"chunked" in raw.lower()
        if not chunked and (head.length is None or head.length == 0):
            return None
        with self._lock:
            for r in self.rewrites:
                if r.times is not None and r.fired >= r.times:
                    continue
                if r.method is not None and head.req.method != r.method:
                    continue
                if r.path_contains is not None and r.path_contains not in head.req.path:
                    continue
                if head.length is not None and head.length > r.max_body:
                    continue
                r.fired += 1
                self.stats.faults["rewrite"] += 1
                return r
        return None
