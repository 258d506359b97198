"""Partial files that cannot be aimed: where a download lives until it is whole.

Why: a destination directory may be shared (scratch space, a team's dataset folder), so
anyone who can write there can plant a symlink or a hard link at the name a download is
about to use, and an object key is chosen by whoever filled the bucket. Therefore:

- every directory on the way is opened relative to the one above it with ``O_NOFOLLOW``
  (a symlinked folder is refused, never followed);
- the partial file is created relative to that directory's descriptor with
  ``O_CREAT|O_EXCL|O_NOFOLLOW``; a resume reopens it only if it is a regular file of ours
  with one link;
- its name contains a backslash, which ``url.safe_relpath`` refuses in any key, so no
  object key can name a partial file (nor make one vanish); it is fixed-length (40 bytes),
  so a key at the 255-byte name limit still has a partial name; it is derived from the
  final name, so a resume finds it again;
- space is reserved up front (``posix_fallocate``): a full disk fails before a byte moves;
- every write is checked for its full length;
- the data is fsync'ed, then renamed by directory descriptor (``renameat``) after checking
  that the name still holds the inode we wrote; the directory is fsync'ed after (once per
  directory and batch where a ``DirSync`` gathers them: many small objects in one folder
  cost one directory fsync per batch, not one each).

A failed object leaves nothing at its final name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from collections import OrderedDict

from .. import native
from ..errors import PartialSizeMismatch, TrunklineError

PARTIAL_PREFIX = ".tlpart\\"
"""Partial names start with this; keys never contain a backslash (``safe_relpath``)."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


STAMP_XATTR = "user.trunkline"
"""Set on a file trunkline finished: the source's ETag, the size and the CRC32C written."""


def finished_stamp(etag: str | None, size: int, crc32c: int | None) -> bytes:
    """The stamp's bytes: compact JSON, formatted directly (one per object: a
    ``json.dumps`` with separators builds an encoder each call: 3.1 against 1.4 µs)."""
    crc = "null" if crc32c is None else int(crc32c)
    return f'{{"etag":{json.dumps(etag)},"size":{int(size)},"crc32c":{crc}}}'.encode()


def read_stamp(path: str) -> dict | None:
    """The stamp of a file trunkline finished, None for any other file (or no xattrs)."""
    try:
        raw = os.getxattr(path, STAMP_XATTR, follow_symlinks=False)
        d = json.loads(raw)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


_XATTR_OK: dict[int, bool] = {}


def xattrs_supported(path: str) -> bool:
    """Whether the filesystem holding ``path`` keeps user xattrs (cached per device)."""
    try:
        dev = os.stat(path, follow_symlinks=False).st_dev
    except OSError:
        return False
    ok = _XATTR_OK.get(dev)
    if ok is None:
        try:
            os.listxattr(path, follow_symlinks=False)
            os.getxattr(path, "user.trunkline-probe", follow_symlinks=False)
            ok = True
        except OSError as e:
            ok = e.errno != errno.ENOTSUP
        _XATTR_OK[dev] = ok
    return ok


def partial_name(final_name: str) -> str:
    """The partial file's name for the file ``final_name`` in the same directory."""
    h = hashlib.blake2b(os.fsencode(final_name), digest_size=16).hexdigest()
    return PARTIAL_PREFIX + h


def is_partial_name(name: str) -> bool:
    return name.startswith(PARTIAL_PREFIX)


class UnsafeDestination(TrunklineError, OSError):
    """A symlink, a foreign file or a hard link where a download's file would go.

    Never retried (another try finds the same file); an ``OSError`` too, as it always was."""


_FILE_AND_FOLDER = ("keys 'K' and 'K/...' in one listing meet this way: a name cannot be a "
                    "file and a folder")


