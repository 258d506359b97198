"""Local files: streaming tree walk, safe destination paths, partial-file naming.

A download lands in a partial file beside its destination (``storage/partial.py``: a name
no object key can take) and is renamed into place only when whole and verified, so
nothing that looks complete exists before it is.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import SourceChanged
from ..url import LocationError, safe_relpath
from .partial import is_partial_name, partial_name


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A regular file found by a walk of a local tree, as the planner needs it."""

    rel: str      # '/'-separated path relative to the walked root
    path: str
    size: int
    mtime: float


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _entries(dir_fd: int) -> Iterator[bytes]:
    """The folder's names in S3's listing order: UTF-8 bytes, a folder as ``name/``.

    Only the bytes are held (a name cannot contain '/', so the suffix says "folder"): a
    flat folder of 300,000 files costs ~19 MiB here, against ~62 MiB as (key, name, is_dir)
    tuples (measured), since a folder's names are all held while it is walked."""
    with os.scandir(dir_fd) as it:
        keys = [os.fsencode(e.name) + b"/" if e.is_dir(follow_symlinks=False)
                else os.fsencode(e.name) for e in it]
    keys.sort()
    return iter(keys)


SKIP_FOLDER_LINK = "a symlink to a folder: not walked into (name the folder itself)"
SKIP_DANGLING = "a symlink to nothing"
SKIP_LOOP = "a symlink loop"
SKIP_SPECIAL = "not a regular file (a FIFO, socket or device)"
SKIP_SWAPPED = "a folder that became a symlink while the walk ran: not walked into"


def walk(root: str, on_skip: Callable[[str, str], None] | None = None) -> Iterator[LocalFile]:
    """Regular files under ``root`` in the order S3 lists their keys (UTF-8 byte order of
    the '/'-joined relative names), so a local tree and a listing merge-join in one pass.

    A symlink to a file is the file it names (a dataset's snapshot folder is often made of
    them); a symlinked folder is not walked into. Each folder is opened relative to its
    parent's descriptor with ``O_NOFOLLOW``, so one swapped for a symlink after its parent
    was read is skipped, never followed out of the tree, and each file is looked at
    relative to its folder's descriptor (one path component, not the whole path). A folder
    or file removed during the walk is skipped.

    Every other name that is not a file to copy is passed to ``on_skip(rel, reason)``
    (``SKIP_*``): a symlink to a folder, to nothing or to itself, a FIFO, socket or
    device. They were dropped without a word (a symlink loop stopped the whole walk), so
    a copy of a folder whose ``train`` is a symlink to another disk said nothing of it.

    Memory: the names of one directory per level of the current path, never the tree;
    descriptors: one per level.
    """
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        raise LocationError(f"no such directory: {root}") from None
    stack = [("", root_fd, _entries(root_fd))]
    try:
        while stack:
            rel_dir, fd, it = stack[-1]
            key = next(it, None)
            if key is None:
                stack.pop()
                os.close(fd)
                continue
            is_dir = key.endswith(b"/")
            name = os.fsdecode(key[:-1] if is_dir else key)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if is_dir:
                try:
                    sub = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        continue   # removed since it was read
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):   # no longer a real folder
                        if on_skip is not None:
                            on_skip(rel, SKIP_SWAPPED)
                        continue
                    raise
                try:
                    stack.append((rel, sub, _entries(sub)))
                except BaseException:
                    os.close(sub)
                    raise
                continue
            if is_partial_name(name):
                continue
            try:
                st = os.stat(name, dir_fd=fd)
            except FileNotFoundError:   # removed since the directory was read, or a
                if on_skip is not None and _is_link(name, fd):   # symlink to nothing
                    on_skip(rel, SKIP_DANGLING)
                continue
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                if on_skip is not None:
                    on_skip(rel, SKIP_LOOP)
                continue
            if stat.S_ISREG(st.st_mode):
                path = os.path.join(root, rel_dir, name) if rel_dir else os.path.join(root, name)
                yield LocalFile(rel, path, st.st_size, st.st_mtime)
            elif on_skip is not None:
                on_skip(rel, SKIP_FOLDER_LINK if stat.S_ISDIR(st.st_mode) else SKIP_SPECIAL)
    finally:
        for _, fd, _ in stack:
            os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_source(path: str | os.PathLike[str]) -> int:
    """A listed local file opened to be read: refused (``SourceChanged``) when what has
    its name now is not a regular file. The listing saw a regular file, but another
    process may swap in a FIFO (whose open would wait for a writer for ever: a copy that
    hangs), or a device such as /dev/zero (bytes without end). O_NONBLOCK lets the open
    of a FIFO return at once; on a regular file it changes nothing."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceChanged(f"{os.fsdecode(path)} is no longer a regular file "
                                "(something else took its name since it was listed)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def source_stamp(fd: int) -> tuple[int, int]:
    """(size, modification time in ns) of an open source file: what any write to it moves.
    The same stamp at the open and after each read means every byte read belongs to one
    version of the file (a writer that sets the time back is not seen; rclone's check is
    the same)."""
    st = os.fstat(fd)
    return st.st_size, st.st_mtime_ns


def open_listed(path: str | os.PathLike[str], size: int, mtime: float | None,
                ) -> tuple[int, tuple[int, int]]:
    """``open_source``, and the file still as it was listed (``size``; ``mtime`` unless
    None): -> (fd, its ``source_stamp``). A file written since its listing is refused
    (``SourceChanged``) rather than sent as the listed length of a newer version."""
    try:
        fd = open_source(path)
    except FileNotFoundError:
        raise SourceChanged(f"{os.fsdecode(path)} was removed since it was listed") from None
    try:
        st = os.fstat(fd)
        if st.st_size != size or (mtime is not None and st.st_mtime != mtime):
            raise SourceChanged(f"{os.fsdecode(path)} changed since it was listed (size "
                                f"{size}, now {st.st_size}): copy it again")
    except BaseException:
        os.close(fd)
        raise
    return fd, (st.st_size, st.st_mtime_ns)


def dest_path(root: str, rel: str, base: str | None = None) -> str:
    """``root``/``rel`` after refusing any key that would land outside ``root``.

    ``base`` is ``realpath(root)`` when the caller resolved it once for a whole listing.
    Only the components below it are looked at (one ``lstat`` each, up to the first that
    does not exist): a planner calls this per object, and resolving the whole path every
    time cost ~14 ``lstat`` per object of a 2,000-object copy. A symlink below ``base``
    is resolved as before and must stay inside."""
    rel = safe_relpath(rel)
    if base is None:
        base = os.path.realpath(root)
    parts = rel.split("/")
    full = os.path.join(base, *parts)
    p = base
    for comp in parts:
        p = os.path.join(p, comp)
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            return full   # nothing below exists, so nothing below can lead elsewhere
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(full)
            if real != base and not real.startswith(base + os.sep):
                raise LocationError(f"refusing object key {rel!r}: would escape destination "
                                    f"{root}")
            return real
    return full


def partial_path(path: str) -> str:
    """Where the download of ``path`` is written until it is whole (see ``partial``)."""
    d, name = os.path.split(path)
    return os.path.join(d, partial_name(name))
