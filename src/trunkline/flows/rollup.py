"""Rollups: the report's sufficient statistics, computed once at ingest (issue 20).

A report over raw flows enriches every address and groups every record; a quarter of a real
edge is billions of them. The rollups keep exactly what the report's figures need, so the
report reads them instead (``stats.py`` computes every figure from these tables only):

- ``5m``: per 5-minute bin x exporter x flow type x direction x peer category x
  cloud-to-cloud: bits, packets, flows (the rates, p95, totals, Sankey, sites, shares);
  ``1h`` and ``1d`` are the same table with coarser bins (``derive``), for retention;
- ``peers``: per UTC day x exporter x direction x peer address (with the peer's ASN, org,
  category, metro, country, subdivision): bits, packets, flows and whether the peer was
  seen (a record with bytes > 0). Unique counts, magnitude, daily uniques, top endpoints,
  geography and the unclassified networks come from it, **exactly**: the report's unique
  counts are exact distinct counts, and a sketch would make them estimates. Its size is
  the number of distinct (day, exporter, direction, peer), far below the records of a
  busy edge, but not a constant: ``bench/RESULTS.md`` measures it;
- ``peers_1mo``: ``peers`` per UTC month, with ``days``, a bitmask of the days of the month
  the peer was seen (bit d-1: day d), derived by ``flows rollup --compact`` once the days
  are written (``month``). A month of a busy edge repeats its peers day after day: this
  table is bounded by the distinct (month, exporter, direction, peer), not by the records,
  and the daily unique counts stay exact (a popcount per day over the peers' masks). The
  report reads it for every month it covers and the daily ``peers`` otherwise (grouped
  the same way on the fly: ``month_sql``);
- ``mover``: trunkline's own transfers, one row per record (RTT median and p95 are not
  mergeable): a handful of rows beside millions of flows.

Every table merges by sum (and ``or`` of ``seen``) over its keys, so files written by many
writers, one per batch, without coordination, add up to the table of the union, and the
raw-scan path (``from_raw``) produces the very same rows: bits and packets are exact
integers (DECIMAL(38,0)), never float sums whose value depends on the order of addition.
The sans-I/O core is ``compute`` (Arrow table in, rollup tables out); files are the
store's business (``FlowStore.write_rollups``).

The categories, metros and countries are those of the enrichment at ingest: each row
carries ``enrich_id`` (a digest of the enrichment's sources and rules) and the report uses
rollups only when every row in its window carries its own enrichment's id (else it
scans raw flows and says so).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import duckdb
import pyarrow as pa

from .enrich import Enricher
from .schema import FLOW_SCHEMA, conform
from .stats import arrow, prepare
from .store import duckdb_connect

TRAFFIC_LEVELS = {"5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}  # bin width, ms
INGEST_TABLES = ("5m", "peers", "mover")  # written by every writer; 1h/1d are derived
MONTHLY = "peers_1mo"  # derived from ``peers``; its partition is the month's first day
LEVELS = (*TRAFFIC_LEVELS, "peers", MONTHLY, "mover")
EXACT = "DECIMAL(38,0)"

# the keys of each table (everything else is summed; ``seen`` is or-ed)
KEYS = {
    "5m": ("t_ms", "exporter", "flow_type", "direction", "category", "c2c", "enrich_id"),
    "peers": ("t_ms", "exporter", "direction", "peer", "category", "metro", "country",
              "subdivision", "asn", "org", "enrich_id"),
}
KEYS["1h"] = KEYS["1d"] = KEYS["5m"]
KEYS[MONTHLY] = KEYS["peers"]
SUMS = ("bits", "packets", "flows")


def enrich_id(enricher: Enricher) -> str:
    """A short digest of what decides a peer's category, metro and country: the data
    files, the taxonomy's rules and the local table, the metro list."""
    tax = enricher.taxonomy
    parts = {"sources": enricher.sources(), "rules": repr(getattr(tax, "rules", None)),
             "local": repr(getattr(tax, "local", None)),
             "metros": repr(getattr(enricher.metros, "metros", None))}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _tables_from_ef(con: duckdb.DuckDBPyConnection, eid: str) -> dict[str, pa.Table]:
    """The ingest tables from ``ef`` (stats.prepare's enriched flows), in the order they
    are written: ``5m`` last, so a batch whose 5-minute rows exist has its other tables
    (the report's coverage check counts flows in ``5m`` and ``peers``)."""
    t5 = TRAFFIC_LEVELS["5m"]
    return {
        "mover": arrow(con, f"""
            SELECT epoch_ms(ts) AS t_ms, '{eid}' AS enrich_id,
                   CAST(bits_x AS {EXACT}) AS bits, CAST(pkts_x AS {EXACT}) AS packets,
                   rtt_us, retransmits, delivery_rate_bps
            FROM ef WHERE flow_type = 'trunkline' OR rtt_us IS NOT NULL"""),
        "peers": arrow(con, f"""
            SELECT epoch_ms(ts) // 86400000 * 86400000 AS t_ms,
                   coalesce(exporter, '') AS exporter, direction, peer, category, metro,
                   country, subdivision, CAST(asn AS UBIGINT) AS asn, org,
                   '{eid}' AS enrich_id,
                   CAST(coalesce(sum(bits_x), 0) AS {EXACT}) AS bits,
                   CAST(coalesce(sum(pkts_x), 0) AS {EXACT}) AS packets,
                   count(*) AS flows, bool_or(seen_peer IS NOT NULL) AS seen
            FROM ef GROUP BY ALL"""),
        "5m": arrow(con, f"""
            SELECT epoch_ms(ts) // {t5} * {t5} AS t_ms, coalesce(exporter, '') AS exporter,
                   coalesce(flow_type, '') AS flow_type, direction, category, c2c,
                   '{eid}' AS enrich_id,
                   CAST(coalesce(sum(bits_x), 0) AS {EXACT}) AS bits,
                   CAST(coalesce(sum(pkts_x), 0) AS {EXACT}) AS packets,
                   count(*) AS flows
            FROM ef GROUP BY ALL"""),
    }


