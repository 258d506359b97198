"""A hostile network against the live collector (issue 15): one datagram must never stop
collection, lose pending records, or leave a process that ignores SIGTERM; every failure
is counted per exporter and reason. Real subprocesses, real sockets, loopback only."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import assert_stops_on_sigterm, free_port
from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.collector import Collector, CollectorConfig, read_status
from trunkline.flows.sources.ingest import ingest_files
from trunkline.flows.sources.pcap import read_udp, write_udp_pcap
from trunkline.flows.store import FlowStore
from trunkline.testing.flowcraft import define_and_withdraw_datagram

TRUNKLINE = [sys.executable, "-m", "trunkline.cli.main"]


def _start(store: Path, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([*TRUNKLINE, "flows", "collect", "--store", str(store),
                             "--listen", f"127.0.0.1:{port}", "--flush-interval", "60", *extra],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stderr.readline()
    assert "collecting on" in line, line
    return proc


def _count(store: Path) -> int:
    s = FlowStore(store)
    return s.query("SELECT count(*) AS n FROM flows").column(0)[0].as_py() if s.files() else 0


def test_define_and_withdraw_in_one_datagram_is_harmless():
    d = FlowDecoder()
    assert d.feed(define_and_withdraw_datagram(), "192.0.2.1")  # used to raise KeyError
    c = d.counters.as_dict()["exporters"]["192.0.2.1"]
    assert c["buffered_sets"] == 1 and c["records"] == 0 and not c["drops"]
    assert d.flush().num_rows == 0  # never decoded with a withdrawn template


@pytest.mark.timeout(60)
def test_live_collector_survives_the_stopper_and_stops_within_a_second(shared_data, tmp_path):
    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]
    port, pm = free_port(), free_port(socket.SOCK_STREAM)
    store = tmp_path / "store"
    # --duration far away: the process must still stop on SIGTERM, at once
    proc = _start(store, port, "--duration", "600", "--metrics", f"127.0.0.1:{pm}")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(v5, ("127.0.0.1", port))
            tx.sendto(define_and_withdraw_datagram(), ("127.0.0.1", port))
            tx.sendto(v5, ("127.0.0.1", port))
        time.sleep(1.5)
        assert proc.poll() is None, proc.stderr.read()
        st = read_status(store)
        assert st["collector"]["state"] == "running"
        body = urllib.request.urlopen(f"http://127.0.0.1:{pm}/metrics", timeout=5).read()
        assert b"trunkline_flows_collector_failed 0" in body
        assert_stops_on_sigterm(proc, wait_s=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _count(store) == 2 * 29
    st = read_status(store)
    assert st["collector"]["state"] == "stopped" and not st["collector"]["running"]


class _BuggyDecoder(FlowDecoder):
    """A decoder with a bug: one specific datagram raises (a fault no real component
    produces on demand, so it is injected here, at the only seam that matters)."""

    def feed(self, data: bytes, exporter: str, recv_ms: int = 0) -> bool:
        if data == b"BUG!":
            raise RuntimeError("decoder bug")
        return super().feed(data, exporter, recv_ms)


def _collector(tmp_path: Path) -> Collector:
    col = Collector(CollectorConfig([("127.0.0.1", 0)], flush_interval_s=60,
                                    status_interval_s=0.1), FlowStore(tmp_path / "store"))
    col.bind()
    return col


def test_an_exception_per_datagram_is_counted_and_the_loop_goes_on(shared_data, tmp_path):
    import threading

    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]
    col = _collector(tmp_path)
    col.decoder = _BuggyDecoder()
    t = threading.Thread(target=col.run)
    t.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for p in (v5, b"BUG!", v5, b"BUG!"):
                tx.sendto(p, col.bound[0])
        deadline = time.monotonic() + 10
        while col.decoder.counters.totals()["records"] < 58 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        col.stop()
        t.join(10)
    assert col.failure is None
    assert col.decoder.counters.as_dict()["exporters"]["127.0.0.1"]["drops"] == {
        "internal_error": 2}
    assert _count(tmp_path / "store") == 58


def test_a_dead_receive_loop_flushes_and_says_failed(shared_data, tmp_path):
    import threading

    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]
    col = _collector(tmp_path)
    received = threading.Event()
    real_flush = col._flush

    def dying_flush():  # the loop's own code fails (not a datagram's): the loop must end
        if col.decoder.pending_records:
            received.set()
            col._flush = real_flush
            raise MemoryError("simulated")
        real_flush()

    col._flush = dying_flush
    col.config.flush_interval_s = 0.05
    t = threading.Thread(target=col.run)
    t.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(v5, col.bound[0])
    t.join(10)
    assert not t.is_alive() and received.is_set()
    assert col.failure and "MemoryError" in col.failure
    st = read_status(tmp_path / "store")
    assert st["collector"]["state"] == "failed" and not st["collector"]["running"]
    assert _count(tmp_path / "store") == 29  # pending records flushed on the way out


def test_ingest_keeps_every_valid_record_around_the_stopper(shared_data, tmp_path):
    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]
    cap = tmp_path / "hostile.pcap"
    write_udp_pcap(cap, [(v5, 2055), (define_and_withdraw_datagram(), 2055), (v5, 2055)])
    out = ingest_files([cap], FlowStore(tmp_path / "store"))
    assert out["written_records"] == 58 == _count(tmp_path / "store")


@pytest.mark.timeout(60)
def test_flows_status_shows_a_failed_collector(tmp_path):
    """The status file of a failed collector is what `flows status` shows."""
    store = tmp_path / "store"
    col = _collector(tmp_path)
    col.failure = "RuntimeError: x"
    col.stop()
    col._publish()
    out = subprocess.run([*TRUNKLINE, "flows", "status", "--store", str(store), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["collector"]["state"] == "failed"
    out = subprocess.run([*TRUNKLINE, "flows", "status", "--store", str(store)],
                         capture_output=True, text=True, check=True).stdout
    assert "collector (failed: RuntimeError: x" in out


# -- a datagram is all or nothing; protocol sentinels ----------------------------------


def test_truncated_sflow_datagram_stores_nothing_and_counts_each_record_once(shared_data):
    whole = [d.payload for d in read_udp(shared_data / "flows/sflow/data-1140.pcap")][0]
    d = FlowDecoder()
    assert d.feed(whole, "192.0.2.1")
    good = d.flush().num_rows
    assert good == 5
    cut = whole[: len(whole) - 40]  # the last flow sample is cut short
    d = FlowDecoder()
    assert not d.feed(cut, "192.0.2.1")
    c = d.counters.as_dict()["exporters"]["192.0.2.1"]
    assert d.flush().num_rows == 0 and c["records"] == 0
    assert c["drops"] == {"truncated": 1}
    assert c["discarded_records"] == 4  # the samples before the bad one, counted once


def test_ipfix_datagram_with_a_bad_set_after_good_data_stores_nothing():
    from trunkline.testing.flowcraft import (
        FLOW_FIELDS,
        flow_record,
        ipfix_msg,
        ipfix_set,
        template_record,
        template_set,
    )

    tmpl = ipfix_msg(template_set(template_record(400, FLOW_FIELDS)))
    data = ipfix_set(400, flow_record(1, 2, 3, 1_700_000_000) * 2)
    bad = struct.pack(">HH", 400, 200) + b"\0" * 8  # set length beyond the message
    d = FlowDecoder()
    assert d.feed(tmpl, "192.0.2.1")
    assert not d.feed(ipfix_msg(data, bad), "192.0.2.1")
    assert d.feed(ipfix_msg(data), "192.0.2.1")
    c = d.counters.as_dict()["exporters"]["192.0.2.1"]
    assert d.flush().num_rows == 2 == c["records"]
    assert c["discarded_records"] == 2 and c["drops"] == {"bad_set_length": 1}


def test_buffered_set_of_a_failed_datagram_is_not_replayed_later():
    from trunkline.testing.flowcraft import (
        FLOW_FIELDS,
        flow_record,
        ipfix_msg,
        ipfix_set,
        template_record,
        template_set,
    )

    data = ipfix_set(401, flow_record(1, 2, 3, 1_700_000_000))
    bad = struct.pack(">HH", 401, 200)
    d = FlowDecoder()
    assert not d.feed(ipfix_msg(data, bad), "192.0.2.1")  # buffered, then the datagram fails
    assert d.feed(ipfix_msg(template_set(template_record(401, FLOW_FIELDS))), "192.0.2.1")
    assert d.flush().num_rows == 0


def test_sflow_internal_interface_is_not_an_ifindex(shared_data):
    raw = [d.payload for d in read_udp(shared_data / "flows/sflow/data-local-interface.pcap")][0]
    assert struct.pack(">I", 0x3FFFFFFF) in raw  # the capture does carry the sentinel
    d = FlowDecoder()
    d.feed(raw, "192.0.2.1")
    t = d.flush()
    assert t.column("out_if").to_pylist() == [0] and t.column("in_if").to_pylist() == [27]


def _metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(f"trunkline_flows_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics:\n{body}")


def _until(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_a_full_store_disk_loses_batches_counted_and_collection_goes_on(shared_data, tmp_path):
    """The store's disk fills while a real capture's datagrams arrive: the collector keeps
    running; each batch it could not write is a write error and its records are counted
    lost (received = written + lost, exactly); no temporary file is left; with room
    again the next batches are written; the exit status says records were lost (1).
    Before, the first status file that could not be written stopped the collector, and
    every datagram after it was neither stored nor counted."""
    from conftest import fill_disk, mounted_tmpfs

    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]
    port, pm = free_port(), free_port(socket.SOCK_STREAM)
    with mounted_tmpfs(tmp_path / "disk", "2m") as mnt:
        store = mnt / "store"
        proc = _start(store, port, "--duration", "600", "--metrics", f"127.0.0.1:{pm}",
                      "--flush-interval", "0.2")
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                def send(n: int) -> None:
                    for _ in range(n):
                        tx.sendto(v5, ("127.0.0.1", port))
                        time.sleep(0.002)

                send(50)
                _until(lambda: _metric(pm, "collector_written_records") == 50 * 29)
                filler = fill_disk(mnt)
                send(100)
                _until(lambda: _metric(pm, "collector_lost_records") == 100 * 29)
                assert _metric(pm, "collector_write_errors") >= 1
                assert _metric(pm, "collector_failed") == 0
                assert proc.poll() is None
                filler.unlink()
                send(10)
                _until(lambda: _metric(pm, "collector_written_records") == 60 * 29)
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 1   # records were lost: not a clean run
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        col = read_status(store)["collector"]
        assert col["state"] == "stopped" and col["failure"] is None
        assert col["written_records"] == 60 * 29 and col["lost_records"] == 100 * 29
        assert "No space left" in col["last_write_error"]
        assert _count(store) == 60 * 29
        assert not [p for p in store.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("content, says", [
    (b'{"collector": ', "is damaged"),                        # cut off (a lost write)
    (b"\xff\xfe not text", "is damaged"),
    (b"[1, 2]", "is not a status"),
    (b'{"collector": 5}', "is not a status"),
])
def test_flows_status_of_a_damaged_status_file_is_one_line_exit_1(tmp_path, content, says):
    """The status file is input like any other (a store directory others may write to, a
    disk that lost its last write): one that is not a status is one line, exit 1."""
    (tmp_path / "_collector_status.json").write_bytes(content)
    p = subprocess.run([*TRUNKLINE, "flows", "status", "--store", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1 and says in p.stderr, p.stderr


def test_flows_status_shows_a_status_with_odd_fields_safely(tmp_path):
    """A status of another version (fields missing, of other types) is shown, not a
    traceback; terminal control characters in it are escaped."""
    (tmp_path / "_collector_status.json").write_text(json.dumps({
        "collector": {"state": "running\x1b[2J", "listen": 5, "lost_records": 7},
        "exporters": {"192.0.2.1\x1b[31m": {"drops": 3}}}))
    p = subprocess.run([*TRUNKLINE, "flows", "status", "--store", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "7 records lost" in p.stdout, p.stdout
    assert "192.0.2.1" in p.stdout


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.mark.timeout(120)
def test_idle_connections_to_the_metrics_port_cost_no_thread_each(shared_data, tmp_path):
    """The metrics port is an open port too: 300 connections that send nothing. Before,
    each held a thread of the collector for ever (300 more threads; a few thousand and
    the process runs out). Now at most ``MAX_CLIENTS`` are served at once and an idle
    one is dropped after ``CLIENT_TIMEOUT_S``; collection goes on meanwhile, and a
    scrape after the timeout is answered."""
    from trunkline.flows.sources.metrics import CLIENT_TIMEOUT_S, MAX_CLIENTS

    v5 = [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]
    port, pm = free_port(), free_port(socket.SOCK_STREAM)
    store = tmp_path / "store"
    proc = _start(store, port, "--duration", "600", "--metrics", f"127.0.0.1:{pm}",
                  "--flush-interval", "0.2")
    idle: list[socket.socket] = []
    try:
        before = _threads(proc.pid)
        for _ in range(300):   # connects without waiting: past the accept queue the
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # kernel holds them
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", pm))
            idle.append(s)
        time.sleep(3.5)   # the connections past the accept queue retry their SYN at 1 s, 3 s
        assert _threads(proc.pid) <= before + MAX_CLIENTS, (before, _threads(proc.pid))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(20):
                tx.sendto(v5, ("127.0.0.1", port))
        time.sleep(CLIENT_TIMEOUT_S - 2.0)   # with the 3.5 s above: past the timeout
        for s in idle:
            s.close()
        idle.clear()
        _until(lambda: _metric(pm, "collector_written_records") == 20 * 29)
        assert proc.poll() is None
        assert_stops_on_sigterm(proc, wait_s=10)
    finally:
        for s in idle:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_address_the_collector_cannot_listen_on_is_named(tmp_path):
    """A --listen that cannot be bound (an address of no interface here; a name that
    resolves to nothing likewise, not tried: no lookup leaves this host) is one line naming
    it, exit 1 (it said "Cannot assign requested address", naming nothing)."""
    for listen in ("192.0.2.1:2055", "[2001:db8::1]:2055"):
        p = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "flows", "collect",
                            "--store", str(tmp_path / "s"), "--listen", listen],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and f"cannot listen on {listen}" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
