"""wire/: the sans-I/O body readers, and a connection that says itself if it may be reused."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from trunkline.errors import ConnectionClosed, ProtocolError
from trunkline.wire import preconnect
from trunkline.wire.connection import Connection
from trunkline.wire.http1 import (
    ChunkedReader,
    LengthReader,
    ResponseHead,
    body_reader,
    parse_response_head,
    response_framing,
)
from trunkline.wire.pool import ConnectionPool
from trunkline.wire.tls import client_context


def _head(status=200, **headers) -> ResponseHead:
    return ResponseHead(status, "", {k.replace("_", "-"): v for k, v in headers.items()})


def test_framing_is_decided_from_head_and_method():
    assert response_framing(_head(content_length="5"), "GET").kind == "length"
    assert response_framing(_head(content_length="5"), "HEAD").kind == "none"
    assert response_framing(_head(204), "GET").kind == "none"
    assert response_framing(_head(transfer_encoding="chunked"), "GET").kind == "chunked"
    assert response_framing(_head(), "GET").kind == "close"


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked_reader_any_split(step):
    wire = b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n"
    r = ChunkedReader()
    out = b"".join(r.feed(wire[i:i + step]) for i in range(0, len(wire), step))
    assert out == b"Wikipedia in \r\n\r\nchunks." and r.done and r.leftover == b""


def test_chunked_reader_refuses_nonsense_and_sees_truncation():
    with pytest.raises(ProtocolError):
        ChunkedReader().feed(b"zz\r\n")
    with pytest.raises(ProtocolError):
        ChunkedReader().feed(b"2\r\nabc\r\n")
    # what int(x, 16) takes and the grammar does not; an empty size line is no last chunk
    for bad in (b"0x5", b"+5", b"-0", b"1_0", b"", b" ", b"1" * 17):
        with pytest.raises(ProtocolError):
            ChunkedReader().feed(bad + b"\r\nhello\r\n0\r\n\r\n")
    assert ChunkedReader().feed(b"0005 ;x=1\r\nhello\r\n0\r\n\r\n") == b"hello"
    r = ChunkedReader()
    r.feed(b"5\r\nab")
    with pytest.raises(ConnectionClosed):
        r.eof()


def test_content_length_is_digits_only():
    assert _head(content_length="0").content_length == 0
    assert _head(content_length="0012").content_length == 12
    assert _head(content_length=str(2**63 - 1)).content_length == 2**63 - 1
    for bad in ("+5", "-1", "1_0", "0x10", "5, 5", "", "\u0665", "9" * 20, str(2**63)):
        with pytest.raises(ProtocolError):
            _head(content_length=bad).content_length   # noqa: B018 - the property parses


def test_a_status_is_three_digits():
    """int() read "+200", " 200" (two spaces after the version) and "2_00" as 200."""
    head, used = parse_response_head(b"HTTP/1.1 206 Partial Content\r\nA: b\r\n\r\nbody")
    assert head.status == 206 and used == len(b"HTTP/1.1 206 Partial Content\r\nA: b\r\n\r\n")
    for bad in ("+200", " 200", "2_00", "20", "2000", "\u0662\u0660\u0660", "abc"):
        with pytest.raises(ProtocolError):
            parse_response_head(f"HTTP/1.1 {bad} OK\r\n\r\n".encode())


def test_length_reader_keeps_what_is_past_the_end():
    r = body_reader(response_framing(_head(content_length="3"), "GET"))
    assert isinstance(r, LengthReader)
    assert r.feed(b"abcdef") == b"abc" and r.done and r.leftover == b"def"


class _Server:
    """A loopback HTTP/1.1 server answering each request with the next canned answer."""

    def __init__(self, answers: list[bytes]):
        self.answers = list(answers)
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with c:
                while self.answers:
                    try:
                        data = c.recv(65536)
                    except OSError:   # the client reset it (closed with bytes unread)
                        break
                    if not data:
                        break
                    answer = self.answers.pop(0)
                    c.sendall(answer)
                    if b"Connection: close" in answer:
                        break

    def close(self) -> None:
        try:   # wakes an accept() still waiting for a client (close alone does not)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the canned server did not stop"


def test_pool_reuses_only_what_the_connection_vouches_for():
    srv = _Server([
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ])
    closed = []
    pool = ConnectionPool(lambda t: Connection("127.0.0.1", srv.port, read_timeout=t),
                          on_closed=closed.append, read_timeout=5)
    try:
        c = pool.acquire()
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c.read_head()
        assert not c.reusable            # its body is still on the wire
        assert c.read_exact(5) == b"hello" and c.reusable
        pool.release(c)

        c2 = pool.acquire()
        assert c2 is c                   # reused
        c2.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        h = c2.read_head()
        assert c2.read_body(h) == b"abc" and c2.reusable
        pool.release(c2)

        c3 = pool.acquire()
        assert c3 is c
        c3.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c3.read_head()
        c3.read_exact(4)                 # the caller stops early (e.g. a wrong length)
        pool.release(c3)                 # -> closed, not kept
        assert len(closed) == 1 and pool.live() == []

        c4 = pool.acquire()
        assert c4 is not c
        c4.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        h = c4.read_head()
        assert c4.read_body(h) == b"ok" and not c4.reusable   # the server said close
        pool.release(c4)
        assert len(closed) == 2
    finally:
        pool.close()
        srv.close()


def test_bytes_past_a_framed_body_make_the_connection_unusable():
    """A server that sends more than its Content-Length says is out of step: the
    connection is not offered for reuse, and a next exchange on it is a ProtocolError."""
    srv = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n"])
    c = Connection("127.0.0.1", srv.port, read_timeout=5)
    try:
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        h = c.read_head()
        assert c.read_body(h) == b"hello"
        assert not c.reusable
        with pytest.raises(ProtocolError, match="after the end"):
            c.read_head()
    finally:
        c.close()
        srv.close()


def test_an_idle_connection_the_server_closed_is_not_reused(monkeypatch):
    """Servers close idle keep-alive connections (nginx after 75 s): one idle past
    ``IDLE_CHECK_S`` is polled before reuse, and one the server closed is replaced by a
    new connection instead of failing the next request (the WAN soak's retries)."""
    from trunkline.wire import pool as pool_mod

    monkeypatch.setattr(pool_mod, "IDLE_CHECK_S", 0.05)
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"] * 3
    srv = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        for _ in range(2):
            c, _ = srv.accept()
            accepted.append(c)
            c.recv(65536)
            c.sendall(answers.pop())
            if len(accepted) == 1:
                c.close()            # the idle timeout: closed after the answer, no header

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    closed = []
    pool = ConnectionPool(lambda t: Connection("127.0.0.1", srv.getsockname()[1], read_timeout=t),
                          on_closed=closed.append, read_timeout=5)
    try:
        c = pool.acquire()
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_body(c.read_head()) == b"ok" and c.reusable
        pool.release(c)
        import time
        time.sleep(0.2)
        assert c.peer_closed()
        c2 = pool.acquire()
        assert c2 is not c and len(closed) == 1
        c2.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c2.read_body(c2.read_head()) == b"ok"
        assert not c2.peer_closed()      # alive and quiet: reusable
        pool.release(c2)
    finally:
        pool.close()
        srv.close()
        th.join(5)
        for a in accepted:
            a.close()


def test_a_head_longer_than_one_read_and_an_interim_answer_are_parsed_whole():
    """The head is read in ``HEAD_READ`` steps: a head several reads long (big headers),
    after a 100 Continue, still parses, and the body bytes read with it come first."""
    from trunkline.wire.connection import HEAD_READ

    big = "x" * (HEAD_READ * 2 + 123)
    body = bytes(range(256)) * 64
    srv = _Server([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Big: " + big.encode() +
                   b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body])
    c = Connection("127.0.0.1", srv.port, read_timeout=5)
    try:
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        h = c.read_head()
        assert h.status == 200 and h.headers["x-big"] == big
        assert c.read_exact(len(body)) == body and c.reusable
    finally:
        c.close()
        srv.close()


def test_a_head_without_end_is_refused_not_read_forever():
    """64 KiB of head and no blank line: a ProtocolError, and the connection is spent."""
    srv = _Server([b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"y" * 70_000 + b"\r\n"])
    c = Connection("127.0.0.1", srv.port, read_timeout=5)
    try:
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ProtocolError, match="head"):
            c.read_head()
        assert not c.reusable
    finally:
        c.close()
        srv.close()


