"""The compiled per-part loops against the Python loops they replace: same bytes on disk,
same CRC32C (and both equal to google-crc32c over the source), same failures, over real
loopback sockets and real files; the lock is released while a part moves."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import google_crc32c
import pytest

from conftest import mounted_tmpfs
from trunkline import native
from trunkline.engine.direct_io import aligned_buffer

pytestmark = pytest.mark.skipif(native._hotpath is None, reason="built without a C compiler")
LOOPS = [pytest.param(True, id="native"), pytest.param(False, id="python")]


def pair() -> tuple[socket.socket, socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    b.settimeout(5)  # a timeout makes the socket non-blocking underneath, as the mover's are
    return a, b


def send_in_thread(sock: socket.socket, data: bytes, close: bool = True, pace: float = 0.0):
    def run():
        try:
            if pace:
                for i in range(0, len(data), 65536):
                    sock.sendall(data[i:i + 65536])
                    time.sleep(pace)
            else:
                sock.sendall(data)
        finally:
            if close:
                sock.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def part_file(path, offset: int, size: int, direct: bool) -> tuple[int, int | None]:
    """A file sized for a part of ``size`` at ``offset`` -> (fd, its O_DIRECT fd or None);
    skips the test where ``direct`` is asked and the filesystem has no O_DIRECT."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, offset + size)
    if not (direct and hasattr(os, "O_DIRECT")):
        return fd, None
    try:
        return fd, os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError:
        os.close(fd)
        pytest.skip("no O_DIRECT on this filesystem")


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("size", [1, 4095, 4096, (1 << 20) + 17, 5 << 20])
@pytest.mark.parametrize("direct", [False, True])
def test_receive_write_and_crc(tmp_path, native_loop, size, direct):
    data = os.urandom(size)
    offset = 3 << 20                                   # a part in the middle of a file
    fd, dfd = part_file(tmp_path / "part.bin", offset, size, direct)
    a, b = pair()
    send_in_thread(a, data)
    counter = native.Counter()
    crc, dfd_after, _ = native.recv_to_file(b, fd, offset, size, aligned_buffer(1 << 20),
                                            counter=counter, direct_fd=dfd, crc=0,
                                            native=native_loop)
    b.close()
    assert crc == google_crc32c.value(data)
    assert counter.value == size
    assert os.pread(fd, size, offset) == data
    assert os.pread(fd, offset, 0) == bytes(offset)     # nothing written outside the part
    os.close(fd)
    if dfd_after is not None:
        os.close(dfd_after)


def _needs_crc32_library(native_loop: bool) -> None:
    if native_loop and not native.sums_crc32():
        pytest.skip("the compiled loop sums a CRC-32 only with ISA-L (libisal2)")


def _reference(algo: str):
    """(sum(data, start), keyword of recv_to_file) from libraries apart from ours."""
    if algo == "crc32":
        import zlib

        return zlib.crc32, "crc32"
    from awscrt import checksums

    return checksums.crc64nvme, "crc64"


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("algo", ["crc32", "crc64nvme"])
@pytest.mark.parametrize("size,have", [(1, 0), (63, 0), (5000, 0), (5000, 4096),
                                       ((1 << 20) + 17, 7000), (5 << 20, 0)])
def test_a_second_sum_is_carried_beside_the_crc32c(tmp_path, native_loop, algo, size, have):
    """``crc32=`` / ``crc64=``: the CRC-32 a store may keep (AWS's SDKs put one on every
    object) or the CRC64NVME S3 computes for every new one is summed by the same loop,
    continued from the value given, the bytes that came with the head included; held
    against zlib and awscrt."""
    if algo == "crc32":
        _needs_crc32_library(native_loop)
    elif native_loop and not native.sums_second(algo):
        pytest.skip("no PCLMULQDQ here: the compiled loop leaves CRC64NVME to Python")
    ref, kw = _reference(algo)
    data = os.urandom(size)
    fd, _ = part_file(tmp_path / "part.bin", 0, size, False)
    buf = aligned_buffer(1 << 20)
    buf[:have] = data[:have]
    a, b = pair()
    send_in_thread(a, data[have:])
    start = ref(b"what came before", 0)
    crc, _, second = native.recv_to_file(b, fd, 0, size, buf, have=have, native=native_loop,
                                         **{kw: start})
    assert crc == google_crc32c.value(data)
    assert second == ref(data, start)
    assert os.pread(fd, size, 0) == data
    for s in (a, b):
        s.close()
    os.close(fd)


