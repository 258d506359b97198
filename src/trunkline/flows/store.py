"""The flow store: Parquet partitioned by day, queried through embedded DuckDB.

Writers append immutable files (one per batch), so a crashed collector loses at most its
unflushed batch and readers never see a half-written file (write to a temp name, rename;
on S3 one atomic PUT). The store lives in a directory or under an ``s3://`` prefix: the
filesystem, the file names and the hostile listing are ``lake.py``'s job.
Times are checked on the way in (issue 15): a hostile exporter cannot create thousands of
day partitions or store a time that later overflows a reader; such records are
quarantined, counted, and kept apart.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import BatchNotStored
from . import lake as lk
from .schema import FLOW_SCHEMA, conform

if TYPE_CHECKING:  # imported where queried: a collector host needs no DuckDB
    import duckdb

DAY_MS = 86_400_000
MIN_TIME_MS = 0  # 1970-01-01: no flow protocol encodes an earlier time
MAX_TIME_MS = 253_402_300_800_000  # 10000-01-01: past it Python (and `flows sql`) overflow
QUARANTINE_DIR = lk.QUARANTINE
QUARANTINE_REASONS = ("unrepresentable", "time_window", "partition_limit")
ROLLUP_DIR = "rollup={level}"  # beside the raw day partitions: rollup=5m/day=YYYY-MM-DD/


def duckdb_connect() -> duckdb.DuckDBPyConnection:
    """The one way to open DuckDB for flows: session time zone UTC, so ``strftime``,
    ``year``, ``quarter`` and casts of TIMESTAMPTZ bucket by UTC whatever ``TZ`` the
    process runs under (DuckDB's default is the local zone)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


class FlowStore:
    """Parquet partitioned by day, with a quarantine for records whose times are not sane.

    ``time_window_s``: a record whose start or end is further than this from its
    reference time (the export header's time, when the writer gives one) is quarantined.
    ``max_partitions_per_write``: one write creates at most this many day partitions;
    records of further days (the least populated) are quarantined. Times outside
    1970..9999 are always quarantined. Quarantined records keep their raw times (int64
    ms) in ``quarantine/``, outside the ``flows`` view, and are counted by reason.

    ``root``: a directory, or ``s3://bucket/prefix`` (``NAME:bucket/prefix`` for a named
    endpoint) with the mover's endpoint and credential conventions. ``self.root`` is the
    base as a path in the store's filesystem (a ``Path`` for a local store, ``bucket/prefix``
    for S3), so ``self.root / "day=..."`` names a directory on either. ``skipped`` counts
    the keys the last read left out (not ours, unsafe, not Parquet), by reason.
    ``rollups`` (``flows.rollup.Rollups``): computes each written batch's rollup tables,
    written beside it (``write_rollups``).
    """

    def __init__(self, root: str | os.PathLike[str], *, time_window_s: float = 86_400,
                 max_partitions_per_write: int = 400,
                 rollups: Callable[[pa.Table], dict[str, pa.Table]] | None = None):
        self.lake = lk.Lake(root)
        self.location = self.lake.location
        self.root: PurePath = (Path(self.location) if self.lake.local
                               else PurePosixPath(self.lake.base))
        self.time_window_ms = int(time_window_s * 1000)
        self.max_partitions = max_partitions_per_write
        self.rollups = rollups
        self.rollup_errors = 0  # batches whose rollups could not be written (the report sees the gap)
        self.quarantined: dict[str, int] = dict.fromkeys(QUARANTINE_REASONS, 0)
        self.skipped: Counter = Counter()

    @property
    def is_local(self) -> bool:
        return self.lake.local

    @property
    def status_dir(self) -> Path:
        """Where a collector on this host keeps its status: the store's own directory, or
        for a remote store a directory of it under the state dir (status is per host)."""
        if self.lake.local:
            return Path(self.root)
        from ..config import default_state_dir

        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.location).strip("._") or "store"
        return default_state_dir() / "flows" / name

    def write(self, table: pa.Table, reference_ms: np.ndarray | None = None,
              now_ms: int | None = None) -> int:
        """Append a batch of flows; returns the number of records written to the day
        partitions (the others were quarantined, see ``quarantined``).

        ``now_ms`` (a live collector's clock): when a batch spans more days than allowed,
        keep the days nearest to now, so records claiming other days can never push
        today's out; without it, keep the most populated days.

        Raises ``BatchNotStored`` (how many records were not) when the lake refuses a
        write, a full disk say: the day files are all written or none is.
        """
        if table.num_rows == 0:
            return 0
        table = conform(table)
        reason = self._sanity(table, reference_ms, now_ms)
        ok = reason == 0
        if not ok.all():
            try:
                self._quarantine(table, reference_ms, reason)
            except Exception as e:  # noqa: BLE001 - none of the batch is stored
                raise BatchNotStored(table.num_rows, e) from e
            table = table.filter(pa.array(ok))
            if table.num_rows == 0:
                return 0
        # days by integer division (pc.strftime cost ~0.8 µs a record); sane times only
        day = table.column("time_start").cast(pa.int64()).to_numpy() // DAY_MS
        days = np.unique(day)
        try:   # all days or none (write_many): the quarantined rows are kept either way
            lk.write_many(self.lake, ((f"day={np.datetime64(int(d), 'D')}",
                                       table if len(days) == 1
                                       else table.filter(pa.array(day == d)))
                                      for d in days))
        except Exception as e:  # noqa: BLE001 - counted by the caller
            raise BatchNotStored(table.num_rows, e) from e
        if self.rollups is not None:  # after the raw files: a crash in between leaves a
            import duckdb  # gap the report sees (flow counts) and scans raw

            try:
                self.write_rollups(self.rollups(table))
            except (OSError, duckdb.Error, pa.ArrowException):
                self.rollup_errors += 1  # the raw records are stored: not a lost batch
        return table.num_rows

    def write_rollups(self, tables: dict[str, pa.Table]) -> None:
        """One file per level and UTC day (of the rows' ``t_ms``) for each table, all of
        them or none (one ``write_many``): compaction writes the new files before it
        deletes the old, so a level written beside its old files would count twice."""
        def items():
            for level, t in tables.items():
                if t.num_rows == 0:
                    continue
                day = t.column("t_ms").cast(pa.int64()).to_numpy() // DAY_MS  # UTC days
                days = np.unique(day)
                base = ROLLUP_DIR.format(level=level)
                for d in days:
                    yield (f"{base}/day={np.datetime64(int(d), 'D')}",
                           t if len(days) == 1 else t.filter(pa.array(day == d)))

        lk.write_many(self.lake, items())

    def rollup_dir(self, level: str) -> PurePath:
        return self.root / ROLLUP_DIR.format(level=level)

    def rollup_files(self, level: str) -> list[PurePath]:
        """The rollup files of ``level`` (``5m``, ``1h``, ``1d``, ``peers``, ``mover``)."""
        return self.files(level)

    def _sanity(self, table: pa.Table, ref: np.ndarray | None,
                now_ms: int | None = None) -> np.ndarray:
        """Per record: 0 sane, else 1 + index in QUARANTINE_REASONS."""
        start = table.column("time_start").cast(pa.int64()).to_numpy()
        end = table.column("time_end").cast(pa.int64()).to_numpy()
        reason = np.zeros(len(start), np.int8)
        bad = (start < MIN_TIME_MS) | (start >= MAX_TIME_MS) | (end < MIN_TIME_MS) | \
            (end >= MAX_TIME_MS)
        reason[bad] = 1
        start, end = np.where(bad, 0, start), np.where(bad, 0, end)  # no overflow below
        if ref is not None and len(ref) == len(start):
            ref = np.clip(ref.astype(np.int64), -MAX_TIME_MS, MAX_TIME_MS)
            w = self.time_window_ms
            far = (np.abs(start - ref) > w) | (np.abs(end - ref) > w)
            reason[(reason == 0) & far] = 2
        ok = reason == 0
        day = start // DAY_MS
        uniq, counts = np.unique(day[ok], return_counts=True)
        if len(uniq) > self.max_partitions:
            order = np.argsort(np.abs(uniq - now_ms // DAY_MS) if now_ms is not None
                               else -counts, kind="stable")
            keep = uniq[order[: self.max_partitions]]
            reason[ok & ~np.isin(day, keep)] = 3
        return reason

    def _quarantine(self, table: pa.Table, ref: np.ndarray | None, reason: np.ndarray) -> None:
        bad = reason != 0
        q = table.filter(pa.array(bad))
        have_ref = ref is not None and len(ref) == len(reason)
        cols = {"time_start_ms": q.column("time_start").cast(pa.int64()),
                "time_end_ms": q.column("time_end").cast(pa.int64()),
                "reference_ms": pa.array(ref[bad].astype(np.int64)) if have_ref else
                pa.nulls(q.num_rows, pa.int64()),
                "reason": pa.array([QUARANTINE_REASONS[r - 1] for r in reason[bad]],
                                   pa.string())}
        for name in q.column_names:
            if name not in ("time_start", "time_end"):
                cols[name] = q.column(name)
        self._write_file(self.root / QUARANTINE_DIR, pa.table(cols))
        for r, n in zip(*np.unique(reason[bad], return_counts=True), strict=True):
            self.quarantined[QUARANTINE_REASONS[r - 1]] += int(n)

    def _write_file(self, d: PurePath | str, table: pa.Table) -> None:
        """Write ``table`` as one new file in directory ``d`` (under ``self.root``, or
        relative to it)."""
        lk.write_parquet(self.lake, self._rel(d), table)

    def _rel(self, d: PurePath | str) -> str:
        """A directory under the root (or relative to it) as a '/'-path relative to it."""
        d = PurePath(d)
        for base in (self.root, PurePath(self.lake.base)):
            try:
                rel = d.relative_to(base)
                break
            except ValueError:
                continue
        else:
            if d.is_absolute():
                raise ValueError(f"{d} is outside the store {self.location}")
            rel = d
        return rel.as_posix() if str(rel) != "." else ""

    def listing(self) -> lk.Listing:
        """Every key of the store, classified (data by level and day; skipped by reason)."""
        return lk.list_lake(self.lake)

    def quarantine(self) -> pa.Table:
        """Every quarantined record (raw int64 ms times, the reference, the reason)."""
        listing = self.listing()
        frags, bad = lk.open_fragments(self.lake, listing.data(lk.QUARANTINE))
        self.skipped = listing.skipped + bad
        return lk.read_table(self.lake, frags)

    def files(self, level: str = lk.RAW) -> list[PurePath]:
        """The data files of a level (``raw``: the flows; ``5m``...: rollups), sorted."""
        cls = Path if self.lake.local else PurePosixPath
        return sorted(cls(e.path) for e in self.listing().data(level))

    def register(self, con: duckdb.DuckDBPyConnection, name: str, level: str = lk.RAW,
                 schema: pa.Schema | None = None) -> int:
        """Create view ``name`` over the readable files of ``level`` on ``con``; -> how
        many files. Keys that are not readable flow files are skipped and counted in
        ``skipped``, never read."""
        listing = self.listing()
        frags, bad = lk.open_fragments(self.lake, listing.data(level), schema)
        self.skipped = listing.skipped + bad
        lk.register_view(con, name, self.lake, frags, schema)
        return len(frags)

    def connect(self, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a ``flows`` view over the store (empty view if none)."""
        con = con or duckdb_connect()
        con.execute("SET TimeZone = 'UTC'")  # also on a connection the caller made
        self.register(con, "flows", lk.RAW, FLOW_SCHEMA)
        return con

    def query(self, sql: str) -> pa.Table:
        rel = self.connect().sql(sql)
        if rel is None:  # a statement without a result (SET, CREATE ...)
            return pa.table({})
        fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # DuckDB 2 / 1
        return fetch()
