"""One product: the mover's transfers seen as flows by the flow lens, end to end.

A real upload to a real SeaweedFS on loopback with ``trunkline cp --flows-store``, then
``trunkline flows elephants`` and ``trunkline flows report`` on that store: every
connection of the transfer is an elephant flow carrying exactly the bytes the mover put on
its socket (the payload plus the HTTP headers). And ``--flows-to udp://127.0.0.1:PORT``
into the real collector: the TCP_INFO enterprise fields (PEN 32473) come out of the store.

Elephant thresholds, and why they are not the defaults here: the defaults (enter at
100 Mb/s for 2 x 60 s intervals, at least 1 GB and 120 s) describe transfers of minutes to
hours on a WAN; this test's transfer lasts about 4 s on loopback. So the test uses
1 s intervals (each connection spans several, and still needs 2 consecutive ones: it must
be sustained), at least 2 MB (the request/response direction of a connection, ~1 KB,
stays a mouse) and 2 s. The entry rate is set to 10 kb/s: record timestamps are in ms, so
a record's partial first or last interval holds at least 1 ms of its bytes, which for a
connection running at >= 10 Mb/s (asserted) is >= 10 kb/s over the interval; the episode
then covers the whole record and its bytes are the record's bytes exactly, not minus the
edges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.flows.sources.collector import Collector, CollectorConfig
from trunkline.flows.store import FlowStore
from trunkline.telemetry.flows_export import connection_flows, connection_records, export_flows

TRUNKLINE = [sys.executable, "-m", "trunkline.cli.main"]
MiB = 1 << 20
HEADER_BOUND = 1024  # bytes of HTTP request + response headers per request, at most
TEST_THRESHOLDS = ["--interval", "1", "--rate-on", "0.01", "--rate-off", "0.005",
                   "--min-size", "0.002", "--min-duration", "2"]


def _dataset(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"shard-{i:03d}.tar").write_bytes(os.urandom(size))
    return root


def _cp(s3server, *args: str) -> dict:
    r = subprocess.run([*TRUNKLINE, "cp", *args, "--json", "--no-resume"], capture_output=True,
                       text=True, env={**os.environ, **s3server.env}, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _cli(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def _ep(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def test_connection_records_directions_and_edge_cases():
    conns = [
        {"local": "10.0.0.1:40000", "remote": "10.0.0.2:443", "started": 1_700_000_000.1234,
         "ended": 1_700_000_004.5, "bytes_in": 900, "bytes_out": 5_000_000, "requests": 2,
         "rtt_us": 1500, "min_rtt_us": 900, "retransmits": 3, "delivery_rate_bps": 9_000_000_000,
         "segs_in": 40, "segs_out": 3500},
        {"local": "::1:40001", "remote": "::1:9000", "started": 1_700_000_001.0,
         "ended": 1_700_000_002.0, "bytes_in": 7_000_000, "bytes_out": 0, "requests": 1},
        {"local": ":0", "remote": ":0", "started": 0.0, "ended": 0.0, "bytes_in": 0,
         "bytes_out": 0, "requests": 0},  # never connected
    ]
    recs = connection_records(conns)
    assert [(r["src_addr"], r["src_port"], r["dst_addr"], r["dst_port"], r["bytes"]) for r in recs] == [
        ("10.0.0.1", 40000, "10.0.0.2", 443, 5_000_000),  # client -> server: bytes_out
        ("10.0.0.2", 443, "10.0.0.1", 40000, 900),        # server -> client: bytes_in
        ("::1", 9000, "::1", 40001, 7_000_000),           # no bytes out: one record only
    ]
    up, down, v6 = recs
    assert (up["packets"], up["rtt_us"], up["retransmits"], up["delivery_rate_bps"]) == (3500, 1500, 3, 9e9)
    # the server's sending is invisible to our socket: unknown, not zero
    assert (down["packets"], down["rtt_us"], down["retransmits"], down["delivery_rate_bps"]) == (40, 1500, None, None)
    assert v6["packets"] is None and v6["rtt_us"] is None  # no TCP_INFO: null
    t = connection_flows(conns)
    from trunkline.flows.schema import FLOW_SCHEMA

    assert t.schema == FLOW_SCHEMA and t.num_rows == 3
    row = t.to_pylist()[0]
    assert row["time_start"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert (row["time_end"] - row["time_start"]).total_seconds() == pytest.approx(4.377)
    assert set(t.column("flow_type").to_pylist()) == {"trunkline"}
    assert set(t.column("exporter").to_pylist()) == {"trunkline"}
    assert set(t.column("proto").to_pylist()) == {6}
    with pytest.raises(ValueError, match="udp://HOST:PORT"):
        export_flows(conns, flows_to="tcp://127.0.0.1:4739")


@pytest.mark.timeout(180)
def test_transfer_flows_are_elephants_in_the_report(s3server, tmp_path, shared_data):
    s3server.create_bucket("e2e-flows")
    src = _dataset(tmp_path / "src", files=4, size=6 * MiB)
    store = tmp_path / "store"
    # pinned to 2 connections and capped at 6 MiB/s so the upload lasts ~4 s: each
    # connection is one long flow, sustained over several 1 s intervals
    res = _cp(s3server, f"{src}/", "s3://e2e-flows/up/", "-r", "--connections", "2",
              "--part-size", "5MiB", "--bwlimit", "6M", "--flows-store", str(store))
    payload = 4 * 6 * MiB
    assert res["ok"] and res["bytes"] == payload
    conns = [c for c in res["connections"] if c["bytes_out"]]
    assert conns, res["connections"]
    for c in conns:
        secs = c["ended"] - c["started"]
        assert secs >= 2.5 and c["bytes_out"] >= 2e6, c
        assert c["bytes_out"] * 8 / secs >= 10e6, c  # the premise of the 10 kb/s entry rate

    # the store holds one record per direction with bytes, exactly as the sockets counted
    rows = FlowStore(store).query("SELECT * FROM flows ORDER BY bytes DESC").to_pylist()
    assert {r["flow_type"] for r in rows} == {"trunkline"}
    by_tuple = {(r["src_addr"], r["src_port"], r["dst_addr"], r["dst_port"]): r for r in rows}
    n_dirs = sum(bool(c["bytes_out"]) + bool(c["bytes_in"]) for c in res["connections"])
    assert len(rows) == len(by_tuple) == n_dirs
    up_total = 0
    for c in res["connections"]:
        lo, re_ = _ep(c["local"]), _ep(c["remote"])
        if c["bytes_out"]:
            r = by_tuple[(*lo, *re_)]
            assert (r["bytes"], r["packets"], r["proto"]) == (c["bytes_out"], c["segs_out"], 6)
            assert (r["rtt_us"], r["retransmits"], r["delivery_rate_bps"]) == (
                c["rtt_us"], c["retransmits"], c["delivery_rate_bps"])
            up_total += r["bytes"]
        if c["bytes_in"]:
            assert by_tuple[(*re_, *lo)]["bytes"] == c["bytes_in"]
    # payload plus the HTTP request headers, nothing else
    assert payload < up_total <= payload + res["requests"] * HEADER_BOUND

    enrich = ["--enrich-data", str(shared_data / "enrich")]
    # flows elephants: every upload connection, and nothing else
    els = json.loads(_cli("flows", "elephants", "--store", str(store), "--json", "--top", "1000",
                          *TEST_THRESHOLDS, *enrich))
    want = {(*_ep(c["local"]), *_ep(c["remote"])): c["bytes_out"] for c in conns}
    got = {(e["src_addr"], e["src_port"], e["dst_addr"], e["dst_port"]): e["bytes"] for e in els}
    assert set(got) == set(want)
    for e in els:
        assert e["busy_s"] >= 2 and e["avg_bps"] > 0 and e["proto"] == 6

    # flows report: the same elephants, and the mover's section holds every record
    t0 = min(r["time_start"] for r in rows)
    quarter = f"{t0.year}Q{(t0.month - 1) // 3 + 1}"
    out = tmp_path / "report"
    _cli("flows", "report", "--store", str(store), "--quarter", quarter, "--out", str(out),
         *TEST_THRESHOLDS, *enrich)
    rep = json.loads((out / "report.json").read_text())
    assert rep["elephants"]["count"] == len(want)
    top = {(e["src_addr"], e["src_port"], e["dst_addr"], e["dst_port"]): e["bytes"]
           for e in rep["elephants"]["top"]}
    assert top == pytest.approx(got, rel=1e-9)
    assert rep["mover"]["flows"] == n_dirs
    assert rep["mover"]["bits"] == pytest.approx(8 * sum(r["bytes"] for r in rows), rel=1e-12)
    assert rep["mover"]["rtt_us_median"] is not None
    assert rep["elephants"]["thresholds"]["interval_s"] == 1
    assert (out / "report.html").stat().st_size > 0

    # last, the elephants' bytes: each one's exactly its connection's bytes_out, and so all
    # of them the payload plus the HTTP headers
    wrong = {k: (got[k], b) for k, b in want.items() if got[k] != pytest.approx(b, rel=1e-9)}
    assert not wrong
    assert payload < sum(got.values()) <= payload + res["requests"] * HEADER_BOUND
    assert rep["elephants"]["bits"] == pytest.approx(8 * sum(want.values()), rel=1e-9)


def _fractional_start_elephant(store: Path, enrich: list[str]) -> tuple[float, int]:
    """One 40 MB connection starting at x.700 s for 4 s; -> (elephant bytes, record bytes)."""
    conn = {"local": "10.0.0.1:40000", "remote": "10.0.0.2:443", "started": 1_700_000_000.7,
            "ended": 1_700_000_004.7, "bytes_in": 0, "bytes_out": 40_000_000, "requests": 1}
    export_flows([conn], flows_store=str(store))
    els = json.loads(_cli("flows", "elephants", "--store", str(store), "--json",
                          *TEST_THRESHOLDS, *enrich))
    return (els[0]["bytes"] if els else 0.0), conn["bytes_out"]


def test_elephant_interval_of_a_fractional_start(tmp_path, shared_data):
    """A record 10.7 -> 14.7 s at 80 Mb/s, 1 s intervals: the elephant holds all of its
    40 MB (the 0.3 s in interval 10 included), not 40 MB less 3 MB (a rounding, not
    flooring, interval index once dropped that part)."""
    got, want = _fractional_start_elephant(tmp_path / "store",
                                           ["--enrich-data", str(shared_data / "enrich")])
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.timeout(120)
def test_flows_to_ipfix_reaches_the_collector_with_tcp_info(s3server, tmp_path):
    s3server.create_bucket("e2e-ipfix")
    src = _dataset(tmp_path / "src", files=3, size=1 * MiB)
    store = FlowStore(tmp_path / "collected")
    col = Collector(CollectorConfig(listen=[("127.0.0.1", 0)], flush_interval_s=0.2), store)
    (host, port), = col.bind()
    th = threading.Thread(target=col.run, name="test-collector")
    th.start()
    try:
        res = _cp(s3server, f"{src}/", "s3://e2e-ipfix/up/", "-r", "--connections", "2",
                  "--flows-to", f"udp://{host}:{port}")
        assert res["ok"] and res["bytes"] == 3 * MiB
        n_dirs = sum(bool(c["bytes_out"]) + bool(c["bytes_in"]) for c in res["connections"])
        deadline = time.monotonic() + 10
        while col.decoder.counters.as_dict()["totals"]["records"] < n_dirs:
            assert time.monotonic() < deadline, col.status()
            time.sleep(0.05)
    finally:
        col.stop()
        th.join(timeout=10)
    assert not th.is_alive()
    rows = store.query("SELECT * FROM flows").to_pylist()
    assert len(rows) == n_dirs and {r["flow_type"] for r in rows} == {"ipfix"}
    by_tuple = {(r["src_addr"], r["src_port"], r["dst_addr"], r["dst_port"]): r for r in rows}
    for c in res["connections"]:
        lo, re_ = _ep(c["local"]), _ep(c["remote"])
        if c["bytes_out"]:
            r = by_tuple[(*lo, *re_)]
            assert (r["bytes"], r["packets"], r["proto"]) == (c["bytes_out"], c["segs_out"], 6)
            # trunkline's enterprise fields, decoded by the flow lens
            assert r["rtt_us"] == c["rtt_us"] > 0
            assert r["retransmits"] == c["retransmits"]
            assert r["delivery_rate_bps"] == c["delivery_rate_bps"] > 0
            assert int(r["time_start"].timestamp() * 1000) == round(c["started"] * 1000)
        if c["bytes_in"]:
            r = by_tuple[(*re_, *lo)]
            assert (r["bytes"], r["packets"], r["rtt_us"]) == (c["bytes_in"], c["segs_in"], c["rtt_us"])
            assert r["retransmits"] == 0  # unknown to us; IPFIX has no null
    out = _cli("flows", "sql", "--store", str(store.root), "--json",
               "SELECT max(rtt_us) AS rtt, sum(retransmits) AS rx, max(delivery_rate_bps) AS dr FROM flows")
    got = json.loads(out)[0]
    assert got["rtt"] > 0 and got["dr"] > 0 and int(got["rx"]) == sum(c["retransmits"] for c in res["connections"] if c["bytes_out"])
