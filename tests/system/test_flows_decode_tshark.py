"""Conformance: every capture under ../shared/data/flows decodes, field by field, as tshark.

tshark decodes the same (merged, template-first) capture; records are compared as
multisets on addresses, ports, protocol, bytes, packets, start/end time (ms) and the
sampling rate. Fields tshark cannot give us, and how they are checked instead:
  - sampling rate of a data record: tshark does not link options data (sampler tables) to
    data records, so the expected rate is derived here from the options records tshark
    decoded (by sampler id) or the v5 header's sample rate;
  - IPFIX dataLinkFrameSection exports (datalink, Ethernet-over-MPLS, SRv6, Juniper CPID)
    carry no address fields: expected keys come from the first IP header tshark dissects
    inside the section, bytes from dataLinkFrameSize, packets = 1 (a sampled frame);
  - data sets before their template in data+templates.pcap: tshark reports "no template
    found"; we buffer and decode them when the template arrives (11 extra records, checked
    against tshark's decoding of the same set in a second copy of the datagram);
  - sFlow has no flow timestamps: we use the arrival time (frame.time_epoch).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import require_tool
from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.pcap import read_udp

NETFLOW_GROUPS = [
    # twice: in the second copy tshark knows the template and decodes the leading data
    # set, which gives a reference for the records we buffered in the first copy
    ["data+templates", "data+templates"],
    ["options-template", "options-data", "template", "data"],
    ["datalink-template", "datalink-data"],
    ["ethernet-over-mpls-with-control-word-template", "ethernet-over-mpls-with-control-word-data"],
    ["icmp-template", "icmp-data"],
    ["ipfix-srv6-template", "ipfix-srv6-data"],
    ["ipfixprobe-templates", "ipfixprobe-data"],
    ["juniper-cpid-template", "juniper-cpid-data"],
    ["mpls"],
    ["multiplesamplingrates-options-template", "multiplesamplingrates-options-data",
     "multiplesamplingrates-template", "multiplesamplingrates-data"],
    ["nat"],
    ["nfv5"],
    ["physicalinterfaces"],
    ["samplingrate-template", "samplingrate-data"],
]
PORTS = (2055, 2100, 4739, 9990, 8096)  # the collector ports seen in these captures
EXTRA_BUFFERED = {"data+templates": 11}  # data before template, in the same datagram


def _first_wins(pairs):
    d = {}
    for k, v in pairs:
        d.setdefault(k, v)
    return d


def _tshark(path: Path, proto: str) -> list[dict]:
    args = ["tshark", "-r", str(path), "-T", "json", "-J", f"frame {proto}"]
    for p in PORTS + (6343,):
        args += ["-d", f"udp.port=={p},{proto}"]
    out = subprocess.run(args, capture_output=True, check=True, timeout=60).stdout
    return json.loads(out, object_pairs_hook=_first_wins)


def _ts(s: str) -> int:
    """tshark's 'Jun  4, 2023 08:39:55.034000000 UTC' to epoch milliseconds."""
    s = " ".join(s.replace(" UTC", "").split())
    base, _, frac = s.partition(".")
    t = dt.datetime.strptime(base, "%b %d, %Y %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1000 + int((frac or "0").ljust(9, "0")[:3])


def _ms(sec: str) -> int:
    return int(Decimal(sec) * 1000)


def _merged(tmp: Path, files: list[Path]) -> Path:
    require_tool("mergecap")
    out = tmp / ("-".join(f.stem for f in files)[:80] + ".pcap")
    subprocess.run(["mergecap", "-a", "-F", "pcap", "-w", str(out), *map(str, files)],
                   check=True, timeout=30)
    return out


def _cflow_records(packets: list[dict]) -> list[tuple]:
    data, options, v5_rate = [], [], None
    for p in packets:
        cf = p["_source"]["layers"].get("cflow")
        if not cf:
            continue
        hdr = {k: v for k, v in cf.items() if isinstance(v, str)}
        export_ms = _ts(hdr["cflow.timestamp"])
        if hdr["cflow.version"] == "5":
            v5_rate = int(hdr.get("cflow.samplerate", "0")) or 1

        def walk(d, hdr=hdr, export_ms=export_ms):
            for k, v in d.items():
                if not isinstance(v, dict):
                    continue
                if k.startswith(("Flow ", "pdu ")):
                    keyed = any(x in v for x in ("cflow.srcaddr", "cflow.srcaddrv6",
                                                 "cflow.data_link_frame_section",
                                                 "cflow.octets", "cflow.packets"))
                    (data if keyed else options).append((hdr, export_ms, v))
                else:
                    walk(v)

        walk(cf)
    sampler = {}
    for _, _, o in options:
        rate = o.get("cflow.sampling_interval") or o.get("cflow.sampler_random_interval")
        if rate is None and "cflow.sampling_packet_interval" in o:
            i, s = int(o["cflow.sampling_packet_interval"]), int(o["cflow.sampling_packet_space"])
            rate = (i + s) // i
        if rate is not None:
            sampler[o.get("cflow.sampler_id") or o.get("cflow.selector_id")] = int(rate)
    default = sampler.get(None) or (next(iter(set(sampler.values())))
                                    if len(set(sampler.values())) == 1 else 1)
    out = []
    for hdr, export_ms, f in data:
        out.append(_expect(hdr, export_ms, f, sampler, v5_rate or default))
    return out


def _expect(hdr, export_ms, f, sampler, default) -> tuple:
    g = f.get
    src = g("cflow.srcaddr")
    dst = g("cflow.dstaddr")
    if src in (None, "0.0.0.0") and g("cflow.srcaddrv6") not in (None, "::"):
        src, dst = g("cflow.srcaddrv6"), g("cflow.dstaddrv6")
    sport, dport, proto = g("cflow.srcport", 0), g("cflow.dstport", 0), g("cflow.protocol", 0)
    nbytes = g("cflow.octets") or g("cflow.octets64") or 0
    npkts = g("cflow.packets") or g("cflow.packets64") or 0
    if "cflow.data_link_frame_section_tree" in f:
        tree = f["cflow.data_link_frame_section_tree"]
        ip = _ip_layer(tree)
        src = ip.get("ip.src") or ip.get("ipv6.src")
        dst = ip.get("ip.dst") or ip.get("ipv6.dst")
        proto = ip.get("ip.proto") or ip.get("ipv6.nxt") or 0
        l4 = tree.get("tcp") or tree.get("udp") or {}
        sport = l4.get("tcp.srcport") or l4.get("udp.srcport") or 0
        dport = l4.get("tcp.dstport") or l4.get("udp.dstport") or 0
        nbytes, npkts = g("cflow.data_link_frame_size"), 1
    td = f.get("cflow.timedelta_tree", {})
    if "cflow.abstimestart" in td:
        start, end = _ts(td["cflow.abstimestart"]), _ts(td["cflow.abstimeend"])
    elif "cflow.timestart" in td:
        up = _ms(hdr["cflow.sysuptime"])
        start = export_ms - up + _ms(td["cflow.timestart"])
        end = export_ms - up + _ms(td["cflow.timeend"])
    elif "cflow.observation_time_milliseconds" in f:
        start = end = _ts(f["cflow.observation_time_milliseconds"])
    else:
        start = end = export_ms
    if "cflow.sampling_interval" in f:
        rate = int(f["cflow.sampling_interval"]) or 1
    elif "cflow.sampler_id" in f:
        rate = sampler.get(f["cflow.sampler_id"], default)
    else:
        rate = default
    return (src, dst, int(sport), int(dport), int(proto), int(nbytes), int(npkts),
            start, end, rate)


def _ip_layer(tree: dict) -> dict:
    """The first IP layer, or the inner one of an IP-in-IP tunnel (SRv6): our policy."""
    layers = [(k, v) for k, v in tree.items() if k in ("ip", "ipv6")]
    if not layers:
        return {}
    k, first = layers[0]
    proto = first.get("ip.proto") if k == "ip" else first.get("ipv6.nxt")
    if proto in ("4", "41") and len(layers) > 1:
        return layers[1][1]
    return first


def _ours(path: Path) -> list[tuple]:
    d = FlowDecoder()
    for g in read_udp(path):
        assert d.feed(g.payload, g.src, g.ts_ms), d.counters.as_dict()
    t = d.flush()
    cols = ["src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets",
            "time_start", "time_end", "sampling_rate"]
    rows = []
    for r in t.select(cols).to_pylist():
        r["time_start"] = int(r["time_start"].timestamp() * 1000)
        r["time_end"] = int(r["time_end"].timestamp() * 1000)
        rows.append(tuple(r[c] for c in cols))
    return rows


@pytest.mark.parametrize("group", NETFLOW_GROUPS, ids=lambda g: g[-1])
def test_netflow_ipfix_matches_tshark(group, shared_data, tmp_path):
    require_tool("tshark")
    files = [shared_data / "flows" / "netflow" / f"{f}.pcap" for f in group]
    merged = _merged(tmp_path, files)
    expected = _cflow_records(_tshark(merged, "cflow"))
    ours = _ours(merged)
    assert expected, "tshark decoded no flow records"
    extra = EXTRA_BUFFERED.get(group[-1], 0)
    assert len(ours) == len(expected) + extra
    # Records tshark cannot dissect (Ethernet-over-MPLS with a pseudowire control word:
    # tshark reads the control word as an Ethernet header): compare what it does give.
    undecoded = [e for e in expected if e[0] is None]
    expected = [e for e in expected if e[0] is not None]
    missing = Counter(expected) - Counter(ours)
    assert not missing, f"records tshark has and we do not: {list(missing)[:3]}\nours: {ours[:3]}"
    rest = Counter(ours) - Counter(expected)
    assert not Counter(e[5:] for e in undecoded) - Counter(r[5:] for r in rest)
    if extra:  # the buffered-then-decoded records equal tshark's from the second copy
        assert sum(rest.values()) == extra and set(rest) <= set(expected)
    assert all(r[0] is not None for r in ours)


def _sflow_records(packets: list[dict]) -> list[tuple]:
    out = []
    for p in packets:
        layers = p["_source"]["layers"]
        recv_ms = int(Decimal(layers["frame"]["frame.time_epoch"]) * 1000)
        sf = layers.get("sflow") or {}
        for k, sample in sf.items():
            if not (isinstance(sample, dict) and "flow sample" in k.lower()):
                continue
            rate = int(sample["sflow.flow_sample.sampling_rate"]) or 1
            raw = sample.get("Raw packet header")
            if raw is None:
                continue
            tree = raw.get("sflow_245.header_tree", {})
            ip = _ip_layer(tree)
            l4 = tree.get("tcp") or tree.get("udp") or {}
            proto = ip.get("ip.proto") or ip.get("ipv6.nxt")
            out.append((ip.get("ip.src") or ip.get("ipv6.src"),
                        ip.get("ip.dst") or ip.get("ipv6.dst"),
                        int(l4.get("tcp.srcport") or l4.get("udp.srcport") or 0),
                        int(l4.get("tcp.dstport") or l4.get("udp.dstport") or 0),
                        int(proto), int(raw["sflow_245.header.frame_length"]), 1,
                        recv_ms, recv_ms, rate))
    return out


SFLOW_FILES = sorted(p.name for p in (Path(__file__).resolve().parents[3] / "shared" / "data"
                                      / "flows" / "sflow").glob("*.pcap")) or ["none"]


@pytest.mark.parametrize("name", SFLOW_FILES)
def test_sflow_matches_tshark(name, shared_data):
    require_tool("tshark")
    path = shared_data / "flows" / "sflow" / name
    expected = _sflow_records(_tshark(path, "sflow"))
    ours = _ours(path)
    assert expected and len(ours) == len(expected)
    assert Counter(ours) == Counter(expected), f"ours {ours[:2]}\ntshark {expected[:2]}"