@pytest.mark.parametrize("early", [False, True])
def test_a_tls_server_that_never_answers_the_handshake_times_out(early):
    """A server (or a middlebox) that takes the TCP connection and never says a word of
    TLS: the handshake fails within the connect timeout (it used to wait forever), and an
    early connection begun by the CLI (``wire/preconnect.py``) gives up alike."""
    ctx = client_context(None)
    with socket.create_server(("127.0.0.1", 0)) as silent:      # the kernel accepts; no one reads
        port = silent.getsockname()[1]
        if early:
            preconnect.begin("127.0.0.1", port, tls=True, timeout=0.5)
        c = Connection("127.0.0.1", port, tls=ctx, connect_timeout=0.5, read_timeout=5)
        t0 = time.monotonic()
        with pytest.raises(OSError):
            c.connect()
        assert time.monotonic() - t0 < (4 if early else 2)
        c.close()


def test_a_head_trickled_byte_by_byte_is_found_across_reads():
    """The blank line that ends a head can be split over reads at any byte: each byte
    sent alone (TCP_NODELAY, a pause between), the head still parses and the body follows."""
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nxyz"
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        c, _ = srv.accept()
        with c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.recv(65536)
            for i in range(len(wire)):
                c.sendall(wire[i:i + 1])
                time.sleep(0.002)
            c.recv(1)   # until the client closes

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    c = Connection("127.0.0.1", srv.getsockname()[1], read_timeout=5)
    try:
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        h = c.read_head()
        assert h.status == 200 and h.headers["x-a"] == "b"
        assert c.read_exact(3) == b"xyz" and c.reusable
    finally:
        c.close()
        srv.close()
        th.join(5)


