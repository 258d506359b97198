"""Compute every number the report shows, into one JSON-ready dict.

Nothing is drawn here: charts and HTML are made from this dict alone, so report.json
holds exactly what the page shows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from ... import __version__
from ..elephants import Thresholds, find, heavy_hitters
from ..enrich import NO_METRO, Enricher
from ..enrich.taxonomy import CATEGORIES, CATEGORY_LABELS, CLOUDS
from ..stats import (
    HLL_P,
    RATE_BIN_S,
    Quarter,
    bits_by,
    hll_merge,
    hll_registers,
    metro_category,
    prepare,
    rates,
    share_table,
    uniques,
)
from ..store import FlowStore

ROUND = 6  # decimals kept for percentages and ratios in report.json


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), ROUND) + 0.0  # + 0.0: no "-0.0"


def build(store: FlowStore, quarter: Quarter, enricher: Enricher, *,
          thresholds: Thresholds | None = None, sites: dict[str, str] | None = None,
          top_n: int = 20, max_metros: int = 15) -> tuple[dict, pa.Table]:
    """-> (report dict, monthly HLL sketch table) for ``quarter`` (and its predecessor
    for the quarter-over-quarter change)."""
    th = thresholds or Thresholds()
    q, pq = quarter, quarter.prev()
    con = store.connect()
    rows = prepare(con, enricher, pq.start, q.end, sites)
    inq = f"quarter = '{q}'"
    n_flows, n_sim = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE flow_type = 'simulated') FROM ef WHERE {inq}"
    ).fetchone()
    if n_flows == 0:
        raise ValueError(f"no flows in {q} in the store at {store.root}")

    qb = bits_by(con, "quarter")
    cur = share_table(qb.get(str(q), {}))
    prev = share_table(qb[str(pq)]) if str(pq) in qb else None
    total_bits = sum(v["bits"] for v in cur.values())
    shares = {c: {"label": CATEGORY_LABELS[c], "bits": cur[c]["bits"], "share_pct": _r(cur[c]["share_pct"]),
                  "prev_share_pct": _r(prev[c]["share_pct"]) if prev else None,
                  "change_pts": _r(cur[c]["share_pct"] - prev[c]["share_pct"]) if prev else None}
              for c in CATEGORIES}

    mb = bits_by(con, "month")
    months = sorted(mb)
    monthly = []
    for m in months:
        st = share_table(mb[m])
        prev_m = share_table(mb[months[months.index(m) - 1]]) if months.index(m) > 0 else None
        monthly.append({"month": m, "bits": sum(mb[m].values()), "categories": {
            c: {"bits": st[c]["bits"], "share_pct": _r(st[c]["share_pct"]),
                "change_pts": _r(st[c]["share_pct"] - prev_m[c]["share_pct"]) if prev_m else None}
            for c in CATEGORIES}})

    # metro x category: bits, exact uniques, magnitude; approximate uniques from sketches
    mc = metro_category(con, q)
    sketch = hll_registers(con, inq)
    approx_mc = hll_merge(sketch, ["metro", "category"])
    approx_cat = hll_merge(sketch, ["category"])
    approx_all = hll_merge(sketch, [])
    metro_bits: dict[str, float] = {}
    for r in mc:
        metro_bits[r["metro"]] = metro_bits.get(r["metro"], 0.0) + r["bits"]
    named = sorted((m for m in metro_bits if m != NO_METRO), key=lambda m: (-metro_bits[m], m))
    shown = named[:max_metros] + ([NO_METRO] if NO_METRO in metro_bits else [])
    cell = {(r["metro"], r["category"]): r for r in mc}
    heat = {"metros": shown, "categories": list(CATEGORIES),
            "bits": [[cell.get((m, c), {}).get("bits", 0.0) for c in CATEGORIES] for m in shown],
            "bits_per_ip": [[_r(cell.get((m, c), {}).get("bits_per_ip", 0.0)) for c in CATEGORIES] for m in shown],
            "unique_ips": [[cell.get((m, c), {}).get("unique_ips", 0) for c in CATEGORIES] for m in shown],
            "unique_ips_approx": [[round(approx_mc.get((m, c), 0.0)) if (m, c) in cell else 0
                                   for c in CATEGORIES] for m in shown]}
    metro_uniques = uniques(con, inq, by="metro")
    metros = []
    for m in named:
        lat, lon = enricher.metros.centre(m)
        cats = {c: cell[(m, c)]["bits"] for c in CATEGORIES if (m, c) in cell}
        metros.append({"metro": m, "lat": _r(lat), "lon": _r(lon), "bits": metro_bits[m],
                       "share_pct": _r(100 * metro_bits[m] / total_bits),
                       "unique_ips": metro_uniques.get(m, 0),
                       "top_category": max(cats, key=lambda c: (cats[c], c)),
                       "ai_us": any(x.ai_us for x in enricher.metros.metros if x.name == m)})

    uniq_cat = uniques(con, inq, by="category")
    uniq = {"all": uniques(con, inq)["all"], "all_approx": round(approx_all.get((), 0.0)),
            "by_category": {c: uniq_cat.get(c, 0) for c in CATEGORIES},
            "by_category_approx": {c: round(approx_cat.get((c,), 0.0)) for c in CATEGORIES},
            "method": f"exact: count(DISTINCT seen_peer); approximate: HyperLogLog p={HLL_P}, "
                      "one sketch per month x metro x category, merged by register max",
            "sketch_hash": f"DuckDB {duckdb.__version__} hash(peer): merge only sketches made "
                           "with the same hash"}
    c2c_bits = con.execute(f"SELECT coalesce(sum(bits), 0) FROM ef WHERE {inq} AND c2c").fetchone()[0]
    uncl = con.execute(f"""SELECT coalesce(sum(bits), 0), count(DISTINCT seen_peer) FROM ef
                           WHERE {inq} AND category IN ('unknown', 'other')""").fetchone()
    uncl_top = con.execute(f"""SELECT asn, org, category, sum(bits) AS b, count(DISTINCT seen_peer) FROM ef
                               WHERE {inq} AND category IN ('unknown', 'other')
                               GROUP BY ALL ORDER BY b DESC, asn LIMIT 10""").fetchall()
    mover = con.execute(f"""SELECT count(*), coalesce(sum(bits), 0), median(rtt_us), quantile_cont(rtt_us, 0.95),
                                   coalesce(sum(retransmits), 0), coalesce(sum(pkts), 0), avg(delivery_rate_bps)
                            FROM ef WHERE {inq} AND (flow_type = 'trunkline' OR rtt_us IS NOT NULL)""").fetchone()
    nometro = metro_bits.get(NO_METRO, 0.0)
    site_rows = con.execute(f"SELECT site, sum(bits) FROM ef WHERE {inq} GROUP BY 1 ORDER BY 2 DESC").fetchall()
    dirs = dict(con.execute(f"SELECT direction, sum(bits) FROM ef WHERE {inq} GROUP BY 1").fetchall())

    all_el = find(con, th, inq)
    el_bits = sum(e["bytes"] * 8 for e in all_el)
    el_by_cat: dict[str, float] = {}
    for e in all_el:
        el_by_cat[e["category"]] = el_by_cat.get(e["category"], 0.0) + e["bytes"] * 8
    elephants = {"count": len(all_el), "bits": el_bits, "share_pct": _r(100 * el_bits / total_bits),
                 "by_category_bits": el_by_cat, "top": [_el_row(e) for e in all_el[:top_n]],
                 "thresholds": th.as_dict()}
    hh = heavy_hitters(con, inq, top_n)
    for t in hh["top"]:
        t["share_pct"] = _r(t["share_pct"])

    report = {
        "title": f"Network stats {q}",
        "simulated": n_sim > 0,
        "simulated_flows": int(n_sim),
        "quarter": str(q),
        "previous_quarter": str(pq),
        "previous_quarter_present": prev is not None,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"trunkline {__version__}",
        "categories": [{"id": c, "label": CATEGORY_LABELS[c]} for c in CATEGORIES],
        "totals": {"flows": int(n_flows), "bits": total_bits, "bytes": total_bits / 8,
                   "rows_enriched": int(rows), "endpoints_enriched": int(enricher.stats.addresses)},
        "shares": shares,
        "monthly": monthly,
        "rates": {c: {k: _r(v) for k, v in d.items()} for c, d in rates(con, q).items()},
        "unique_endpoints": uniq,
        "heatmap": heat,
        "metros": metros,
        "cloud_to_cloud": {"bits": float(c2c_bits), "share_pct": _r(100 * c2c_bits / total_bits)},
        "directions": {k: float(v) for k, v in dirs.items()},
        "sites": [{"site": s, "bits": float(b), "share_pct": _r(100 * b / total_bits)} for s, b in site_rows],
        "top_endpoints": hh,
        "mover": {"flows": int(mover[0]), "bits": float(mover[1]),
                  "share_pct": _r(100 * mover[1] / total_bits),
                  "rtt_us_median": _r(mover[2]), "rtt_us_p95": _r(mover[3]),
                  "retransmits": int(mover[4]),
                  "retransmit_pct": _r(100 * mover[4] / mover[5]) if mover[5] else None,
                  "delivery_rate_bps_avg": _r(mover[6]),
                  "note": "flows of trunkline's own transfers (stored directly, or received over IPFIX with trunkline's TCP_INFO enterprise fields)"},
        "elephants": elephants,
        "methodology": {
            "sources": enricher.sources(),
            "curated_asns": enricher.taxonomy.curated_asns,
            "renormalisation": "bits = bytes x 8 x sampling_rate (0 or missing = 1)",
            "peer": "the non-local end of a flow ([local] prefixes/ASNs of the taxonomy); "
                    "the destination when both or neither end is local",
            "cloud_to_cloud": f"both ends in {sorted(CLOUDS)}; the local end counts as "
                              f"'{enricher.taxonomy.local.category}'",
            "metro": "nearest metro centre within its radius; GeoIP answers without a city "
                     "(country centroids) are 'no metro'",
            "rates": f"{RATE_BIN_S} s bins over the whole quarter, empty bins count as 0",
            "unclassified": {"bits": float(uncl[0]), "share_pct": _r(100 * uncl[0] / total_bits),
                             "endpoints": int(uncl[1]),
                             "categories": ["unknown", "other"],
                             "top": [{"asn": int(a or 0), "org": o, "category": c, "bits": float(b),
                                      "share_pct": _r(100 * b / total_bits), "endpoints": int(n)}
                                     for a, o, c, b, n in uncl_top]},
            "no_metro": {"bits": nometro, "share_pct": _r(100 * nometro / total_bits)},
            "elephant_thresholds": th.as_dict(),
            "percent_decimals": ROUND,
        },
    }
    return report, sketch


def _el_row(e: dict) -> dict:
    return {"src_addr": e["src_addr"], "dst_addr": e["dst_addr"], "src_port": e["src_port"],
            "dst_port": e["dst_port"], "proto": e["proto"], "peer": e["peer"], "org": e["org"],
            "asn": int(e["asn"] or 0), "category": e["category"], "metro": e["metro"],
            "start": datetime.fromtimestamp(e["start"], UTC).strftime("%Y-%m-%d %H:%M"),
            "duration_s": e["duration_s"], "bytes": e["bytes"], "avg_bps": e["avg_bps"],
            "peak_bps": e["peak_bps"]}
