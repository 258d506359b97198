"""The elephants' own compact table (issue 20): the raw records of the 5-tuples of a
quarter that could be elephants, derived once at compaction, so the report finds its
elephants without scanning a quarter of raw flows (on 110 M records that scan was three
quarters of the report's time and all of its peak memory, ``bench/RESULTS.md``).

A tuple could be an elephant when it moved at least ``min_bytes`` in the quarter (the
bar ``stats.elephant_flows`` applies) and had ``on_intervals`` consecutive intervals at
``rate_on_bps`` (an episode starts so, ``elephants.detect``). The table keeps every raw
record of every such tuple, so ``elephants.find`` over it is the very computation of the
raw path: the same episodes. A report with stricter thresholds (a larger size, a higher
entry rate, more entry intervals, the same interval) reads a superset of what it needs;
the exit rate and the minimum duration are free; any other report scans raw flows.

The size bar is a quarter total, so a table per day or per batch could not be exact: a
tuple's bytes split over days and batches, and whether a day's small share belongs to an
elephant is known only once the quarter is summed. Hence one table per quarter
(partition ``rollup=elephants_1q/day=<first day>``), rebuilt by ``flows rollup --compact``
from the quarter's raw flows. In bounded memory: a tuple over the bar moved at least
``min_bytes / k`` in one of the quarter's ``k`` months (pigeonhole), so each month is
grouped alone (64-bit tuple hashes, as ``stats.elephant_flows``) and only the hashes past
that lower bar are summed over the quarter and cut into intervals (``stats.spread_sql``).
Hash collisions and the slack on each bar only add tuples: a superset, never a miss; the
report applies its thresholds to each exact tuple.

Freshness: every row carries the quarter's record count when derived and the thresholds
applied (one marker row when no tuple passed). The report uses the table only when its
partition holds one file (a derivation writes one, then deletes the old), the count equals
the quarter's records now (raw footers, or ``5m`` counts for days whose raw flows
retention removed) and its thresholds are no looser than the table's; else it scans raw flows, or,
when raw days of the quarter are gone, fails rather than miss their elephants. So raw
flows must outlive their quarter's compaction (``flows gc --keep raw=...``).
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import numpy as np
import pyarrow as pa

from . import lake as lk
from .elephants import Thresholds, hot_keys
from .scan import Files, _flows_view, days_of, months_of, raw_counts
from .schema import FLOW_SCHEMA
from .stats import RECORD_BITS, TUPLE_HASH, Quarter, _ts, arrow, spread_sql
from .store import FlowStore, duckdb_connect

LEVEL = "elephants_1q"  # retention ages it by whole quarter (``_1q``)
META = (("t_ms", pa.int64()), ("quarter_flows", pa.int64()), ("min_bits", pa.float64()),
        ("interval_s", pa.int64()), ("rate_on_bps", pa.float64()), ("on_intervals", pa.int64()))
SCHEMA = pa.schema([pa.field(n, t) for n, t in META] +
                   [pa.field(f.name, f.type) for f in FLOW_SCHEMA])  # times nullable: the marker row
SLACK = 1e-12  # sums in another order round apart: each bar a hair low (a superset)


def _day(d: datetime) -> str:
    return d.strftime("%Y-%m-%d")


def derive(store: FlowStore, quarter: Quarter, th: Thresholds, files=None) -> dict:
    """Write the table of ``quarter`` from its raw flows, replacing the older one (unless
    that one is fresh: {"fresh": True}). -> {"records", "tuples": kept, "tuples_month_bar": hashes past the monthly bar,
    "tuples_size_bar": past the quarter's} (``skipped``: why nothing was written, e.g.
    raw days already gone)."""
    fl = files if files is not None and files.store is store else Files(store)
    qdays = days_of(quarter.start, quarter.end)
    raw_days = set(fl.days(lk.RAW))
    days = [d for d in qdays if d in raw_days]
    gone = [d for d in qdays if d not in raw_days and fl.entries("5m", [d])]
    if gone:
        return {"skipped": f"raw flows of {len(gone)} day(s) are gone ({gone[0]}...)"}
    if not days:
        return {"skipped": "no raw flows"}
    total = sum(raw_counts(store, days, fl).values())
    if not _stale(fl, quarter, th, total):
        return {"fresh": True}
    months = [[d for d in m if d in raw_days] for m in months_of(days).values()]
    w = (f"time_start >= TIMESTAMPTZ '{_ts(quarter.start)}' AND "
         f"time_start < TIMESTAMPTZ '{_ts(quarter.end)}'")
    min_bits = th.min_bytes * 8
    con = duckdb_connect()
    con.execute("SET enable_progress_bar = false")
    passed = []
    for mdays in months:  # pigeonhole: a candidate moved min_bits / k in one of k months
        _flows_view(con, fl, mdays)
        passed.append(arrow(con, f"""SELECT {TUPLE_HASH} AS h FROM flows WHERE {w} GROUP BY ALL
                                     HAVING sum({RECORD_BITS}) >= {min_bits / len(months) * (1 - SLACK)}"""))
    con.register("passed", pa.concat_tables(passed))
    _flows_view(con, fl, days)
    cols = ", ".join(FLOW_SCHEMA.names)
    con.execute(f"""
        CREATE TEMP TABLE cand AS
        WITH c AS (SELECT {TUPLE_HASH} AS h, * FROM flows
                   WHERE {w} AND {TUPLE_HASH} IN (SELECT DISTINCT h FROM passed)),
             k AS (SELECT h FROM c GROUP BY h HAVING sum({RECORD_BITS}) >= {min_bits * (1 - SLACK)})
        SELECT h, {cols} FROM c WHERE h IN (SELECT h FROM k)""")
    iv = con.execute(spread_sql(f"SELECT h AS k, time_start AS ts, time_end AS te, {RECORD_BITS} AS bits FROM cand",
                                th.interval_s)).fetchnumpy()
    hot = hot_keys(iv["k"], iv["i"], iv["bits"], th, slack=SLACK)
    con.register("hot", pa.table({"h": pa.array(hot, pa.uint64())}))
    qms = int(quarter.start.timestamp() * 1000)
    meta = (f"{qms}::BIGINT AS t_ms, {total}::BIGINT AS quarter_flows, {min_bits}::DOUBLE AS min_bits, "
            f"{th.interval_s}::BIGINT AS interval_s, {th.rate_on_bps}::DOUBLE AS rate_on_bps, "
            f"{th.on_intervals}::BIGINT AS on_intervals")
    t = arrow(con, f"""
        SELECT {meta}, {cols} FROM cand WHERE h IN (SELECT h FROM hot)
        UNION ALL SELECT {meta}, {", ".join(f"NULL AS {c}" for c in FLOW_SCHEMA.names)}
        ORDER BY time_start NULLS FIRST""").cast(SCHEMA)
    old = [e.path for e in fl.entries(LEVEL, [_day(quarter.start)])]
    store.write_rollups({LEVEL: t})
    lk.delete_files(store.lake, old)
    return {"records": t.num_rows - 1, "tuples": len(hot), "tuples_month_bar": sum(p.num_rows for p in passed),
            "tuples_size_bar": len(np.unique(iv["k"]))}


def _meta(con: duckdb.DuckDBPyConnection, fl: Files, quarter: Quarter) -> tuple[int, list[tuple]]:
    """(files in the quarter's partition, the distinct (quarter_flows, min_bits, interval_s,
    rate_on_bps, on_intervals) of their rows) as view ``_el_1q``: a table of ours has one
    file and one such row; anything else is not used (``load``) and is derived again."""
    n = fl.view(con, "_el_1q", LEVEL, [_day(quarter.start)], SCHEMA)
    if n == 0:
        return 0, []
    return n, con.execute("SELECT DISTINCT quarter_flows, min_bits, interval_s, rate_on_bps, on_intervals "
                          "FROM _el_1q").fetchall()


def _stale(fl: Files, quarter: Quarter, th: Thresholds, total: int) -> bool:
    """Whether the quarter's table is missing, or was derived from another number of
    records or with other thresholds (a fresh one is not derived again: compaction runs
    daily, and a quarter of raw flows costs a minute per 100 M records)."""
    n, meta = _meta(duckdb_connect(), fl, quarter)
    return n != 1 or meta != [(total, th.min_bytes * 8, th.interval_s, th.rate_on_bps, th.on_intervals)]


def derive_quarters(store: FlowStore, days: list[str], th: Thresholds | None = None,
                    files: Files | None = None) -> dict:
    """``derive`` for each quarter that ``days`` touch (compaction, backfill), for the
    report's default thresholds unless told; a quarter whose table is fresh is left. One
    listing for all of them (``files``, or a new one): each quarter writes and deletes in
    its own partition only."""
    th = th or Thresholds()
    fl = files if files is not None and files.store is store else Files(store)
    out = {"quarters": 0, "records": 0, "fresh": 0, "skipped": {}}
    for q in sorted({Quarter.of(date.fromisoformat(d)) for d in days}, key=str):
        r = derive(store, q, th, fl)
        if "skipped" in r:
            out["skipped"][str(q)] = r["skipped"]
            continue
        if r.get("fresh"):
            out["fresh"] += 1
            continue
        out["quarters"] += 1
        out["records"] += r["records"]
    return out


def load(con: duckdb.DuckDBPyConnection, store: FlowStore, quarter: Quarter, th: Thresholds,
         day_flows: dict[str, int], files=None) -> str:
    """Temp table ``el_flows`` (the raw records of ``quarter``'s candidates) from the
    table, when it is fresh: -> '' then, else why not (and no table)."""
    fl = files if files is not None and files.store is store else Files(store)
    n_files, meta = _meta(con, fl, quarter)
    if not n_files:
        return f"no {LEVEL} table for {quarter} (run: trunkline flows rollup --compact)"
    if n_files > 1:  # each derivation writes one file: a reader between a write and a delete
        return f"{n_files} files in the {LEVEL} partition of {quarter} (a compaction running?)"
    if len(meta) != 1:  # not a file a derivation wrote
        return f"the {LEVEL} table of {quarter} has {len(meta)} derivations' rows in one file"
    n, bar, ivl, rate_on, on = meta[0]
    want = sum(day_flows.get(d, 0) for d in days_of(quarter.start, quarter.end))
    if n != want:
        return f"the {LEVEL} table of {quarter} was derived from {n} records, the quarter has {want}"
    looser = [f"{name} {mine:g} (the table's {theirs:g})" for name, mine, theirs, ok in (
        ("min_bytes", th.min_bytes, bar / 8, th.min_bytes * 8 >= bar * (1 - SLACK)),
        ("interval_s", th.interval_s, ivl, th.interval_s == ivl),
        ("rate_on_bps", th.rate_on_bps, rate_on, th.rate_on_bps >= rate_on * (1 - SLACK)),
        ("on_intervals", th.on_intervals, on, th.on_intervals >= on)) if not ok]
    if looser:
        return f"the {LEVEL} table of {quarter} holds the tuples of other thresholds, the report asks " \
               f"for {', '.join(looser)}"
    cols = ", ".join(FLOW_SCHEMA.names)
    con.execute(f"CREATE OR REPLACE TEMP TABLE el_flows AS SELECT {cols} FROM _el_1q "
                f"WHERE time_start IS NOT NULL")
    return ""

