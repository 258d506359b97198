"""Property tests over mutated real packets: no crash, no hang, counted drops, and one
exporter's garbage never touches another exporter's templates."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.pcap import read_udp

SHARED_FLOWS = Path(__file__).resolve().parents[3] / "shared" / "data" / "flows"


def _corpus() -> list[bytes]:
    return [d.payload for p in sorted(SHARED_FLOWS.glob("*/*.pcap")) for d in read_udp(p)]


CORPUS = _corpus() if SHARED_FLOWS.is_dir() else []
needs_corpus = pytest.mark.skipif(not CORPUS, reason=f"captures not found under {SHARED_FLOWS}")


@st.composite
def mutated(draw) -> bytes:
    pkt = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "u16"]))
        if not pkt:
            break
        i = draw(st.integers(0, len(pkt) - 1))
        if op == "flip":
            pkt[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            pkt[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del pkt[i:]
        elif op == "insert":
            pkt[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif i + 2 <= len(pkt):  # lengths and counts live in 16-bit fields
            pkt[i : i + 2] = struct.pack(">H", draw(st.sampled_from([0, 1, 4, 0xFFFF, 0x8000])))
    return bytes(pkt)


def _templates_everywhere() -> FlowDecoder:
    """A decoder that learned every capture's templates, from exporter 192.0.2.1."""
    d = FlowDecoder()
    for p in CORPUS:
        d.feed(p, "192.0.2.1")
    d.flush()
    return d


@needs_corpus
@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_mutated_packets_never_crash_or_hang(packets):
    d = _templates_everywhere()
    good_templates = d.cache.templates_of("192.0.2.1")
    t0 = time.monotonic()
    for p in packets:
        d.feed(p, "198.51.100.66", 0)
    table = d.flush()  # building the table must not fail either
    assert time.monotonic() - t0 < 1.0
    assert table.num_rows >= 0
    c = d.counters.get("198.51.100.66")
    assert c.packets == len(packets)
    # the hostile exporter never reached the good exporter's templates
    assert d.cache.templates_of("192.0.2.1") == good_templates


@needs_corpus
@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=300))
def test_random_bytes_are_counted(data):
    d = FlowDecoder()
    ok = d.feed(data, "203.0.113.9")
    d.flush()
    c = d.counters.get("203.0.113.9")
    assert c.packets == 1
    if not ok:
        assert sum(c.drops.values()) >= 1


@needs_corpus
def test_drops_are_counted_per_exporter_and_reason():
    d = FlowDecoder()
    d.feed(b"\x00\x0a\x00", "10.9.9.9")  # short
    d.feed(b"\x00\x07" + b"\x00" * 30, "10.9.9.9")  # unknown version
    d.feed(struct.pack(">HHIII", 10, 999, 0, 0, 0), "10.8.8.8")  # length lies
    drops = d.counters.as_dict()["exporters"]
    assert drops["10.9.9.9"]["drops"] == {"short_header": 1, "unknown_version": 1}
    assert drops["10.8.8.8"]["drops"] == {"bad_length": 1}


@needs_corpus
def test_garbage_template_from_one_exporter_does_not_touch_another():
    """Same observation domain and template id, different exporters: isolated caches."""
    good = FlowDecoder()
    tmpl = next(p for p in CORPUS if p[:2] == b"\x00\x0a" and b"\x00\x02" in p[16:18])
    dom = struct.unpack(">I", tmpl[12:16])[0]
    good.feed(tmpl, "192.0.2.1")
    before = good.cache.templates_of("192.0.2.1")
    assert before
    # the hostile exporter redefines every template id of that domain as 1-byte junk,
    # then withdraws all templates
    body = b"".join(struct.pack(">HHHH", tid, 1, 210, 1) for (_, _, tid) in before)
    evil = struct.pack(">HH", 2, 4 + len(body)) + body
    withdraw = struct.pack(">HHHH", 2, 8, 2, 0)
    for sets in (evil, withdraw, b"\xff" * 40):
        msg = struct.pack(">HHIII", 10, 16 + len(sets), 0, 0, dom) + sets
        good.feed(msg, "198.51.100.66")
    assert good.cache.templates_of("192.0.2.1") == before
    assert good.counters.get("198.51.100.66").drops  # the junk was counted


@needs_corpus
def test_data_before_template_is_buffered_bounded_and_never_misdecoded():
    d = FlowDecoder()
    d.cache.max_pending_sets = 2
    data = next(p for p in CORPUS if p[:2] == b"\x00\x0a" and p[16:18] == b"\x01\x02")
    for _ in range(5):
        d.feed(data, "192.0.2.50")
    assert d.flush().num_rows == 0  # nothing decoded without its template
    c = d.counters.get("192.0.2.50")
    assert c.drops["no_template"] == 3 and c.buffered_sets == 5
