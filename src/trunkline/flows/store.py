"""The flow store: Parquet partitioned by day, queried through embedded DuckDB.

Writers append immutable files (one per batch), so a crashed collector loses at most its
unflushed batch and readers never see a half-written file (write to a temp name, rename).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import FLOW_SCHEMA, conform


def duckdb_connect() -> duckdb.DuckDBPyConnection:
    """The one way to open DuckDB for flows: session time zone UTC, so ``strftime``,
    ``year``, ``quarter`` and casts of TIMESTAMPTZ bucket by UTC whatever ``TZ`` the
    process runs under (DuckDB's default is the local zone)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


class FlowStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def write(self, table: pa.Table) -> int:
        """Append a batch of flows; returns the number of records written."""
        if table.num_rows == 0:
            return 0
        table = conform(table)
        days = pc.strftime(table.column("time_start"), format="%Y-%m-%d")
        for day in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, day))
            d = self.root / f"day={day}"
            d.mkdir(parents=True, exist_ok=True)
            name = f"flows-{uuid.uuid4().hex}.parquet"
            tmp = d / f".{name}.tmp"
            pq.write_table(part, tmp, compression="zstd")
            os.replace(tmp, d / name)
        return table.num_rows

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
