"""Where the report's tables come from: the store's rollup files, or a scan of raw flows.

``load`` puts ``rollup_5m``, ``rollup_peers`` and ``rollup_mover`` for a time window into a
DuckDB connection, as views (over the Parquet files, or the Arrow tables of a raw scan), on
a local store or an ``s3://`` lake alike: the files come from one listing of the store per
call (``Files``; an S3 LIST is slow and billed), are read through ``lake.register_view``
(DuckDB's ``read_parquet`` on a local store, an Arrow dataset on S3) and deleted through
``lake.delete_files``. From rollups when they cover the window: every UTC day of it has as many
flows in its 5-minute and peer rollups as raw records in its day partition (a writer that
crashed between the two, or a store written before rollups, shows up here), and every row
was made with the report's enrichment. Otherwise from raw flows, on this process or over
Ray tasks (``scan_ray``): the same rows, so the same report. ``maintain.backfill`` rewrites a day's
rollups from its raw flows (``flows rollup``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from . import lake as lk
from . import rollup
from .enrich import Enricher
from .schema import FLOW_SCHEMA
from .store import DAY_MS, FlowStore, duckdb_connect

SOURCES = ("auto", "rollups", "raw")


@dataclass
class Loaded:
    """How the report's tables were obtained (report.json's ``source``)."""

    kind: str  # rollups | raw | raw-ray
    reason: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # from the plan, for the elephants' table (not in report.json)
    day_flows: dict[str, int] = field(default_factory=dict, repr=False)  # records per day
    raw_gone: list[str] = field(default_factory=list, repr=False)
    files: Files | None = field(default=None, repr=False)

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


class Files:
    """The store's data files by level and UTC day, from one listing: ``plan``, ``load``,
    ``backfill``, ``compact``... list the store once and hand this around instead of
    looking per day (an S3 LIST is slow and billed). Footers are read once per file, on S3
    only (concurrently, ``lake.open_fragments``); a local store's files go to DuckDB's
    ``read_parquet`` as paths, which reads them itself."""

    def __init__(self, store: FlowStore, listing: lk.Listing | None = None):
        self.store, self.lake = store, store.lake
        self.listing = store.listing() if listing is None else listing
        self._by: dict[tuple[str, str], list[lk.Entry]] = {}
        for e in self.listing.entries:
            if e.level and e.day is not None:
                self._by.setdefault((e.level, e.day.isoformat()), []).append(e)
        for v in self._by.values():
            v.sort(key=lambda e: e.path)
        self._frags: dict[str, object] = {}  # path -> fragment (None: skipped)
        self.skipped: dict[str, int] = {}
        # what the command warns about (``flows_common.warn_skipped``): keys of the listing
        # that are not ours, then files that could not be read, as they are met
        store.skipped = self.listing.skipped

    def entries(self, level: str, days: list[str]) -> list[lk.Entry]:
        """The files of ``level`` in the partitions of ``days`` (in order, then by path)."""
        return [e for d in days for e in self._by.get((level, d), [])]

    def days(self, level: str = lk.RAW) -> list[str]:
        return sorted(d for lv, d in self._by if lv == level)

    def fragments(self, entries: list[lk.Entry], schema: pa.Schema | None) -> list:
        """Fragments of the readable files (on S3 a file that is not Parquet, or not of
        ``schema``'s types, is skipped and counted; a local one fails the read as before)."""
        if self.lake.local:
            fmt, fs = ds.ParquetFileFormat(), self.lake.fs
            return [fmt.make_fragment(e.path, filesystem=fs) for e in entries]  # no read
        todo = [e for e in entries if e.path not in self._frags]
        for e in todo:  # open_fragments keeps the order of the readable ones
            self._frags[e.path] = None
        frags, bad = lk.open_fragments(self.lake, todo, schema)
        for f in frags:
            self._frags[f.path] = f
        for k, n in bad.items():
            self.skipped[k] = self.skipped.get(k, 0) + n
        self.store.skipped = self.store.skipped + bad
        return [f for e in entries if (f := self._frags[e.path]) is not None]

    def view(self, con: duckdb.DuckDBPyConnection, name: str, level: str, days: list[str],
             schema: pa.Schema | None = None) -> int:
        """View ``name`` over the files of ``level`` in ``days`` (empty: ``schema``'s
        columns, no rows); -> how many files."""
        frags = self.fragments(self.entries(level, days), schema)
        lk.register_view(con, name, self.lake, frags, schema)
        return len(frags)


def _files(store: FlowStore, files: Files | None) -> Files:
    return files if files is not None and files.store is store else Files(store)


def raw_counts(store: FlowStore, days: list[str], files: Files | None = None) -> dict[str, int]:
    """Records per day partition, from the Parquet footers (no data read)."""
    fl = _files(store, files)
    out: dict[str, int] = {}
    if fl.lake.local:  # DuckDB reads a local store's footers fastest
        paths = [e.path for e in fl.entries(lk.RAW, days)]
        if not paths:
            return {}
        con = duckdb_connect()
        rows = con.execute(f"SELECT file_name, num_rows FROM parquet_file_metadata({_list(paths)})").fetchall()
        for name, n in rows:
            day = name.rsplit("day=", 1)[1][:10]
            out[day] = out.get(day, 0) + int(n)
        return out
    for d in days:
        frags = fl.fragments(fl.entries(lk.RAW, [d]), FLOW_SCHEMA)
        if frags:
            out[d] = sum(f.metadata.num_rows for f in frags)
    return out


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
    files: Files | None = field(default=None, repr=False, compare=False)  # the listing it judged
    day_flows: dict[str, int] = field(default_factory=dict)  # records per day (raw, else 5m)


def plan(store: FlowStore, enricher: Enricher, start: datetime, end: datetime,
         files: Files | None = None) -> Plan:
    """Whether the rollups of [start, end) hold every flow of it, made with this
    enrichment, and which months the monthly peer table covers.

    A day's flows are its raw records (Parquet footers), or, once retention removed the
    raw partition, its ``5m`` rows (written last by every writer, so a batch whose 5-minute
    rows exist has its other tables). ``5m`` must hold them per day; peers per month from
    ``peers_1mo`` when the window has the whole month and the table holds its flows, else
    per day from ``peers``. One listing of the store (``files``, or a new one): the
    returned plan keeps it for ``load``."""
    fl = _files(store, files)
    days = days_of(start, end)
    months = months_of(days)
    raw = raw_counts(store, [d for mds in months.values() for d in mds], fl)
    want = rollup.enrich_id(enricher)
    con = duckdb_connect()

    def per_day(level: str, ds_: list[str]) -> dict[str, tuple[int, list]]:
        name = f"_plan_{level}"
        if not fl.view(con, name, level, ds_, rollup.empty(level).schema):
            return {}
        return {d: (int(n), ids) for d, n, ids in con.execute(f"""
            SELECT strftime(epoch_ms(t_ms // {DAY_MS} * {DAY_MS}), '%Y-%m-%d'), sum(flows),
                   list(DISTINCT enrich_id)
            FROM {name} GROUP BY 1""").fetchall()}

    t5 = per_day("5m", days)
    if not t5:
        return Plan("no 5m rollups (run: trunkline flows rollup --store ...)" if raw else
                    "no flows in the window", files=fl)
    ref: dict[str, int] = {}
    gone = [d for d in days if d not in raw and t5.get(d, (0,))[0]]
    for d in days:
        n5, ids = t5.get(d, (0, []))
        ref[d] = raw.get(d, n5)
        if n5 != ref[d]:
            return Plan(f"5m rollups of {d} hold {n5} flows, the raw partition {ref[d]}", raw_gone=gone, files=fl)
        if n5 and ids != [want]:
            return Plan(f"5m rollups of {d} were made with another enrichment ({ids}, now {want})",
                        raw_gone=gone, files=fl)
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
            return Plan(f"peers rollups of {d} hold {n} flows, the raw partition {ref[d]}", raw_gone=gone, files=fl)
        if n and ids != [want]:
            return Plan(f"peers rollups of {d} were made with another enrichment ({ids}, now {want})",
                        raw_gone=gone, files=fl)
    return Plan("", monthly, gone, fl, ref)


def coverage(store: FlowStore, enricher: Enricher, start: datetime, end: datetime) -> str:
    """'' when the rollups of [start, end) hold every flow of it, made with this
    enrichment; else why not (the first reason found)."""
    return plan(store, enricher, start, end).why


def _source(con: duckdb.DuckDBPyConnection, fl: Files, level: str, days: list[str]) -> str:
    """A view over the rollup files of ``level`` in ``days`` (empty: the level's columns)."""
    name = f"_src_{level}"
    fl.view(con, name, level, days, rollup.empty(level).schema)
    return name


def _views(con: duckdb.DuckDBPyConnection, store: FlowStore, days: list[str], lo: int,
           hi: int, monthly: list[str], files: Files | None = None) -> dict[str, int]:
    """Views ``rollup_LEVEL`` over the rollup files of [lo, hi) ms: the report's tables
    (``stats.report_tables``) read the Parquet files once, with no copy in between (an
    Arrow table, then a temp table, then the report's table cost more than every figure
    together, ``bench/RESULTS.md``). ``rollup_peers`` has the monthly shape: ``peers_1mo``
    for the ``monthly`` months, the daily rows of the others grouped by month. -> rows
    per level in the window."""
    fl = _files(store, files)
    rows = {}
    for level in rollup.INGEST_TABLES:
        cols = ", ".join(rollup.empty(level).column_names)
        if level == "peers":
            months = months_of(days)
            mdays = [months[m][0] for m in monthly]
            ddays = [d for d in days if d[:7] not in monthly]
            mcols = ", ".join(rollup.empty(rollup.MONTHLY).column_names)
            daily = f"(SELECT {cols} FROM {_source(con, fl, level, ddays)} WHERE t_ms >= {lo} AND t_ms < {hi})"
            src = (f"SELECT {mcols} FROM {_source(con, fl, rollup.MONTHLY, mdays)} "
                   f"WHERE t_ms >= {lo} AND t_ms < {hi} UNION ALL {rollup.month_sql(daily)}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW rollup_peers AS {src}")
        else:
            con.execute(f"CREATE OR REPLACE TEMP VIEW rollup_{level} AS SELECT {cols} FROM "
                        f"{_source(con, fl, level, days)} WHERE t_ms >= {lo} AND t_ms < {hi}")
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
    fl: Files | None = None  # one listing of the store for the whole load
    if source != "raw":
        p = plan(store, enricher, start, end)
        why, fl = p.why, p.files
        if not why:
            info = Loaded("rollups", rows=_views(con, store, days_of(start, end), _ms(start),
                                                 _ms(end), p.monthly, fl),
                          day_flows=p.day_flows, raw_gone=p.raw_gone, files=fl)
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
    fl = _files(store, fl)
    if start == _midnight(start) and end == _midnight(end):
        tables = raw_by_day(store, enricher, raw_days(store, start, end, fl), files=fl)
    else:  # a window that cuts days: one scan of it
        scan_con = duckdb_connect()
        _flows_view(scan_con, fl, days_of(start, end))
        tables = rollup.from_store_window(scan_con, enricher, start, end)
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
               per_scan: int = RECORDS_PER_SCAN, files: Files | None = None) -> dict[str, pa.Table]:
    """The report's tables from the raw flows of ``days``, in passes of at most
    ``per_scan`` records (memory: a pass's flows and the months' peers, whatever the
    window; day by day cost 3.7x the CPU of one pass, bench/RESULTS.md): ``5m`` and
    ``mover`` rows of different days never share a key, so they concatenate; peers merge
    by month."""
    parts: dict[str, list[pa.Table]] = {"5m": [], "mover": []}
    peers = MonthlyPeers(every=2)
    fl = _files(store, files)
    for group in passes(raw_counts(store, days, fl), days, per_scan):
        t = days_tables(store, enricher, group, fl)
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


