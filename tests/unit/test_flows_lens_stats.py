"""The report's numbers on a flow set built with known shares per category and metro:
report.json must carry exactly those shares, changes, bits per unique IP and unique
counts. Also the mergeable HyperLogLog and the elephant detector."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from trunkline.flows.elephants import Thresholds, detect
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import write_report
from trunkline.flows.stats import Quarter, hll_estimate, hll_merge, hll_registers
from trunkline.flows.store import FlowStore

LOCAL = "198.51.100.10"  # our edge (the taxonomy's [local] documentation prefix)
GB = 10**9
# peer -> (category, metro), checked against the real enrichment data below
PEERS = {
    "207.53.234.51": ("neocloud", "Chicago"),  # CoreWeave
    "207.53.233.254": ("neocloud", "New York"),  # CoreWeave
    "54.225.48.141": ("hyperscaler", "Northern Virginia"),  # AWS
    "73.110.185.30": ("isp_regional", "Chicago"),  # Comcast
    "73.110.185.31": ("isp_regional", "Chicago"),
    "73.155.117.215": ("isp_regional", "Dallas-Houston"),
    "204.195.209.220": ("cdn", "no metro"),  # Cloudflare
}
# (peer, bytes as exported, sampling rate, flows) for 2025Q4: 40/25/20/15 % of 1000 GB
Q4 = [("207.53.234.51", 300 * GB, 1, 3), ("207.53.233.254", 100 * GB, 1, 1),
      ("54.225.48.141", 250 * GB, 1, 5),
      ("73.110.185.30", 5 * GB, 10, 2), ("73.110.185.31", 50 * GB, 1, 1),  # 50 GB after x10
      ("73.155.117.215", 100 * GB, 1, 4),
      ("204.195.209.220", 150 * GB, 1, 3)]
# 2025Q3: 30/30/25/15 % of 1000 GB
Q3 = [("207.53.234.51", 300 * GB, 1, 1), ("54.225.48.141", 300 * GB, 1, 1),
      ("73.155.117.215", 250 * GB, 1, 1), ("204.195.209.220", 150 * GB, 1, 1)]


def _flows(rows, day: datetime, inbound: bool = False) -> pa.Table:
    recs = []
    for i, (peer, nbytes, rate, n) in enumerate(rows):
        for j in range(n):
            t = int(day.timestamp() * 1000) + (i * 10 + j) * 1000
            src, dst = (peer, LOCAL) if (inbound and j % 2) else (LOCAL, peer)
            recs.append({"time_start": t, "time_end": t + 500, "exporter": "192.0.2.1",
                         "flow_type": "ipfix", "src_addr": src, "dst_addr": dst,
                         "src_port": 443, "dst_port": 40000 + j, "proto": 6,
                         "bytes": nbytes // n, "packets": nbytes // n // 1500,
                         "sampling_rate": rate})
    t = pa.Table.from_pylist(recs)
    return t.set_column(0, "time_start", t.column("time_start").cast(pa.timestamp("ms", tz="UTC"))) \
            .set_column(1, "time_end", t.column("time_end").cast(pa.timestamp("ms", tz="UTC")))


@pytest.fixture(scope="module")
def enricher(shared_data: Path) -> Enricher:
    return Enricher.from_dir(shared_data / "enrich")


@pytest.fixture(scope="module")
def report(enricher, tmp_path_factory):
    got = {r["addr"]: (r["category"], r["metro"]) for r in enricher.endpoints(list(PEERS)).to_pylist()}
    assert got == PEERS  # the flow set's premise holds on the real data
    root = tmp_path_factory.mktemp("known")
    store = FlowStore(root / "store")
    store.write(_flows(Q4, datetime(2025, 11, 15, 12, tzinfo=UTC), inbound=True))
    store.write(_flows(Q3, datetime(2025, 8, 15, 12, tzinfo=UTC)))
    out = root / "report"
    write_report(store, Quarter.parse("2025Q4"), enricher, out, sites={"192.0.2.1": "ams1"})
    return json.loads((out / "report.json").read_text())


def test_shares_and_change_in_points(report):
    s = report["shares"]
    assert {c: s[c]["share_pct"] for c in s} == {
        "neocloud": 40.0, "hyperscaler": 25.0, "cdn": 15.0, "isp_regional": 20.0,
        "isp_tier1": 0.0, "hosting": 0.0, "other": 0.0, "unknown": 0.0}
    assert {c: s[c]["change_pts"] for c in ("neocloud", "hyperscaler", "isp_regional", "cdn")} == {
        "neocloud": 10.0, "hyperscaler": -5.0, "isp_regional": -5.0, "cdn": 0.0}
    assert report["totals"]["bits"] == 1000 * GB * 8
    assert report["previous_quarter_present"] is True
    assert report["simulated"] is False
    # both ends are clouds for neocloud and hyperscaler peers (our edge counts as cloud)
    assert report["cloud_to_cloud"]["share_pct"] == 65.0
    assert report["sites"] == [{"site": "ams1", "bits": 8000 * GB, "share_pct": 100.0}]


def test_monthly_series(report):
    by_month = {m["month"]: m for m in report["monthly"]}
    assert set(by_month) == {"2025-08", "2025-11"}
    nov = by_month["2025-11"]["categories"]
    assert nov["neocloud"]["share_pct"] == 40.0 and nov["neocloud"]["change_pts"] == 10.0


def test_bits_per_unique_ip_and_unique_counts(report):
    h = report["heatmap"]
    cell = {(m, c): (h["bits_per_ip"][i][j], h["unique_ips"][i][j], h["unique_ips_approx"][i][j])
            for i, m in enumerate(h["metros"]) for j, c in enumerate(h["categories"])}
    assert cell[("Chicago", "neocloud")] == (300 * GB * 8, 1, 1)
    assert cell[("New York", "neocloud")] == (100 * GB * 8, 1, 1)
    assert cell[("Northern Virginia", "hyperscaler")] == (250 * GB * 8, 1, 1)
    assert cell[("Chicago", "isp_regional")] == (50 * GB * 8, 2, 2)  # 100 GB over 2 IPs
    assert cell[("Dallas-Houston", "isp_regional")] == (100 * GB * 8, 1, 1)
    assert cell[("no metro", "cdn")] == (150 * GB * 8, 1, 1)
    assert h["metros"][-1] == "no metro"
    u = report["unique_endpoints"]
    assert u["all"] == 7 and u["all_approx"] == 7
    assert u["by_category"] == {"neocloud": 2, "hyperscaler": 1, "cdn": 1, "isp_regional": 3,
                                "isp_tier1": 0, "hosting": 0, "other": 0, "unknown": 0}
    assert u["by_category_approx"] == u["by_category"]
    metros = {m["metro"]: m for m in report["metros"]}
    assert metros["Chicago"]["bits"] == 400 * GB * 8 and metros["Chicago"]["unique_ips"] == 3
    assert metros["Chicago"]["top_category"] == "neocloud"


def test_rates(report):
    r = report["rates"]
    seconds = (Quarter.parse("2025Q4").end - Quarter.parse("2025Q4").start).total_seconds()
    assert r["all"]["avg_bps"] == round(1000 * GB * 8 / seconds, 6)
    assert r["all"]["max_bps"] == round(1000 * GB * 8 / 300, 6)  # all in one 5-minute bin
    assert r["all"]["p95_bps"] == 0.0
    assert r["neocloud"]["max_bps"] == round(400 * GB * 8 / 300, 6)


def test_top_endpoints_and_methodology(report):
    top = report["top_endpoints"]
    assert [t["peer"] for t in top["top"][:2]] == ["207.53.234.51", "54.225.48.141"]
    assert top["top"][0]["share_pct"] == 30.0
    assert top["peers_for_50pct"] == 2
    m = report["methodology"]
    assert m["unclassified"]["share_pct"] == 0.0
    assert m["no_metro"]["share_pct"] == 15.0
    assert m["curated_asns"] >= 40


def test_hll_is_accurate_and_mergeable():
    con = duckdb.connect()
    rng = np.random.default_rng(3)
    n = 60000
    peers = [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 256, (n, 3))]
    months = rng.choice(["2025-10", "2025-11", "2025-12"], n)
    con.register("t", pa.table({"peer": peers, "seen_peer": peers, "month": months, "metro": ["x"] * n,
                                "category": ["isp_regional"] * n}))
    con.execute("CREATE TEMP TABLE ef AS SELECT * FROM t")
    exact = len(set(peers))
    monthly = hll_registers(con, "true")
    merged = hll_merge(monthly, [])[()]
    whole = hll_registers(con, "true", keys="metro")
    assert abs(merged - exact) / exact < 0.03
    # merging monthly registers gives exactly the registers of the whole range
    a = hll_merge(monthly, [])
    b = hll_merge(whole, [])
    assert a == b
    assert hll_estimate(np.zeros(0), np.zeros(0)) == 0.0


def test_elephant_hysteresis_does_not_flap():
    th = Thresholds(interval_s=60, rate_on_bps=100e6, rate_off_bps=50e6, on_intervals=2,
                    off_intervals=2, min_bytes=1e9, min_duration_s=120)
    # rate in Mb/s per minute: enters at 2x>=100, dips to 70 (between off and on: stays),
    # one lone minute at 40 (one below off: stays), then 2 minutes at 10: leaves.
    mbps = [20, 120, 150, 70, 110, 40, 90, 130, 10, 10, 200, 10]
    bits = np.array(mbps, float) * 1e6 * 60
    eps = detect(np.zeros(len(bits), np.int64), np.arange(len(bits)), bits, th)
    assert len(eps) == 1
    e = eps[0]
    assert (e.start_interval, e.end_interval) == (1, 7)
    assert e.bits == pytest.approx(sum(mbps[1:8]) * 1e6 * 60)
    # a single-threshold detector would have flapped: the same series at on=off
    flappy = detect(np.zeros(len(bits), np.int64), np.arange(len(bits)), bits,
                    Thresholds(rate_on_bps=100e6, rate_off_bps=100e6, on_intervals=1,
                               off_intervals=1, min_bytes=0, min_duration_s=0))
    assert len(flappy) >= 3


def test_elephant_size_and_duration_thresholds():
    th = Thresholds()
    k = np.zeros(3, np.int64)
    # 3 minutes at 80 Mb/s: under the entry rate
    assert detect(k, np.arange(3), np.full(3, 80e6 * 60), th) == []
    # 2 minutes at 200 Mb/s = 3 GB but the records cover only 50 s: not sustained
    assert detect(k[:2], np.arange(2), np.full(2, 200e6 * 60), th, busy=np.array([25.0, 25.0])) == []
    # 3 minutes at 200 Mb/s: 4.5 GB over 180 s: an elephant
    eps = detect(k, np.arange(3), np.full(3, 200e6 * 60), th)
    assert len(eps) == 1 and eps[0].busy_s == 180
    with pytest.raises(ValueError, match="hysteresis"):
        Thresholds(rate_on_bps=1e6, rate_off_bps=2e6)


def test_mover_flows_and_unclassified_breakdown(enricher, tmp_path):
    """trunkline's own flows (TCP_INFO fields) are summarised; the largest unclassified
    networks are named so the reader knows which rules to add."""
    t0 = int(datetime(2025, 10, 2, tzinfo=UTC).timestamp() * 1000)
    recs = [{"time_start": t0 + i * 60000, "time_end": t0 + i * 60000 + 60000, "exporter": "mover",
             "flow_type": "trunkline", "src_addr": LOCAL, "dst_addr": "207.53.234.51",
             "src_port": 50000, "dst_port": 443, "proto": 6, "bytes": 10 * GB, "packets": 1000,
             "sampling_rate": 1, "rtt_us": rtt, "retransmits": rtx}
            for i, (rtt, rtx) in enumerate([(1000, 1), (2000, 2), (3000, 7)])]
    recs.append({**recs[0], "flow_type": "ipfix", "dst_addr": "17.253.144.10",  # Apple: no rule
                 "bytes": 30 * GB, "rtt_us": None, "retransmits": None})
    t = pa.Table.from_pylist(recs)
    for i in (0, 1):
        t = t.set_column(i, t.schema.names[i], t.column(i).cast(pa.timestamp("ms", tz="UTC")))
    store = FlowStore(tmp_path / "s")
    store.write(t)
    rep = write_report(store, Quarter.parse("2025Q4"), enricher, tmp_path / "r")
    mv = rep["mover"]
    assert (mv["flows"], mv["bits"], mv["share_pct"]) == (3, 30 * GB * 8, 50.0)
    assert (mv["rtt_us_median"], mv["retransmits"], mv["retransmit_pct"]) == (2000.0, 10, round(10 / 3000 * 100, 6))
    top = rep["methodology"]["unclassified"]["top"]
    assert [(x["asn"], x["category"], x["share_pct"]) for x in top] == [(714, "other", 50.0)]
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'id="mover"' in html and "AS714 Apple Inc." in html
    assert rep["previous_quarter_present"] is False
    assert rep["shares"]["neocloud"]["change_pts"] is None