@pytest.mark.parametrize("native_loop", LOOPS)
def test_two_second_sums_or_a_crc64_past_64_bits_are_refused(tmp_path, native_loop):
    """Refused before a byte moves: the socket still holds everything."""
    fd, _ = part_file(tmp_path / "part.bin", 0, 10, False)
    a, b = pair()
    a.sendall(b"0123456789")
    try:
        with pytest.raises(ValueError, match="one second sum"):
            native.recv_to_file(b, fd, 0, 10, aligned_buffer(4096), crc32=0, crc64=0,
                                native=native_loop)
        if native_loop:
            with pytest.raises(OverflowError):
                native.recv_to_file(b, fd, 0, 10, aligned_buffer(4096), crc64=1 << 64,
                                    native=True)
        assert b.recv(10, socket.MSG_WAITALL) == b"0123456789"
    finally:
        for s in (a, b):
            s.close()
        os.close(fd)


def test_a_second_crc32_is_refused_without_its_library_or_out_of_range(tmp_path):
    """Refused before a byte moves: the socket still holds everything."""
    from trunkline.native import crc

    h = native._hotpath
    fd, _ = part_file(tmp_path / "part.bin", 0, 10, False)
    a, b = pair()
    a.sendall(b"0123456789")
    try:
        with pytest.raises(ValueError, match="32 bits"):
            h.recv_to_file(b.fileno(), fd, 0, 10, aligned_buffer(4096), 1000, crc32=1 << 32)
        h.use_crc32(0)
        with pytest.raises(ValueError, match="no CRC-32 library"):
            h.recv_to_file(b.fileno(), fd, 0, 10, aligned_buffer(4096), 1000, crc32=0)
        assert b.recv(10, socket.MSG_WAITALL) == b"0123456789"
    finally:
        h.use_crc32(crc.crc32_function())
        for s in (a, b):
            s.close()
        os.close(fd)


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("size,have", [(100, 100), (5000, 1), (5000, 4096),
                                       ((1 << 20) + 17, 7000), ((1 << 20) + 17, 1 << 20)])
@pytest.mark.parametrize("direct", [False, True])
def test_bytes_already_in_the_buffer_start_the_range(tmp_path, native_loop, size, have,
                                                     direct):
    """``have``: the body bytes that came with the response head are put at the start of
    the buffer; the loop checksums and writes them with the first buffer and reads only
    the rest from the socket (all of it in the buffer: nothing is read)."""
    data = os.urandom(size)
    offset = 2 << 20
    fd, dfd = part_file(tmp_path / "part.bin", offset, size, direct)
    buf = aligned_buffer(1 << 20)
    buf[:have] = data[:have]
    a, b = pair()
    send_in_thread(a, data[have:] + b"NEXT", close=False)   # the next answer's bytes follow
    counter = native.Counter()
    crc, dfd_after, _ = native.recv_to_file(b, fd, offset, size, buf, counter=counter,
                                            direct_fd=dfd, have=have, native=native_loop)
    assert crc == google_crc32c.value(data)
    assert counter.value == size
    assert os.pread(fd, size, offset) == data
    assert os.pread(fd, offset, 0) == bytes(offset)
    assert b.recv(16) == b"NEXT"                        # not one byte past the range read
    for s in (a, b):
        s.close()
    os.close(fd)
    if dfd_after is not None:
        os.close(dfd_after)


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("have,length,buflen", [(-1, 10, 4096), (11, 10, 4096), (10, 10, 8)])
def test_have_outside_the_range_or_the_buffer_is_refused(tmp_path, native_loop, have, length,
                                                         buflen):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    a, b = pair()
    a.sendall(b"y" * 64)
    with pytest.raises(ValueError, match="have"):
        native.recv_to_file(b, fd, 0, length, memoryview(bytearray(buflen)), have=have,
                            native=native_loop)
    assert os.fstat(fd).st_size == 0
    assert b.recv(64) == b"y" * 64                       # nothing read from the socket
    for s in (a, b):
        s.close()
    os.close(fd)


@pytest.mark.parametrize("native_loop", LOOPS)
def test_peer_closing_early_is_an_error(tmp_path, native_loop):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    a, b = pair()
    send_in_thread(a, os.urandom(1000))
    with pytest.raises(ConnectionError, match="1000 of 5000"):
        native.recv_to_file(b, fd, 0, 5000, aligned_buffer(4096), native=native_loop)


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("how", ["settimeout", "SO_RCVTIMEO"])
def test_stalled_peer_times_out(tmp_path, native_loop, how):
    """Both ways a socket times out: Python's (non-blocking + poll) and the mover's
    connections' (blocking with SO_RCVTIMEO)."""
    import struct

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    a, b = pair()
    if how == "settimeout":
        b.settimeout(0.3)
    else:
        b.settimeout(None)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300_000))
    a.sendall(b"x" * 10)                     # then nothing: the peer stalls, open
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        native.recv_to_file(b, fd, 0, 100, aligned_buffer(4096), native=native_loop)
    assert time.monotonic() - t0 < 3
    a.close()


