"""The collector's receive path (issue 15): batch receive (recvmmsg, and the recvfrom loop
that must give the same results), the receive process ahead of the decoder, its bounded
queue (what it cannot hold is lost in the kernel and counted there), and its stop.
Real loopback sockets and processes."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from trunkline.flows.sources import udp
from trunkline.flows.sources.collector import (
    Collector,
    CollectorConfig,
    read_status,
    socket_drops,
)
from trunkline.flows.sources.pcap import read_udp
from trunkline.flows.sources.receiver import FRAME, META, serve
from trunkline.flows.store import FlowStore

SIZES = [0, 1, 29, 1416, 9000, 65507]  # 65,507: the largest IPv4 UDP payload


def _payloads() -> list[bytes]:
    return [bytes((i * 7 + k) % 256 for k in range(n)) for i, n in enumerate(SIZES)]


def _rx_socket(family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def _receive_all(rx: udp.BatchReceiver, sock: socket.socket, n: int) -> list[list]:
    """Batches until n datagrams arrived (loopback delivers at once; bounded wait)."""
    batches, got = [], 0
    deadline = time.monotonic() + 5
    while got < n and time.monotonic() < deadline:
        b = rx.recv(sock)
        if b:
            batches.append(b)
            got += len(b)
    return batches


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_recvmmsg_and_the_recvfrom_loop_give_the_same_datagrams(family, host):
    if udp._udp is None:
        pytest.skip("the _udp extension is not built (setup.py build_ext --inplace)")
    try:
        rx_sock = _rx_socket(family, host)
    except OSError:
        pytest.skip(f"no {host} here")
    txs = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(2)]
    for t in txs:
        t.bind((host, 0))
    got = {}
    senders = {t.getsockname()[:2] for t in txs}
    try:
        for native in (True, False):
            for k, p in enumerate(_payloads()):
                txs[k % 2].sendto(p, rx_sock.getsockname()[:2])
            batches = _receive_all(udp.BatchReceiver(max_msgs=4, native=native), rx_sock,
                                   len(SIZES))
            assert [len(b) for b in batches] == [4, 2]  # max_msgs bounds one call
            got[native] = [x for b in batches for x in b]
    finally:
        rx_sock.close()
        for t in txs:
            t.close()
    assert got[True] == got[False]
    assert [d for d, _, _ in got[True]] == _payloads()
    assert {(h, p) for _, h, p in got[True]} == senders


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_frames_of_recvmmsg_and_of_the_python_loop_are_the_same_bytes(family, host):
    if udp._udp is None:
        pytest.skip("the _udp extension is not built (setup.py build_ext --inplace)")
    try:
        rx_sock = _rx_socket(family, host)
    except OSError:
        pytest.skip(f"no {host} here")
    frames = {}
    with socket.socket(family, socket.SOCK_DGRAM) as tx:
        tx.bind((host, 0))
        sender = tx.getsockname()[:2]
        try:
            for native in (True, False):
                for p in _payloads():
                    tx.sendto(p, rx_sock.getsockname()[:2])
                rx = udp.BatchReceiver(native=native)
                deadline, count, frame = time.monotonic() + 5, 0, b""
                while count < len(SIZES) and time.monotonic() < deadline:
                    n, f = rx.recv_frame(rx_sock)
                    count, frame = count + n, frame + f
                frames[native] = frame
        finally:
            rx_sock.close()
    assert frames[True] == frames[False]
    want = [(p, *sender) for p in _payloads()]
    assert udp.parse_frame(frames[True], native=True) == want
    assert udp.parse_frame(frames[True], native=False) == want
    for native in (True, False):  # a frame cut short is refused, never half-read
        with pytest.raises(ValueError):
            udp.parse_frame(frames[True][:-1], native=native)


def test_nothing_waiting_is_an_empty_batch():
    s = _rx_socket()
    try:
        for native in (True, False):
            assert udp.BatchReceiver(native=native).recv(s) == []
            assert udp.BatchReceiver(native=native).recv_frame(s) == (0, b"")
    finally:
        s.close()


def test_a_full_receive_queue_leaves_the_rest_to_the_kernel_which_counts_it():
    """Nothing lost silently: datagrams sent = delivered through the pipe + counted as
    socket drops, when the queue (100 KB) and the pipe are full and nobody reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    r, w = os.pipe()
    stopping = [False]
    t = threading.Thread(target=serve, args=([s], w, 100_000, stopping))
    t.start()
    sent = 200
    payload = b"x" * 30_000  # 6 MB in all: more than pipe + queue + socket buffer
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(sent):
                tx.sendto(payload, s.getsockname())
                time.sleep(0.0005)
        time.sleep(0.5)
        stopping[0] = True
        data = bytearray()
        while chunk := os.read(r, 1 << 20):  # the receiver writes its queue, then EOF
            data += chunk
    finally:
        stopping[0] = True
        t.join(10)
        os.close(r)
    frames, off = [], 0
    while off < len(data):
        (n,) = FRAME.unpack_from(data, off)
        body = off + FRAME.size
        frames.append((META.unpack_from(data, body),
                       udp.parse_frame(data[body + META.size: body + n])))
        off = body + n
    delivered = sum(len(batch) for _, batch in frames)
    drops = socket_drops([s])
    s.close()
    assert drops > 0 and delivered > 0
    assert delivered + drops == sent
    assert all(d == payload for _, batch in frames for d, _, _ in batch)
    assert frames[-1][0][1] == delivered  # the receiver's own count
    # the queue's bound, overshot by one batch at most
    assert max(meta[3] for meta, _ in frames) <= 100_000 + 256 * (len(payload) + udp.HEAD.size)


