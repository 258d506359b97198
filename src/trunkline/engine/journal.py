"""The resume journal: one SQLite file per transfer, keyed by source, destination, options.

Why SQLite in WAL mode with synchronous=NORMAL: every part completion is its own
transaction, committed before ``part_done`` returns, so a kill -9 of the process loses at
most the parts in flight (a committed WAL frame is in the OS page cache, which outlives
the process). A power loss or reboot may drop the last few commits; resume tolerates that
because parts already on disk are re-checked against their recorded CRC32C and uploads are
reconciled with ListParts. One connection, guarded by a lock, serves all worker threads.

The journal records facts, not policy: the engine decides what to redo.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .journal_index import (  # noqa: F401  (re-exported: the journal's callers name them here)
    JournalInfo,
    connect,
    default_state_dir,
    disk_errors,
    from_db,
    journal_id,
    journal_stats,
    list_journals,
    sqlite_files,
    to_db,
    transaction,
)
from .journal_lock import lock_or_fail, lock_path, try_lock  # noqa: F401  (re-exported)
from .journal_records import ObjectRecord, PartRecord, PendingUpload

__all__ = [
    "Journal",
    "JournalInfo",
    "ObjectRecord",
    "PartRecord",
    "PendingUpload",
    "default_state_dir",
    "journal_id",
    "list_journals",
]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    id        INTEGER PRIMARY KEY,
    key       TEXT NOT NULL UNIQUE,
    dst       TEXT NOT NULL,
    size      INTEGER NOT NULL,
    etag      TEXT,
    mtime     REAL,
    part_size INTEGER NOT NULL,
    upload_id TEXT,
    done      INTEGER NOT NULL DEFAULT 0,
    crc32c    INTEGER,
    updated   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    obj_id      INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    crc32c      INTEGER NOT NULL,
    etag        TEXT,
    PRIMARY KEY (obj_id, part_number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS discarded_uploads (
    upload_id TEXT PRIMARY KEY,
    key       TEXT NOT NULL,
    dst       TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_pending ON objects(done) WHERE upload_id IS NOT NULL;
"""


