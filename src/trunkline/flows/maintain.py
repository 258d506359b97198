"""Keeping the store's derived tables: ``compact`` (one file per day and level, then the
monthly peer tables and the quarters' elephant tables), ``backfill`` (a day's rollups
again from its raw flows), ``derive_months``. What the report reads is ``scan``'s
business; this module writes it (``flows rollup``, the end of ``flows simulate``)."""

from __future__ import annotations

from . import elephant_table, rollup
from . import lake as lk
from .enrich import Enricher
from .scan import Files, day_tables, months_of, replace_day
from .stats import arrow
from .store import FlowStore, duckdb_connect


def compact(store: FlowStore, days: list[str]) -> dict[str, int]:
    """Merge each day's rollup files (one per writer batch) into one per level, without
    reading raw flows; files that appear meanwhile are left as they are. Files before ->
    after, summed over levels."""
    n = {"before": 0, "after": 0}
    fl = Files(store)  # the files there now: later ones are not touched
    for d in days:
        for lv in rollup.LEVELS:
            if lv == rollup.MONTHLY:
                continue
            entries = fl.entries(lv, [d])
            n["before"] += len(entries)
            if len(entries) < 2:
                n["after"] += len(entries)
                continue
            cols = ", ".join(rollup.empty(lv).column_names)
            con = duckdb_connect()
            fl.view(con, "_files", lv, [d], rollup.empty(lv).schema)
            t = arrow(con, f"SELECT {cols} FROM _files")
            store.write_rollups({lv: rollup.merge(lv, [t])})
            n["after"] += 1
            lk.delete_files(store.lake, [e.path for e in entries])
    n["months"] = derive_months(store, days)["months"]  # a new listing: the merged files
    # raw flows, day partitions with 5m files and elephant tables are as ``fl`` listed them
    n["elephant_quarters"] = elephant_table.derive_quarters(store, days, files=fl)["quarters"]
    return n


def derive_months(store: FlowStore, days: list[str]) -> dict[str, int]:
    """Write the ``peers_1mo`` table of each month that ``days`` touch from all its daily
    ``peers`` files, replacing the month's older one; -> months written. A month still
    being written gets a table that holds fewer flows than its days: the report sees the
    difference and reads the daily rows (``plan``), until the next compaction. -> months
    and rows written."""
    written = {"months": 0, "rows": 0}
    cols = ", ".join(rollup.empty("peers").column_names)
    fl = Files(store)
    for mdays in months_of(days).values():
        con = duckdb_connect()
        if not fl.view(con, "_peers", "peers", mdays, rollup.empty("peers").schema):
            continue
        old = [e.path for e in fl.entries(rollup.MONTHLY, [mdays[0]])]
        src = f"(SELECT {cols} FROM _peers)"
        t = arrow(con, rollup.month_sql(src) + " ORDER BY ALL")
        store.write_rollups({rollup.MONTHLY: t})
        written["months"] += 1
        written["rows"] += t.num_rows
        lk.delete_files(store.lake, old)
    return written


def backfill(store: FlowStore, enricher: Enricher, days: list[str]) -> dict[str, int]:
    """Rebuild the rollups of ``days`` from raw flows on this process; rows per level."""
    rows: dict[str, int] = {}
    fl = Files(store)
    for d in days:
        t = day_tables(store, enricher, d, fl)
        replace_day(store, d, t, fl)
        for lv, x in t.items():
            rows[lv] = rows.get(lv, 0) + x.num_rows
    rows[rollup.MONTHLY] = derive_months(store, days)["rows"]
    rows[elephant_table.LEVEL] = elephant_table.derive_quarters(store, days, files=fl)["records"]
    return rows