def compute(flows: pa.Table, enricher: Enricher) -> dict[str, pa.Table]:
    """Rollup tables of a batch of flows (FLOW_SCHEMA): the sans-I/O core every writer
    calls through ``FlowStore.write``."""
    if flows.schema != FLOW_SCHEMA:
        flows = conform(flows)
    con = duckdb_connect()
    con.register("flows", flows)
    prepare(con, enricher, None, None)
    return _tables_from_ef(con, enrich_id(enricher))


def from_store_window(con: duckdb.DuckDBPyConnection, enricher: Enricher, start: datetime,
                      end: datetime) -> dict[str, pa.Table]:
    """Rollup tables of the flows of ``con``'s ``flows`` view with time_start in
    [start, end): the raw-scan path (the same rows as the union of the ingest rollups)."""
    prepare(con, enricher, start, end)
    return _tables_from_ef(con, enrich_id(enricher))


def merge(level: str, tables: list[pa.Table]) -> pa.Table:
    """One table of ``level`` from partial ones (any split of the flows): sums over keys."""
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return empty(level)
    t = pa.concat_tables(tables, promote_options="default")
    if level == "mover":
        return t
    con = duckdb_connect()
    con.register("t", t)
    seen = ", bool_or(seen) AS seen" if level in ("peers", MONTHLY) else ""
    seen += ", CAST(bit_or(days) AS UINTEGER) AS days" if level == MONTHLY else ""
    keys = ", ".join(KEYS[level])
    return arrow(con, f"""
        SELECT {keys}, CAST(sum(bits) AS {EXACT}) AS bits, CAST(sum(packets) AS {EXACT}) AS packets,
               CAST(sum(flows) AS BIGINT) AS flows{seen}
        FROM t GROUP BY {keys} ORDER BY ALL""")


