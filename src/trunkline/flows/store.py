"""The flow store: Parquet partitioned by day, queried through embedded DuckDB.

Writers append immutable files (one per batch), so a crashed collector loses at most its
unflushed batch and readers never see a half-written file (write to a temp name, rename).
Times are checked on the way in (issue 15): a hostile exporter cannot create thousands of
day partitions or store a time that later overflows a reader; such records are
quarantined, counted, and kept apart.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import FLOW_SCHEMA, conform

if TYPE_CHECKING:  # imported where queried: a collector host needs no DuckDB
    import duckdb

DAY_MS = 86_400_000
MIN_TIME_MS = 0  # 1970-01-01: no flow protocol encodes an earlier time
MAX_TIME_MS = 253_402_300_800_000  # 10000-01-01: past it Python (and `flows sql`) overflow
QUARANTINE_DIR = "quarantine"
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
    ``rollups`` (``flows.rollup.Rollups``): computes each written batch's rollup tables,
    written beside it (``write_rollups``).
    """

    def __init__(self, root: str | os.PathLike[str], *, time_window_s: float = 86_400,
                 max_partitions_per_write: int = 400,
                 rollups: Callable[[pa.Table], dict[str, pa.Table]] | None = None):
        self.root = Path(root)
        self.time_window_ms = int(time_window_s * 1000)
        self.max_partitions = max_partitions_per_write
        self.rollups = rollups
        self.rollup_errors = 0  # batches whose rollups could not be written (the report sees the gap)
        self.quarantined: dict[str, int] = dict.fromkeys(QUARANTINE_REASONS, 0)

    def write(self, table: pa.Table, reference_ms: np.ndarray | None = None,
              now_ms: int | None = None) -> int:
        """Append a batch of flows; returns the number of records written to the day
        partitions (the others were quarantined, see ``quarantined``).

        ``now_ms`` (a live collector's clock): when a batch spans more days than allowed,
        keep the days nearest to now, so records claiming other days can never push
        today's out; without it, keep the most populated days.
        """
        if table.num_rows == 0:
            return 0
        table = conform(table)
        reason = self._sanity(table, reference_ms, now_ms)
        ok = reason == 0
        if not ok.all():
            self._quarantine(table, reference_ms, reason)
            table = table.filter(pa.array(ok))
            if table.num_rows == 0:
                return 0
        # days by integer division (pc.strftime cost ~0.8 µs a record); sane times only
        day = table.column("time_start").cast(pa.int64()).to_numpy() // DAY_MS
        days = np.unique(day)
        for d in days:
            part = table if len(days) == 1 else table.filter(pa.array(day == d))
            self._write_file(self.root / f"day={np.datetime64(int(d), 'D')}", part)
        if self.rollups is not None:  # after the raw files: a crash in between leaves a
            import duckdb  # gap the report sees (flow counts) and scans raw

            try:
                self.write_rollups(self.rollups(table))
            except (OSError, duckdb.Error, pa.ArrowException):
                self.rollup_errors += 1  # the raw records are stored: not a lost batch
        return table.num_rows

    def write_rollups(self, tables: dict[str, pa.Table]) -> None:
        """One file per level and UTC day (of the rows' ``t_ms``) for each table."""
        for level, t in tables.items():
            if t.num_rows == 0:
                continue
            day = t.column("t_ms").cast(pa.int64()).to_numpy() // DAY_MS  # UTC days
            days = np.unique(day)
            for d in days:
                self._write_file(self.rollup_dir(level) / f"day={np.datetime64(int(d), 'D')}",
                                 t if len(days) == 1 else t.filter(pa.array(day == d)))

    def rollup_dir(self, level: str) -> Path:
        return self.root / ROLLUP_DIR.format(level=level)

    def rollup_files(self, level: str) -> list[Path]:
        return sorted(self.rollup_dir(level).glob("day=*/*.parquet"))

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

    @staticmethod
    def _write_file(d: Path, table: pa.Table) -> None:
        d.mkdir(parents=True, exist_ok=True)
        name = f"flows-{uuid.uuid4().hex}.parquet"
        tmp = d / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, d / name)

    def quarantine(self) -> pa.Table:
        """Every quarantined record (raw int64 ms times, the reference, the reason)."""
        files = sorted((self.root / QUARANTINE_DIR).glob("*.parquet"))
        if not files:
            return pa.table({})
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")

    def files(self) -> list[Path]:
        return sorted(self.root.glob("day=*/*.parquet"))

    def connect(self, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a ``flows`` view over the store (empty view if none)."""
        con = con or duckdb_connect()
        con.execute("SET TimeZone = 'UTC'")  # also on a connection the caller made
        if self.files():
            glob = str(self.root / "day=*" / "*.parquet")
            con.execute(
                f"CREATE OR REPLACE VIEW flows AS SELECT * EXCLUDE (day) "
                f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
            )
        else:
            con.register("_empty_flows", FLOW_SCHEMA.empty_table())
            con.execute("CREATE OR REPLACE VIEW flows AS SELECT * FROM _empty_flows")
        return con

    def query(self, sql: str) -> pa.Table:
        rel = self.connect().sql(sql)
        if rel is None:  # a statement without a result (SET, CREATE ...)
            return pa.table({})
        fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # DuckDB 2 / 1
        return fetch()