@pytest.mark.parametrize("native_loop", LOOPS)
def test_send_reads_checksums_and_sends(tmp_path, native_loop):
    data = os.urandom((2 << 20) + 333)
    (tmp_path / "src").write_bytes(data)
    fd = os.open(tmp_path / "src", os.O_RDONLY)
    a, b = pair()
    got = bytearray()

    def drain():
        while chunk := b.recv(1 << 20):
            got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    crc = native.file_to_sock(fd, a, 1000, len(data) - 1000, aligned_buffer(1 << 20),
                              native=native_loop)
    a.close()
    t.join(10)
    assert bytes(got) == data[1000:] and crc == google_crc32c.value(data[1000:])
    with pytest.raises(ConnectionError, match="file ended"):   # the file shrank under us
        c, d = pair()
        native.file_to_sock(fd, c, 0, len(data) + 10, aligned_buffer(4096), native=native_loop)


@pytest.fixture
def tiny_fs(tmp_path):
    with mounted_tmpfs(tmp_path / "tiny", "1m") as mnt:
        yield mnt


@pytest.mark.parametrize("native_loop", LOOPS)
def test_full_disk_is_an_error_not_a_short_file(tiny_fs, native_loop):
    fd = os.open(tiny_fs / "f", os.O_RDWR | os.O_CREAT)
    a, b = pair()
    send_in_thread(a, os.urandom(3 << 20))
    with pytest.raises(OSError) as e:
        native.recv_to_file(b, fd, 0, 3 << 20, aligned_buffer(1 << 20), native=native_loop)
    assert e.value.errno == errno.ENOSPC
    os.close(fd)


def test_native_loop_releases_the_interpreter_lock(tmp_path):
    """While a part trickles in, another Python thread keeps running."""
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    a, b = pair()
    data = os.urandom(64 * 65536)
    send_in_thread(a, data, pace=0.01)
    counter = native.Counter()
    seen: list[int] = []
    spins = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            spins[0] += 1
            seen.append(counter.value)
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    native.recv_to_file(b, fd, 0, len(data), aligned_buffer(65536), counter=counter,
                        native=True)
    done.set()
    w.join()
    assert spins[0] > 20                                   # ran during the part
    assert len({v for v in seen if 0 < v < len(data)}) > 5   # saw progress mid-part


def test_own_crc32c_matches_the_library():
    """Our fallback CRC32C (hardware instruction or table) equals google-crc32c."""
    from trunkline.native import crc

    h = native._hotpath
    data = os.urandom((1 << 20) + 7)
    try:
        h.use_crc32c(0, 0)
        own = [h.crc32c(data), h.crc32c(data[5:], h.crc32c(data[:5])), h.crc32c(b"")]
    finally:
        h.use_crc32c(*crc.c_function())
    want = google_crc32c.value(data)
    assert own == [want, want, 0]
    with pytest.raises(ValueError):
        h.use_crc32c(0, 2)                 # a convention without a function
    with pytest.raises(ValueError):
        h.use_crc32c(1234, 0)              # a function without a convention


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("size,bufsize", [(1, 4096), (4096, 4096), (5 << 20, 1 << 20),
                                          ((1 << 20) + 17, 1 << 20)])
def test_file_crc_sums_the_range_and_keeps_a_small_part_in_the_buffer(tmp_path, native_loop,
                                                                      size, bufsize):
    data = os.urandom(size + 777)
    (tmp_path / "src").write_bytes(data)
    fd = os.open(tmp_path / "src", os.O_RDONLY)
    buf = aligned_buffer(bufsize)
    crc = native.file_crc(fd, 777, size, buf, native=native_loop)
    assert crc == google_crc32c.value(data[777:])
    if size <= bufsize:                       # read once: the part is sent from the buffer
        assert bytes(buf[:size]) == data[777:]
    with pytest.raises(native.ShortFile, match="file ended"):
        native.file_crc(fd, 777, size + 1, buf, native=native_loop)
    os.close(fd)


@pytest.mark.parametrize("native_loop", LOOPS)
@pytest.mark.parametrize("call", ["recv_to_file", "file_to_sock", "file_crc"])
@pytest.mark.parametrize("offset,length,buflen", [(-1, 10, 4096), (0, -1, 4096),
                                                  (2**63 - 5, 10, 4096), (0, 10, 0)])
def test_bad_ranges_are_refused_before_a_byte_moves(tmp_path, native_loop, call, offset,
                                                    length, buflen):
    """The loops trust their arguments once started: a negative or overflowing range, or
    an empty buffer, is a ValueError up front, the same from C and from Python."""
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"x" * 100)
    a, b = pair()
    buf = memoryview(bytearray(buflen))
    with pytest.raises(ValueError):
        if call == "recv_to_file":
            native.recv_to_file(b, fd, offset, length, buf, native=native_loop)
        elif call == "file_to_sock":
            native.file_to_sock(fd, a, offset, length, buf, native=native_loop)
        else:
            native.file_crc(fd, offset, length, buf, native=native_loop)
    assert os.pread(fd, 200, 0) == b"x" * 100     # nothing written
    b.setblocking(False)
    with pytest.raises(BlockingIOError):           # nothing sent
        b.recv(1)
    a.close()
    b.close()
    os.close(fd)
