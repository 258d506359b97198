"""The state directory's journals as ``gc`` and a rerun see them: where they live, how
they are named, what each holds.

Why apart from ``journal.py``: that module is the write path of one running transfer
(every part commit); this one reads many journals at once without opening them as a
transfer would, and is what ``gc`` and the cluster ledger share.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import default_state_dir  # the one rule for the state dir, shared with flows

__all__ = ["JournalInfo", "connect", "default_state_dir", "disk_errors", "from_db",
           "journal_id", "journal_stats", "list_journals", "sqlite_files", "to_db",
           "transaction"]


def to_db(name: str) -> str | bytes:
    """A name as the journal stores it: text, or its bytes where it is a local name that is
    not UTF-8 (held as ``surrogateescape`` text, which SQLite's text cannot take).

    Why two storage classes: SQLite never finds a BLOB equal to a TEXT, and each name has
    exactly one form, so lookups stay exact and a journal written before holds the same
    text for every name it could hold."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape")
    return name


def from_db(value: str | bytes) -> str:
    """The name ``to_db`` stored, as the str the rest of the program uses."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def journal_id(src: str, dst: str, options: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of what decides the layout of a transfer.

    ``options`` holds only what changes parts or results (part size, checksum choice...);
    flags such as concurrency must stay out, or a rerun with more workers starts over.
    """
    canon = json.dumps(
        {"src": src, "dst": dst, "options": options},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    # a local path that is not UTF-8 hashes as its bytes (every other id is unchanged)
    return hashlib.sha256(canon.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class JournalInfo:
    """A journal as the index lists it: which transfer, with which options, since when."""

    id: str
    path: Path
    src: str
    dst: str
    options: dict[str, Any]
    created: float
    updated: float
    objects: int
    done: int
    bytes_done: int  # sizes of done objects + recorded parts of unfinished ones
    pending_uploads: int  # multipart uploads started and not completed (incl. discarded)


# SQLite's primary result codes that are the disk's answer, not a bug: what errno says it
_DISK_ERRNO = {sqlite3.SQLITE_FULL: errno.ENOSPC, sqlite3.SQLITE_IOERR: errno.EIO,
               sqlite3.SQLITE_READONLY: errno.EROFS, sqlite3.SQLITE_CANTOPEN: errno.EACCES}
_DISK_WORDS = {errno.ENOSPC: "no space left for", errno.EIO: "an I/O error on",
               errno.EROFS: "no write access to", errno.EACCES: "cannot open"}


@contextmanager
def disk_errors(what: str, path: Path | str) -> Iterator[None]:
    """SQLite's answers that come from the disk under a state database (full, I/O error,
    read-only, cannot open) as ``OSError`` with that errno, naming the database (``what``,
    ``path``): one clear line for the CLI (exit 1) instead of a driver's exception, which
    the CLI shows as a bug. Anything else SQLite raises passes unchanged."""
    try:
        yield
    except sqlite3.OperationalError as e:
        eno = _DISK_ERRNO.get((getattr(e, "sqlite_errorcode", None) or 0) & 0xFF)
        if eno is None:
            raise
        raise OSError(eno, f"{_DISK_WORDS[eno]} the {what} {path} ({e})") from e


def connect(path: Path, what: str = "resume journal") -> sqlite3.Connection:
    """A state database in WAL mode (a journal, the cluster ledger); the disk's refusals
    as ``disk_errors`` says."""
    with disk_errors(what, path):
        con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                              timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            con.close()
            raise
    return con


@contextmanager
def transaction(con: sqlite3.Connection, path: Path,
                what: str = "resume journal") -> Iterator[sqlite3.Connection]:
    """One write transaction on a state database (a journal, the cluster ledger): committed
    when the block ends, rolled back when it raises.

    SQLite rolls back by itself on some errors (a full disk), so ROLLBACK runs only while a
    transaction is open: a second one would raise "cannot rollback" over the real error.
    The disk's refusals come out as ``disk_errors`` says."""
    with disk_errors(what, path):
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise


def sqlite_files(path: Path) -> list[Path]:
    """A WAL-mode SQLite database's files: the database, its -wal and its -shm."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def journal_stats(con: sqlite3.Connection) -> dict[str, int]:
    objects, done, done_bytes = con.execute(
        "SELECT count(*), coalesce(sum(done), 0), coalesce(sum(CASE WHEN done THEN size END), 0) "
        "FROM objects"
    ).fetchone()
    parts, part_bytes = con.execute(
        "SELECT count(*), coalesce(sum(p.length), 0) FROM parts p "
        "JOIN objects o ON o.id = p.obj_id WHERE o.done = 0"
    ).fetchone()
    all_parts = con.execute("SELECT count(*) FROM parts").fetchone()[0]
    pending = con.execute(
        "SELECT (SELECT count(*) FROM objects WHERE upload_id IS NOT NULL AND done = 0)"
        " + (SELECT count(*) FROM discarded_uploads)"
    ).fetchone()[0]
    return {
        "objects": objects,
        "done": done,
        "parts": all_parts,
        "bytes_done": done_bytes + part_bytes,
        "pending_uploads": pending,
    }


def list_journals(state_dir: Path | str | None = None) -> list[JournalInfo]:
    """Every journal in ``state_dir`` (default: ``default_state_dir()``), newest first.

    Unreadable files are skipped, not fatal: ``gc`` must work beside a damaged journal.
    """
    d = Path(state_dir) if state_dir is not None else default_state_dir()
    if not d.is_dir():
        return []
    out: list[JournalInfo] = []
    for path in d.glob("*.sqlite"):
        try:
            con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
            try:
                meta = dict(con.execute("SELECT k, v FROM meta").fetchall())
                st = journal_stats(con)
            finally:
                con.close()
            out.append(
                JournalInfo(
                    id=meta.get("id", path.stem),
                    path=path,
                    src=from_db(meta.get("src", "")),
                    dst=from_db(meta.get("dst", "")),
                    options=json.loads(meta.get("options", "{}")),
                    created=float(meta.get("created", "0")),
                    updated=float(meta.get("updated", "0")),
                    objects=st["objects"],
                    done=st["done"],
                    bytes_done=st["bytes_done"],
                    pending_uploads=st["pending_uploads"],
                )
            )
        except (sqlite3.Error, ValueError, OSError):
            continue
    out.sort(key=lambda j: j.updated, reverse=True)
    return out
