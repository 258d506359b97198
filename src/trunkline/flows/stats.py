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
            end: datetime, sites: dict[str, str] | None = None) -> int:
    """Materialise ``ef`` for flows with time_start in [start, end); returns its row count."""
    con.execute("SET enable_progress_bar = false")
    w = f"time_start >= TIMESTAMPTZ '{_ts(start)}' AND time_start < TIMESTAMPTZ '{_ts(end)}'"
    addrs = arrow(con, (
        f"SELECT src_addr AS a FROM flows WHERE {w} UNION SELECT dst_addr FROM flows WHERE {w}"
    )).column(0)
    con.register("endpoints_arrow", enricher.endpoints(addrs))
    con.execute("CREATE OR REPLACE TEMP TABLE endpoints AS SELECT * FROM endpoints_arrow")
    con.unregister("endpoints_arrow")
    site_tbl = pa.table({"exporter": list((sites or {}).keys()), "site": list((sites or {}).values())},
                        schema=pa.schema([("exporter", pa.string()), ("site", pa.string())]))
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
                   s.metro AS s_metro, d.metro AS d_metro
            FROM flows f
            LEFT JOIN endpoints s ON f.src_addr = s.addr
            LEFT JOIN endpoints d ON f.dst_addr = d.addr
            WHERE {w.replace('time_start', 'f.time_start')}
        )
        SELECT time_start AS ts, time_end AS te, j.exporter,
               coalesce(st.site, j.exporter, '') AS site, flow_type,
               src_addr, dst_addr, src_port, dst_port, proto,
               CASE WHEN peer_is_dst THEN dst_addr ELSE src_addr END AS peer,
               -- a record that carried nothing does not make its peer "seen"
               CASE WHEN bytes > 0 THEN (CASE WHEN peer_is_dst THEN dst_addr ELSE src_addr END) END AS seen_peer,
               CASE WHEN peer_is_dst THEN d_cat ELSE s_cat END AS category,
               coalesce(CASE WHEN peer_is_dst THEN d_metro ELSE s_metro END, 'no metro') AS metro,
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
               CAST(year(timezone('UTC', time_start)) AS VARCHAR) || 'Q'
                   || CAST(quarter(timezone('UTC', time_start)) AS VARCHAR) AS quarter
        FROM j LEFT JOIN sites_arrow st ON j.exporter = st.exporter
    """)
    con.unregister("sites_arrow")
    return con.execute("SELECT count(*) FROM ef").fetchone()[0]


def bits_by(con, period: str, where: str = "true") -> dict[str, dict[str, float]]:
    """{period value: {category: bits}} for period in ('quarter', 'month')."""
    rows = con.execute(
        f"SELECT {period}, category, sum(bits) FROM ef WHERE {where} GROUP BY ALL"
    ).fetchall()
    out: dict[str, dict[str, float]] = {}
    for p, c, b in rows:
        out.setdefault(p, {})[c] = float(b)
    return out


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


def metro_category(con, quarter: Quarter) -> list[dict]:
    """Bits, exact unique peers and magnitude (bits per unique IP) per metro x category."""
    rows = con.execute(f"""
        SELECT metro, category, sum(bits), count(DISTINCT seen_peer), count(*)
        FROM ef WHERE quarter = '{quarter}' GROUP BY ALL ORDER BY 1, 2
    """).fetchall()
    return [{"metro": m, "category": c, "bits": float(b), "unique_ips": int(u), "flows": int(n),
             "bits_per_ip": float(b) / u if u else 0.0} for m, c, b, u, n in rows]


def uniques(con, where: str, by: str | None = None) -> dict:
    """Exact unique peer addresses (overall, or per ``by``)."""
    if by is None:
        return {"all": int(con.execute(f"SELECT count(DISTINCT seen_peer) FROM ef WHERE {where}").fetchone()[0])}
    rows = con.execute(f"SELECT {by}, count(DISTINCT seen_peer) FROM ef WHERE {where} GROUP BY ALL").fetchall()
    return {k: int(v) for k, v in rows}


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
