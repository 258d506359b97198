"""softflowd (a real exporter) -> our collector AND nfcapd; stored totals must agree.

The test writes a pcap of synthetic TCP/UDP traffic, softflowd turns it into NetFlow v5,
v9 or IPFIX, and a small loopback relay hands every export datagram to both collectors.
nfdump then reports what nfcapd stored; our store must hold the same flows, bytes and
packets (and both must equal the pcap's own totals).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import require_tool
from trunkline.flows.sources.collector import Collector, CollectorConfig
from trunkline.flows.sources.pcap import eth_ipv4_frame, write_pcap
from trunkline.flows.store import FlowStore
from trunkline.testing.flowfuzz import rx_queue_bytes

N_PACKETS, N_FLOWS = 1500, 120


def _traffic(path: Path) -> tuple[int, int, int]:
    """Write the pcap; returns (flows, IP bytes, packets) as an exporter would count them."""
    rng = random.Random(5)
    frames, nbytes, flows = [], 0, set()
    t = 1_700_000_000.0
    for _ in range(N_PACKETS):
        f = rng.randrange(N_FLOWS)
        proto = 6 if f % 3 else 17
        sport, dport = 1024 + f, 80 + f % 7
        payload = b"x" * rng.randrange(0, 1400)
        if proto == 6:
            l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, 0x18, 1000, 0, 0) + payload
        else:
            l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        frames.append((t, eth_ipv4_frame(f"10.0.{f // 200}.{f % 200 + 1}", f"10.1.0.{f % 50 + 1}",
                                         proto, l4)))
        nbytes += 20 + len(l4)
        flows.add(f)
        t += 0.005
    write_pcap(path, frames)
    return len(flows), nbytes, N_PACKETS


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay(threading.Thread):
    """Loopback UDP tee: every datagram to every target (bounded by a stop flag)."""

    def __init__(self, targets: list[tuple[str, int]]):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.targets, self.count = targets, 0
        self.stop = threading.Event()

    def run(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self._forward(out, data)
        # what the exporter sent before it exited sits in our buffer: a thread scheduled
        # late (a loaded machine) must still forward all of it, or both collectors miss it
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                break
            self._forward(out, data)
        out.close()
        self.sock.close()

    def _forward(self, out: socket.socket, data: bytes) -> None:
        for t in self.targets:
            out.sendto(data, t)
        self.count += 1


def _until_read(port: int, deadline_s: float = 10.0) -> None:
    """Wait until the collector on ``port`` has read every datagram handed to it."""
    deadline = time.monotonic() + deadline_s
    while rx_queue_bytes(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def _softflowd(pcap: Path, port: int, version: str, tmp: Path) -> None:
    ctl = tmp / "softflowd.ctl"
    proc = subprocess.Popen(["softflowd", "-r", str(pcap), "-n", f"127.0.0.1:{port}",
                             "-v", version, "-d", "-c", str(ctl), "-p", str(tmp / "sf.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # softflowd only reads the file when its loop wakes up: a control command does it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = subprocess.run(["softflowctl", "-c", str(ctl), "statistics"],
                                 capture_output=True, text=True, timeout=5).stdout
            if f"Packets processed: {N_PACKETS}" in out:
                break
            time.sleep(0.2)
        else:
            pytest.fail("softflowd did not process the capture")
        for _ in range(50):  # the control socket is busy at times: retry
            subprocess.run(["softflowctl", "-c", str(ctl), "shutdown"], capture_output=True,
                           timeout=5)
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        assert proc.returncode == 0, proc.stdout.read().decode()[-500:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _nfdump_summary(nfdir: Path) -> tuple[int, int, int]:
    out = subprocess.run(["nfdump", "-R", str(nfdir), "-o", "csv"], capture_output=True,
                         text=True, check=True, timeout=60).stdout.splitlines()
    i = out.index("flows,bytes,packets,avg_bps,avg_pps,avg_bpp")
    flows, nbytes, pkts = out[i + 1].split(",")[:3]
    return int(flows), int(nbytes), int(pkts)


@pytest.mark.parametrize("version", ["5", "9", "10"])
def test_softflowd_export_matches_nfdump(version, tmp_path):
    for tool in ("softflowd", "softflowctl", "nfcapd", "nfdump"):
        require_tool(tool)
    truth = _traffic(tmp_path / "traffic.pcap")
    nfdir = tmp_path / "nfcapd"
    nfdir.mkdir()
    nf_port, our_port = _free_udp_port(), _free_udp_port()
    nfcapd = subprocess.Popen(["nfcapd", "-w", str(nfdir), "-b", "127.0.0.1", "-p",
                               str(nf_port), "-t", "3600"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # softflowd -r exports the capture's 2023 flows under today's header time: a probe
    # replaying an old pcap, which the default 24 h time window would quarantine
    store = FlowStore(tmp_path / "store", time_window_s=20 * 365 * 86_400)
    col = Collector(CollectorConfig([("127.0.0.1", our_port)], flush_interval_s=60), store)
    col.bind()
    runner = threading.Thread(target=col.run, daemon=True)
    runner.start()
    relay = Relay([("127.0.0.1", nf_port), ("127.0.0.1", our_port)])
    relay.start()
    try:
        time.sleep(0.3)  # nfcapd binds
        # softflowd has exited when this returns: every export datagram is in the relay
        _softflowd(tmp_path / "traffic.pcap", relay.port, version, tmp_path)
    finally:
        relay.stop.set()
        relay.join(5)
        _until_read(nf_port)  # nfcapd drops what is still queued when SIGTERM arrives
        col.stop()
        runner.join(20)
        nfcapd.send_signal(signal.SIGTERM)
        nfcapd.wait(timeout=20)
    assert relay.count > 0
    nf = _nfdump_summary(nfdir)
    ours = store.query("SELECT count(*), sum(bytes), sum(packets) FROM flows").to_pylist()[0]
    ours = tuple(int(v) for v in ours.values())
    assert ours == nf, f"ours {ours} vs nfdump {nf}"
    assert ours == truth, f"ours {ours} vs the capture {truth}"
    kinds = store.query("SELECT DISTINCT flow_type FROM flows").column(0).to_pylist()
    assert kinds == [{"5": "netflow5", "9": "netflow9", "10": "ipfix"}[version]]
    assert sum(col.decoder.counters.totals()["drops"].values()) == 0
    assert sum(store.quarantined.values()) == 0
    shutil.rmtree(nfdir)