def _v5(shared_data) -> bytes:
    return [d.payload for d in read_udp(shared_data / "flows/netflow/nfv5.pcap")][0]


@pytest.mark.timeout(60)
def test_the_receive_process_feeds_every_datagram_and_stops_within_a_second(
        shared_data, tmp_path):
    v5 = _v5(shared_data)
    store = FlowStore(tmp_path / "store")
    col = Collector(CollectorConfig([("127.0.0.1", 0)], flush_interval_s=60,
                                    status_interval_s=0.1, receiver="process"), store)
    col.bind()
    t = threading.Thread(target=col.run)
    t.start()
    sent = 2000
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(sent):
                tx.sendto(v5, col.bound[0])
                if i % 200 == 199:
                    time.sleep(0.01)
        deadline = time.monotonic() + 20
        while col.decoder.counters.totals()["packets"] < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        receiver_pid = col.receiver.pid
    finally:
        t0 = time.monotonic()
        col.stop()
        t.join(10)
    assert time.monotonic() - t0 < 1.0
    assert col.failure is None
    st = read_status(tmp_path / "store")["collector"]
    assert st["receiver"]["process"] == 1 and st["receiver"]["received"] == sent
    assert st["written_records"] == sent * 29 == sum(
        __import__("pyarrow.parquet").parquet.ParquetFile(f).metadata.num_rows
        for f in store.files())
    with pytest.raises(ProcessLookupError):  # the receive process is gone too
        os.kill(receiver_pid, 0)


@pytest.mark.timeout(60)
def test_a_dead_receive_process_fails_the_collector_and_keeps_what_it_had(
        shared_data, tmp_path):
    v5 = _v5(shared_data)
    col = Collector(CollectorConfig([("127.0.0.1", 0)], flush_interval_s=60,
                                    status_interval_s=0.1, receiver="process"),
                    FlowStore(tmp_path / "store"))
    col.bind()
    t = threading.Thread(target=col.run)
    t.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(v5, col.bound[0])
    deadline = time.monotonic() + 20
    while col.decoder.counters.totals()["records"] < 29 and time.monotonic() < deadline:
        time.sleep(0.05)
    col.receiver.kill()
    t.join(10)
    assert not t.is_alive()
    assert col.failure and "receive process exited" in col.failure
    st = read_status(tmp_path / "store")["collector"]
    assert st["state"] == "failed" and st["written_records"] == 29