def day_tables(store: FlowStore, enricher: Enricher, day: str,
               files: Files | None = None) -> dict[str, pa.Table]:
    """The rollup tables of one raw day partition (one pass, one enrichment)."""
    return days_tables(store, enricher, [day], files)


def days_tables(store: FlowStore, enricher: Enricher, days: list[str],
                files: Files | None = None) -> dict[str, pa.Table]:
    """The rollup tables of some raw day partitions, in one pass with one enrichment of
    their distinct addresses (enriching day by day cost 3.7x the CPU, bench/RESULTS.md)."""
    con = duckdb_connect()
    if not _flows_view(con, _files(store, files), days):
        return {lv: rollup.empty(lv) for lv in rollup.INGEST_TABLES}
    start = datetime.strptime(min(days), "%Y-%m-%d").replace(tzinfo=UTC)
    end = datetime.strptime(max(days), "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
    return rollup.from_store_window(con, enricher, start, end)


def _flows_view(con: duckdb.DuckDBPyConnection, fl: Files, days: list[str]) -> int:
    """View ``flows`` over the raw files of ``days`` (without the ``day`` column DuckDB
    reads from a local path); -> how many files."""
    n = fl.view(con, "_raw", lk.RAW, days, FLOW_SCHEMA)
    cols = [c[0] for c in con.execute("SELECT * FROM _raw LIMIT 0").description]
    con.execute("CREATE OR REPLACE VIEW flows AS SELECT * " + ("EXCLUDE (day) " if "day" in cols else "")
                + "FROM _raw")
    return n


def replace_day(store: FlowStore, day: str, tables: dict[str, pa.Table],
                files: Files | None = None) -> None:
    """Write a day's rollups (all levels, derived 1h and 1d included), then remove the
    files they replace. In between a reader sees too many flows for the day, so the
    report scans raw flows rather than count a flow twice. The files replaced are those
    of ``files`` (the listing the tables were made from), else of a new listing."""
    fl = _files(store, files)
    tables = dict(tables)
    tables["1h"] = rollup.derive(tables["5m"], "1h")
    tables["1d"] = rollup.derive(tables["5m"], "1d")
    old = [e.path for lv in rollup.LEVELS if lv != rollup.MONTHLY for e in fl.entries(lv, [day])]
    # the day's month table no longer matches its days: the report reads the daily rows
    # until ``compact`` derives it again
    old += [e.path for e in fl.entries(rollup.MONTHLY, [f"{day[:7]}-01"])]
    # the 5-minute table last: coverage is judged on it and on peers
    order = ["mover", "1h", "1d", "peers", "5m"]
    store.write_rollups({lv: tables[lv] for lv in order if lv in tables})
    lk.delete_files(store.lake, old)


def raw_days(store: FlowStore, start: datetime | None = None, end: datetime | None = None,
             files: Files | None = None) -> list[str]:
    """The day partitions of the store (within [start, end) when given)."""
    days = _files(store, files).days(lk.RAW)
    if start is not None and end is not None:
        want = set(days_of(start, end))
        days = [d for d in days if d in want]
    return days
