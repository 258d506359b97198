"""The IPFIX encoder round-trips through our decoder and is read by tshark."""

from __future__ import annotations

import socket
import struct
import subprocess

import pytest

from conftest import require_tool
from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.pcap import write_udp_pcap
from trunkline.telemetry.ipfix_export import PEN, IpfixEncoder, send_ipfix

RECORDS = [
    {"time_start": 1_700_000_000_123, "time_end": 1_700_000_009_456, "src_addr": "10.0.0.1",
     "dst_addr": "192.0.2.7", "src_port": 40000, "dst_port": 443, "proto": 6,
     "bytes": 12_345_678_901, "packets": 9000, "rtt_us": 1234, "retransmits": 7,
     "delivery_rate_bps": 9_876_543_210},
    {"time_start": 1_700_000_001_000, "time_end": 1_700_000_002_000,
     "src_addr": "2001:db8::1", "dst_addr": "2001:db8::2", "src_port": 5000,
     "dst_port": 9000, "proto": 17, "bytes": 1500, "packets": 1, "rtt_us": None,
     "retransmits": None, "delivery_rate_bps": None},
]


def _decode(msgs: list[bytes]) -> list[dict]:
    d = FlowDecoder()
    for m in msgs:
        assert d.feed(m, "127.0.0.1")
    rows = d.flush().to_pylist()
    return sorted(rows, key=lambda r: r["src_addr"])


def test_roundtrip_standard_and_enterprise_fields():
    rows = _decode(IpfixEncoder().encode(RECORDS, export_time=1_700_000_010))
    assert len(rows) == 2
    v4 = next(r for r in rows if r["src_addr"] == "10.0.0.1")
    assert (v4["dst_addr"], v4["src_port"], v4["dst_port"], v4["proto"]) == \
        ("192.0.2.7", 40000, 443, 6)
    assert (v4["bytes"], v4["packets"]) == (12_345_678_901, 9000)
    assert int(v4["time_start"].timestamp() * 1000) == 1_700_000_000_123
    assert int(v4["time_end"].timestamp() * 1000) == 1_700_000_009_456
    assert (v4["rtt_us"], v4["retransmits"], v4["delivery_rate_bps"]) == \
        (1234, 7, 9_876_543_210)
    assert v4["flow_type"] == "ipfix" and v4["sampling_rate"] == 1
    v6 = next(r for r in rows if r["src_addr"] == "2001:db8::1")
    assert (v6["dst_addr"], v6["bytes"], v6["rtt_us"]) == ("2001:db8::2", 1500, 0)


def test_many_records_split_by_mtu_and_sequence():
    recs = [dict(RECORDS[0], src_port=i) for i in range(1000)]
    enc = IpfixEncoder(mtu=1400)
    msgs = enc.encode(recs)
    assert all(len(m) <= 1400 for m in msgs) and len(msgs) > 10
    assert enc.sequence == 1000
    rows = _decode(msgs)
    assert sorted(r["src_port"] for r in rows) == list(range(1000))


def test_other_enterprise_fields_are_skipped():
    """A template with an unknown PEN field between known ones still decodes."""
    tmpl = struct.pack(">HHHH", 300, 3, 8, 4) + struct.pack(">HHI", 0x8000 | 99, 6, 9) + \
        struct.pack(">HHI", 0x8000 | 1, 4, PEN)
    tset = struct.pack(">HH", 2, 4 + len(tmpl)) + tmpl
    data = bytes([10, 0, 0, 9]) + b"\xee" * 6 + struct.pack(">I", 777)
    dset = struct.pack(">HH", 300, 4 + len(data)) + data
    body = tset + dset
    msg = struct.pack(">HHIII", 10, 16 + len(body), 1_700_000_000, 0, 5) + body
    rows = _decode([msg])
    assert rows[0]["src_addr"] == "10.0.0.9" and rows[0]["rtt_us"] == 777


def test_send_ipfix_udp_and_tshark_reads_it(tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    try:
        n = send_ipfix(RECORDS, f"udp://127.0.0.1:{port}")
        msgs = [rx.recv(65535) for _ in range(n)]
    finally:
        rx.close()
    assert len(_decode(msgs)) == 2
    with pytest.raises(ValueError):
        send_ipfix(RECORDS, "tcp://127.0.0.1:1")
    require_tool("tshark")
    # tshark check: write the datagrams into a pcap and let tshark dissect them
    pcap = tmp_path / "ipfix.pcap"
    write_udp_pcap(pcap, [(m, 4739) for m in msgs])
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==4739,cflow", "-T",
                          "fields", "-e", "cflow.srcaddr", "-e", "cflow.octets",
                          "-e", "cflow.abstimestart"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    assert "10.0.0.1" in out and "12345678901" in out
