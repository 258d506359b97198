"""Benchmark of the flow lens (issue 6): enrichment + classification throughput and the
time to build the quarterly report over a large simulated store.

    .venv/bin/python bench/flows_report.py --flows 10000000 --out /tmp/tl-bench-flows

Steps (each timed in-process with perf_counter; lookups take the median of --repeat):
  1. load the enrichment data (ASN ranges, GeoLite2 City MMDB, taxonomy, metros);
  2. enrich + classify N unique addresses drawn from real announced ranges (ASN lookup,
     taxonomy rules, geo with per-prefix reuse, metro) -> lookups/s;
  3. simulate a quarter of --flows records (plus half as many for the previous quarter);
  4. write the report (distinct addresses, enrichment, DuckDB join, all metrics, elephants,
     charts, HTML) -> seconds and flows/s.
Prints a Markdown table and one JSON line. Needs ../shared/data/enrich.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from trunkline.flows.enrich import Enricher
from trunkline.flows.enrich.asn import AsnRanges
from trunkline.flows.report import write_report
from trunkline.flows.simulate import PREVIOUS_SHIFT, _text, simulate
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore


def random_addresses(asn: AsnRanges, n: int, seed: int = 5) -> list[str]:
    """n distinct IPv4 addresses inside announced ranges, weighted by range size."""
    rng = np.random.default_rng(seed)
    s, e = asn.v4.starts.astype(np.int64), asn.v4.ends.astype(np.int64)
    size = e - s + 1
    pick = rng.choice(len(s), size=int(n * 1.2), p=size / size.sum())
    addr = np.unique(s[pick] + (rng.random(len(pick)) * size[pick]).astype(np.int64))
    rng.shuffle(addr)
    return _text(addr[:n]).to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=10_000_000)
    ap.add_argument("--lookups", type=int, default=1_000_000, help="unique addresses to enrich")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="/tmp/tl-bench-flows")
    ap.add_argument("--enrich-data", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the store and report")
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    res: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "flows": a.flows}

    t = time.perf_counter()
    e = Enricher.from_dir(a.enrich_data)
    res["load_s"] = time.perf_counter() - t

    addrs = random_addresses(e.asn, a.lookups)
    times, geo = [], 0
    for _ in range(a.repeat):
        fresh = Enricher(e.asn, e.geo, e.taxonomy, e.metros)
        t = time.perf_counter()
        fresh.endpoints(addrs)
        times.append(time.perf_counter() - t)
        geo = fresh.stats.geo_lookups
    res["lookups"] = len(addrs)
    res["enrich_s_median"] = statistics.median(times)
    res["lookups_per_s"] = len(addrs) / res["enrich_s_median"]
    res["geo_db_lookups"] = geo

    q = Quarter.parse("2025Q4")
    store = FlowStore(out / "store")
    t = time.perf_counter()
    simulate(q.prev(), store, e, flows=a.flows // 2, seed=7, drift=0.5, shift=PREVIOUS_SHIFT)
    sim = simulate(q, store, e, flows=a.flows, seed=7)
    res["simulate_s"] = time.perf_counter() - t
    res["unique_peers"] = sim.unique_peers

    e.stats.addresses, e.stats.seconds = 0, 0.0
    t = time.perf_counter()
    rep = write_report(store, q, e, out / "report")
    res["report_s"] = time.perf_counter() - t
    res["report_flows_per_s"] = (a.flows * 1.5) / res["report_s"]
    res["endpoints_enriched_in_report"] = e.stats.addresses
    res["report_enrich_s"] = e.stats.seconds
    res["elephants"] = rep["elephants"]["count"]
    if not a.keep:
        shutil.rmtree(out, ignore_errors=True)

    print(f"| step | figure |\n|---|---|\n"
          f"| load enrichment data | {res['load_s']:.2f} s |\n"
          f"| enrich + classify {res['lookups']:,} unique IPv4 (median of {a.repeat}) | "
          f"{res['enrich_s_median']:.2f} s = {res['lookups_per_s']:,.0f} lookups/s "
          f"({res['geo_db_lookups']:,} MMDB reads) |\n"
          f"| simulate {a.flows:,} + {a.flows // 2:,} flows | {res['simulate_s']:.1f} s |\n"
          f"| report over {int(a.flows * 1.5):,} flows ({res['endpoints_enriched_in_report']:,} endpoints, "
          f"{res['elephants']} elephants) | {res['report_s']:.1f} s = {res['report_flows_per_s']:,.0f} flows/s |")
    print(json.dumps(res))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
