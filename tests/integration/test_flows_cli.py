"""The flows CLI end to end: ingest, sql, status, flow logs, and the collector under load
with SIGTERM/SIGINT flushing (a real subprocess, real sockets on loopback)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import free_port
from trunkline.cli.main import cli
from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.pcap import read_udp

TRUNKLINE = [sys.executable, "-m", "trunkline.cli.main"]


def _run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_ingest_sql_status(shared_data, tmp_path):
    nf = shared_data / "flows" / "netflow"
    files = [nf / "nfv5.pcap", nf / "template.pcap", nf / "options-template.pcap",
             nf / "options-data.pcap", nf / "data.pcap"]
    store = str(tmp_path / "store")
    out = _run("flows", "ingest", *map(str, files), "--store", store)
    assert out.startswith("33 records")
    rows = list(csv.DictReader(io.StringIO(_run(
        "flows", "sql", "--store", store,
        "SELECT flow_type, count(*) AS n, max(sampling_rate) AS r FROM flows "
        "GROUP BY 1 ORDER BY 1"))))
    assert rows == [{"flow_type": "netflow5", "n": "29", "r": "1"},
                    {"flow_type": "netflow9", "n": "4", "r": "30000"}]
    js = json.loads(_run("flows", "sql", "--store", store, "--json",
                         "SELECT src_addr, time_start FROM flows ORDER BY time_start LIMIT 1"))
    assert js[0]["src_addr"] and js[0]["time_start"].startswith("20")
    st = _run("flows", "status", "--store", store)
    assert "33 records" in st
    r = CliRunner().invoke(cli, ["flows", "sql", "--store", store, "SELEKT"])
    assert r.exit_code == 2 and "error" in r.output


def test_ingest_flow_logs_and_nfdump_csv(tmp_path):
    store = str(tmp_path / "store")
    log = tmp_path / "vpc.parquet"
    pq.write_table(pa.table({"start": [1_700_000_000, 1_700_000_060], "srcaddr": ["10.0.0.1",
                   "10.0.0.2"], "dstaddr": ["10.0.0.3", "2001:db8::1"], "bytes": [100, 200],
                   "packets": [1, 2], "protocol": [6, 17]}), log)
    _run("flows", "ingest", str(log), "--store", store, "--map", "time_start=start",
         "--map", "src_addr=srcaddr", "--map", "dst_addr=dstaddr", "--map", "proto=protocol")
    nfd = tmp_path / "nfdump.csv"
    nfd.write_text(
        "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das\n"
        "2023-11-14 22:13:20.123,2023-11-14 22:13:39.860,19.737,10.0.0.1,10.1.0.1,1025,81,"
        "TCP,...AP...,0,0,10,7000,0,0,3,4,0,0\n\nSummary\nflows,bytes,packets\n1,7000,10\n")
    _run("flows", "ingest", str(nfd), "--store", store)
    rows = json.loads(_run("flows", "sql", "--store", store, "--json",
                           "SELECT * FROM flows ORDER BY bytes"))
    assert [r["bytes"] for r in rows] == [100, 200, 7000]
    assert rows[0]["time_start"].startswith("2023-11-14T22:13:20")
    assert rows[1]["dst_addr"] == "2001:db8::1" and rows[1]["proto"] == 17
    assert rows[2]["proto"] == 6 and rows[2]["time_start"].endswith("20.123000+00:00")
    assert rows[2]["in_if"] == 3 and rows[2]["sampling_rate"] == 1


@pytest.mark.parametrize("row,column", [
    ("1764547200,10.0.0.1,8.8.8.8,443,-5", "bytes"),
    ("1764547200,10.0.0.1,8.8.8.8,99999,100", "src_port"),
    ("abc,10.0.0.1,8.8.8.8,443,100", "time_start"),
    (",10.0.0.1,8.8.8.8,443,100", "time_start"),
], ids=["negative-bytes", "port-past-65535", "unreadable-time", "no-time"])
def test_a_flow_log_value_the_schema_cannot_hold_names_file_and_column(tmp_path, row, column):
    """A flow log whose row holds a value the store's schema cannot (bytes -5, port
    99999, a time of no known layout, none) is refused whole, exit 1 (bad data, not a
    wrong argument: it was exit 2), naming the file and the column; nothing is stored.
    Before, the line named neither, and a missing time was "cannot convert float NaN"."""
    store = tmp_path / "store"
    log = tmp_path / "bad.csv"
    log.write_text("time_start,src_addr,dst_addr,src_port,bytes\n"
                   "1764547100,10.0.0.9,8.8.8.8,443,7\n" + row + "\n")
    p = subprocess.run([*TRUNKLINE, "flows", "ingest", "--store", str(store), "--no-rollups",
                        str(log)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert f"bad.csv: column {column}" in p.stderr and "Traceback" not in p.stderr, p.stderr
    if column == "time_start":
        assert "row 2" in p.stderr, p.stderr
    assert not list(store.rglob("*.parquet"))


def test_ingest_says_which_files_were_stored_before_a_bad_one(tmp_path):
    """``ingest good.csv bad.csv``: good.csv is stored before bad.csv is read. The error
    says so (records and files), so a rerun of the same command after a fix does not
    store good.csv twice. A file of no known kind is found before anything is stored."""
    store = tmp_path / "store"
    good, bad, odd = tmp_path / "good.csv", tmp_path / "bad.csv", tmp_path / "odd.txt"
    good.write_text("time_start,src_addr,dst_addr,bytes\n1764547200,10.0.0.1,8.8.8.8,1\n"
                    "1764547201,10.0.0.1,8.8.8.8,2\n")
    bad.write_text("time_start,src_addr,dst_addr,bytes\n1764547200,10.0.0.1,8.8.8.8,-1\n")
    odd.write_text("not flows\n")

    def ingest(*files):
        return subprocess.run([*TRUNKLINE, "flows", "ingest", "--store", str(store),
                               "--no-rollups", *map(str, files)],
                              capture_output=True, text=True, timeout=120)

    p = ingest(good, odd)
    assert p.returncode == 2 and "odd.txt: not a pcap" in p.stderr, p.stderr
    assert not list(store.rglob("*.parquet"))
    p = ingest(good, bad)
    assert p.returncode == 1, p.stderr
    assert "stored before it: 2 records from good.csv" in p.stderr, p.stderr
    count = json.loads(_run("flows", "sql", "--store", str(store), "--json",
                            "SELECT count(*) AS n FROM flows"))
    assert count == [{"n": 2}]


def _start_collector(store: Path, ports: list[int], metrics: int | None = None):
    args = [*TRUNKLINE, "flows", "collect", "--store", str(store), "--flush-interval", "60"]
    for p in ports:
        args += ["--listen", f"127.0.0.1:{p}"]
    if metrics:
        args += ["--metrics", f"127.0.0.1:{metrics}"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stderr.readline()
    assert "collecting on" in line, line
    return proc


def _records_in(packets: list[bytes]) -> int:
    d = FlowDecoder()
    for p in packets:
        d.feed(p, "127.0.0.1")
    return d.flush().num_rows


LOAD_RATE_PPS = 5000  # stated sustained rate for the zero-loss check
LOAD_SECONDS = 2.0


@pytest.mark.timeout(120)
def test_collector_load_zero_loss_and_sigterm_flush(shared_data, tmp_path):
    ipfix = [d.payload for d in read_udp(shared_data / "flows/netflow/physicalinterfaces.pcap")]
    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")]
    sflow = [d.payload for d in read_udp(shared_data / "flows/sflow/data-1140.pcap")]
    per_ipfix = _records_in(ipfix)
    assert per_ipfix == 8
    p1, p2, pm = free_port(), free_port(), free_port(socket.SOCK_STREAM)
    store = tmp_path / "store"
    proc = _start_collector(store, [p1, p2], metrics=pm)
    try:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n_total = int(LOAD_RATE_PPS * LOAD_SECONDS)
        burst = LOAD_RATE_PPS // 100  # every 10 ms
        t0 = time.monotonic()
        sent = 0
        while sent < n_total:
            for _ in range(burst):
                tx.sendto(ipfix[0], ("127.0.0.1", p1))
            sent += burst
            delay = t0 + sent / LOAD_RATE_PPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t0
        for p in v5:
            tx.sendto(p, ("127.0.0.1", p2))
        for p in sflow:
            tx.sendto(p, ("127.0.0.1", p2))
        tx.close()
        time.sleep(1.5)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{pm}/metrics", timeout=5).read()
        assert b"trunkline_flows_records_total" in metrics
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert elapsed < LOAD_SECONDS * 2, f"sender could not hold the stated rate: {elapsed:.2f}s"
    expected = n_total * per_ipfix + 29 + len(sflow) * 5
    got = _run("flows", "sql", "--store", str(store), "SELECT count(*) AS n FROM flows")
    assert got.splitlines()[1] == str(expected), f"loss: {got} vs {expected}"
    st = json.loads(_run("flows", "status", "--store", str(store), "--json"))
    assert st["collector"]["written_records"] == expected
    assert st["totals"]["packets"] == n_total + len(v5) + len(sflow)
    assert not st["collector"]["running"]


@pytest.mark.timeout(60)
def test_sigint_flushes_what_was_received(shared_data, tmp_path):
    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")]
    port = free_port()
    store = tmp_path / "store"
    proc = _start_collector(store, [port])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(3):
                tx.sendto(v5[0], ("127.0.0.1", port))
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    got = _run("flows", "sql", "--store", str(store), "SELECT sum(packets) AS p, count(*) AS n "
               "FROM flows")
    assert got.splitlines()[1].split(",")[1] == str(3 * 29)