def derive(t5m: pa.Table, level: str) -> pa.Table:
    """The ``1h`` or ``1d`` traffic table from 5-minute rows (sums into coarser bins)."""
    width = TRAFFIC_LEVELS[level]
    if t5m.num_rows == 0:
        return empty(level)
    con = duckdb_connect()
    con.register("t", t5m)
    rest = ", ".join(k for k in KEYS[level] if k != "t_ms")
    return arrow(con, f"""
        SELECT t_ms // {width} * {width} AS t_ms, {rest},
               CAST(sum(bits) AS {EXACT}) AS bits, CAST(sum(packets) AS {EXACT}) AS packets,
               CAST(sum(flows) AS BIGINT) AS flows
        FROM t GROUP BY ALL ORDER BY ALL""")


def month_sql(source: str) -> str:
    """SQL turning daily ``peers`` rows (of ``source``) into ``peers_1mo`` rows: per UTC
    month, sums, ``seen`` or-ed and the seen days as a bitmask. The one place the monthly
    table is defined: ``derive_month`` writes it, the report groups uncovered months so."""
    keys = ", ".join(k for k in KEYS["peers"] if k != "t_ms")
    # t_ms is UTC epoch ms; epoch_ms() of it is a TIMESTAMP without zone, so no TZ applies
    return f"""
        SELECT epoch_ms(date_trunc('month', epoch_ms(t_ms))) AS t_ms, {keys},
               CAST(sum(bits) AS {EXACT}) AS bits, CAST(sum(packets) AS {EXACT}) AS packets,
               CAST(sum(flows) AS BIGINT) AS flows, bool_or(seen) AS seen,
               CAST(coalesce(bit_or(CASE WHEN seen THEN 1 << (day(epoch_ms(t_ms)) - 1) END), 0)
                    AS UINTEGER) AS days
        FROM {source} GROUP BY ALL"""


def derive_month(peers: pa.Table) -> pa.Table:
    """The ``peers_1mo`` rows of daily ``peers`` rows (any days, any split)."""
    if peers.num_rows == 0:
        return empty(MONTHLY)
    con = duckdb_connect()
    con.register("t", peers)
    return arrow(con, month_sql("t") + " ORDER BY ALL")


_EMPTY_SQL = {
    "5m": f"SELECT 0::BIGINT AS t_ms, '' AS exporter, '' AS flow_type, '' AS direction, "
          f"'' AS category, false AS c2c, '' AS enrich_id, 0::{EXACT} AS bits, "
          f"0::{EXACT} AS packets, 0::BIGINT AS flows LIMIT 0",
    "peers": f"SELECT 0::BIGINT AS t_ms, '' AS exporter, '' AS direction, '' AS peer, "
             f"'' AS category, '' AS metro, '' AS country, '' AS subdivision, 0::UBIGINT AS asn, "
             f"'' AS org, '' AS enrich_id, 0::{EXACT} AS bits, 0::{EXACT} AS packets, "
             f"0::BIGINT AS flows, false AS seen LIMIT 0",
    "mover": f"SELECT 0::BIGINT AS t_ms, '' AS enrich_id, 0::{EXACT} AS bits, "
             f"0::{EXACT} AS packets, 0::UINTEGER AS rtt_us, 0::UINTEGER AS retransmits, "
             f"0::UBIGINT AS delivery_rate_bps LIMIT 0",
}
_EMPTY_SQL["1h"] = _EMPTY_SQL["1d"] = _EMPTY_SQL["5m"]
_EMPTY_SQL[MONTHLY] = _EMPTY_SQL["peers"].replace(" LIMIT 0", ", 0::UINTEGER AS days LIMIT 0")


def empty(level: str) -> pa.Table:
    """A table of ``level`` without rows (the schema every reader expects)."""
    return arrow(duckdb_connect(), _EMPTY_SQL[level])


class Rollups:
    """What a writer hands the store so that each batch also writes its rollups: the
    enrichment (loaded once per writer) and the digest that labels the rows."""

    def __init__(self, enricher: Enricher):
        self.enricher = enricher
        self.enrich_id = enrich_id(enricher)

    def __call__(self, flows: pa.Table) -> dict[str, pa.Table]:
        return compute(flows, self.enricher)