@pytest.mark.parametrize("native_loop", [True, False])
@pytest.mark.parametrize("extra", [b"", b"HTTP/1.1 200 OK\r\n"])
@pytest.mark.parametrize("size", [100, 300 * 1024 + 4])
def test_body_bytes_read_with_the_head_reach_the_file_once(tmp_path, monkeypatch, native_loop,
                                                           extra, size):
    """The head and the start of the body come in one segment: the bytes read with the
    head start the compiled loop's first buffer (``take_pending``), the rest follows from
    the socket. The file is byte-identical, the CRC is the body's, and bytes a server sends
    past its Content-Length are never written: read with the head (a small body) they
    make the connection unusable, left in the socket (a large one) the pool's check
    before reuse sees them."""
    import google_crc32c

    from trunkline import native
    from trunkline.engine.direct_io import DirectWriter, aligned_buffer
    from trunkline.engine.receive import receive_to_file

    monkeypatch.setattr(native, "NATIVE", native_loop and native._hotpath is not None)
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    srv = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: " + str(size).encode() +
                   b"\r\n\r\n" + body + extra,
                   b"HTTP/1.1 204 No Content\r\n\r\n"])       # it keeps the connection open
    c = Connection("127.0.0.1", srv.port, read_timeout=5)
    fd = os.open(tmp_path / "obj", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        c.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_head().status == 200
        assert c.pending > 0                                   # some body came with the head
        crc = receive_to_file(c, size, fd, 0, aligned_buffer(1 << 20),
                              writer=DirectWriter(fd, None))
        assert crc == google_crc32c.value(body)
        assert os.pread(fd, size + 100, 0) == body
        time.sleep(0.05)                                       # what follows has arrived
        if not extra:
            assert c.reusable and not c.peer_closed()
        elif size <= 100:
            assert not c.reusable
            with pytest.raises(ProtocolError, match="after the end"):
                c.read_head()
        else:
            assert c.peer_closed()                             # the pool will not reuse it
    finally:
        os.close(fd)
        c.close()
        srv.close()
