"""`flows collect --workers N` (issue 15): N processes on one port with SO_REUSEPORT, each
exporter's templates kept where its data is decoded, one merged status, SIGTERM within a
second, a dead worker reported. Real subprocesses and loopback sockets; 2 workers (the
test machine has 2 cores)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import assert_stops_on_sigterm, free_port
from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.collector import read_status
from trunkline.flows.sources.pcap import read_udp
from trunkline.flows.store import FlowStore

TRUNKLINE = [sys.executable, "-m", "trunkline.cli.main"]
EXPORTERS = [f"127.0.0.{i}" for i in range(2, 14)]


def _start(store, port, *extra):
    proc = subprocess.Popen([*TRUNKLINE, "flows", "collect", "--store", str(store),
                             "--listen", f"127.0.0.1:{port}", "--flush-interval", "60",
                             "--workers", "2", *extra],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stderr.readline()
    assert "with 2 workers" in line, line
    return proc


def _split_exporter(shared_data):
    """Templates in one capture, data in the other: they must meet in one worker."""
    nf = shared_data / "flows/netflow"
    return [d.payload for f in ("samplingrate-template.pcap", "samplingrate-data.pcap")
            for d in read_udp(nf / f)]


@pytest.mark.timeout(90)
def test_two_workers_share_a_port_and_keep_templates_with_their_data(shared_data, tmp_path):
    split = _split_exporter(shared_data)
    d = FlowDecoder()
    for p in split:
        d.feed(p, "x")
    per_exporter = d.flush().num_rows
    assert per_exporter > 0
    port, pm = free_port(), free_port(socket.SOCK_STREAM)
    store = tmp_path / "store"
    proc = _start(store, port, "--metrics", f"127.0.0.1:{pm}")
    try:
        for src in EXPORTERS:  # distinct sources: the kernel spreads them over the workers
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.bind((src, 0))
                for p in split:
                    tx.sendto(p, ("127.0.0.1", port))
                    time.sleep(0.01)
        time.sleep(2.5)
        body = urllib.request.urlopen(f"http://127.0.0.1:{pm}/metrics", timeout=5).read()
        assert b"trunkline_flows_collector_workers 2" in body
        assert_stops_on_sigterm(proc, wait_s=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    st = read_status(store)
    col = st["collector"]
    assert col["state"] == "stopped" and col["workers"] == 2
    per_worker = [w["written_records"] for w in col["per_worker"]]
    assert all(n > 0 for n in per_worker), per_worker  # both workers did work
    assert col["socket_drops"] == 0
    want = per_exporter * len(EXPORTERS)
    assert col["written_records"] == want == sum(per_worker)
    got = FlowStore(store).query("SELECT exporter, count(*) AS n FROM flows GROUP BY 1")
    assert dict(zip(*got.to_pydict().values(), strict=True)) == {
        e: per_exporter for e in EXPORTERS}
    assert st["totals"]["drops"] == {}


@pytest.mark.timeout(60)
def test_a_dead_worker_makes_the_collector_fail(tmp_path):
    port = free_port()
    store = tmp_path / "store"
    proc = _start(store, port)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = read_status(store) or {}
            workers = [w.get("pid") for w in st.get("collector", {}).get("per_worker", [])]
            if len(workers) == 2 and all(workers):
                break
            time.sleep(0.2)
        os.kill(workers[0], signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    st = read_status(store)
    assert st["collector"]["state"] == "failed"
    assert "exited with -9" in st["collector"]["failure"]
    out = subprocess.run([*TRUNKLINE, "flows", "status", "--store", str(store), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["collector"]["state"] == "failed"
