"""The report against expectations computed here, in plain Python, from hand-made flows
placed on the quarter and month boundaries (not from the simulator), under several time
zones: every process TZ must give the same report.json, and the UTC figures.

West of UTC (Los Angeles) a flow at 2025-10-01T00:00Z is still September locally; east
(Kolkata +5:30, Chatham +13:45) the last hours of a quarter are already the next one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from trunkline.flows.enrich import Enricher
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore

LOCAL = "198.51.100.10"  # our edge ([local] documentation prefix of the default taxonomy)
LOCAL_CATEGORY = "hosting"
CLOUDS = {"neocloud", "hyperscaler", "hosting"}
GB = 10**9
TZS = ("UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham")
# peer -> (category, metro, country, US state); checked against the real enrichment data
PEERS = {
    "207.53.234.51": ("neocloud", "Chicago", "US", "IL"),  # CoreWeave
    "207.53.233.254": ("neocloud", "New York", "US", "NJ"),  # CoreWeave
    "54.225.48.141": ("hyperscaler", "Northern Virginia", "US", "VA"),  # AWS
    "73.110.185.30": ("isp_regional", "Chicago", "US", "IL"),  # Comcast
    "73.110.185.31": ("isp_regional", "Chicago", "US", "IL"),
    "73.110.185.32": ("isp_regional", "Chicago", "US", "IL"),
    "73.155.117.215": ("isp_regional", "Dallas-Houston", "US", "TX"),
    "204.195.209.220": ("cdn", "no metro", "US", ""),  # Cloudflare
    "5.22.204.1": ("isp_tier1", "Warsaw", "PL", ""),  # Cogent
    "46.101.33.3": ("hosting", "London", "GB", ""),  # DigitalOcean
}
EXPORTERS = {"192.0.2.1": "ams1", "192.0.2.2": "sjc1"}
REGIONS = {"ams1": "EU-Central", "sjc1": "US-West"}
HOME = "US"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (start, peer, bytes as exported, sampling rate, direction, exporter)
EVENTS = [
    ("2025-06-30T23:59:59.999", "204.195.209.220", 999 * GB, 1, "out", "192.0.2.1"),  # Q2: outside
    ("2025-07-01T00:00:00", "207.53.234.51", 300 * GB, 1, "out", "192.0.2.1"),
    ("2025-08-31T23:59:59", "73.155.117.215", 250 * GB, 1, "in", "192.0.2.2"),
    ("2025-09-30T23:59:59.999", "204.195.209.220", 150 * GB, 1, "out", "192.0.2.1"),
    ("2025-10-01T00:00:00", "207.53.234.51", 300 * GB, 1, "out", "192.0.2.1"),
    ("2025-10-31T23:30:00", "207.53.233.254", 100 * GB, 1, "in", "192.0.2.2"),
    ("2025-11-01T00:00:00", "73.110.185.30", 5 * GB, 10, "out", "192.0.2.1"),
    ("2025-11-30T20:00:00", "73.110.185.31", 50 * GB, 1, "in", "192.0.2.1"),
    ("2025-12-01T00:00:00", "204.195.209.220", 150 * GB, 1, "out", "192.0.2.2"),
    ("2025-12-15T12:00:00", "73.110.185.32", 0, 1, "out", "192.0.2.1"),  # carried nothing
    ("2025-12-31T23:59:59", "73.155.117.215", 100 * GB, 1, "out", "192.0.2.2"),
    ("2025-08-10T10:00:00", "5.22.204.1", 20 * GB, 1, "out", "192.0.2.2"),
    ("2025-11-15T06:00:00", "5.22.204.1", 40 * GB, 1, "in", "192.0.2.1"),
    ("2025-12-31T18:30:00", "46.101.33.3", 30 * GB, 1, "out", "192.0.2.1"),  # Chatham: already 2026
    ("2026-01-01T00:00:00", "207.53.234.51", 777 * GB, 1, "out", "192.0.2.1"),  # Q1: outside
]
BACKGROUND = "54.225.48.141"  # one inbound record per 5-minute bin of Q3 and Q4 (p95 > 0)


def _records() -> list[dict]:
    recs = [dict(start=_t(s), peer=p, bytes=b, rate=r, dir=d, exporter=x) for s, p, b, r, d, x in EVENTS]
    for q in (Quarter(2025, 3), Quarter(2025, 4)):
        n = int((q.end - q.start).total_seconds()) // 300
        for i in range(n):
            # bytes a multiple of 75: every 5-minute rate (bits / 300) is an integer
            recs.append(dict(start=q.start + timedelta(seconds=300 * i + 17), peer=BACKGROUND,
                             bytes=75_000 * (1 + (i * 37) % 100), rate=1, dir="in", exporter="192.0.2.2"))
    return recs


def _table(recs: list[dict]) -> pa.Table:
    rows = []
    for i, r in enumerate(recs):
        src, dst = (LOCAL, r["peer"]) if r["dir"] == "out" else (r["peer"], LOCAL)
        rows.append({"time_start": r["start"], "time_end": r["start"] + timedelta(seconds=60),
                     "exporter": r["exporter"], "flow_type": "ipfix", "src_addr": src, "dst_addr": dst,
                     "src_port": 443, "dst_port": 1024 + i % 60000, "proto": 6, "bytes": r["bytes"],
                     "packets": max(r["bytes"] // 1500, 1), "sampling_rate": r["rate"]})
    return pa.Table.from_pylist(rows)


def _quarter_of(t: datetime) -> str:
    return f"{t.year}Q{(t.month - 1) // 3 + 1}"


def _p95(values: list[float]) -> float:
    """Linear interpolation between closest ranks (DuckDB quantile_cont, numpy 'linear')."""
    v = sorted(values)
    pos = 0.95 * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _r(x: float) -> float:
    return round(x, 6) + 0.0


def _month_seconds(m: str) -> int:
    y, mo = map(int, m.split("-"))
    nxt = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC)
    return int((nxt - datetime(y, mo, 1, tzinfo=UTC)).total_seconds())


def expected(recs: list[dict], q: Quarter) -> dict:
    """Every figure the test checks, from the records alone."""
    qs, pqs = str(q), str(q.prev())
    dname = {"in": "ingress", "out": "egress"}
    bits = defaultdict(float)  # (quarter, direction or "all", category) -> bits
    month_bits = defaultdict(float)
    seen = defaultdict(set)  # (quarter, category) -> peers with bytes
    cell_bits, cell_seen = defaultdict(float), defaultdict(set)
    site_bits, dir_bits = defaultdict(float), defaultdict(float)
    c2c = defaultdict(float)
    flows = 0
    bins = defaultdict(float)  # (category, 5-minute bin of the quarter) -> bits
    reg = defaultdict(float)  # (region, category, month) -> bits
    reg_bins = defaultdict(float)  # (region, category, month, bin of the quarter) -> bits
    reg_peer = defaultdict(float)  # (region, category, month, peer) -> bits
    reg_day = defaultdict(set)  # (region, category, month, day) -> peers
    sankey = defaultdict(float)
    country, prev_country, state = defaultdict(float), defaultdict(float), defaultdict(float)
    for r in recs:
        b = float(r["bytes"] * 8 * max(r["rate"], 1))
        cat, metro, cc, st = PEERS[r["peer"]]
        qq = _quarter_of(r["start"])
        if qq not in (qs, pqs):
            continue
        month = r["start"].strftime("%Y-%m")
        bits[(qq, "all", cat)] += b
        bits[(qq, r["dir"], cat)] += b
        month_bits[(month, cat)] += b
        if r["bytes"]:
            seen[(qq, cat)].add(r["peer"])
        if cat in CLOUDS and LOCAL_CATEGORY in CLOUDS:
            c2c[qq] += b
        if qq != qs:
            prev_country[cc] += b
            continue
        flows += 1
        country[cc] += b
        if cc == "US":
            state[st] += b
        if r["bytes"]:
            cell_seen[(metro, cat)].add(r["peer"])
        cell_bits[(metro, cat)] += b
        site = EXPORTERS[r["exporter"]]
        region = REGIONS[site]
        site_bits[site] += b
        dir_bits[r["dir"]] += b
        bin_ = int((r["start"] - q.start).total_seconds()) // 300
        bins[(cat, bin_)] += b
        bins[("all", bin_)] += b
        k = (region, cat, month)
        reg[k] += b
        reg_bins[(*k, bin_)] += b
        if r["bytes"]:
            reg_peer[(*k, r["peer"])] += b
            reg_day[(*k, r["start"].day)].add(r["peer"])
        sankey[(region, dname[r["dir"]], cat)] += b
    nbins = int((q.end - q.start).total_seconds()) // 300
    rates = {}
    for c in {c for c, _ in bins}:
        v = [bins.get((c, i), 0.0) / 300 for i in range(nbins)]
        rates[c] = {"avg_bps": _r(sum(v) / nbins), "p95_bps": _r(_p95(v)), "max_bps": _r(max(v))}

    def tot(qq, d="all"):
        return sum(v for (a, dd, _), v in bits.items() if a == qq and dd == d)

    total, ptotal = tot(qs), tot(pqs)
    cats = {p[0] for p in PEERS.values()}
    shares = {}
    for c in cats:
        sh, psh = 100 * bits[(qs, "all", c)] / total, 100 * bits[(pqs, "all", c)] / ptotal
        shares[c] = {"bits": bits[(qs, "all", c)], "share_pct": _r(sh), "prev_share_pct": _r(psh),
                     "change_pts": _r(sh - psh), "unique_ips": len(seen[(qs, c)]),
                     "prev_unique_ips": len(seen[(pqs, c)])}
        for d, name in dname.items():
            dsh = 100 * bits[(qs, d, c)] / tot(qs, d)
            dpsh = 100 * bits[(pqs, d, c)] / tot(pqs, d)
            shares[c][name] = {"bits": bits[(qs, d, c)], "share_pct": _r(dsh), "prev_share_pct": _r(dpsh),
                               "change_pts": _r(dsh - dpsh), "unique_ips": len(
                                   {x["peer"] for x in recs if x["dir"] == d and x["bytes"]
                                    and PEERS[x["peer"]][0] == c and _quarter_of(x["start"]) == qs})}
    months = sorted({m for m, _ in month_bits})
    monthly = {m: {c: month_bits[(m, c)] for c in cats} for m in months}
    regions = {}
    for (g, c, m), b in reg.items():
        if not b:
            continue
        peers = sorted(v for (g2, c2, m2, _), v in reg_peer.items() if (g2, c2, m2) == (g, c, m))
        ndays = _month_seconds(m) // 86400
        daily = [len(reg_day.get((g, c, m, d), ())) for d in range(1, ndays + 1)]
        nb = _month_seconds(m) // 300
        rb = sorted(v / 300 for (g2, c2, m2, _), v in reg_bins.items() if (g2, c2, m2) == (g, c, m))
        regions[(g, c, m)] = {
            "bits": b, "avg_bps": _r(b / _month_seconds(m)), "p95_bps": _r(_p95([0.0] * (nb - len(rb)) + rb)),
            "unique_ips": len(peers), "bits_per_ip": _r(b / len(peers)) if peers else None,
            "bits_per_ip_p95": _r(_p95(peers)) if peers else None,
            "daily_unique_ips_avg": _r(sum(daily) / ndays), "daily_unique_ips_p95": _r(_p95(daily))}
    away, paway = total - country[HOME], ptotal - prev_country[HOME]
    countries = {cc: {"bits": b, "share_pct": _r(100 * b / total),
                      "prev_share_pct": _r(100 * prev_country[cc] / ptotal),
                      "share_excl_home_pct": None if cc == HOME else _r(100 * b / away),
                      "prev_share_excl_home_pct": None if cc == HOME else _r(100 * prev_country[cc] / paway)}
                 for cc, b in country.items()}
    us = sum(state.values())
    uniq, puniq = len(set().union(*(v for (qq, _), v in seen.items() if qq == qs))), \
        len(set().union(*(v for (qq, _), v in seen.items() if qq == pqs)))
    figures = {"traffic": (total, ptotal), "ingress": (tot(qs, "in"), tot(pqs, "in")),
               "egress": (tot(qs, "out"), tot(pqs, "out")), "unique_ips": (uniq, puniq),
               "bits_per_ip": (total / uniq, ptotal / puniq),
               "cloud_to_cloud": (100 * c2c[qs] / total, 100 * c2c[pqs] / ptotal)}
    return {"flows": flows, "bits": total, "shares": shares, "monthly": monthly, "rates": rates,
            "uniques_all": uniq,
            "cells": {k: (cell_bits[k], len(cell_seen[k])) for k in cell_bits},
            "sites": dict(site_bits), "directions": dict(dir_bits),
            "c2c": (_r(100 * c2c[qs] / total), _r(100 * c2c[pqs] / ptotal)),
            "regions": regions, "sankey": dict(sankey), "countries": countries,
            "states": {k: (b, _r(100 * b / us)) for k, b in state.items() if k}, "figures": figures}


# report.json's numbers are build()'s dict (write_report adds file names and charts)
SCRIPT = """
import json, sys
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import build
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore
store, out, data, opts = sys.argv[1:5]
report, _ = build(FlowStore(store), Quarter.parse("2025Q4"), Enricher.from_dir(data), **json.loads(opts))
open(out, "w").write(json.dumps(report, indent=1))
"""


@pytest.fixture(scope="module")
def reports(shared_data: Path, tmp_path_factory) -> dict[str, dict]:
    enricher = Enricher.from_dir(shared_data / "enrich")
    got = {r["addr"]: (r["category"], r["metro"], r["country"], r["subdivision"])
           for r in enricher.endpoints(list(PEERS)).to_pylist()}
    assert got == PEERS  # the premise holds on the real enrichment data
    root = tmp_path_factory.mktemp("exact")
    FlowStore(root / "store").write(_table(_records()))
    env = {k: v for k, v in os.environ.items() if k != "TZ"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    outs = {tz: root / f"{tz.replace('/', '_')}.json" for tz in TZS}
    procs = {tz: subprocess.Popen([sys.executable, "-c", SCRIPT, str(root / "store"), str(outs[tz]),
                                   str(shared_data / "enrich"),
                                   json.dumps({"sites": EXPORTERS, "regions": REGIONS, "home_country": HOME})],
                                  env={**env, "TZ": tz})
             for tz in TZS}
    try:
        for tz, p in procs.items():
            assert p.wait(timeout=240) == 0, f"report under TZ={tz} failed"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return {tz: json.loads(outs[tz].read_text()) for tz in TZS}


def test_identical_report_in_every_time_zone(reports):
    texts = {}
    for tz, r in reports.items():
        r = dict(r)
        r.pop("generated_at")
        texts[tz] = json.dumps(r, sort_keys=True)
    assert all(t == texts["UTC"] for t in texts.values()), [tz for tz, t in texts.items() if t != texts["UTC"]]


def test_every_figure_matches_the_independent_computation(reports):
    r = reports["UTC"]
    e = expected(_records(), Quarter(2025, 4))
    assert r["totals"]["flows"] == e["flows"]
    assert r["totals"]["bits"] == e["bits"]
    for c, want in e["shares"].items():
        got = r["shares"][c]
        assert {k: got[k] for k in want} == want, c
    assert r["previous_quarter_present"] is True
    assert {m["month"]: {c: m["categories"][c]["bits"] for c in e["shares"]} for m in r["monthly"]} \
        == e["monthly"]
    assert [m["month"] for m in r["monthly"]] == [f"2025-{m:02d}" for m in range(7, 13)]
    for c, want in e["rates"].items():
        assert r["rates"][c] == want, c
    assert r["rates"]["all"]["p95_bps"] > 0
    u = r["unique_endpoints"]
    assert u["all"] == e["uniques_all"]
    h = r["heatmap"]
    cells = {(m, c): (h["bits"][i][j], h["unique_ips"][i][j])
             for i, m in enumerate(h["metros"]) for j, c in enumerate(h["categories"]) if h["bits"][i][j]}
    assert cells == e["cells"]
    assert {s["site"]: s["bits"] for s in r["sites"]} == e["sites"]
    assert r["directions"] == e["directions"]
    c2c = r["cloud_to_cloud"]
    assert (c2c["share_pct"], c2c["prev_share_pct"]) == e["c2c"]
    assert c2c["change_pts"] == _r(e["c2c"][0] - e["c2c"][1]) or abs(c2c["change_pts"] - (e["c2c"][0] - e["c2c"][1])) < 2e-6
    figs = {f["id"]: f for f in r["figures"]}
    for k, (cur, prev) in e["figures"].items():
        assert (figs[k]["value"], figs[k]["prev"]) == (_r(cur), _r(prev)), k
        want = cur - prev if figs[k]["change_unit"] == "pts" else 100 * (cur - prev) / prev
        assert abs(figs[k]["change"] - want) < 2e-6, k


def test_regions_sankey_and_geography(reports):
    r = reports["UTC"]
    e = expected(_records(), Quarter(2025, 4))
    cells = {(x["region"], x["category"], x["month"]): {k: x[k] for k in next(iter(e["regions"].values()))}
             for x in r["regions"]["cells"] if x["direction"] == "all" and x["bits"] > 0}
    assert cells == e["regions"]
    assert r["regions"]["regions"] == sorted(set(REGIONS.values()),
                                             key=lambda g: -sum(v["bits"] for k, v in e["regions"].items()
                                                                if k[0] == g))
    assert {(x["region"], x["direction"], x["category"]): x["bits"] for x in r["sankey"]} == e["sankey"]
    got = {c["country"]: {k: c[k] for k in next(iter(e["countries"].values()))} for c in r["geo"]["countries"]}
    assert got == e["countries"]
    assert {s["state"]: (s["bits"], s["share_pct"]) for s in r["geo"]["us_states"]} == e["states"]
    assert r["geo"]["home_country"] == HOME


def test_the_expectations_really_cross_boundaries():
    """The flow set is only a test if local time would move flows across buckets."""
    la = {_t(s).astimezone(__import__("zoneinfo").ZoneInfo("America/Los_Angeles")).strftime("%Y-%m")
          for s, *_ in EVENTS}
    utc = {_t(s).strftime("%Y-%m") for s, *_ in EVENTS}
    assert la != utc
