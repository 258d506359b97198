"""The driver's ledger: which shards of a cluster copy are done, and the multipart uploads
of split objects (the driver creates and completes them).

One SQLite file per cluster copy (keyed like the engine's journal: source, destination,
layout options) in the driver's state dir. Each worker keeps its own per-shard engine
journal on its node; this ledger is what lets a rerun of the whole job skip finished
shards wherever they ran, and continue a split object's upload under the same ID.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..engine.journal import connect, disk_errors, journal_id, sqlite_files, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    id TEXT PRIMARY KEY, node TEXT, bytes INTEGER NOT NULL, objects INTEGER NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS splits (
    rel TEXT PRIMARY KEY, size INTEGER NOT NULL, etag TEXT, part_size INTEGER NOT NULL,
    upload_id TEXT, done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS split_parts (
    rel TEXT NOT NULL, part_number INTEGER NOT NULL, etag TEXT NOT NULL,
    PRIMARY KEY (rel, part_number)) WITHOUT ROWID;
"""


class Ledger:
    """Thread-safe; every write commits before returning (kill -9 loses nothing recorded)."""

    def __init__(self, state_dir: Path | str, src: str, dst: str, options: dict[str, Any],
                 fresh: bool = False) -> None:
        d = Path(state_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / f"ray-{journal_id(src, dst, options)}.sqlite"
        if fresh:
            self._unlink()
        self._con = connect(self.path, "cluster ledger")
        with disk_errors("cluster ledger", self.path):
            self._con.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _unlink(self) -> None:
        for p in sqlite_files(self.path):
            p.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None  # type: ignore[assignment]

    def remove(self) -> None:
        self.close()
        self._unlink()

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, args).fetchall()

    # shards ------------------------------------------------------------------------
    def shard_node(self, shard_id: str) -> str | None:
        """The node that finished ``shard_id`` ('' if not recorded), or None if not done."""
        rows = self._exec("SELECT node FROM shards WHERE id = ?", (shard_id,))
        return (rows[0][0] or "") if rows else None

    def shard_done(self, shard_id: str, node: str, nbytes: int, objects: int) -> None:
        self._exec("INSERT OR REPLACE INTO shards(id, node, bytes, objects, at) "
                   "VALUES (?, ?, ?, ?, ?)", (shard_id, node, nbytes, objects, time.time()))

    def shard_undone(self, shard_id: str) -> None:
        self._exec("DELETE FROM shards WHERE id = ?", (shard_id,))

    # split objects -----------------------------------------------------------------
    def split(self, rel: str) -> tuple[int, str | None, int, str | None, bool] | None:
        rows = self._exec("SELECT size, etag, part_size, upload_id, done FROM splits "
                          "WHERE rel = ?", (rel,))
        if not rows:
            return None
        size, etag, ps, uid, done = rows[0]
        return size, etag, ps, uid, bool(done)

    def split_start(self, rel: str, size: int, etag: str | None, part_size: int,
                    upload_id: str) -> None:
        with self._lock, transaction(self._con, self.path, "cluster ledger") as con:
            con.execute("DELETE FROM split_parts WHERE rel = ?", (rel,))
            con.execute("INSERT OR REPLACE INTO splits(rel, size, etag, part_size, "
                        "upload_id, done) VALUES (?, ?, ?, ?, ?, 0)",
                        (rel, size, etag, part_size, upload_id))

    def split_parts(self, rel: str) -> dict[int, str]:
        return dict(self._exec("SELECT part_number, etag FROM split_parts WHERE rel = ?",
                               (rel,)))

    def split_range_done(self, rel: str, etags: dict[int, str]) -> None:
        with self._lock, transaction(self._con, self.path, "cluster ledger") as con:
            con.executemany("INSERT OR REPLACE INTO split_parts(rel, part_number, etag) "
                            "VALUES (?, ?, ?)", [(rel, n, e) for n, e in etags.items()])

    def split_done(self, rel: str) -> None:
        self._exec("UPDATE splits SET done = 1 WHERE rel = ?", (rel,))
