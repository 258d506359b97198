"""The bounded fuzz campaign against the LIVE collector (issue 15; the long one is
``bench/flows_fuzz.py``): a few thousand structure-aware mutations of the shared captures
and crafted template/withdraw/option sequences from 100 loopback addresses, while a
legitimate exporter sends real captures alongside. The collector must not crash, must keep
its memory bounded, and must store every legitimate record."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.collector import read_status
from trunkline.flows.sources.pcap import read_udp
from trunkline.flows.store import FlowStore
from trunkline.testing.flowfuzz import Mutator, live_campaign, load_seeds, rss_kib, shift_to

N_HOSTILE = 3000
RATE_PPS = 3000


def legit_datagrams(flows_dir) -> list[bytes]:
    """A real IPFIX exporter (templates in every datagram), NetFlow v5 and sFlow, their
    times moved to now (a live exporter, not a capture of 2023)."""
    now = int(time.time())
    return [shift_to(next(iter(read_udp(flows_dir / f))).payload, now) for f in (
        "netflow/physicalinterfaces.pcap", "netflow/nfv5.pcap", "sflow/data-1140.pcap")]


def expected_records(datagrams: list[bytes], exporter: str = "127.0.0.1") -> int:
    d = FlowDecoder()
    for p in datagrams:
        assert d.feed(p, exporter, int(time.time() * 1000))
    return d.flush().num_rows


@pytest.mark.timeout(120)
def test_live_fuzz_campaign_bounded(shared_data, tmp_path):
    flows = shared_data / "flows"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trunkline.cli.main", "flows", "collect", "--store", str(store),
         "--listen", f"127.0.0.1:{port}", "--flush-interval", "1", "--template-budget", "16",
         "--exporter-quota", "1"], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert "collecting on" in proc.stderr.readline()
        hostile = Mutator(load_seeds(flows), random.Random(15)).stream()
        r = live_campaign(port, hostile, N_HOSTILE, legit_datagrams(flows), legit_every=20,
                          rate_pps=RATE_PPS, pid=proc.pid, max_seconds=60)
        time.sleep(1.5)
        assert proc.poll() is None, proc.stderr.read()
        peak_kib = rss_kib(proc.pid, "VmHWM")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert r["hostile_sent"] == N_HOSTILE and r["legit_sent"] == N_HOSTILE // 20
    st = read_status(store)
    col, ex = st["collector"], st["exporters"]
    assert col["state"] == "stopped" and col["write_errors"] == 0 and not col["build_errors"]
    assert "internal_error" not in st["totals"]["drops"]
    assert st["totals"]["packets"] == r["datagrams_sent"]  # every datagram was handled
    assert sum(st["totals"]["drops"].values()) > N_HOSTILE // 10  # the fuzz was hostile
    assert col["template_bytes"] <= 16 << 20
    assert peak_kib < 600 << 10, f"peak RSS {peak_kib} KiB"
    want = expected_records(r["legit_datagrams"])
    got = FlowStore(store).query(
        "SELECT count(*) FROM flows WHERE exporter = '127.0.0.1'").column(0)[0].as_py()
    assert got == want == ex["127.0.0.1"]["records"], (got, want)
    assert ex["127.0.0.1"]["drops"] == {}
