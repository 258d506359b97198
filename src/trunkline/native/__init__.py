"""The per-part loops of the mover: receive -> CRC32C -> write at the offset, and
read -> CRC32C -> send, in C with the interpreter lock released for a whole part
(``_hotpath``), and the same loops in Python as the tested fallback.

Both take the same arguments and give the same results (tests/test_native_hotpath.py
checks them against each other over real sockets and files). ``TRUNKLINE_NATIVE=0``
selects the Python loop; so does a build without a C compiler. Progress is published
through a :class:`Counter` that other threads read while a part is in flight.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket

from ..errors import TrunklineError
from .crc import c_function as _crc_function
from .crc import crc32 as _crc32_value
from .crc import crc32_function as _crc32_function
from .crc import crc32c as _crc_extend_value
from .crc import crc64_native as _crc64_native
from .crc import crc64nvme as _crc64_value

ALIGN = 4096
"""Logical block size O_DIRECT offsets, lengths and addresses must be multiples of (4 KiB
covers 512-byte and 4K-native devices); engine/direct_io.py uses this one."""

try:
    from . import _hotpath
except ImportError:  # built without a compiler: the Python loop
    _hotpath = None

_CRC32_ADDRESS = _crc32_function()   # ISA-L's CRC-32, or 0

if _hotpath is not None:   # the well-kept CRC32C (and CRC-32) native/crc.py chose, shared
    _hotpath.use_crc32c(*_crc_function())
    _hotpath.use_crc32(_CRC32_ADDRESS)

NATIVE = _hotpath is not None and os.environ.get("TRUNKLINE_NATIVE", "1") != "0"
"""Whether the compiled loop is in use."""


def sums_crc32() -> bool:
    """Whether the compiled loop can carry a CRC-32 beside the CRC32C (``recv_to_file``'s
    ``crc32=``): with ISA-L. Otherwise a body whose store keeps a CRC-32 goes through the
    Python loop. Read at each call, as ``NATIVE`` is."""
    return NATIVE and _CRC32_ADDRESS != 0


def sums_second(algo: str) -> bool:
    """Whether the compiled loop can carry the store's ``algo`` beside the CRC32C
    (``recv_to_file``'s ``crc32=``/``crc64=``): CRC-32 with ISA-L, CRC64NVME where the CPU
    folds it (crc64nvme.c). Otherwise such a body goes through the Python loop."""
    if algo == "crc32":
        return sums_crc32()
    return algo == "crc64nvme" and NATIVE and _crc64_native()


class ShortFile(TrunklineError, ConnectionError):
    """The file ended before the range asked for (it shrank under us)."""


class Counter:
    """Bytes moved so far, updated by the loop as it goes (an aligned 64-bit cell)."""

    __slots__ = ("cell",)

    def __init__(self) -> None:
        self.cell = ctypes.c_uint64(0)

    @property
    def value(self) -> int:
        return self.cell.value

    def add(self, n: int) -> None:
        self.cell.value += n


def _timeout_ms(sock: socket.socket) -> int:
    t = sock.gettimeout()
    return -1 if t is None else max(1, int(t * 1000))


def recv_to_file(sock: socket.socket, fd: int, offset: int, length: int, buf: memoryview, *,
                 counter: Counter | None = None, direct_fd: int | None = None,
                 crc: int = 0, have: int = 0, crc32: int | None = None,
                 crc64: int | None = None,
                 native: bool | None = None) -> tuple[int, int | None, int | None]:
    """Receive ``length`` bytes from ``sock`` and write them at ``offset`` of ``fd`` (the
    page-aligned bulk through ``direct_fd`` when given); the first ``have`` of them are
    already at the start of ``buf`` (the body bytes that came with the response head),
    so only ``length - have`` are read. -> (CRC32C extended from ``crc``, the direct
    descriptor still usable or None, the second sum a store may keep: the CRC-32 extended
    from ``crc32``, or the CRC64NVME from ``crc64``, or None; the compiled loop takes one
    only where ``sums_second(algo)``). Raises ConnectionError when the peer closes early,
    TimeoutError when it stalls past the socket's timeout, OSError (ENOSPC, EIO...) when a
    write fails: never a short file that looks complete."""
    if native if native is not None else NATIVE:
        try:
            c, d, c32 = _hotpath.recv_to_file(sock.fileno(), fd, offset, length, buf,
                                              _timeout_ms(sock),
                                              counter.cell if counter else None,
                                              -1 if direct_fd is None else direct_fd, crc,
                                              have, crc32, crc64)
        except EOFError as e:
            raise ConnectionError(str(e)) from None
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                raise TimeoutError(f"no byte for {sock.gettimeout()} s") from None
            raise
        return c, (None if d < 0 else d), c32
    return _recv_to_file_py(sock, fd, offset, length, buf, counter, direct_fd, crc, have, crc32,
                            crc64)


def file_to_sock(fd: int, sock: socket.socket, offset: int, length: int, buf: memoryview, *,
                 counter: Counter | None = None, crc: int = 0,
                 native: bool | None = None) -> int:
    """Read ``length`` bytes at ``offset`` of ``fd`` and send them; -> their CRC32C.
    Raises ShortFile (a ConnectionError) when the file ends early (it shrank under us),
    TimeoutError when the peer does not read within the socket's timeout."""
    if native if native is not None else NATIVE:
        try:
            return _hotpath.file_to_sock(fd, sock.fileno(), offset, length, buf,
                                         _timeout_ms(sock), counter.cell if counter else None,
                                         crc)
        except EOFError as e:
            raise ShortFile(str(e)) from None
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                raise TimeoutError(f"peer did not read for {sock.gettimeout()} s") from None
            raise
    return _file_to_sock_py(fd, sock, offset, length, buf, counter, crc)


def file_crc(fd: int, offset: int, length: int, buf: memoryview, *, crc: int = 0,
             native: bool | None = None) -> int:
    """CRC32C of ``length`` bytes at ``offset`` of ``fd``, read through ``buf`` (an upload's
    checksum pass: the sum goes in the request head, before the body). The last bytes read
    stay in ``buf``: a part no larger than it is then sent from there. Raises
    ShortFile (a ConnectionError) when the file ends early (it shrank under us)."""
    if native if native is not None else NATIVE:
        try:
            return _hotpath.file_crc(fd, offset, length, buf, crc)
        except EOFError as e:
            raise ShortFile(str(e)) from None
    return _file_crc_py(fd, offset, length, buf, crc)


# --- the Python loops (the fallback, and the reference the tests compare with) -------

def files_native() -> bool:
    """Whether a download's partial file is created and committed by the core
    (``storage/partial.py``; the Python steps otherwise, same order and results). Read at
    each call, as ``NATIVE`` is (tests switch it)."""
    return NATIVE


def create_reserved(dir_fd: int, name: str, size: int) -> tuple[int, int]:
    """Create ``name`` in ``dir_fd`` (O_EXCL, O_NOFOLLOW, 0644) and reserve ``size`` bytes,
    in one call without the GIL -> (fd, errno of the reservation or 0). Raises OSError
    (FileExistsError...) when the create fails."""
    return _hotpath.create_reserved(dir_fd, name, size)


def commit_partial(fd: int, dir_fd: int, name: str, final_name: str, size: int,
                   stamp: bytes | None, mtime: float | None) -> tuple[int, int]:
    """Size check, xattr stamp, mtime, fsync, inode check and rename of a partial file in
    one call without the GIL -> (0, 0) done and ``fd`` closed, (1, 0) the name holds
    another inode (nothing renamed), (2, size) the file has another size. Raises OSError
    for a failed call; ``fd`` stays open unless (0, 0)."""
    return _hotpath.commit_partial(fd, dir_fd, name, final_name, size, stamp, mtime)


def _check_range(fd_a: int, fd_b: int, offset: int, length: int, buf: memoryview) -> None:
    """What the C loops refuse before they start (the same ValueErrors)."""
    if fd_a < 0 or fd_b < 0:
        raise ValueError("file descriptors must be >= 0")
    if offset < 0 or length < 0 or offset + length > 2**63 - 1:
        raise ValueError(f"bad range: offset {offset}, length {length}")
    if len(buf) <= 0:
        raise ValueError("buf must not be empty")


def _pwrite_all(fd: int, data: memoryview, off: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, off)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data, off = data[n:], off + n


def _recv_to_file_py(sock, fd, offset, length, buf, counter, direct_fd, crc, have=0,
                     crc32=None, crc64=None):
    _check_range(sock.fileno(), fd, offset, length, buf)
    if crc32 is not None and crc64 is not None:
        raise ValueError("crc32 and crc64: one second sum at most")
    if not 0 <= have <= min(length, len(buf)):
        raise ValueError(f"have {have}: not within the range and the buffer")
    got = 0
    cap = len(buf)
    while got < length:
        want = min(cap, length - got)
        fill = have if got == 0 else 0
        while fill < want:
            try:
                k = sock.recv_into(buf[fill:want])
            except BlockingIOError:   # SO_RCVTIMEO expired (a blocking socket's timeout)
                raise TimeoutError("no byte within the socket's receive timeout") from None
            if k == 0:
                raise ConnectionError(f"peer closed after {got + fill} of {length} bytes")
            fill += k
        chunk = buf[:fill]
        crc = _crc_extend_value(chunk, crc)
        if crc32 is not None:
            crc32 = _crc32_value(chunk, crc32)
        if crc64 is not None:
            crc64 = _crc64_value(chunk, crc64)
        off = offset + got
        rest = chunk
        if direct_fd is not None and off % ALIGN == 0:
            bulk = fill - fill % ALIGN
            if bulk:
                try:
                    _pwrite_all(direct_fd, chunk[:bulk], off)
                    rest = chunk[bulk:]
                    off += bulk
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    direct_fd = None
        if len(rest):
            _pwrite_all(fd, rest, off)
        got += fill
        if counter is not None:
            counter.add(fill)
    return crc, direct_fd, (crc32 if crc64 is None else crc64)


def _file_crc_py(fd, offset, length, buf, crc):
    _check_range(fd, fd, offset, length, buf)
    done = 0
    cap = len(buf)
    while done < length:
        at = done if length <= cap else 0   # a part that fits is gathered whole in buf
        k = os.preadv(fd, [buf[at: at + min(cap - at, length - done)]], offset + done)
        if k == 0:
            raise ShortFile(f"file ended after {done} of {length} bytes")
        crc = _crc_extend_value(buf[at: at + k], crc)
        done += k
    return crc


def _file_to_sock_py(fd, sock, offset, length, buf, counter, crc):
    _check_range(fd, sock.fileno(), offset, length, buf)
    sent = 0
    while sent < length:
        k = os.preadv(fd, [buf[: min(len(buf), length - sent)]], offset + sent)
        if k == 0:
            raise ShortFile(f"file ended after {sent} of {length} bytes")
        chunk = buf[:k]
        crc = _crc_extend_value(chunk, crc)
        sock.sendall(chunk)
        sent += k
        if counter is not None:
            counter.add(k)
    return crc
