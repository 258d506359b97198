"""The report's metrics, as SQL over the flow store (DuckDB).

``prepare`` joins the flows of a window with the enriched endpoint table once, into a
temporary table ``ef`` (one row per flow: peer, category, metro, bits); every metric is
then a GROUP BY over ``ef``. Traffic is renormalised: bits = bytes x 8 x sampling_rate
(0 or null counts as 1). The peer of a flow is its non-local end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from .enrich import Enricher
from .enrich.taxonomy import CATEGORIES, CLOUDS
from .store import duckdb_connect

RATE_BIN_S = 300  # rates are measured over 5-minute bins (the usual 95th-percentile bin)
HLL_P = 14  # 16384 registers: ~0.8 % standard error, a few KiB per (month, metro, category)


@dataclass(frozen=True)
class Quarter:
    year: int
    q: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        m = re.fullmatch(r"(\d{4})-?Q([1-4])", text.strip(), re.IGNORECASE)
        if not m:
            raise ValueError(f"quarter must look like 2025Q4, got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.year}Q{self.q}"

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


def arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """A query's result as an Arrow table (DuckDB 1.x and 2.x spell it apart)."""
    rel = con.sql(sql)
    return (getattr(rel, "to_arrow_table", None) or rel.arrow)()


def _ts(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S+00")


def prepare(con: duckdb.DuckDBPyConnection, enricher: Enricher, start: datetime,
            end: datetime, sites: dict[str, str] | None = None,
            regions: dict[str, str] | None = None) -> int:
    """Materialise ``ef`` for flows with time_start in [start, end); returns its row count."""
    con.execute("SET enable_progress_bar = false")
    w = f"time_start >= TIMESTAMPTZ '{_ts(start)}' AND time_start < TIMESTAMPTZ '{_ts(end)}'"
    addrs = arrow(con, (
        f"SELECT src_addr AS a FROM flows WHERE {w} UNION SELECT dst_addr FROM flows WHERE {w}"
    )).column(0)
    con.register("endpoints_arrow", enricher.endpoints(addrs))
    con.execute("CREATE OR REPLACE TEMP TABLE endpoints AS SELECT * FROM endpoints_arrow")
    con.unregister("endpoints_arrow")
    sites = sites or {}
    regions = regions or {}
    exporters = sorted(set(sites) | set(regions))  # a region may name an unmapped exporter's site
    site_tbl = pa.table({"exporter": exporters, "site": [sites.get(x, x) for x in exporters],
                         "region": [regions.get(sites.get(x, x), sites.get(x, x)) for x in exporters]},
                        schema=pa.schema([("exporter", pa.string()), ("site", pa.string()),
                                          ("region", pa.string())]))
    con.register("sites_arrow", site_tbl)
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
                   s.subdivision AS s_sub, d.subdivision AS d_sub
            FROM flows f
            LEFT JOIN endpoints s ON f.src_addr = s.addr
            LEFT JOIN endpoints d ON f.dst_addr = d.addr
            WHERE {w.replace('time_start', 'f.time_start')}
        )
        SELECT time_start AS ts, time_end AS te, j.exporter,
               coalesce(st.site, j.exporter, '') AS site,
               coalesce(st.region, st.site, j.exporter, '') AS region, flow_type,
               src_addr, dst_addr, src_port, dst_port, proto,
               CASE WHEN peer_is_dst THEN dst_addr ELSE src_addr END AS peer,
               -- a record that carried nothing does not make its peer "seen"
               CASE WHEN bytes > 0 THEN (CASE WHEN peer_is_dst THEN dst_addr ELSE src_addr END) END AS seen_peer,
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
               CAST(bytes AS DOUBLE) * 8 * greatest(coalesce(sampling_rate, 1), 1) AS bits,
               CAST(packets AS DOUBLE) * greatest(coalesce(sampling_rate, 1), 1) AS pkts,
               rtt_us, retransmits, delivery_rate_bps,
               -- timezone('UTC', ...) makes the UTC bucketing explicit, beside the session zone
               strftime(timezone('UTC', time_start), '%Y-%m') AS month,
               strftime(timezone('UTC', time_start), '%Y-%m-%d') AS day,
               CAST(year(timezone('UTC', time_start)) AS VARCHAR) || 'Q'
                   || CAST(quarter(timezone('UTC', time_start)) AS VARCHAR) AS quarter
        FROM j LEFT JOIN sites_arrow st ON j.exporter = st.exporter
    """)
    con.unregister("sites_arrow")
    return con.execute("SELECT count(*) FROM ef").fetchone()[0]


def _q(quarter: Quarter | str) -> str:
    return f"quarter = '{quarter}'"


def flow_counts(con, quarter: Quarter) -> tuple[int, int]:
    """(flow records, of which simulated) in ``quarter``."""
    n, sim = con.execute(f"SELECT count(*), count(*) FILTER (WHERE flow_type = 'simulated') "
                         f"FROM ef WHERE {_q(quarter)}").fetchone()
    return int(n), int(sim)


def bits_by(con, period: str, where: str = "true") -> dict[str, dict[str, float]]:
    """{period value: {category: bits}} for period in ('quarter', 'month')."""
    rows = con.execute(
        f"SELECT {period}, category, sum(bits) FROM ef WHERE {where} GROUP BY ALL"
    ).fetchall()
    out: dict[str, dict[str, float]] = {}
    for p, c, b in rows:
        out.setdefault(p, {})[c] = float(b)
    return out


def per_category(con, period: str = "quarter") -> dict[tuple[str, str, str], dict]:
    """{(period value, direction, category): {bits, unique_ips}}; direction 'all' for both
    ways together (and flows that are neither), 'in' (ingress: peer -> us), 'out' (egress)."""
    rows = con.execute(f"""
        SELECT {period}, coalesce(direction, 'all'), category, sum(bits), count(DISTINCT seen_peer)
        FROM ef GROUP BY GROUPING SETS (({period}, direction, category), ({period}, category))
    """).fetchall()
    return {(p, d, c): {"bits": float(b), "unique_ips": int(u)} for p, d, c, b, u in rows}


def share_table(bits: dict[str, float]) -> dict[str, dict[str, float]]:
    """{category: {bits, share_pct}} with every category present (zeros included)."""
    total = sum(bits.values())
    return {c: {"bits": bits.get(c, 0.0),
                "share_pct": 100.0 * bits.get(c, 0.0) / total if total else 0.0}
            for c in CATEGORIES}


def rates(con, quarter: Quarter, bin_s: int = RATE_BIN_S) -> dict[str, dict[str, float]]:
    """Average, 95th percentile and max rate (bits/s) per category over fixed bins of the
    quarter, empty bins counted as zero; key ``all`` for the total."""
    nbins = int((quarter.end - quarter.start).total_seconds()) // bin_s
    t0 = int(quarter.start.timestamp())
    q = str(quarter)
    rows = con.execute(f"""
        WITH b AS (
            -- integer milliseconds: floor division (a DOUBLE epoch cast to BIGINT rounds,
            -- which moved the last 150 s of every bin into the next one)
            SELECT category, (epoch_ms(ts) - {t0 * 1000}) // {bin_s * 1000} AS bin, sum(bits) AS bits
            FROM ef WHERE quarter = '{q}' GROUP BY ALL
            UNION ALL
            SELECT 'all', (epoch_ms(ts) - {t0 * 1000}) // {bin_s * 1000}, sum(bits)
            FROM ef WHERE quarter = '{q}' GROUP BY ALL
        ),
        g AS (SELECT c.category, r.range AS bin
              FROM (SELECT DISTINCT category FROM b) c, range(0, {nbins}) r)
        SELECT g.category, avg(coalesce(b.bits, 0) / {bin_s}),
               quantile_cont(coalesce(b.bits, 0) / {bin_s}, 0.95),
               max(coalesce(b.bits, 0) / {bin_s})
        FROM g LEFT JOIN b USING (category, bin) GROUP BY g.category
    """).fetchall()
    zero = {"avg_bps": 0.0, "p95_bps": 0.0, "max_bps": 0.0}
    out = {c: dict(zero) for c in (*CATEGORIES, "all")}
    for c, a, p, m in rows:
        out[c] = {"avg_bps": float(a), "p95_bps": float(p), "max_bps": float(m)}
    return out


def _p95_padded(values: np.ndarray, n: int) -> float:
    """95th percentile (linear, as quantile_cont) of ``values`` padded with zeros to ``n``."""
    full = np.zeros(max(n, len(values)))
    full[n - len(values):] = np.sort(values)
    return float(np.quantile(full, 0.95)) if len(full) else 0.0


def region_cells(con, quarter: Quarter, bin_s: int = RATE_BIN_S) -> list[dict]:
    """Per (region, direction, category, month) of ``quarter``, direction 'all'/'in'/'out':

    - traffic: bits, average rate (bits / seconds of the month), p95 of the month's 5-minute
      rates (empty bins count as 0);
    - magnitude: bits per unique peer IP, and the 95th percentile of per-peer bits;
    - uniqueness: distinct peer IPs in the month, and the mean and 95th percentile of the
      daily distinct peer IPs (days without any count as 0)."""
    q = _q(quarter)
    sets = "GROUPING SETS ((region, direction, category, month{x}), (region, category, month{x}))"
    key = "region, coalesce(direction, 'all') AS direction, category, month"
    base = {tuple(r[:4]): r[4:] for r in con.execute(f"""
        SELECT {key}, sum(bits), count(DISTINCT seen_peer) FROM ef
        WHERE {q} GROUP BY {sets.format(x='')}""").fetchall()}
    mag95 = {tuple(r[:4]): r[4] for r in con.execute(f"""
        WITH p AS (SELECT {key}, sum(bits) AS b FROM ef WHERE {q} AND seen_peer IS NOT NULL
                   GROUP BY {sets.format(x=', seen_peer')})
        SELECT region, direction, category, month, quantile_cont(b, 0.95) FROM p GROUP BY ALL
    """).fetchall()}
    t0 = int(quarter.start.timestamp())
    bins = con.execute(f"""
        SELECT {key}, (epoch_ms(ts) - {t0 * 1000}) // {bin_s * 1000} AS bin, sum(bits) AS bits
        FROM ef WHERE {q} GROUP BY {sets.format(x=', bin')}""").fetchnumpy()
    days = con.execute(f"""
        SELECT {key}, day, count(DISTINCT seen_peer) AS n FROM ef WHERE {q}
        GROUP BY {sets.format(x=', day')}""").fetchnumpy()
    month_s = {}
    month_days = {}
    for i, m in enumerate(quarter.months()):
        lo = datetime(quarter.year, 3 * quarter.q - 2 + i, 1, tzinfo=UTC)
        hi = quarter.end if i == 2 else datetime(quarter.year, 3 * quarter.q - 1 + i, 1, tzinfo=UTC)
        month_s[m] = int((hi - lo).total_seconds())
        month_days[m] = month_s[m] // 86400
    out = []
    bkeys = list(zip(bins["region"], bins["direction"], bins["category"], bins["month"], strict=True))
    dkeys = list(zip(days["region"], days["direction"], days["category"], days["month"], strict=True))
    bidx: dict[tuple, list[int]] = {}
    for i, k in enumerate(bkeys):
        bidx.setdefault(k, []).append(i)
    didx: dict[tuple, list[int]] = {}
    for i, k in enumerate(dkeys):
        didx.setdefault(k, []).append(i)
    for k in sorted(base):
        bits, uniq = base[k]
        m = k[3]
        rate_vals = bins["bits"][bidx.get(k, [])] / bin_s
        daily = days["n"][didx.get(k, [])].astype(np.float64)
        out.append({"region": k[0], "direction": k[1], "category": k[2], "month": m,
                    "bits": float(bits), "avg_bps": float(bits) / month_s[m],
                    "p95_bps": _p95_padded(rate_vals, month_s[m] // bin_s),
                    "unique_ips": int(uniq),
                    "bits_per_ip": float(bits) / uniq if uniq else None,
                    "bits_per_ip_p95": float(mag95[k]) if mag95.get(k) is not None else None,
                    "daily_unique_ips_avg": float(daily.sum()) / month_days[m],
                    "daily_unique_ips_p95": _p95_padded(daily, month_days[m])})
    return out


def sankey(con, quarter: Quarter) -> list[tuple[str, str, str, float]]:
    """(region, direction 'in'/'out', category, bits) for the Sankey of both directions."""
    rows = con.execute(f"""SELECT region, direction, category, sum(bits) FROM ef
                           WHERE {_q(quarter)} AND direction IN ('in', 'out') GROUP BY ALL
                           ORDER BY ALL""").fetchall()
    return [(r, d, c, float(b)) for r, d, c, b in rows]


def geography(con, period_where: str, column: str, where: str = "true") -> list[dict]:
    """Per value of ``column`` (country or subdivision): bits, ingress and egress bits,
    unique peers, and bits per category."""
    rows = con.execute(f"""
        SELECT {column}, category, sum(bits), sum(bits) FILTER (WHERE direction = 'in'),
               sum(bits) FILTER (WHERE direction = 'out')
        FROM ef WHERE {period_where} AND ({where}) GROUP BY ALL""").fetchall()
    uniq = dict(con.execute(f"""SELECT {column}, count(DISTINCT seen_peer) FROM ef
                                WHERE {period_where} AND ({where}) GROUP BY ALL""").fetchall())
    out: dict[str, dict] = {}
    for key, cat, b, bi, bo in rows:
        d = out.setdefault(key, {"key": key, "bits": 0.0, "ingress_bits": 0.0, "egress_bits": 0.0,
                                 "unique_ips": int(uniq.get(key, 0)), "categories": {}})
        d["bits"] += float(b)
        d["ingress_bits"] += float(bi or 0)
        d["egress_bits"] += float(bo or 0)
        d["categories"][cat] = float(b)
    return sorted(out.values(), key=lambda d: (-d["bits"], d["key"]))


def metro_category(con, quarter: Quarter) -> list[dict]:
    """Bits, exact unique peers and magnitude (bits per unique IP) per metro x category."""
    rows = con.execute(f"""
        SELECT metro, category, sum(bits), count(DISTINCT seen_peer), count(*)
        FROM ef WHERE quarter = '{quarter}' GROUP BY ALL ORDER BY 1, 2
    """).fetchall()
    return [{"metro": m, "category": c, "bits": float(b), "unique_ips": int(u), "flows": int(n),
             "bits_per_ip": float(b) / u if u else 0.0} for m, c, b, u, n in rows]


def uniques(con, where: str, by: str | None = None) -> dict:
    """Exact unique peer addresses that carried bytes (overall, or per ``by``)."""
    if by is None:
        return {"all": int(con.execute(f"SELECT count(DISTINCT seen_peer) FROM ef WHERE {where}").fetchone()[0])}
    rows = con.execute(f"SELECT {by}, count(DISTINCT seen_peer) FROM ef WHERE {where} GROUP BY ALL").fetchall()
    return {k: int(v) for k, v in rows}


def cloud_to_cloud_bits(con) -> dict[str, float]:
    """{quarter: bits with both ends in a cloud category}."""
    return {q: float(b) for q, b in con.execute(
        "SELECT quarter, coalesce(sum(bits), 0) FROM ef WHERE c2c GROUP BY 1").fetchall()}


def unclassified(con, quarter: Quarter, top: int = 10) -> tuple[tuple[float, int], list[tuple]]:
    """(bits, endpoints) of categories unknown and other, and the largest such networks."""
    w = f"{_q(quarter)} AND category IN ('unknown', 'other')"
    total = con.execute(f"SELECT coalesce(sum(bits), 0), count(DISTINCT seen_peer) FROM ef WHERE {w}").fetchone()
    rows = con.execute(f"""SELECT asn, org, category, sum(bits) AS b, count(DISTINCT seen_peer) FROM ef
                           WHERE {w} GROUP BY ALL ORDER BY b DESC, asn LIMIT {int(top)}""").fetchall()
    return (float(total[0]), int(total[1])), rows


def mover(con, quarter: Quarter) -> tuple:
    """trunkline's own transfers: flows, bits, RTT median and p95, retransmits, packets,
    average delivery rate."""
    return con.execute(f"""
        SELECT count(*), coalesce(sum(bits), 0), median(rtt_us), quantile_cont(rtt_us, 0.95),
               coalesce(sum(retransmits), 0), coalesce(sum(pkts), 0), avg(delivery_rate_bps)
        FROM ef WHERE {_q(quarter)} AND (flow_type = 'trunkline' OR rtt_us IS NOT NULL)""").fetchone()


def bits_per(con, quarter: Quarter, column: str) -> list[tuple[str, float]]:
    """[(value of ``column``, bits)] in ``quarter``, largest first."""
    return [(k, float(b)) for k, b in con.execute(
        f"SELECT {column}, sum(bits) FROM ef WHERE {_q(quarter)} GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()]


def heavy_hitters(con, where: str = "true", n: int = 20) -> dict:
    """Top peers by bits, and how few peers carry half and 90 % of the traffic."""
    rows = con.execute(f"""
        SELECT peer, any_value(asn), any_value(org), any_value(category), any_value(metro),
               sum(bits) AS b, count(*) FROM ef WHERE {where} GROUP BY peer ORDER BY b DESC, peer
    """).fetchall()
    total = sum(r[5] for r in rows)
    cum = np.cumsum([r[5] for r in rows]) if rows else np.zeros(0)

    def need(f):
        return int(np.searchsorted(cum, f * total) + 1) if total else 0
    top = [{"peer": r[0], "asn": int(r[1] or 0), "org": r[2], "category": r[3], "metro": r[4],
            "bits": float(r[5]), "flows": int(r[6]),
            "share_pct": 100.0 * r[5] / total if total else 0.0} for r in rows[:n]]
    return {"top": top, "peers": sum(1 for r in rows if r[5] > 0), "peers_for_50pct": need(0.5),
            "peers_for_90pct": need(0.9)}


# --- a mergeable unique count: HyperLogLog registers computed in SQL -------------------

def hll_registers(con, where: str, keys: str = "month, metro, category") -> pa.Table:
    """Sparse HLL registers (keys..., reg, rho) of the peer address per group. Registers
    of disjoint periods merge by max(rho), so monthly sketches add up to any range."""
    tail = 64 - HLL_P
    mask = (1 << tail) - 1
    smear = "w"
    for s in (1, 2, 4, 8, 16, 32):
        smear = f"({smear} | ({smear} >> {s}))"
    return arrow(con, f"""
        WITH h AS (SELECT {keys}, hash(seen_peer) AS x FROM ef
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
