"""The report's metrics, as SQL (DuckDB).

``prepare`` joins the raw flows of a window with the enriched endpoint table once, into a
temporary table ``ef`` (one row per flow: peer, category, metro, bits): the rollups
(``flows.rollup``) are GROUP BYs over it, at ingest or in a raw scan, and so are the
elephants. ``report_tables`` turns the rollup tables into ``r5`` (5-minute traffic), ``rp``
(peers per day) and ``rm`` (trunkline's transfers); every figure of the report is a GROUP BY
over those. Traffic is renormalised: bits = bytes x 8 x sampling_rate (0 or null counts as
1). The peer of a flow is its non-local end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pyarrow as pa

from .enrich import Enricher
from .enrich.taxonomy import CATEGORIES, CLOUDS
from .store import duckdb_connect

RATE_BIN_S = 300  # rates are measured over 5-minute bins (the usual 95th-percentile bin)
HLL_P = 14  # 16384 registers: ~0.8 % standard error, a few KiB per (month, metro, category)
# a raw record's bits: bytes x 8 x sampling rate (0 or missing: 1); every figure, the
# elephants' size bar and the elephant table's sums use this one expression
RECORD_BITS = "CAST(bytes AS DOUBLE) * 8 * greatest(coalesce(sampling_rate, 1), 1)"


@dataclass(frozen=True)
class Quarter:
    year: int
    q: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        m = re.fullmatch(r"(\d{4})-?Q([1-4])", text.strip(), re.IGNORECASE)
        if not m:
            raise ValueError(f"quarter must look like 2025Q4, got {text!r}")
        year = int(m.group(1))
        if not 1970 <= year <= 9998:   # the store's times (store.py); its end a datetime
            raise ValueError(f"quarter {text.strip()!r}: the year must be 1970..9998")
        return cls(year, int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.year}Q{self.q}"

    @classmethod
    def of(cls, d: date) -> Quarter:
        """The quarter a day (or a UTC datetime) falls in."""
        return cls(d.year, (d.month - 1) // 3 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, 3 * self.q - 2, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Quarter:
        return Quarter(self.year + (self.q == 4), self.q % 4 + 1)

    def prev(self) -> Quarter:
        return Quarter(self.year - (self.q == 1), (self.q - 2) % 4 + 1)

    def months(self) -> list[str]:
        return [f"{self.year}-{m:02d}" for m in range(3 * self.q - 2, 3 * self.q + 1)]



def _site_table(sites: dict[str, str] | None, regions: dict[str, str] | None) -> pa.Table:
    """exporter -> site -> region, for the SQL joins (an exporter maps to itself when no
    site names it; a region may name an unmapped exporter's site)."""
    sites, regions = sites or {}, regions or {}
    exporters = sorted(set(sites) | set(regions))
    return pa.table({"exporter": exporters, "site": [sites.get(x, x) for x in exporters],
                     "region": [regions.get(sites.get(x, x), sites.get(x, x)) for x in exporters]},
                    schema=pa.schema([("exporter", pa.string()), ("site", pa.string()),
                                      ("region", pa.string())]))

def arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """A query's result as an Arrow table (DuckDB 1.x and 2.x spell it apart)."""
    rel = con.sql(sql)
    return (getattr(rel, "to_arrow_table", None) or rel.arrow)()


def _ts(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S+00")


def prepare(con: duckdb.DuckDBPyConnection, enricher: Enricher, start: datetime | None,
            end: datetime | None, sites: dict[str, str] | None = None,
            regions: dict[str, str] | None = None, table: str = "flows") -> int:
    """Materialise ``ef`` for the flows of ``table`` with time_start in [start, end) (every
    flow when both are None); returns its row count."""
    con.execute("SET enable_progress_bar = false")
    w = "true" if start is None and end is None else \
        f"time_start >= TIMESTAMPTZ '{_ts(start)}' AND time_start < TIMESTAMPTZ '{_ts(end)}'"
    addrs = arrow(con, (
        f"SELECT src_addr AS a FROM {table} WHERE {w} UNION SELECT dst_addr FROM {table} WHERE {w}"
    )).column(0)
    con.register("endpoints_arrow", enricher.endpoints(addrs))
    # eid: an exact integer id per address, so distinct counts hash integers, not strings
    con.execute("CREATE OR REPLACE TEMP TABLE endpoints AS "
                "SELECT *, CAST(row_number() OVER () AS INTEGER) AS eid FROM endpoints_arrow")
    con.unregister("endpoints_arrow")
    con.register("sites_arrow", _site_table(sites, regions))
    clouds = ", ".join(f"'{c}'" for c in sorted(CLOUDS))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ef AS
        WITH j AS (
            SELECT f.*, s.is_local AS s_local, d.is_local AS d_local,
                   coalesce(s.category, 'unknown') AS s_cat, coalesce(d.category, 'unknown') AS d_cat,
                   -- the peer is the non-local end; the destination when that is ambiguous
                   NOT (coalesce(d.is_local, false) AND NOT coalesce(s.is_local, false)) AS peer_is_dst,
                   s.asn AS s_asn, d.asn AS d_asn, s.org AS s_org, d.org AS d_org,
                   s.metro AS s_metro, d.metro AS d_metro, s.country AS s_cc, d.country AS d_cc,
                   s.subdivision AS s_sub, d.subdivision AS d_sub, s.eid AS s_eid, d.eid AS d_eid
            FROM {table} f
            LEFT JOIN endpoints s ON f.src_addr = s.addr
            LEFT JOIN endpoints d ON f.dst_addr = d.addr
            WHERE {w.replace('time_start', 'f.time_start')}
        )
        SELECT time_start AS ts, time_end AS te, j.exporter,
               coalesce(st.site, j.exporter, '') AS site,
               coalesce(st.region, st.site, j.exporter, '') AS region, flow_type,
               src_addr, dst_addr, src_port, dst_port, proto,
               CASE WHEN peer_is_dst THEN dst_addr ELSE src_addr END AS peer,
               -- the peer's id, for records that carried bytes: a record that carried
               -- nothing does not make its peer "seen"
               CASE WHEN bytes > 0 THEN (CASE WHEN peer_is_dst THEN d_eid ELSE s_eid END) END AS seen_peer,
               CASE WHEN peer_is_dst THEN d_cat ELSE s_cat END AS category,
               coalesce(CASE WHEN peer_is_dst THEN d_metro ELSE s_metro END, 'no metro') AS metro,
               coalesce(CASE WHEN peer_is_dst THEN d_cc ELSE s_cc END, '') AS country,
               coalesce(CASE WHEN peer_is_dst THEN d_sub ELSE s_sub END, '') AS subdivision,
               coalesce(CASE WHEN peer_is_dst THEN d_asn ELSE s_asn END, 0) AS asn,
               coalesce(CASE WHEN peer_is_dst THEN d_org ELSE s_org END, '') AS org,
               CASE WHEN coalesce(s_local, false) AND NOT coalesce(d_local, false) THEN 'out'
                    WHEN coalesce(d_local, false) AND NOT coalesce(s_local, false) THEN 'in'
                    ELSE 'other' END AS direction,
               (s_cat IN ({clouds}) AND d_cat IN ({clouds})) AS c2c,
               {RECORD_BITS} AS bits,
               CAST(packets AS DOUBLE) * greatest(coalesce(sampling_rate, 1), 1) AS pkts,
               -- exact integers for the rollups: their sums do not depend on the order
               CAST(bytes AS HUGEINT) * 8 * greatest(coalesce(sampling_rate, 1), 1) AS bits_x,
               CAST(packets AS HUGEINT) * greatest(coalesce(sampling_rate, 1), 1) AS pkts_x,
               rtt_us, retransmits, delivery_rate_bps,
               -- timezone('UTC', ...) makes the UTC bucketing explicit, beside the session zone
               strftime(timezone('UTC', time_start), '%Y-%m') AS month,
               CAST(epoch_ms(time_start) // 86400000 AS INTEGER) AS day,  -- UTC day number
               -- 5-minute bin within the quarter, integer floor division (a DOUBLE epoch
               -- cast to BIGINT rounds, which moved a bin's last 150 s into the next one)
               CAST((epoch_ms(time_start) - epoch_ms(date_trunc('quarter', timezone('UTC', time_start))))
                    // {RATE_BIN_S * 1000} AS INTEGER) AS bin,
               CAST(year(timezone('UTC', time_start)) AS VARCHAR) || 'Q'
                   || CAST(quarter(timezone('UTC', time_start)) AS VARCHAR) AS quarter
        FROM j LEFT JOIN sites_arrow st ON j.exporter = st.exporter
    """)
    con.unregister("sites_arrow")
    return con.execute("SELECT count(*) FROM ef").fetchall()[0][0]


def report_tables(con: duckdb.DuckDBPyConnection, sites: dict[str, str] | None = None,
                  regions: dict[str, str] | None = None) -> int:
    """The report's tables from the rollup tables ``rollup_5m``, ``rollup_peers`` and
    ``rollup_mover`` of ``con`` (flows.rollup; ``rollup_peers`` in the monthly shape of
    ``peers_1mo``): ``r5`` (5-minute traffic), ``rp`` (peers per month, with the bitmask of
    the days they were seen, each peer also as an exact integer id ``pid``; ``seen_peer`` is
    that id for rows that carried bytes), ``rpq`` (``rp`` per quarter x direction x peer), ``rm`` (trunkline's transfers), with UTC quarter, month, day and
    bin and the exporters mapped to sites and regions. Bits and packets stay exact integers (DECIMAL)
    until summed, so a figure does not depend on the order rows are added in. Every
    metric below reads these tables only; returns the flows they hold."""
    con.register("sites_arrow", _site_table(sites, regions))
    # a calendar of the window's UTC days (t_ms is UTC epoch ms; epoch_ms() of it is a
    # TIMESTAMP without zone: no TZ applies): month and quarter labels by an integer join,
    # not a strftime per row
    lo, hi = con.execute("SELECT min(t_ms), max(t_ms) FROM (SELECT t_ms FROM rollup_5m UNION ALL "
                         "SELECT t_ms FROM rollup_peers UNION ALL SELECT t_ms FROM rollup_mover)").fetchall()[0]
    lo, hi = (lo or 0) // 86_400_000, (hi or 0) // 86_400_000
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cal AS
        SELECT CAST(range AS INTEGER) AS day, strftime(epoch_ms(range * 86400000), '%Y-%m') AS month,
               CAST(year(epoch_ms(range * 86400000)) AS VARCHAR) || 'Q'
                   || CAST(quarter(epoch_ms(range * 86400000)) AS VARCHAR) AS quarter,
               epoch_ms(date_trunc('quarter', epoch_ms(range * 86400000))) AS q_ms
        FROM range({lo}, {hi + 1})""")
    # peers as exact integer ids (one per distinct address text): the distinct counts of
    # the figures hash integers, not strings
    con.execute("CREATE OR REPLACE TEMP TABLE peer_ids AS SELECT peer, "
                "CAST(row_number() OVER () AS INTEGER) AS pid FROM (SELECT DISTINCT peer FROM rollup_peers)")
    when = "c.month, c.quarter"
    where = ("coalesce(st.site, r.exporter) AS site, "
             "coalesce(st.region, st.site, r.exporter) AS region")
    join = ("JOIN cal c ON CAST(r.t_ms // 86400000 AS INTEGER) = c.day "
            "LEFT JOIN sites_arrow st ON r.exporter = st.exporter")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE r5 AS
        SELECT r.t_ms, {when}, CAST((r.t_ms - c.q_ms) // {RATE_BIN_S * 1000} AS INTEGER) AS bin, {where},
               r.flow_type, r.direction, r.category, r.c2c, r.bits, r.packets, r.flows
        FROM rollup_5m r {join}""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE rp AS
        SELECT r.t_ms, {when}, {where},
               r.direction, r.peer, p.pid, CASE WHEN r.seen THEN p.pid END AS seen_peer, r.category,
               r.metro, r.country, r.subdivision, r.asn, r.org, r.bits, r.packets, r.flows, r.days
        FROM rollup_peers r LEFT JOIN peer_ids p ON r.peer = p.peer {join}""")
    # the quarter's figures (per type, metro, country, top peers) need no day or site: one
    # row per quarter x direction x peer, summed once, instead of every figure re-reading rp
    con.execute("""
        CREATE OR REPLACE TEMP TABLE rpq AS
        SELECT quarter, direction, pid, any_value(peer) AS peer, category, metro, country,
               subdivision, asn, org, CASE WHEN bool_or(seen_peer IS NOT NULL) THEN pid END AS seen_peer,
               sum(bits) AS bits, sum(packets) AS packets, sum(flows) AS flows
        FROM rp GROUP BY quarter, direction, pid, category, metro, country, subdivision, asn, org""")
    con.execute(f"CREATE OR REPLACE TEMP TABLE rm AS SELECT r.*, {when} FROM rollup_mover r "
                f"JOIN cal c ON CAST(r.t_ms // 86400000 AS INTEGER) = c.day")
    con.unregister("sites_arrow")
    return int(con.execute("SELECT coalesce(sum(flows), 0) FROM r5").fetchall()[0][0])


def _q(quarter: Quarter | str) -> str:
    return f"quarter = '{quarter}'"


def _f(x) -> float:
    """A summed exact integer (Decimal) or None as a float."""
    return float(x) if x is not None else 0.0


def flow_counts(con, quarter: Quarter) -> tuple[int, int]:
    """(flow records, of which simulated) in ``quarter``."""
    n, sim = con.execute(f"SELECT coalesce(sum(flows), 0), coalesce(sum(flows) FILTER "
                         f"(WHERE flow_type = 'simulated'), 0) FROM r5 WHERE {_q(quarter)}").fetchall()[0]
    return int(n), int(sim)


def per_category(con, period: str = "quarter") -> dict[tuple[str, str, str], dict]:
    """{(period value, direction, category): {bits, unique_ips}}; direction 'all' for both
    ways together (and flows that are neither), 'in' (ingress: peer -> us), 'out' (egress)."""
    table = "rpq" if period == "quarter" else "rp"
    rows = con.execute(f"""
        SELECT {period}, coalesce(direction, 'all'), category, sum(bits), count(DISTINCT seen_peer)
        FROM {table} GROUP BY GROUPING SETS (({period}, direction, category), ({period}, category))
    """).fetchall()
    return {(p, d, c): {"bits": _f(b), "unique_ips": int(u)} for p, d, c, b, u in rows}


def share_table(bits: dict[str, float]) -> dict[str, dict[str, float]]:
    """{category: {bits, share_pct}} with every category present (zeros included)."""
    total = sum(bits.values())
    return {c: {"bits": bits.get(c, 0.0),
                "share_pct": 100.0 * bits.get(c, 0.0) / total if total else 0.0}
            for c in CATEGORIES}


def rates(con, quarter: Quarter) -> dict[str, dict[str, float]]:
    """Average, 95th percentile and max rate (bits/s) per category over fixed bins of the
    quarter, empty bins counted as zero; key ``all`` for the total. The average is the
    quarter's bits over its seconds (the mean of the padded bins, added exactly)."""
    bin_s = RATE_BIN_S  # the bins of r5's ``bin`` column
    nbins = int((quarter.end - quarter.start).total_seconds()) // bin_s
    q = str(quarter)
    rows = con.execute(f"""
        WITH b AS (
            SELECT category, bin, CAST(sum(bits) AS DOUBLE) AS bits FROM r5 WHERE quarter = '{q}' GROUP BY ALL
            UNION ALL
            SELECT 'all', bin, CAST(sum(bits) AS DOUBLE) FROM r5 WHERE quarter = '{q}' GROUP BY ALL
        ),
        g AS (SELECT c.category, r.range AS bin
              FROM (SELECT DISTINCT category FROM b) c, range(0, {nbins}) r)
        SELECT g.category, quantile_cont(coalesce(b.bits, 0) / {bin_s}, 0.95),
               max(coalesce(b.bits, 0) / {bin_s})
        FROM g LEFT JOIN b USING (category, bin) GROUP BY g.category
    """).fetchall()
    tot = dict(con.execute(f"""SELECT coalesce(category, 'all'), sum(bits) FROM r5 WHERE quarter = '{q}'
                               GROUP BY GROUPING SETS ((category), ())""").fetchall())
    zero = {"avg_bps": 0.0, "p95_bps": 0.0, "max_bps": 0.0}
    out = {c: dict(zero) for c in (*CATEGORIES, "all")}
    for c, p, m in rows:
        out[c] = {"avg_bps": _f(tot.get(c)) / (nbins * bin_s), "p95_bps": float(p), "max_bps": float(m)}
    return out


def _padded_p95_sql(values: str, keys: str, n: str) -> str:
    """SQL for the 95th percentile (linear, as quantile_cont) of each group's ``values``
    padded with zeros up to ``n`` values per group: the zeros (empty bins, quiet days)
    are never materialised. ``values`` is a query with columns {keys}, v, n."""
    return f"""
        WITH r AS (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY v) AS rn,
                          count(*) OVER (PARTITION BY {keys}) AS k FROM ({values})),
             p AS (SELECT *, 0.95::DOUBLE * ({n} - 1) AS pos, floor(0.95::DOUBLE * ({n} - 1)) AS lo,
                          {n} - k AS zeros FROM r)
        SELECT {keys},
               -- the sorted, padded series is `zeros` zeros then the group's values
               coalesce(max(v) FILTER (WHERE rn = lo - zeros + 1), 0) AS v_lo,
               coalesce(max(v) FILTER (WHERE rn = least(lo + 1, {n} - 1) - zeros + 1), 0) AS v_hi,
               any_value(pos - lo) AS frac
        FROM p GROUP BY {keys}"""


def region_cells(con, quarter: Quarter) -> list[dict]:
    """Per (region, direction, category, month) of ``quarter``, direction 'all'/'in'/'out':

    - traffic: bits, average rate (bits / seconds of the month), p95 of the month's 5-minute
      rates (empty bins count as 0);
    - magnitude: bits per unique peer IP, and the 95th percentile of per-peer bits;
    - uniqueness: distinct peer IPs in the month, and the mean and 95th percentile of the
      daily distinct peer IPs (days without any count as 0)."""
    q = _q(quarter)
    bin_s = RATE_BIN_S  # the bins of r5's ``bin`` column
    keys = "region, direction, category, month"
    month_s = {}
    for i, m in enumerate(quarter.months()):
        lo = datetime(quarter.year, 3 * quarter.q - 2 + i, 1, tzinfo=UTC)
        hi = quarter.end if i == 2 else datetime(quarter.year, 3 * quarter.q - 1 + i, 1, tzinfo=UTC)
        month_s[m] = int((hi - lo).total_seconds())
    con.execute("CREATE OR REPLACE TEMP TABLE month_len AS SELECT * FROM (VALUES "
                + ", ".join(f"('{m}', {sec // bin_s}, {sec // 86400})" for m, sec in month_s.items())
                + ") t(month, bins, days)")
    # per peer first (bits, and the days it was seen: its monthly masks or-ed over its
    # exporters); 'all' directions re-aggregated from it
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE rc_peer AS
        SELECT {keys}, seen_peer, sum(bits) AS bits, bit_or(days) AS days FROM rp WHERE {q} GROUP BY ALL;
        INSERT INTO rc_peer SELECT region, 'all', category, month, seen_peer, sum(bits), bit_or(days)
        FROM rc_peer GROUP BY ALL""")
    base = {tuple(r[:4]): r[4:] for r in con.execute(f"""
        SELECT {keys}, sum(bits), count(seen_peer),
               quantile_cont(CAST(bits AS DOUBLE), 0.95) FILTER (WHERE seen_peer IS NOT NULL)
        FROM rc_peer GROUP BY ALL""").fetchall()}
    rate = {tuple(r[:4]): r[4:] for r in con.execute(_padded_p95_sql(f"""
        WITH b AS (SELECT {keys}, bin, sum(bits) AS bits FROM r5 WHERE {q} GROUP BY ALL),
             b2 AS (SELECT * FROM b UNION ALL
                    SELECT region, 'all', category, month, bin, sum(bits) FROM b GROUP BY ALL)
        SELECT b2.region, b2.direction, b2.category, b2.month, CAST(bits AS DOUBLE) / {bin_s} AS v,
               ml.bins AS n
        FROM b2 JOIN month_len ml USING (month)""", keys, "n")).fetchall()}
    # daily distinct peers from the per-peer day masks (both directions or-ed for 'all'):
    # one pass sums each of the 31 bits per group (a join of every peer with its days cost
    # 3 s of a 110 M-record report), then one row per day that saw any
    bit_sums = ", ".join(f"CAST(sum((days >> {i}) & 1) AS BIGINT)" for i in range(31))
    daily = {tuple(r[:4]): r[4:] for r in con.execute(f"""
        WITH w AS (SELECT {keys}, [{bit_sums}] AS vs FROM rc_peer
                   WHERE seen_peer IS NOT NULL GROUP BY ALL),
             c AS (SELECT * FROM (SELECT {keys}, unnest(range(31)) AS day, unnest(vs) AS v FROM w)
                   WHERE v > 0),
             s AS (SELECT {keys}, sum(v) AS total FROM c GROUP BY ALL),
             p AS ({_padded_p95_sql("SELECT c.*, ml.days AS n FROM c JOIN month_len ml USING (month)",
                                    keys, "n")})
        SELECT p.*, s.total FROM p JOIN s USING ({keys})""").fetchall()}
    out = []
    for k in sorted(base):
        bits, uniq, mag95 = base[k]
        bits = _f(bits)
        m = k[3]
        r_lo, r_hi, r_f = rate.get(k, (0.0, 0.0, 0.0))
        d_lo, d_hi, d_f, d_total = daily.get(k, (0.0, 0.0, 0.0, 0))
        out.append({"region": k[0], "direction": k[1], "category": k[2], "month": m,
                    "bits": bits, "avg_bps": bits / month_s[m],
                    "p95_bps": float(r_lo + (r_hi - r_lo) * r_f),
                    "unique_ips": int(uniq),
                    "bits_per_ip": bits / uniq if uniq else None,
                    "bits_per_ip_p95": float(mag95) if mag95 is not None else None,
                    "daily_unique_ips_avg": float(d_total) / (month_s[m] // 86400),
                    "daily_unique_ips_p95": float(d_lo + (d_hi - d_lo) * d_f)})
    return out


def sankey(con, quarter: Quarter) -> list[tuple[str, str, str, float]]:
    """(region, direction 'in'/'out', category, bits) for the Sankey of both directions."""
    rows = con.execute(f"""SELECT region, direction, category, sum(bits) FROM r5
                           WHERE {_q(quarter)} AND direction IN ('in', 'out') GROUP BY ALL
                           ORDER BY ALL""").fetchall()
    return [(r, d, c, _f(b)) for r, d, c, b in rows]


def geography(con, period_where: str, column: str, where: str = "true") -> list[dict]:
    """Per value of ``column`` (country or subdivision): bits, ingress and egress bits,
    unique peers, and bits per category."""
    rows = con.execute(f"""
        SELECT {column}, category, sum(bits), sum(bits) FILTER (WHERE direction = 'in'),
               sum(bits) FILTER (WHERE direction = 'out')
        FROM rpq WHERE {period_where} AND ({where}) GROUP BY ALL""").fetchall()
    uniq = dict(con.execute(f"""SELECT {column}, count(DISTINCT seen_peer) FROM rpq
                                WHERE {period_where} AND ({where}) GROUP BY ALL""").fetchall())
    out: dict[str, dict] = {}
    for key, cat, b, bi, bo in sorted(rows, key=lambda r: (r[0], r[1])):
        d = out.setdefault(key, {"key": key, "bits": 0.0, "ingress_bits": 0.0, "egress_bits": 0.0,
                                 "unique_ips": int(uniq.get(key, 0)), "categories": {}})
        d["bits"] += _f(b)
        d["ingress_bits"] += _f(bi)
        d["egress_bits"] += _f(bo)
        d["categories"][cat] = _f(b)
    return sorted(out.values(), key=lambda d: (-d["bits"], d["key"]))


def metro_category(con, quarter: Quarter) -> list[dict]:
    """Bits, exact unique peers and magnitude (bits per unique IP) per metro x category."""
    rows = con.execute(f"""
        SELECT metro, category, sum(bits), count(DISTINCT seen_peer), sum(flows)
        FROM rpq WHERE quarter = '{quarter}' GROUP BY ALL ORDER BY 1, 2
    """).fetchall()
    return [{"metro": m, "category": c, "bits": _f(b), "unique_ips": int(u), "flows": int(n),
             "bits_per_ip": _f(b) / u if u else 0.0} for m, c, b, u, n in rows]


def uniques(con, where: str, by: str | None = None) -> dict:
    """Exact unique peer addresses that carried bytes (overall, or per ``by``)."""
    if by is None:
        return {"all": int(con.execute(f"SELECT count(DISTINCT seen_peer) FROM rpq WHERE {where}").fetchall()[0][0])}
    rows = con.execute(f"SELECT {by}, count(DISTINCT seen_peer) FROM rpq WHERE {where} GROUP BY ALL").fetchall()
    return {k: int(v) for k, v in rows}


def cloud_to_cloud_bits(con) -> dict[str, float]:
    """{quarter: bits with both ends in a cloud category}."""
    return {q: _f(b) for q, b in con.execute(
        "SELECT quarter, sum(bits) FROM r5 WHERE c2c GROUP BY 1").fetchall()}


def unclassified(con, quarter: Quarter, top: int = 10) -> tuple[tuple[float, int], list[tuple]]:
    """(bits, endpoints) of categories unknown and other, and the largest such networks."""
    w = f"{_q(quarter)} AND category IN ('unknown', 'other')"
    total = con.execute(f"SELECT sum(bits), count(DISTINCT seen_peer) FROM rpq WHERE {w}").fetchall()[0]
    rows = con.execute(f"""SELECT asn, org, category, sum(bits) AS b, count(DISTINCT seen_peer) FROM rpq
                           WHERE {w} GROUP BY ALL ORDER BY b DESC, asn, org, category
                           LIMIT {int(top)}""").fetchall()
    return (_f(total[0]), int(total[1])), [(a, o, c, _f(b), n) for a, o, c, b, n in rows]


def mover(con, quarter: Quarter) -> tuple:
    """trunkline's own transfers: flows, bits, RTT median and p95, retransmits, packets,
    average delivery rate."""
    n, b, med, p95, re, pk, dr = con.execute(f"""
        SELECT count(*), sum(bits), median(rtt_us), quantile_cont(rtt_us, 0.95),
               coalesce(sum(retransmits), 0), sum(packets), avg(delivery_rate_bps)
        FROM rm WHERE {_q(quarter)}""").fetchall()[0]
    return n, _f(b), med, p95, re, _f(pk), dr


def bits_per(con, quarter: Quarter, column: str) -> list[tuple[str, float]]:
    """[(value of ``column``, bits)] in ``quarter``, largest first."""
    return [(k, _f(b)) for k, b in con.execute(
        f"SELECT {column}, sum(bits) FROM r5 WHERE {_q(quarter)} GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()]


def heavy_hitters(con, where: str = "true", n: int = 20) -> dict:
    """Top peers by bits, and how few peers carry half and 90 % of the traffic."""
    rows = con.execute(f"""
        SELECT any_value(peer) AS peer, any_value(asn), any_value(org), any_value(category),
               any_value(metro), sum(bits) AS b, sum(flows) FROM rpq WHERE {where}
        GROUP BY pid ORDER BY b DESC, peer
    """).fetchall()
    bits = [_f(r[5]) for r in rows]
    total = _f(sum(r[5] for r in rows)) if rows else 0.0  # exact, then one rounding
    cum = np.cumsum(bits) if rows else np.zeros(0)

    def need(f):
        return int(np.searchsorted(cum, f * total) + 1) if total else 0
    top = [{"peer": r[0], "asn": int(r[1] or 0), "org": r[2], "category": r[3], "metro": r[4],
            "bits": b, "flows": int(r[6]),
            "share_pct": 100.0 * b / total if total else 0.0} for r, b in zip(rows[:n], bits, strict=False)]
    return {"top": top, "peers": sum(1 for b in bits if b > 0), "peers_for_50pct": need(0.5),
            "peers_for_90pct": need(0.9)}


ELEPHANT_KEY = ("src_addr", "dst_addr", "src_port", "dst_port", "proto")
TUPLE_HASH = f"hash({', '.join(ELEPHANT_KEY)})"  # 64 bits of a raw record's 5-tuple


def elephant_flows(con, start: datetime, end: datetime, min_bits: float) -> int:
    """Temp table ``el_flows``: the raw flows (of view ``flows``) in [start, end) of the
    5-tuples that moved at least ``min_bits`` there, the only ones that can be elephants
    (``elephant_intervals`` applies the same bar), so only they are enriched.

    The tuples are grouped by a 64-bit hash of the 5-tuple, not by its five columns: a
    quarter of mice is as many distinct tuples as records, and a hash table of two
    address strings per group is what made this scan the report's largest cost. Tuples
    that share a hash are summed together, so a group can only pass the bar more often
    than its tuples would: nothing is missed, and ``elephant_intervals`` applies the bar
    to each exact tuple."""
    w = f"time_start >= TIMESTAMPTZ '{_ts(start)}' AND time_start < TIMESTAMPTZ '{_ts(end)}'"
    h = TUPLE_HASH
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE el_flows AS
        WITH c AS (SELECT {h} AS h FROM flows WHERE {w} GROUP BY ALL
                   HAVING sum({RECORD_BITS}) >= {min_bits})
        SELECT * FROM flows WHERE {w} AND {h} IN (SELECT h FROM c)""")
    return con.execute("SELECT count(*) FROM el_flows").fetchall()[0][0]


def elephant_intervals(con, interval_s: int, min_bits: float, where: str = "true") -> dict[str, np.ndarray]:
    """Candidate 5-tuples (at least ``min_bits`` in all) into temp table ``el_keys``, and
    their bits and busy seconds per ``interval_s`` interval (``spread_sql``).
    -> columns k, i, bits, busy."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE el_keys AS
        SELECT src_addr, dst_addr, src_port, dst_port, proto,
               any_value(peer) AS peer, any_value(category) AS category,
               any_value(metro) AS metro, any_value(org) AS org, any_value(asn) AS asn,
               any_value(site) AS site, row_number() OVER () - 1 AS k
        FROM ef WHERE {where}
        GROUP BY src_addr, dst_addr, src_port, dst_port, proto
        HAVING sum(bits) >= {min_bits}
    """)
    return con.execute(spread_sql(f"""
        SELECT k.k, e.ts, e.te, e.bits FROM (SELECT * FROM ef WHERE {where}) e
        JOIN el_keys k ON {" AND ".join(f"e.{c} IS NOT DISTINCT FROM k.{c}" for c in ELEPHANT_KEY)}""",
        interval_s)).fetchnumpy()


def spread_sql(source: str, interval_s: int) -> str:
    """SQL: bits and busy seconds per (k, interval) of the records of ``source`` (columns
    k, ts, te, bits), each record spread over the intervals it spans in proportion to the
    overlap (a record of no length: one millisecond). The one definition of an interval's
    rate, for the detector (``elephant_intervals``) and the elephant table's filter."""
    I = interval_s  # noqa: E741
    return f"""
        WITH r AS (
            SELECT k, epoch(ts) AS t0, greatest(epoch(te), epoch(ts) + 0.001) AS t1,
                   CAST(floor(epoch(ts) / {I}) AS BIGINT) AS i0,
                   CAST(floor((greatest(epoch(te), epoch(ts) + 0.001) - 0.0005) / {I}) AS BIGINT) AS i1,
                   bits
            FROM ({source})
        )
        , s AS (SELECT k, unnest(range(i0, i1 + 1)) AS i, t0, t1, bits FROM r)
        SELECT k, i, sum(bits * (least(t1, (i + 1) * {I}) - greatest(t0, i * {I})) / (t1 - t0)) AS bits,
               sum(least(t1, (i + 1) * {I}) - greatest(t0, i * {I})) AS busy
        FROM s GROUP BY ALL"""


def elephant_keys(con, ks) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of ``el_keys`` for the keys ``ks`` (those of the episodes
    found: a quarter's candidates are many more, and a Python row each cost seconds)."""
    con.register("_el_want", pa.table({"k": pa.array(ks, pa.int64())}))
    rows = con.execute("SELECT * FROM el_keys WHERE k IN (SELECT k FROM _el_want) ORDER BY k").fetchall()
    cols = [d[0] for d in con.description]
    con.unregister("_el_want")
    return cols, rows


# --- a mergeable unique count: HyperLogLog registers computed in SQL -------------------

def hll_registers(con, where: str, keys: str = "month, metro, category", table: str = "ef") -> pa.Table:
    """Sparse HLL registers (keys..., reg, rho) of the peer address per group of ``table``
    (``ef`` or the report's ``rp``: the same seen peers, the same registers). Registers
    of disjoint periods merge by max(rho), so monthly sketches add up to any range."""
    tail = 64 - HLL_P
    mask = (1 << tail) - 1
    smear = "w"
    for s in (1, 2, 4, 8, 16, 32):
        smear = f"({smear} | ({smear} >> {s}))"
    return arrow(con, f"""
        -- the address text, not the report's integer id: sketches of any report merge
        WITH h AS (SELECT {keys}, hash(peer) AS x FROM {table}
                   WHERE ({where}) AND seen_peer IS NOT NULL),
             w AS (SELECT {keys}, x >> {tail} AS reg, x & {mask}::UBIGINT AS w FROM h)
        SELECT {keys}, reg, max({tail} - bit_count({smear}) + 1)::UTINYINT AS rho
        FROM w GROUP BY ALL
    """)


def hll_estimate(regs: np.ndarray, rhos: np.ndarray) -> float:
    """HyperLogLog estimate from sparse (register, rho) pairs, with the small-range
    linear-counting correction (Flajolet et al. 2007)."""
    m = 1 << HLL_P
    full = np.zeros(m, np.float64)
    if len(regs):
        np.maximum.at(full, regs.astype(np.int64), rhos.astype(np.float64))
    alpha = 0.7213 / (1 + 1.079 / m)
    e = alpha * m * m / np.sum(np.exp2(-full))
    zeros = int(np.count_nonzero(full == 0))
    if e <= 2.5 * m and zeros:
        e = m * np.log(m / zeros)
    return float(e)


def hll_merge(sketch: pa.Table, group: list[str]) -> dict[tuple, float]:
    """Merge sparse registers over every column not in ``group``; estimate per group."""
    con = duckdb_connect()
    con.register("s", sketch)
    sel = "".join(f"{g}, " for g in group)
    t = arrow(con, f"SELECT {sel}reg, max(rho) AS rho FROM s GROUP BY ALL ORDER BY ALL")
    keys = list(zip(*(t.column(g).to_pylist() for g in group), strict=True)) if group else [()] * t.num_rows
    regs, rhos = t.column("reg").to_numpy(), t.column("rho").to_numpy()
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return {k: hll_estimate(regs[ix], rhos[ix]) for k, ix in groups.items()}
