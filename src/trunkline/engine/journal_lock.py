"""One running copy per journal: an exclusive ``flock`` on a lock file beside it.

Why a lock file and not the SQLite file: the journal may be removed and recreated while
another process waits; the lock's inode is checked after locking, so two runs of the same
copy can never both proceed ("already running"), and a crashed holder's lock dies with it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import AlreadyRunning


def lock_path(path: Path) -> Path:
    return path.with_name(path.stem + ".lock")


def try_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on the journal ``path``'s lock file, or None when another
    process holds it. Held until the fd is closed (also when the process dies)."""
    lp = lock_path(path)
    for _ in range(5):
        fd = os.open(lp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:   # the holder before us may have removed the file: lock the one on disk
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise AlreadyRunning(f"could not lock {lp}")


def lock_or_fail(path: Path, src: str, dst: str) -> int:
    """The lock of journal ``path``, or ``AlreadyRunning`` naming the copy that holds it."""
    fd = try_lock(path)
    if fd is None:
        raise AlreadyRunning(f"already running: another trunkline is copying {src} -> {dst} "
                             f"(journal {path.name})")
    return fd
