"""Where the report's tables come from: the store's rollup files, or a scan of raw flows.

``load`` puts ``rollup_5m``, ``rollup_peers`` and ``rollup_mover`` for a time window into a
DuckDB connection, as views (over the Parquet files, or the Arrow tables of a raw scan). From rollups when they cover the window: every UTC day of it has as many
flows in its 5-minute and peer rollups as raw records in its day partition (a writer that
crashed between the two, or a store written before rollups, shows up here), and every row
was made with the report's enrichment. Otherwise from raw flows, on this process or over
Ray tasks (``scan_ray``): the same rows, so the same report. ``backfill`` rewrites a day's
rollups from its raw flows (``flows rollup``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa

from . import rollup
from .enrich import Enricher
from .stats import arrow
from .store import DAY_MS, FlowStore, duckdb_connect

SOURCES = ("auto", "rollups", "raw")


@dataclass
class Loaded:
    """How the report's tables were obtained (report.json's ``source``)."""

    kind: str  # rollups | raw | raw-ray
    reason: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """What report.json keeps (not the seconds: the same data gives the same file)."""
        return {"kind": self.kind, "reason": self.reason, "rows": self.rows}


def days_of(start: datetime, end: datetime) -> list[str]:
    """The UTC days (YYYY-MM-DD) that [start, end) touches."""
    out, d = [], start.replace(hour=0, minute=0, second=0, microsecond=0)
    while d < end:
        out.append(d.strftime("%Y-%m-%d"))
        d += timedelta(days=1)
    return out


def _ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def _list(files) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def raw_counts(store: FlowStore, days: list[str]) -> dict[str, int]:
    """Records per day partition, from the Parquet footers (no data read)."""
    files = [f for d in days for f in sorted((store.root / f"day={d}").glob("*.parquet"))]
    if not files:
        return {}
    con = duckdb_connect()
    rows = con.execute(f"SELECT file_name, num_rows FROM parquet_file_metadata({_list(files)})").fetchall()
    out: dict[str, int] = {}
    for name, n in rows:
        day = name.rsplit("day=", 1)[1][:10]
        out[day] = out.get(day, 0) + int(n)
    return out


def _rollup_files(store: FlowStore, level: str, days: list[str]) -> list:
    return [f for d in days for f in sorted((store.rollup_dir(level) / f"day={d}").glob("*.parquet"))]


def months_of(days: list[str]) -> dict[str, list[str]]:
    """{YYYY-MM: every day of that month} for the months ``days`` touch."""
    out: dict[str, list[str]] = {}
    for m in sorted({d[:7] for d in days}):
        first = datetime.strptime(m, "%Y-%m").replace(tzinfo=UTC)
        nxt = (first + timedelta(days=32)).replace(day=1)
        out[m] = days_of(first, nxt)
    return out


@dataclass
class Plan:
    """What the report reads: ``why`` is '' when the rollups cover the window; ``monthly``
    the months read from ``peers_1mo`` (the others: their daily ``peers`` rows)."""

    why: str
    monthly: list[str] = field(default_factory=list)
    raw_gone: list[str] = field(default_factory=list)  # days with rollups and no raw partition


def plan(store: FlowStore, enricher: Enricher, start: datetime, end: datetime) -> Plan:
    """Whether the rollups of [start, end) hold every flow of it, made with this
    enrichment, and which months the monthly peer table covers.

    A day's flows are its raw records (Parquet footers), or, once retention removed the
    raw partition, its ``5m`` rows (written last by every writer, so a batch whose 5-minute
    rows exist has its other tables). ``5m`` must hold them per day; peers per month from
    ``peers_1mo`` when the window has the whole month and the table holds its flows, else
    per day from ``peers``."""
    if not store.is_local:  # the rollup reader globs local files: an S3 lake scans raw
        return Plan("rollups are read from local stores only (this store is on S3)")
    days = days_of(start, end)
    months = months_of(days)
    raw = raw_counts(store, [d for ds in months.values() for d in ds])
    want = rollup.enrich_id(enricher)
    con = duckdb_connect()

    def per_day(level: str, ds: list[str]) -> dict[str, tuple[int, list]]:
        files = _rollup_files(store, level, ds)
        if not files:
            return {}
        return {d: (int(n), ids) for d, n, ids in con.execute(f"""
            SELECT strftime(epoch_ms(t_ms // {DAY_MS} * {DAY_MS}), '%Y-%m-%d'), sum(flows),
                   list(DISTINCT enrich_id)
            FROM read_parquet({_list(files)}) GROUP BY 1""").fetchall()}

    t5 = per_day("5m", days)
    if not t5:
        return Plan("no 5m rollups (run: trunkline flows rollup --store ...)" if raw else
                    "no flows in the window")
    ref: dict[str, int] = {}
    gone = [d for d in days if d not in raw and t5.get(d, (0,))[0]]
    for d in days:
        n5, ids = t5.get(d, (0, []))
        ref[d] = raw.get(d, n5)
        if n5 != ref[d]:
            return Plan(f"5m rollups of {d} hold {n5} flows, the raw partition {ref[d]}", raw_gone=gone)
        if n5 and ids != [want]:
            return Plan(f"5m rollups of {d} were made with another enrichment ({ids}, now {want})",
                        raw_gone=gone)
    monthly = []
    daily_days = []
    for m, mdays in months.items():
        whole = all(d in ref for d in mdays)
        if whole:
            got = per_day(rollup.MONTHLY, [mdays[0]])
            n, ids = got.get(mdays[0], (0, []))
            if n and n == sum(ref[d] for d in mdays) and ids == [want]:
                monthly.append(m)
                continue
        daily_days += [d for d in mdays if d in ref]
    tp = per_day("peers", daily_days)
    for d in daily_days:
        n, ids = tp.get(d, (0, []))
        if n != ref[d]:
            return Plan(f"peers rollups of {d} hold {n} flows, the raw partition {ref[d]}", raw_gone=gone)
        if n and ids != [want]:
            return Plan(f"peers rollups of {d} were made with another enrichment ({ids}, now {want})",
                        raw_gone=gone)
    return Plan("", monthly, gone)


def coverage(store: FlowStore, enricher: Enricher, start: datetime, end: datetime) -> str:
    """'' when the rollups of [start, end) hold every flow of it, made with this
    enrichment; else why not (the first reason found)."""
    return plan(store, enricher, start, end).why


def _source(con: duckdb.DuckDBPyConnection, level: str, files: list) -> str:
    if files:
        return f"read_parquet({_list(files)}, union_by_name = true)"
    con.register(f"_empty_{level}", rollup.empty(level))
    return f"_empty_{level}"


def _views(con: duckdb.DuckDBPyConnection, store: FlowStore, days: list[str], lo: int,
           hi: int, monthly: list[str]) -> dict[str, int]:
    """Views ``rollup_LEVEL`` over the rollup files of [lo, hi) ms: the report's tables
    (``stats.report_tables``) read the Parquet files once, with no copy in between (an
    Arrow table, then a temp table, then the report's table cost more than every figure
    together, ``bench/RESULTS.md``). ``rollup_peers`` has the monthly shape: ``peers_1mo``
    for the ``monthly`` months, the daily rows of the others grouped by month. -> rows
    per level in the window."""
    rows = {}
    for level in rollup.INGEST_TABLES:
        cols = ", ".join(rollup.empty(level).column_names)
        if level == "peers":
            months = months_of(days)
            mfiles = _rollup_files(store, rollup.MONTHLY, [months[m][0] for m in monthly])
            dfiles = _rollup_files(store, "peers", [d for d in days if d[:7] not in monthly])
            mcols = ", ".join(rollup.empty(rollup.MONTHLY).column_names)
            daily = f"(SELECT {cols} FROM {_source(con, level, dfiles)} WHERE t_ms >= {lo} AND t_ms < {hi})"
            src = (f"SELECT {mcols} FROM {_source(con, rollup.MONTHLY, mfiles)} "
                   f"WHERE t_ms >= {lo} AND t_ms < {hi} UNION ALL {rollup.month_sql(daily)}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW rollup_peers AS {src}")
        else:
            files = _rollup_files(store, level, days)
            con.execute(f"CREATE OR REPLACE TEMP VIEW rollup_{level} AS SELECT {cols} FROM "
                        f"{_source(con, level, files)} WHERE t_ms >= {lo} AND t_ms < {hi}")
        rows[level] = int(con.execute(f"SELECT count(*) FROM rollup_{level}").fetchall()[0][0])
    return rows


def load(con: duckdb.DuckDBPyConnection, store: FlowStore, enricher: Enricher, start: datetime,
         end: datetime, *, source: str = "auto",
         raw_scan: Callable[[], dict[str, pa.Table]] | None = None) -> Loaded:
    """Tables ``rollup_5m``, ``rollup_peers``, ``rollup_mover`` of [start, end) in ``con``.

    ``source``: ``auto`` (rollups when they cover the window, else raw), ``rollups`` (fail
    when they do not), ``raw`` (scan raw flows: on this process, or with ``raw_scan``, e.g.
    ``scan_ray.rollups_on_ray`` for Ray tasks)."""
    import time

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    t0 = time.perf_counter()
    why = ""
    if source != "raw":
        p = plan(store, enricher, start, end)
        why = p.why
        if not why:
            info = Loaded("rollups", rows=_views(con, store, days_of(start, end), _ms(start),
                                                 _ms(end), p.monthly))
            info.seconds = time.perf_counter() - t0
            return info
        if source == "rollups":
            raise ValueError(f"the rollups do not cover the report's window: {why}")
        if p.raw_gone:  # a raw scan would miss those days and still look complete
            raise ValueError(f"the rollups do not cover the report's window ({why}) and the raw "
                             f"flows of {len(p.raw_gone)} day(s) with rollups are gone (retention: "
                             f"{p.raw_gone[0]}...), which a raw scan would miss; --source raw scans what is left")
    if raw_scan is not None:
        return _register(con, raw_scan(), Loaded("raw-ray", why or "asked for"), t0)
    if start == _midnight(start) and end == _midnight(end):
        tables = raw_by_day(store, enricher, raw_days(store, start, end))
    else:  # a window that cuts days: one scan of it
        tables = rollup.from_store_window(store.connect(), enricher, start, end)
        tables["peers"] = rollup.derive_month(tables["peers"])
    return _register(con, tables, Loaded("raw", why or "asked for"), t0)


def _midnight(d: datetime) -> datetime:
    return d.replace(hour=0, minute=0, second=0, microsecond=0)


class MonthlyPeers:
    """Daily ``peers`` tables in (a pass's days each), one ``peers_1mo`` table out, merged
    as they come (every ``every`` tables), so a raw scan of a quarter holds a few passes of
    daily peer rows, not the quarter's: a day's rows are many, a month's far fewer."""

    def __init__(self, every: int = 7):
        self.every, self.pending, self.merged = every, [], rollup.empty(rollup.MONTHLY)

    def add(self, peers: pa.Table) -> None:
        self.pending.append(rollup.derive_month(peers))
        if len(self.pending) >= self.every:
            self.merged = rollup.merge(rollup.MONTHLY, [self.merged, *self.pending])
            self.pending = []

    def table(self) -> pa.Table:
        return rollup.merge(rollup.MONTHLY, [self.merged, *self.pending])


RECORDS_PER_SCAN = 5_000_000  # raw records per pass: memory ~ a pass; one enrichment per pass


def passes(counts: dict[str, int], days: list[str], per_scan: int = RECORDS_PER_SCAN) -> list[list[str]]:
    """``days`` in order, cut into runs of at most ``per_scan`` records (a day at least)."""
    out: list[list[str]] = [[]]
    n = 0
    for d in days:
        if out[-1] and n + counts.get(d, 0) > per_scan:
            out.append([])
            n = 0
        out[-1].append(d)
        n += counts.get(d, 0)
    return out if out[-1] else []


def raw_by_day(store: FlowStore, enricher: Enricher, days: list[str],
               per_scan: int = RECORDS_PER_SCAN) -> dict[str, pa.Table]:
    """The report's tables from the raw flows of ``days``, in passes of at most
    ``per_scan`` records (memory: a pass's flows and the months' peers, whatever the
    window; day by day cost 3.7x the CPU of one pass, bench/RESULTS.md): ``5m`` and
    ``mover`` rows of different days never share a key, so they concatenate; peers merge
    by month."""
    parts: dict[str, list[pa.Table]] = {"5m": [], "mover": []}
    peers = MonthlyPeers(every=2)
    for group in passes(raw_counts(store, days), days, per_scan):
        t = days_tables(store, enricher, group)
        for lv in parts:
            parts[lv].append(t[lv])
        peers.add(t["peers"])
    out = {lv: pa.concat_tables([rollup.empty(lv), *ts], promote_options="default") for lv, ts in parts.items()}
    out["peers"] = peers.table()
    return out


def _register(con, tables: dict[str, pa.Table], info: Loaded, t0: float) -> Loaded:
    import time

    for level, t in tables.items():  # views on the Arrow tables (the connection keeps them)
        con.register(f"rollup_{level}", t)  # peers: already by month
        info.rows[level] = t.num_rows
    info.seconds = time.perf_counter() - t0
    return info


def day_tables(store: FlowStore, enricher: Enricher, day: str) -> dict[str, pa.Table]:
    """The rollup tables of one raw day partition (one pass, one enrichment)."""
    return days_tables(store, enricher, [day])


def days_tables(store: FlowStore, enricher: Enricher, days: list[str]) -> dict[str, pa.Table]:
    """The rollup tables of some raw day partitions, in one pass with one enrichment of
    their distinct addresses (enriching day by day cost 3.7x the CPU, bench/RESULTS.md)."""
    files = [f for d in days for f in sorted((store.root / f"day={d}").glob("*.parquet"))]
    if not files:
        return {lv: rollup.empty(lv) for lv in rollup.INGEST_TABLES}
    start = datetime.strptime(min(days), "%Y-%m-%d").replace(tzinfo=UTC)
    end = datetime.strptime(max(days), "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
    con = duckdb_connect()
    con.execute(f"CREATE VIEW flows AS SELECT * EXCLUDE (day) FROM read_parquet({_list(files)}, "
                f"hive_partitioning = true, union_by_name = true)")
    return rollup.from_store_window(con, enricher, start, end)


def replace_day(store: FlowStore, day: str, tables: dict[str, pa.Table]) -> None:
    """Write a day's rollups (all levels, derived 1h and 1d included), then remove the
    files they replace. In between a reader sees too many flows for the day, so the
    report scans raw flows rather than count a flow twice."""
    tables = dict(tables)
    tables["1h"] = rollup.derive(tables["5m"], "1h")
    tables["1d"] = rollup.derive(tables["5m"], "1d")
    old = [f for lv in rollup.LEVELS for f in (store.rollup_dir(lv) / f"day={day}").glob("*.parquet")]
    # the day's month table no longer matches its days: the report reads the daily rows
    # until ``compact`` derives it again
    old += sorted((store.rollup_dir(rollup.MONTHLY) / f"day={day[:7]}-01").glob("*.parquet"))
    # the 5-minute table last: coverage is judged on it and on peers
    order = ["mover", "1h", "1d", "peers", "5m"]
    store.write_rollups({lv: tables[lv] for lv in order if lv in tables})
    for f in old:
        f.unlink(missing_ok=True)


def raw_days(store: FlowStore, start: datetime | None = None, end: datetime | None = None) -> list[str]:
    """The day partitions of the store (within [start, end) when given)."""
    days = sorted({p.parent.name[4:] for p in store.files()})
    if start is not None and end is not None:
        want = set(days_of(start, end))
        days = [d for d in days if d in want]
    return days


def compact(store: FlowStore, days: list[str]) -> dict[str, int]:
    """Merge each day's rollup files (one per writer batch) into one per level, without
    reading raw flows; files that appear meanwhile are left as they are. Files before ->
    after, summed over levels."""
    n = {"before": 0, "after": 0}
    for d in days:
        for lv in rollup.LEVELS:
            if lv == rollup.MONTHLY:
                continue
            files = sorted((store.rollup_dir(lv) / f"day={d}").glob("*.parquet"))
            n["before"] += len(files)
            if len(files) < 2:
                n["after"] += len(files)
                continue
            cols = ", ".join(rollup.empty(lv).column_names)
            t = arrow(duckdb_connect(), f"SELECT {cols} FROM read_parquet({_list(files)}, union_by_name = true)")
            store.write_rollups({lv: rollup.merge(lv, [t])})
            n["after"] += 1
            for f in files:
                f.unlink(missing_ok=True)
    n["months"] = derive_months(store, days)["months"]
    return n


def derive_months(store: FlowStore, days: list[str]) -> dict[str, int]:
    """Write the ``peers_1mo`` table of each month that ``days`` touch from all its daily
    ``peers`` files, replacing the month's older one; -> months written. A month still
    being written gets a table that holds fewer flows than its days: the report sees the
    difference and reads the daily rows (``plan``), until the next compaction. -> months
    and rows written."""
    written = {"months": 0, "rows": 0}
    cols = ", ".join(rollup.empty("peers").column_names)
    for mdays in months_of(days).values():
        files = _rollup_files(store, "peers", mdays)
        if not files:
            continue
        old = sorted((store.rollup_dir(rollup.MONTHLY) / f"day={mdays[0]}").glob("*.parquet"))
        src = f"(SELECT {cols} FROM read_parquet({_list(files)}, union_by_name = true))"
        t = arrow(duckdb_connect(), rollup.month_sql(src) + " ORDER BY ALL")
        store.write_rollups({rollup.MONTHLY: t})
        written["months"] += 1
        written["rows"] += t.num_rows
        for f in old:
            f.unlink(missing_ok=True)
    return written


def backfill(store: FlowStore, enricher: Enricher, days: list[str]) -> dict[str, int]:
    """Rebuild the rollups of ``days`` from raw flows on this process; rows per level."""
    rows: dict[str, int] = {}
    for d in days:
        t = day_tables(store, enricher, d)
        replace_day(store, d, t)
        for lv, x in t.items():
            rows[lv] = rows.get(lv, 0) + x.num_rows
    rows[rollup.MONTHLY] = derive_months(store, days)["rows"]
    return rows
