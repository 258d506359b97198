"""Compute every number the report shows, into one JSON-ready dict.

Nothing is drawn here: charts and HTML are made from this dict alone, so report.json
holds exactly what the page shows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from ... import __version__
from ...errors import UsageError
from .. import elephant_table
from ..elephants import Thresholds, find
from ..enrich import NO_METRO, Enricher
from ..enrich.taxonomy import CATEGORIES, CATEGORY_LABELS, CLOUDS
from ..scan import Loaded, load
from ..stats import (
    HLL_P,
    RATE_BIN_S,
    Quarter,
    bits_per,
    cloud_to_cloud_bits,
    elephant_flows,
    flow_counts,
    geography,
    heavy_hitters,
    hll_merge,
    hll_registers,
    metro_category,
    mover,
    per_category,
    prepare,
    rates,
    region_cells,
    report_tables,
    sankey,
    unclassified,
    uniques,
)
from ..store import FlowStore, duckdb_connect

ROUND = 6  # decimals kept for percentages and ratios in report.json
DIRECTIONS = {"in": "ingress", "out": "egress"}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), ROUND) + 0.0  # + 0.0: no "-0.0"


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _pts(cur: float | None, prev: float | None) -> float | None:
    """Change in percentage points (None when either side is missing)."""
    return None if cur is None or prev is None else cur - prev


def _rel(cur: float | None, prev: float | None) -> float | None:
    """Relative change in % (None when there is no previous value to compare with)."""
    return None if cur is None or not prev else 100.0 * (cur - prev) / prev


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _figure(fid: str, label: str, unit: str, cur, prev, change: str, present: bool) -> dict:
    prev = prev if present else None
    ch = _pts(cur, prev) if change == "pts" else _rel(cur, prev)
    return {"id": fid, "label": label, "unit": unit, "value": _r(cur), "prev": _r(prev),
            "change": _r(ch), "change_unit": change}


def build(store: FlowStore, quarter: Quarter, enricher: Enricher, *,
          thresholds: Thresholds | None = None, sites: dict[str, str] | None = None,
          regions: dict[str, str] | None = None, home_country: str | None = None,
          top_n: int = 20, max_metros: int = 15, source: str = "auto", ray: str | None = None,
          enrich_args: dict | None = None) -> tuple[dict, pa.Table]:
    """-> (report dict, monthly HLL sketch table) for ``quarter`` (and its predecessor
    for the quarter-over-quarter change). Every figure but the elephants comes from the
    rollups (``source``: auto, rollups or raw; see ``flows.scan.load``); ``ray`` scans
    raw flows over a Ray cluster's tasks, which rebuild the enrichment from ``enrich_args``
    (``Enricher.from_dir``'s arguments)."""
    th = thresholds or Thresholds()
    q, pq = quarter, quarter.prev()
    qs, pqs = str(q), str(pq)
    con = duckdb_connect()
    con.execute("SET enable_progress_bar = false")
    raw_scan = None
    if ray is not None:
        from ..scan_ray import rollups_on_ray

        source = "raw"

        def raw_scan():
            return rollups_on_ray(store, pq.start, q.end, ray, enrich_args or {})
    loaded = load(con, store, enricher, pq.start, q.end, source=source, raw_scan=raw_scan)
    rows = report_tables(con, sites, regions)
    inq = f"quarter = '{q}'"
    n_flows, n_sim = flow_counts(con, q)
    if n_flows == 0:
        raise UsageError(f"no flows in {q} in the store at {store.root}")

    # --- per category, per direction, this quarter and the previous one ----------------
    pc = per_category(con, "quarter")
    present = any(k[0] == pqs for k in pc)

    def cell(period: str, d: str, c: str) -> dict:
        return pc.get((period, d, c), {"bits": 0.0, "unique_ips": 0})

    def total(period: str, d: str) -> float:
        return sum(cell(period, d, c)["bits"] for c in CATEGORIES)

    total_bits = total(qs, "all")
    rt, prt = rates(con, q), rates(con, pq)
    shares = {}
    for c in CATEGORIES:
        cur, prev = cell(qs, "all", c), cell(pqs, "all", c)
        sh, psh = _pct(cur["bits"], total_bits), _pct(prev["bits"], total(pqs, "all"))
        psh = psh if present else None
        mag, pmag = _div(cur["bits"], cur["unique_ips"]), _div(prev["bits"], prev["unique_ips"])
        row = {"label": CATEGORY_LABELS[c], "bits": cur["bits"], "share_pct": _r(sh or 0.0),
               "prev_bits": prev["bits"] if present else None, "prev_share_pct": _r(psh),
               "change_pts": _r(_pts(sh or 0.0, psh)),
               "unique_ips": cur["unique_ips"], "prev_unique_ips": prev["unique_ips"] if present else None,
               "unique_ips_change_pct": _r(_rel(cur["unique_ips"], prev["unique_ips"]) if present else None),
               "bits_per_ip": _r(mag), "prev_bits_per_ip": _r(pmag if present else None),
               "bits_per_ip_change_pct": _r(_rel(mag, pmag) if present else None),
               "avg_bps": _r(rt[c]["avg_bps"]), "prev_avg_bps": _r(prt[c]["avg_bps"]) if present else None,
               "p95_bps": _r(rt[c]["p95_bps"]), "prev_p95_bps": _r(prt[c]["p95_bps"]) if present else None,
               "p95_change_pct": _r(_rel(rt[c]["p95_bps"], prt[c]["p95_bps"]) if present else None)}
        for d, name in DIRECTIONS.items():
            dc, dp = cell(qs, d, c), cell(pqs, d, c)
            dsh, dpsh = _pct(dc["bits"], total(qs, d)), _pct(dp["bits"], total(pqs, d))
            dpsh = dpsh if present else None
            row[name] = {"bits": dc["bits"], "share_pct": _r(dsh), "prev_share_pct": _r(dpsh),
                         "change_pts": _r(_pts(dsh, dpsh)), "unique_ips": dc["unique_ips"]}
        shares[c] = row

    # --- months: bits, shares, uniques and magnitude per category ------------------------
    pm = per_category(con, "month")
    months = sorted({k[0] for k in pm})
    monthly, prev_m = [], None
    for m in months:
        mt = sum(pm.get((m, "all", c), {"bits": 0.0})["bits"] for c in CATEGORIES)
        cats = {}
        for c in CATEGORIES:
            x = pm.get((m, "all", c), {"bits": 0.0, "unique_ips": 0})
            sh = _pct(x["bits"], mt) or 0.0
            cats[c] = {"bits": x["bits"], "share_pct": _r(sh),
                       "change_pts": _r(sh - prev_m[c]) if prev_m else None,
                       "unique_ips": x["unique_ips"], "bits_per_ip": _r(_div(x["bits"], x["unique_ips"])),
                       **{f"{name}_bits": pm.get((m, d, c), {"bits": 0.0})["bits"]
                          for d, name in DIRECTIONS.items()}}
        prev_m = {c: cats[c]["share_pct"] for c in CATEGORIES}
        monthly.append({"month": m, "bits": mt, "categories": cats})

    # --- metro x category: bits, exact uniques, magnitude; approximate uniques ---------
    mc = metro_category(con, q)
    sketch = hll_registers(con, inq, table="rp")
    approx_mc = hll_merge(sketch, ["metro", "category"])
    approx_cat = hll_merge(sketch, ["category"])
    approx_all = hll_merge(sketch, [])
    metro_bits: dict[str, float] = {}
    for r in mc:
        metro_bits[r["metro"]] = metro_bits.get(r["metro"], 0.0) + r["bits"]
    named = sorted((m for m in metro_bits if m != NO_METRO), key=lambda m: (-metro_bits[m], m))
    shown = named[:max_metros] + ([NO_METRO] if NO_METRO in metro_bits else [])
    mcell = {(r["metro"], r["category"]): r for r in mc}
    heat = {"metros": shown, "categories": list(CATEGORIES),
            "bits": [[mcell.get((m, c), {}).get("bits", 0.0) for c in CATEGORIES] for m in shown],
            "bits_per_ip": [[_r(mcell.get((m, c), {}).get("bits_per_ip", 0.0)) for c in CATEGORIES] for m in shown],
            "unique_ips": [[mcell.get((m, c), {}).get("unique_ips", 0) for c in CATEGORIES] for m in shown],
            "unique_ips_approx": [[round(approx_mc.get((m, c), 0.0)) if (m, c) in mcell else 0
                                   for c in CATEGORIES] for m in shown]}
    metro_uniques = uniques(con, inq, by="metro")
    metros = []
    for m in named:
        lat, lon = enricher.metros.centre(m)
        cats = {c: mcell[(m, c)]["bits"] for c in CATEGORIES if (m, c) in mcell}
        metros.append({"metro": m, "lat": _r(lat), "lon": _r(lon), "bits": metro_bits[m],
                       "share_pct": _r(100 * metro_bits[m] / total_bits),
                       "unique_ips": metro_uniques.get(m, 0),
                       "top_category": max(cats, key=lambda c: (cats[c], c)),
                       "ai_us": any(x.ai_us for x in enricher.metros.metros if x.name == m)})

    all_uniq = uniques(con, inq)["all"]
    prev_uniq = uniques(con, f"quarter = '{pq}'")["all"]
    uniq = {"all": all_uniq, "all_approx": round(approx_all.get((), 0.0)),
            "prev_all": prev_uniq if present else None,
            "by_category": {c: shares[c]["unique_ips"] for c in CATEGORIES},
            "by_category_approx": {c: round(approx_cat.get((c,), 0.0)) for c in CATEGORIES},
            "method": f"exact: distinct peer addresses of records with bytes > 0; approximate: "
                      f"HyperLogLog p={HLL_P}, one sketch per month x metro x category, merged by register max",
            "sketch_hash": f"DuckDB {duckdb.__version__} hash(peer): merge only sketches made "
                           "with the same hash"}
    c2c = cloud_to_cloud_bits(con)
    c2c_sh = _pct(c2c.get(qs, 0.0), total_bits) or 0.0
    c2c_psh = (_pct(c2c.get(pqs, 0.0), total(pqs, "all")) or 0.0) if present else None
    (uncl_bits, uncl_n), uncl_top = unclassified(con, q)
    mv = mover(con, q)
    nometro = metro_bits.get(NO_METRO, 0.0)
    site_rows = bits_per(con, q, "site")
    dirs = dict(bits_per(con, q, "direction"))

    # --- figures with their previous quarter and change ---------------------------------
    ptotal = total(pqs, "all")
    mag_all = _div(total_bits, all_uniq)
    pmag_all = _div(ptotal, prev_uniq)
    figures = [
        _figure("traffic", "Traffic", "bits", total_bits, ptotal, "%", present),
        _figure("ingress", "Ingress (peer to us)", "bits", total(qs, "in"), total(pqs, "in"), "%", present),
        _figure("egress", "Egress (us to peer)", "bits", total(qs, "out"), total(pqs, "out"), "%", present),
        _figure("cloud_to_cloud", "Cloud-to-cloud share", "%", c2c_sh, c2c_psh, "pts", present),
        _figure("hyperscaler", "Hyperscaler share", "%", shares["hyperscaler"]["share_pct"],
                shares["hyperscaler"]["prev_share_pct"], "pts", present),
        _figure("neocloud", "Neocloud share", "%", shares["neocloud"]["share_pct"],
                shares["neocloud"]["prev_share_pct"], "pts", present),
        _figure("unique_ips", "Unique peer IPs", "count", all_uniq, prev_uniq, "%", present),
        _figure("bits_per_ip", "Magnitude (bits per unique IP)", "bits", mag_all, pmag_all, "%", present),
        _figure("p95_bps", "p95 rate (5-minute bins)", "bits/s", rt["all"]["p95_bps"], prt["all"]["p95_bps"],
                "%", present),
        _figure("avg_bps", "Average rate", "bits/s", rt["all"]["avg_bps"], prt["all"]["avg_bps"], "%", present),
    ]

    # --- regions (exporter sites), Sankey, geography -------------------------------------
    rc = region_cells(con, q)
    region_bits: dict[str, float] = {}
    for x in rc:
        if x["direction"] == "all":
            region_bits[x["region"]] = region_bits.get(x["region"], 0.0) + x["bits"]
    region_names = sorted(region_bits, key=lambda r: (-region_bits[r], r))
    for x in rc:
        for k in ("avg_bps", "p95_bps", "bits_per_ip", "bits_per_ip_p95", "daily_unique_ips_avg",
                  "daily_unique_ips_p95"):
            x[k] = _r(x[k])
        x["direction"] = DIRECTIONS.get(x["direction"], x["direction"])
    sk = [{"region": r, "direction": DIRECTIONS[d], "category": c, "bits": b} for r, d, c, b in sankey(con, q)]
    geo = _geography(con, q, pq, total_bits, ptotal, present, home_country)

    all_el, el_source = _elephants(store, enricher, q, th, sites, regions, loaded)
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
        "quarter": qs,
        "previous_quarter": pqs,
        "previous_quarter_present": present,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"trunkline {__version__}",
        "categories": [{"id": c, "label": CATEGORY_LABELS[c]} for c in CATEGORIES],
        "totals": {"flows": int(n_flows), "bits": total_bits, "bytes": total_bits / 8,
                   "rows_enriched": int(rows)},
        "source": {**loaded.as_dict(), "elephants": el_source},
        "figures": figures,
        "shares": shares,
        "monthly": monthly,
        "rates": {c: {k: _r(v) for k, v in d.items()} for c, d in rt.items()},
        "prev_rates": {c: {k: _r(v) for k, v in d.items()} for c, d in prt.items()} if present else None,
        "unique_endpoints": uniq,
        "heatmap": heat,
        "metros": metros,
        "regions": {"regions": region_names, "months": q.months(), "categories": list(CATEGORIES),
                    "cells": rc},
        "sankey": sk,
        "geo": geo,
        "cloud_to_cloud": {"bits": c2c.get(qs, 0.0), "share_pct": _r(c2c_sh),
                           "prev_bits": c2c.get(pqs, 0.0) if present else None,
                           "prev_share_pct": _r(c2c_psh), "change_pts": _r(_pts(c2c_sh, c2c_psh))},
        "directions": dirs,
        "sites": [{"site": s, "bits": b, "share_pct": _r(100 * b / total_bits)} for s, b in site_rows],
        "top_endpoints": hh,
        "mover": {"flows": int(mv[0]), "bits": float(mv[1]),
                  "share_pct": _r(100 * mv[1] / total_bits),
                  "rtt_us_median": _r(mv[2]), "rtt_us_p95": _r(mv[3]),
                  "retransmits": int(mv[4]),
                  "retransmit_pct": _r(100 * mv[4] / mv[5]) if mv[5] else None,
                  "delivery_rate_bps_avg": _r(mv[6]),
                  "note": "flows of trunkline's own transfers (stored directly, or received over IPFIX with trunkline's TCP_INFO enterprise fields)"},
        "elephants": elephants,
        "methodology": {
            "sources": enricher.sources(),
            "curated_asns": enricher.taxonomy.curated_asns,
            "renormalisation": "bits = bytes x 8 x sampling_rate (0 or missing = 1)",
            "peer": "the non-local end of a flow ([local] prefixes/ASNs of the taxonomy); "
                    "the destination when both or neither end is local",
            "direction": "ingress: the peer sends to our (local) end; egress: our end sends to the "
                         "peer; flows with both or neither end local count in totals only",
            "cloud_to_cloud": f"both ends in {sorted(CLOUDS)}; the local end counts as "
                              f"'{enricher.taxonomy.local.category}'",
            "metro": "nearest metro centre within its radius; GeoIP answers without a city "
                     "(country centroids) are 'no metro'",
            "time": "every bucket (month, quarter, day, 5-minute bin) in UTC",
            "rates": f"{RATE_BIN_S} s bins over the whole quarter, empty bins count as 0",
            "unclassified": {"bits": uncl_bits, "share_pct": _r(100 * uncl_bits / total_bits),
                             "endpoints": uncl_n,
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


def _geography(con, q: Quarter, pq: Quarter, total_bits: float, ptotal: float, present: bool,
               home: str | None) -> dict:
    """Countries (with and without the home country) and US states."""
    cur = geography(con, f"quarter = '{q}'", "country")
    prev = {d["key"]: d["bits"] for d in geography(con, f"quarter = '{pq}'", "country")}
    placed = [d for d in cur if d["key"]]
    unplaced = sum(d["bits"] for d in cur if not d["key"])
    home = home.upper() if home else None
    away = sum(d["bits"] for d in placed if d["key"] != home)
    paway = sum(b for k, b in prev.items() if k and k != home)
    countries = []
    for d in placed:
        sh = _pct(d["bits"], total_bits)
        psh = _pct(prev.get(d["key"], 0.0), ptotal) if present else None
        row = {"country": d["key"], "bits": d["bits"], "share_pct": _r(sh), "prev_share_pct": _r(psh),
               "change_pts": _r(_pts(sh, psh)), "ingress_bits": d["ingress_bits"],
               "egress_bits": d["egress_bits"], "unique_ips": d["unique_ips"],
               "top_category": max(d["categories"], key=lambda c: (d["categories"][c], c)),
               "categories": d["categories"]}
        if home:
            ex = None if d["key"] == home else _pct(d["bits"], away)
            pex = (None if d["key"] == home else _pct(prev.get(d["key"], 0.0), paway)) if present else None
            row.update(share_excl_home_pct=_r(ex), prev_share_excl_home_pct=_r(pex),
                       change_excl_home_pts=_r(_pts(ex, pex)))
        countries.append(row)
    us = geography(con, f"quarter = '{q}'", "subdivision", "country = 'US'")
    us_total = sum(d["bits"] for d in us)
    states = [{"state": d["key"], "bits": d["bits"], "share_pct": _r(_pct(d["bits"], us_total)),
               "ingress_bits": d["ingress_bits"], "egress_bits": d["egress_bits"],
               "unique_ips": d["unique_ips"],
               "top_category": max(d["categories"], key=lambda c: (d["categories"][c], c))}
              for d in us if d["key"]]
    return {"home_country": home, "countries": countries,
            "unplaced_bits": unplaced, "unplaced_share_pct": _r(_pct(unplaced, total_bits)),
            "us_states": states, "us_bits": us_total,
            "us_no_state_bits": sum(d["bits"] for d in us if not d["key"])}


def _elephants(store: FlowStore, enricher: Enricher, q: Quarter, th: Thresholds,
               sites: dict[str, str] | None, regions: dict[str, str] | None,
               loaded: Loaded) -> tuple[list[dict], dict]:
    """Elephant episodes of ``q`` and where their records came from: the quarter's
    elephant table when it is fresh (``elephant_table``; the report read rollups), else
    raw flows, of which only the 5-tuples that moved enough to be one are enriched
    (``stats.elephant_flows``). Raw flows of some of the quarter's days gone and no fresh
    table: an error, not a count that silently misses those days."""
    con = duckdb_connect()
    con.execute("SET enable_progress_bar = false")
    why = "the report scans raw flows"
    if loaded.kind == "rollups":
        why = elephant_table.load(con, store, q, th, loaded.day_flows, loaded.files)
    if why:
        store.connect(con)  # the raw flows view
        gone = [d for d in loaded.raw_gone if q.start.strftime("%Y-%m-%d") <= d < q.end.strftime("%Y-%m-%d")]
        if gone:
            raise ValueError(f"no elephants for {q}: {why}, and the raw flows of {len(gone)} day(s) "
                             f"are gone ({gone[0]}...); compact a quarter before retention removes its raw flows")
        if elephant_flows(con, q.start, q.end, th.min_bytes * 8) == 0:
            return [], {"kind": "raw", "reason": why}
    n = con.execute("SELECT count(*) FROM el_flows").fetchall()[0][0]
    source = {"kind": "raw" if why else elephant_table.LEVEL, "reason": why}
    if n == 0:
        return [], source
    prepare(con, enricher, q.start, q.end, sites, regions, table="el_flows")
    return find(con, th, "true"), source


def _el_row(e: dict) -> dict:
    return {"src_addr": e["src_addr"], "dst_addr": e["dst_addr"], "src_port": e["src_port"],
            "dst_port": e["dst_port"], "proto": e["proto"], "peer": e["peer"], "org": e["org"],
            "asn": int(e["asn"] or 0), "category": e["category"], "metro": e["metro"],
            "start": datetime.fromtimestamp(e["start"], UTC).strftime("%Y-%m-%d %H:%M"),
            "duration_s": e["duration_s"], "bytes": e["bytes"], "avg_bps": e["avg_bps"],
            "peak_bps": e["peak_bps"]}