def _not_a_folder(dir_fd: int, name: str) -> str:
    """What is at ``name`` where a folder was needed, in words for the refusal."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "not a real directory"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink, not a real directory"
    if stat.S_ISREG(st.st_mode):
        return f"a file, where a folder is needed ({_FILE_AND_FOLDER})"
    return "not a real directory"


def open_dir(path: str, *, create: bool = True, purpose: str = "write") -> int:
    """A descriptor of directory ``path``, every component opened without following
    symlinks (the leading components down to an existing ``/`` anchor are resolved once,
    by the caller's choice of ``path``: we start from its realpath's root). ``purpose``
    names what a refusal stopped."""
    parts = [p for p in os.path.abspath(path).split(os.sep) if p]
    fd = os.open("/", _DIR_FLAGS)
    try:
        for name in parts:
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeDestination(
                        e.errno, f"refusing to {purpose} through {name!r}: "
                                 f"{_not_a_folder(fd, name)} in {path}") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


class FolderCache:
    """The destination folders of one run, each opened once by ``open_dir`` (no symlink
    followed) and lent out as a duplicate descriptor: for the files written there, and
    for the ones ``unlink`` removes.

    Why: walking every component from ``/`` for each file cost two syscalls per component
    per object (a 2,000-object copy into a folder four levels deep: 16,000 of them, each a
    hand-over of the interpreter lock between the workers). The descriptor names the
    folder that was checked when it was opened; a folder removed during the run is walked
    again (``forget``). Bounded: past ``limit`` folders the least recently used is closed."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, path: str, *, create: bool = True, purpose: str = "write") -> int:
        """A new descriptor of folder ``path`` (the caller closes it); ``create`` and
        ``purpose`` are ``open_dir``'s."""
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None:
                self._fds.move_to_end(path)
                return os.dup(fd)
        fd = open_dir(path, create=create, purpose=purpose)
        with self._lock:
            held = self._fds.get(path)
            if held is not None:       # another worker opened it meanwhile
                os.close(fd)
                return os.dup(held)
            self._fds[path] = fd
            while len(self._fds) > self.limit:
                os.close(self._fds.popitem(last=False)[1])
            return os.dup(fd)

    def unlink(self, path: str) -> None:
        """Remove file ``path`` relative to its folder, opened as every folder here is (no
        symlink followed, never created). Why: a file to delete was listed a while ago, and
        whoever can write into the destination may meanwhile have replaced a folder on its
        path by a symlink: ``os.unlink(path)`` would remove a file behind it. Raises
        FileNotFoundError if the file or a folder is gone, UnsafeDestination if a folder
        on the way is not a real one."""
        folder, name = os.path.split(path)
        fd = self.open(folder, create=False, purpose="delete")
        try:
            os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def forget(self, path: str) -> None:
        with self._lock:
            fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), OrderedDict()
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> FolderCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pwrite_full(fd: int, data: memoryview | bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` or raise: a short count is retried, and a write
    that makes no progress is a full disk (ENOSPC), never silently dropped bytes."""
    mv = memoryview(data)
    while len(mv):
        n = os.pwrite(fd, mv, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, "write made no progress (disk full?)")
        mv = mv[n:]
        offset += n


class DirSync:
    """Directories whose renames are not yet durable: fsync'ed together by ``sync``.

    Why: after the rename the directory must be fsync'ed for the new name to survive a
    power loss; with many small objects in one folder that second fsync per object was
    half of the download's wall time (2,000 x 256 KiB: 4,000 fsyncs). The caller syncs
    before it records the objects done (the journal's batch), so "done" is never
    written before the name is durable. Bounded: past ``limit`` directories the next
    ``add`` syncs them at once (each held as a duplicated descriptor)."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._fds: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def add(self, dir_fd: int, key: object = None) -> None:
        """Gather the folder of ``dir_fd``; ``key`` names it where the caller knows it is
        one folder per key (a ``FolderCache`` path), else its inode is looked up."""
        if key is None:
            st = os.fstat(dir_fd)
            key = (st.st_dev, st.st_ino)
        with self._lock:
            if key in self._fds:
                return
            self._fds[key] = os.dup(dir_fd)
            full = len(self._fds) >= self.limit
        if full:
            self.sync()

    def sync(self) -> None:
        """fsync every gathered directory and forget them (a filesystem that cannot sync a
        directory is let be, as ``PartialFile.commit`` lets it be)."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)


class PartialFile:
    """The file one download is written into, then renamed into place by ``commit``."""

    def __init__(self, final_path: str, size: int, *, resume: bool = False,
                 folders: FolderCache | None = None) -> None:
        self.final_path = final_path
        d, self.final_name = os.path.split(final_path)
        self.name = partial_name(self.final_name)
        self.size = size
        self.dir_fd = folders.open(d) if folders is not None else open_dir(d)
        self._dir_key = ("folder", d) if folders is not None else None
        self.fd = -1
        self._created = False
        self._reserve_err: int | None = None   # the core created and reserved (its errno)
        try:
            try:
                self.fd = self._open(resume)
            except FileNotFoundError:
                if folders is None:
                    raise
                # the cached folder was removed since it was opened: walk (and create) again
                folders.forget(d)
                os.close(self.dir_fd)
                self.dir_fd = -1
                self.dir_fd = folders.open(d)
                self.fd = self._open(resume)
            self._reserve()
        except BaseException:
            self.discard()
            raise

    @property
    def path(self) -> str:
        return os.path.join(os.path.dirname(self.final_path), self.name)

    def _open(self, resume: bool) -> int:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        if resume:
            try:
                fd = os.open(self.name, flags, dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                self._unlink()   # a symlink planted at our name: remove the link itself
            else:
                if self._ours(os.fstat(fd)):
                    return fd
                os.close(fd)
                self._unlink()
        for attempt in (0, 1):
            try:
                if native.files_native():   # create and reserve in one call, no GIL
                    fd, self._reserve_err = native.create_reserved(self.dir_fd, self.name,
                                                                   self.size)
                else:
                    fd = os.open(self.name, flags | os.O_CREAT | os.O_EXCL, 0o644,
                                 dir_fd=self.dir_fd)
                self._created = True
                return fd
            except FileExistsError:
                if attempt:
                    raise
                self._unlink()   # stale (a killed run) or planted: never opened, removed
        raise AssertionError("unreachable")

    @staticmethod
    def _ours(st: os.stat_result) -> bool:
        return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid()

    def _unlink(self) -> None:
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass

    def _reserve(self) -> None:
        """Give the file its size with real blocks, so ENOSPC surfaces now."""
        if self._reserve_err is not None:   # done by the core with the create
            if self._reserve_err:
                raise OSError(self._reserve_err, os.strerror(self._reserve_err))
            return
        # a file this call created is empty: only a reopened one needs its size looked at
        if self.size == 0:
            if not self._created and os.fstat(self.fd).st_size:
                os.ftruncate(self.fd, 0)
            return
        if not self._created and os.fstat(self.fd).st_size > self.size:
            os.ftruncate(self.fd, self.size)
        try:
            os.posix_fallocate(self.fd, 0, self.size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(self.fd, self.size)   # no preallocation here: writes are checked

    def pwrite(self, data: memoryview | bytes, offset: int) -> None:
        pwrite_full(self.fd, data, offset)

    def commit(self, mtime: float | None = None, stamp: bytes | None = None,
               dir_sync: DirSync | None = None) -> None:
        """Size check, fsync, stamp, and rename into place by directory descriptor;
        closes. The directory is fsync'ed now, or gathered into ``dir_sync`` for the
        caller's batch. A file of another size raises ``PartialSizeMismatch`` before
        anything is renamed (the size check is here, once, for every caller)."""
        try:
            if native.files_native():   # the same steps in one call, no GIL
                code, got = native.commit_partial(self.fd, self.dir_fd, self.name,
                                                  self.final_name, self.size, stamp,
                                                  float(mtime) if mtime else None)
                if code == 2:
                    raise PartialSizeMismatch(
                        errno.EIO, f"partial file has {got} bytes, expected {self.size}")
                if code == 1:
                    raise UnsafeDestination(errno.EEXIST,
                                            "the partial file was replaced under us")
                self.fd = -1   # closed by the core with the rename
            else:
                self._commit_steps(mtime, stamp)
        except IsADirectoryError:
            # keys 'a' and 'a/b' in one listing: a folder holds the one, so the other
            # cannot be a file of that name (the partial file stays, nothing is replaced)
            raise IsADirectoryError(
                errno.EISDIR, f"a folder is where this file would go: "
                f"{os.fsdecode(self.final_name)}/ ({_FILE_AND_FOLDER})") from None
        if dir_sync is not None:
            dir_sync.add(self.dir_fd, self._dir_key)
        else:
            try:
                os.fsync(self.dir_fd)
            except OSError:
                pass
        self.close()

    def _commit_steps(self, mtime: float | None, stamp: bytes | None) -> None:
        """What ``native.commit_partial`` does, one system call at a time."""
        st = os.fstat(self.fd)
        if st.st_size != self.size:
            raise PartialSizeMismatch(errno.EIO,
                                      f"partial file has {st.st_size} bytes, expected {self.size}")
        if stamp is not None:
            try:
                os.setxattr(self.fd, STAMP_XATTR, stamp)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENOSPC, errno.E2BIG):
                    raise
        if mtime:
            os.utime(self.fd, (mtime, mtime))
        os.fsync(self.fd)
        now = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafeDestination(errno.EEXIST, "the partial file was replaced under us")
        os.rename(self.name, self.final_name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def close(self) -> None:
        for attr in ("fd", "dir_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, attr, -1)

    def discard(self) -> None:
        """Remove the partial file (only if the name still holds our inode) and close."""
        if self.fd >= 0 and self.dir_fd >= 0:
            try:
                mine = os.fstat(self.fd)
                now = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
                if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                    os.unlink(self.name, dir_fd=self.dir_fd)
            except OSError:
                pass
        self.close()
