"""Downloaded bytes to disk without the page cache: the aligned bulk through O_DIRECT.

Why: a mover writes each byte once and nobody reads it back soon. Through the page cache
every byte is copied once more and a page is allocated, dirtied and written back for it;
at line rate that is the largest CPU cost of a download after the socket copy, and it
evicts what the machine's other work keeps cached. Measured on the 2-core dev VM: `dd` of
2 GiB costs 3.1 s of system time buffered and 0.5 s with ``oflag=direct``.

How: the partial file keeps its ordinary descriptor (resume checks, re-fetches, the tail)
and gains a second one opened with ``O_DIRECT``. A chunk whose buffer address, file offset
and length are multiples of :data:`ALIGN` goes through the direct one; an unaligned tail
(the end of an object, a short read) through the ordinary one. The two never share a page:
an aligned prefix ends on a page boundary where the buffered remainder begins. A
filesystem without O_DIRECT (tmpfs) refuses the open, one that rejects an alignment
refuses the write (EINVAL): either way that file falls back to the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

from ..native import ALIGN  # the one definition, shared with the hot loop
from ..storage.partial import pwrite_full

MIN_SIZE = 4 * 2**20
"""Objects smaller than this are written through the page cache (one chunk or two: a
second descriptor would cost more than it saves)."""


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned, writable buffer (anonymous mmap) for ``recv_into`` and O_DIRECT."""
    return memoryview(mmap.mmap(-1, size))


def open_direct(path: str, size: int, *, dir_fd: int | None = None,
                same_as: int | None = None) -> int | None:
    """A write-only O_DIRECT descriptor on ``path`` (relative to ``dir_fd``, never through
    a symlink), or None where it does not apply. ``same_as``: the descriptor it must be a
    second view of (a name swapped in between is refused)."""
    if size < MIN_SIZE or not hasattr(os, "O_DIRECT"):
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    if same_as is not None:
        a, b = os.fstat(fd), os.fstat(same_as)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            os.close(fd)
            return None
    return fd


class DirectWriter:
    """``pwrite`` for one partial file: aligned bulk direct, the rest buffered.

    Shared by the worker threads of one object (``pwrite`` is positional, so no lock);
    after a refused direct write every later write of the file is buffered. The refused
    descriptor is not closed then: another worker may be writing through it this moment
    (and a closed number can be reused by the next ``open``, so its bytes would land in
    another file); it is kept aside and closed with the writer.
    """

    __slots__ = ("fd", "dfd", "_retired")
    fd: int
    dfd: int | None

    def __init__(self, fd: int, dfd: int | None) -> None:
        self.fd = fd
        self.dfd = dfd
        self._retired: int | None = None

    def direct_refused(self) -> None:
        """The filesystem refused a direct write: buffered from now on (the descriptor is
        closed by ``close``)."""
        dfd, self.dfd = self.dfd, None
        if dfd is not None:
            self._retired = dfd

    def pwrite(self, chunk: memoryview, offset: int) -> None:
        n = len(chunk)
        dfd = self.dfd
        if dfd is not None and offset % ALIGN == 0 and n >= ALIGN and _aligned(chunk):
            bulk = n - n % ALIGN
            try:
                pwrite_full(dfd, chunk[:bulk], offset)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self.direct_refused()  # this filesystem wants another alignment: buffered
                bulk = 0
            if bulk:
                if bulk < n:
                    pwrite_full(self.fd, chunk[bulk:], offset + bulk)
                return
        pwrite_full(self.fd, chunk, offset)

    def close(self) -> None:
        """Close the direct descriptor (the ordinary one belongs to the job)."""
        for dfd in (self.dfd, self._retired):
            if dfd is not None:
                try:
                    os.close(dfd)
                except OSError:
                    pass
        self.dfd = self._retired = None


def _aligned(chunk: memoryview) -> bool:
    """Whether the chunk starts on an ALIGN boundary in memory."""
    if chunk.readonly:
        return False
    addr = ctypes.addressof(ctypes.c_char.from_buffer(chunk))
    return addr % ALIGN == 0
