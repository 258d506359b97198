"""The elephants' own compact table (issue 20): the raw records of a quarter's elephant
candidates, derived once at compaction, so the report finds its elephants without
scanning a quarter of raw flows (on 110 M records that scan was three quarters of the
report's time and all of its peak memory, ``bench/RESULTS.md``).

A candidate is a 5-tuple that moved at least ``min_bytes`` in the quarter (the bar
``stats.elephant_flows`` applies); the table keeps every raw record of every candidate,
so ``elephants.find`` over it is the very computation of the raw path: the same episodes,
and the rate thresholds stay free at report time. The bar is a quarter total, so a table
per day or per batch could not be exact: a tuple's bytes split over days and batches, and
whether a day's small share belongs to a candidate is known only once the quarter is
summed. Hence one table per quarter (partition ``rollup=elephants_1q/day=<first day>``),
rebuilt by ``flows rollup --compact`` from the quarter's raw flows.

Derivation in bounded memory: a candidate moved at least ``min_bytes / k`` in one of the
quarter's ``k`` months (pigeonhole), so each month is grouped alone (64-bit tuple hashes,
as ``stats.elephant_flows``) and only the hashes that pass that lower bar are summed over
the quarter in a second pass. Hash collisions only add bytes: a superset, never a miss;
the report applies the bar to each exact tuple.

Freshness: every row carries the quarter's record count when derived and the bar applied
(one marker row when there is no candidate). The report uses the table only when its
partition holds one file (a derivation writes one, then deletes the old), the count equals
the quarter's records now (raw footers, or ``5m`` counts for days whose raw flows
retention removed) and the bar is at most its own; else it scans raw flows, or,
when raw days of the quarter are gone, fails rather than miss their elephants. So raw
flows must outlive their quarter's compaction (``flows gc --keep raw=...``).
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from . import lake as lk
from .scan import Files, _flows_view, days_of, months_of, raw_counts
from .schema import FLOW_SCHEMA
from .stats import ELEPHANT_KEY, Quarter, _ts, arrow
from .store import FlowStore, duckdb_connect

LEVEL = "elephants_1q"  # retention ages it by whole quarter (``_1q``)
META = (("t_ms", pa.int64()), ("quarter_flows", pa.int64()), ("min_bits", pa.float64()))
SCHEMA = pa.schema([pa.field(n, t) for n, t in META] +
                   [pa.field(f.name, f.type) for f in FLOW_SCHEMA])  # times nullable: the marker row
_HASH = f"hash({', '.join(ELEPHANT_KEY)})"
_BITS = "CAST(bytes AS DOUBLE) * 8 * greatest(coalesce(sampling_rate, 1), 1)"
_SLACK = 1 - 1e-12  # sums in another order round apart: keep the bar a hair low (superset)


def quarter_of(day: str) -> Quarter:
    d = datetime.strptime(day, "%Y-%m-%d")
    return Quarter(d.year, (d.month - 1) // 3 + 1)


def _day(d: datetime) -> str:
    return d.strftime("%Y-%m-%d")


def derive(store: FlowStore, quarter: Quarter, min_bits: float, files=None) -> dict:
    """Write the table of ``quarter`` from its raw flows, replacing the older one.
    -> {"records": candidate records, "tuples_month_bar": hashes past the monthly bar}
    (``skipped``: why nothing was written, e.g. raw days already gone)."""
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
    months = [[d for d in m if d in raw_days] for m in months_of(days).values()]
    w = (f"time_start >= TIMESTAMPTZ '{_ts(quarter.start)}' AND "
         f"time_start < TIMESTAMPTZ '{_ts(quarter.end)}'")
    con = duckdb_connect()
    con.execute("SET enable_progress_bar = false")
    passed = []
    for mdays in months:  # pigeonhole: a candidate moved min_bits / k in one of k months
        _flows_view(con, fl, mdays)
        passed.append(arrow(con, f"""SELECT {_HASH} AS h FROM flows WHERE {w} GROUP BY ALL
                                     HAVING sum({_BITS}) >= {min_bits / len(months) * _SLACK}"""))
    con.register("passed", pa.concat_tables(passed))
    _flows_view(con, fl, days)
    cols = ", ".join(FLOW_SCHEMA.names)
    qms = int(quarter.start.timestamp() * 1000)
    meta = f"{qms}::BIGINT AS t_ms, {total}::BIGINT AS quarter_flows, {min_bits}::DOUBLE AS min_bits"
    t = arrow(con, f"""
        WITH c AS (SELECT {_HASH} AS h, * FROM flows
                   WHERE {w} AND {_HASH} IN (SELECT DISTINCT h FROM passed)),
             k AS (SELECT h FROM c GROUP BY h HAVING sum({_BITS}) >= {min_bits * _SLACK})
        SELECT {meta}, {cols} FROM c WHERE h IN (SELECT h FROM k)
        UNION ALL SELECT {meta}, {", ".join(f"NULL AS {c}" for c in FLOW_SCHEMA.names)}
        ORDER BY time_start NULLS FIRST""")
    t = t.cast(SCHEMA)
    old = [e.path for e in fl.entries(LEVEL, [_day(quarter.start)])]
    store.write_rollups({LEVEL: t})
    lk.delete_files(store.lake, old)
    return {"records": t.num_rows - 1, "tuples_month_bar": sum(p.num_rows for p in passed)}


def derive_quarters(store: FlowStore, days: list[str], min_bits: float | None = None) -> dict:
    """``derive`` for each quarter that ``days`` touch (compaction, backfill)."""
    from .elephants import Thresholds

    bar = Thresholds().min_bytes * 8 if min_bits is None else min_bits
    out = {"quarters": 0, "records": 0, "skipped": {}}
    for q in sorted({quarter_of(d) for d in days}, key=str):
        r = derive(store, q, bar)
        if "skipped" in r:
            out["skipped"][str(q)] = r["skipped"]
            continue
        out["quarters"] += 1
        out["records"] += r["records"]
    return out


def load(con: duckdb.DuckDBPyConnection, store: FlowStore, quarter: Quarter, min_bits: float,
         day_flows: dict[str, int], files=None) -> str:
    """Temp table ``el_flows`` (the raw records of ``quarter``'s candidates) from the
    table, when it is fresh: -> '' then, else why not (and no table)."""
    fl = files if files is not None and files.store is store else Files(store)
    n_files = fl.view(con, "_el_1q", LEVEL, [_day(quarter.start)], SCHEMA)
    if not n_files:
        return f"no {LEVEL} table for {quarter} (run: trunkline flows rollup --compact)"
    if n_files > 1:  # each derivation writes one file: a reader between a write and a delete
        return f"{n_files} files in the {LEVEL} partition of {quarter} (a compaction running?)"
    n, bar = con.execute("SELECT any_value(quarter_flows), any_value(min_bits) FROM _el_1q").fetchall()[0]
    want = sum(day_flows.get(d, 0) for d in days_of(quarter.start, quarter.end))
    if n != want:
        return f"the {LEVEL} table of {quarter} was derived from {n} records, the quarter has {want}"
    if bar > min_bits * (1 + 1e-12):
        return f"the {LEVEL} table of {quarter} holds tuples of at least {bar / 8:.0f} bytes, " \
               f"the report asks for {min_bits / 8:.0f}"
    cols = ", ".join(FLOW_SCHEMA.names)
    con.execute(f"CREATE OR REPLACE TEMP TABLE el_flows AS SELECT {cols} FROM _el_1q "
                f"WHERE time_start IS NOT NULL")
    return ""