class Journal:
    """A transfer's resume state. Thread-safe; every mutating call commits before returning.

    Holds an exclusive lock per journal while open, so a second run of the same transfer
    fails with "already running" instead of racing the first."""

    def __init__(self, path: Path, con: sqlite3.Connection, jid: str,
                 lock_fd: int | None = None) -> None:
        self.path = path
        self.id = jid
        self._con = con
        self._lock = threading.Lock()
        self._lock_fd = lock_fd
        # what the journal held before this run: where it held nothing, the lookups made
        # once per object planned (``done_record``, ``recorded_part_size``) are answered
        # without a query (a key is listed once per run, so this run's rows never match)
        had_objects, had_done = con.execute(
            "SELECT EXISTS(SELECT 1 FROM objects), "
            "EXISTS(SELECT 1 FROM objects WHERE done = 1)").fetchone()
        self._had_objects, self._had_done = bool(had_objects), bool(had_done)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, state_dir: Path | str, src: str, dst: str, options: dict[str, Any]) -> Journal:
        """Open (or create) ``state_dir/<journal_id>.sqlite``."""
        jid = journal_id(src, dst, options)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / f"{jid}.sqlite"
        lock_fd = lock_or_fail(path, src, dst)
        try:
            con = connect(path)
        except BaseException:
            os.close(lock_fd)
            raise
        now = time.time()
        try:
            # idempotent; one transaction (statement by statement, a new journal cost a
            # commit each: ~50 ms of a short copy's start on a loaded machine)
            with disk_errors("resume journal", path):
                con.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
            seed = {
                "id": jid,
                "schema": str(SCHEMA_VERSION),
                "src": to_db(src),
                "dst": to_db(dst),
                "options": json.dumps(options, sort_keys=True, default=str),
                "created": repr(now),
            }
            with transaction(con, path):
                con.executemany("INSERT OR IGNORE INTO meta(k, v) VALUES (?, ?)", seed.items())
                con.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('updated', ?)",
                            (repr(now),))
        except BaseException:
            con.close()
            os.close(lock_fd)
            raise
        return cls(path, con, jid, lock_fd)

    @classmethod
    def fresh(cls, state_dir: Path | str, src: str, dst: str, options: dict[str, Any]) -> Journal:
        """Delete any journal of this transfer, then open a new one (``--no-resume``).

        Multipart uploads the old journal knew of are forgotten: list them first
        (``pending_uploads``/``discarded_uploads``) if they should be aborted.
        """
        path = Path(state_dir) / f"{journal_id(src, dst, options)}.sqlite"
        if path.parent.is_dir():
            fd = lock_or_fail(path, src, dst)   # never delete a running copy's journal
            try:
                for p in sqlite_files(path):
                    p.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return cls.open(state_dir, src, dst, options)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None  # type: ignore[assignment]
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def remove(self) -> None:
        """Close and delete the journal files (a finished, verified transfer)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None  # type: ignore[assignment]
            for p in sqlite_files(self.path):
                p.unlink(missing_ok=True)
            if self._lock_fd is not None:   # still held while unlinked: nobody races us
                lock_path(self.path).unlink(missing_ok=True)
        self.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = self._con
            if con is None:
                raise ValueError("journal is closed")
            with transaction(con, self.path):
                yield con
                con.execute("UPDATE meta SET v = ? WHERE k = 'updated'", (repr(time.time()),))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._con is None:
                raise ValueError("journal is closed")
            yield self._con

    # ------------------------------------------------------------------ objects

    def meta(self) -> dict[str, str]:
        with self._read() as con:
            return {k: from_db(v) for k, v in con.execute("SELECT k, v FROM meta")}

    def object(
        self,
        key: str,
        dst: str,
        size: int,
        etag: str | None,
        mtime: float | None,
        part_size: int,
    ) -> ObjectRecord:
        """Get or create the record of ``key``; start it over if the source changed.

        "Changed" means any of size, etag, mtime or part_size differs from the record
        (pass ``mtime=None`` for sources whose ETag already identifies the content).
        """
        now = time.time()
        dkey, ddst = to_db(key), to_db(dst)
        with self._tx() as con:
            row = con.execute(
                "SELECT id, dst, size, etag, mtime, part_size, upload_id, done, crc32c "
                "FROM objects WHERE key = ?",
                (dkey,),
            ).fetchone()
            if row is None:
                cur = con.execute(
                    "INSERT INTO objects(key, dst, size, etag, mtime, part_size, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (dkey, ddst, size, etag, mtime, part_size, now),
                )
                return ObjectRecord(
                    cur.lastrowid, key, dst, size, etag, mtime, part_size, None, False, None
                )
            oid, odst, osize, oetag, omtime, ops, upload_id, done, crc = row
            odst = from_db(odst)
            if (osize, oetag, omtime, ops) == (size, etag, mtime, part_size) and odst == dst:
                return ObjectRecord(
                    oid, key, dst, size, etag, mtime, part_size, upload_id, bool(done), crc
                )
            # Source (or layout, or destination) changed: its parts describe other bytes.
            con.execute("DELETE FROM parts WHERE obj_id = ?", (oid,))
            discarded = upload_id if upload_id and not done else None
            if discarded:
                con.execute(
                    "INSERT OR REPLACE INTO discarded_uploads(upload_id, key, dst, at) "
                    "VALUES (?, ?, ?, ?)",
                    (discarded, dkey, to_db(odst), now),
                )
            con.execute(
                "UPDATE objects SET dst = ?, size = ?, etag = ?, mtime = ?, part_size = ?, "
                "upload_id = NULL, done = 0, crc32c = NULL, updated = ? WHERE id = ?",
                (ddst, size, etag, mtime, part_size, now, oid),
            )
            return ObjectRecord(
                oid, key, dst, size, etag, mtime, part_size, None, False, None, True, discarded
            )

    def set_upload_id(self, obj_id: int, upload_id: str | None) -> None:
        """Record the multipart upload of an object (before its first part is sent)."""
        with self._tx() as con:
            con.execute(
                "UPDATE objects SET upload_id = ?, updated = ? WHERE id = ?",
                (upload_id, time.time(), obj_id),
            )

    def part_done(
        self,
        obj_id: int,
        part_number: int,
        offset: int,
        length: int,
        crc32c: int,
        etag: str | None = None,
    ) -> None:
        """Record a finished part; durable against kill -9 once this returns."""
        with self._tx() as con:
            con.execute(
                "INSERT OR REPLACE INTO parts(obj_id, part_number, offset, length, crc32c, etag) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (obj_id, part_number, offset, length, crc32c & 0xFFFFFFFF, etag),
            )

    def forget_parts(self, obj_id: int, part_numbers: list[int] | None = None) -> None:
        """Drop recorded parts (all if None): a part on disk failed its CRC re-check, or
        ListParts does not know it."""
        with self._tx() as con:
            if part_numbers is None:
                con.execute("DELETE FROM parts WHERE obj_id = ?", (obj_id,))
            else:
                con.executemany(
                    "DELETE FROM parts WHERE obj_id = ? AND part_number = ?",
                    [(obj_id, n) for n in part_numbers],
                )

    def parts(self, obj_id: int) -> dict[int, PartRecord]:
        with self._read() as con:
            rows = con.execute(
                "SELECT part_number, offset, length, crc32c, etag FROM parts "
                "WHERE obj_id = ? ORDER BY part_number",
                (obj_id,),
            ).fetchall()
        return {r[0]: PartRecord(*r) for r in rows}

    def object_done(self, obj_id: int, crc32c: int | None) -> None:
        """The object is complete and verified; its upload is no longer pending."""
        with self._tx() as con:
            con.execute(
                "UPDATE objects SET done = 1, crc32c = ?, updated = ? WHERE id = ?",
                (None if crc32c is None else crc32c & 0xFFFFFFFF, time.time(), obj_id),
            )

    def done_record(self, key: str) -> tuple[str, int, str | None, float | None] | None:
        """(dst, size, etag, mtime) of ``key`` if it was recorded done before this run; a
        read, no write (none when nothing was: a key is listed once per run)."""
        if not self._had_done:
            return None
        with self._read() as con:
            row = con.execute("SELECT dst, size, etag, mtime FROM objects "
                              "WHERE key = ? AND done = 1", (to_db(key),)).fetchone()
        return (from_db(row[0]), *row[1:]) if row else None  # type: ignore[return-value]

    def done_many(self, rows: list[tuple[str, str, int, str | None, float | None, int]]) -> None:
        """Record finished single-part objects (key, dst, size, etag, mtime, part_size) in one
        transaction: small objects need no per-object commit (a kill re-copies at most the
        last batch, which is cheap for them)."""
        if not rows:
            return
        now = time.time()
        with self._tx() as con:
            con.executemany(
                "INSERT INTO objects(key, dst, size, etag, mtime, part_size, done, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET dst = excluded.dst, "
                "size = excluded.size, etag = excluded.etag, mtime = excluded.mtime, "
                "part_size = excluded.part_size, done = 1, updated = excluded.updated",
                [(to_db(r[0]), to_db(r[1]), *r[2:], now) for r in rows],
            )

    def reopen(self, obj_id: int) -> None:
        """A done object must be copied again (its destination vanished): clear it."""
        with self._tx() as con:
            con.execute("DELETE FROM parts WHERE obj_id = ?", (obj_id,))
            con.execute("UPDATE objects SET done = 0, crc32c = NULL, upload_id = NULL, "
                        "updated = ? WHERE id = ?", (time.time(), obj_id))

    def recorded_part_size(self, key: str) -> int | None:
        """The part size an unfinished object was started with (a resume must keep it)."""
        if not self._had_objects:
            return None
        with self._read() as con:
            row = con.execute("SELECT part_size FROM objects WHERE key = ?",
                              (to_db(key),)).fetchone()
        return int(row[0]) if row else None

    def is_done(self, key: str) -> bool:
        with self._read() as con:
            row = con.execute("SELECT done FROM objects WHERE key = ?", (to_db(key),)).fetchone()
        return bool(row and row[0])

    def pending_uploads(self) -> list[PendingUpload]:
        """Multipart uploads of unfinished objects: continue them (ListParts) or abort."""
        with self._read() as con:
            rows = con.execute(
                "SELECT id, key, dst, upload_id FROM objects "
                "WHERE upload_id IS NOT NULL AND done = 0 ORDER BY id"
            ).fetchall()
        return [PendingUpload(i, from_db(k), from_db(d), u) for i, k, d, u in rows]

    def discarded_uploads(self) -> list[PendingUpload]:
        """Uploads orphaned because their source changed; obj_id is -1. Abort them."""
        with self._read() as con:
            rows = con.execute(
                "SELECT key, dst, upload_id FROM discarded_uploads ORDER BY at"
            ).fetchall()
        return [PendingUpload(-1, from_db(k), from_db(d), u) for k, d, u in rows]

    def unfinished_dsts(self) -> list[str]:
        """Destinations of objects begun and not done outside a multipart upload: where a
        download's partial file may lie (``gc`` removes them)."""
        with self._read() as con:
            rows = con.execute("SELECT dst FROM objects WHERE done = 0 AND upload_id IS NULL"
                               ).fetchall()
        return [from_db(d) for (d,) in rows]

    def forget_upload(self, upload_id: str) -> None:
        """An orphaned upload was aborted (or found gone)."""
        with self._tx() as con:
            con.execute("DELETE FROM discarded_uploads WHERE upload_id = ?", (upload_id,))

    def stats(self) -> dict[str, int]:
        with self._read() as con:
            return journal_stats(con)
