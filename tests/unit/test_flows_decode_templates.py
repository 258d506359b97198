"""Template life cycle (IPFIX): definition, withdrawal, redefinition, variable-length
fields, and NetFlow v5 header sampling — on hand-built messages with known answers."""

from __future__ import annotations

import struct

from trunkline.flows.decode import FlowDecoder


def _msg(*sets: bytes, domain: int = 1, export: int = 1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export, 0, domain) + body


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _tmpl(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return _set(2, struct.pack(">HH", tid, len(fields)) +
                b"".join(struct.pack(">HH", ie, ln) for ie, ln in fields))


A = [(8, 4), (12, 4), (1, 4)]  # src, dst, octets (4 bytes)
B = [(1, 8), (8, 4), (12, 4)]  # octets (8 bytes) first: same id, other layout


def _rec_a(src: int, n: int) -> bytes:
    return struct.pack(">III", src, 0x0A000001, n)


def _rec_b(src: int, n: int) -> bytes:
    return struct.pack(">QII", n, src, 0x0A000001)


def test_redefinition_never_decodes_old_data_with_new_template():
    d = FlowDecoder()
    d.feed(_msg(_tmpl(300, A), _set(300, _rec_a(0x01010101, 111))), "192.0.2.1")
    d.feed(_msg(_tmpl(300, B), _set(300, _rec_b(0x02020202, 222))), "192.0.2.1")
    rows = sorted(d.flush().to_pylist(), key=lambda r: r["bytes"])
    assert [(r["src_addr"], r["bytes"]) for r in rows] == [("1.1.1.1", 111), ("2.2.2.2", 222)]


def test_withdrawal_then_data_is_buffered_not_decoded():
    d = FlowDecoder()
    d.feed(_msg(_tmpl(300, A)), "192.0.2.1")
    withdraw = _set(2, struct.pack(">HH", 300, 0))
    d.feed(_msg(withdraw), "192.0.2.1")
    d.feed(_msg(_set(300, _rec_a(0x01010101, 5))), "192.0.2.1")
    assert d.flush().num_rows == 0
    assert d.counters.get("192.0.2.1").buffered_sets == 1
    # the template comes back: the buffered set is decoded with it
    d.feed(_msg(_tmpl(300, A)), "192.0.2.1")
    assert d.flush().column("bytes").to_pylist() == [5]


def test_withdraw_all_and_domains_are_separate():
    d = FlowDecoder()
    d.feed(_msg(_tmpl(300, A), domain=1), "192.0.2.1")
    d.feed(_msg(_tmpl(300, B), domain=2), "192.0.2.1")
    d.feed(_msg(_set(2, struct.pack(">HH", 2, 0)), domain=1), "192.0.2.1")
    assert set(d.cache.templates_of("192.0.2.1")) == {(10, 2, 300)}


def test_variable_length_and_enterprise_fields():
    fields = struct.pack(">HH", 8, 4) + struct.pack(">HH", 82, 65535) + \
        struct.pack(">HHI", 0x8000 | 7, 65535, 12345) + struct.pack(">HH", 2, 4)
    tmpl = _set(2, struct.pack(">HH", 301, 4) + fields)
    rec1 = bytes([1, 2, 3, 4]) + b"\x03eth" + b"\xff\x01\x00" + b"z" * 256 + \
        struct.pack(">I", 7)
    rec2 = bytes([5, 6, 7, 8]) + b"\x00" + b"\x00" + struct.pack(">I", 9)
    d = FlowDecoder()
    assert d.feed(_msg(tmpl, _set(301, rec1 + rec2)), "192.0.2.1")
    rows = d.flush().to_pylist()
    assert [(r["src_addr"], r["packets"]) for r in rows] == [("1.2.3.4", 7), ("5.6.7.8", 9)]


def test_truncated_variable_length_record_is_counted():
    fields = struct.pack(">HH", 8, 4) + struct.pack(">HH", 82, 65535)
    tmpl = _set(2, struct.pack(">HH", 302, 2) + fields)
    bad = bytes([1, 2, 3, 4]) + b"\x20short"
    d = FlowDecoder()
    assert not d.feed(_msg(tmpl, _set(302, bad)), "192.0.2.1")
    assert d.counters.get("192.0.2.1").drops == {"truncated_record": 1}


def test_netflow5_header_sampling():
    hdr = struct.pack(">HHIIIIBBH", 5, 1, 10_000, 1_700_000_000, 0, 1, 0, 0, (1 << 14) | 512)
    rec = struct.pack(">IIIHHIIIIHHBBBBHHBBH", 0x0A000001, 0x0A000002, 0, 1, 2, 3, 4000,
                      5_000, 9_000, 1234, 80, 0, 0x18, 6, 0, 65000, 65001, 24, 24, 0)
    d = FlowDecoder()
    assert d.feed(hdr + rec, "192.0.2.5")
    r = d.flush().to_pylist()[0]
    assert (r["sampling_rate"], r["bytes"], r["packets"], r["src_as"]) == (512, 4000, 3, 65000)
    assert int(r["time_start"].timestamp() * 1000) == 1_700_000_000_000 - 5_000
    assert int(r["time_end"].timestamp() * 1000) == 1_700_000_000_000 - 1_000


def test_where_a_templates_sampling_rate_comes_from_is_decided_once():
    """In-record interval (or PSAMP packet interval) -> "records"; a sampler/selector id
    -> "sampler" (the options data name its rate); neither -> "domain"."""
    from trunkline.flows import ipfix as iana
    from trunkline.flows.decode.template import Template

    base = ((8, 4, 0), (12, 4, 0))  # sourceIPv4Address, destinationIPv4Address
    assert Template(256, base).sampling_from == "domain"
    assert Template(257, base + ((iana.SAMPLING_INTERVAL, 4, 0),)).sampling_from == "records"
    assert Template(258, base + ((iana.SAMPLER_RANDOM_INTERVAL, 4, 0),)
                    ).sampling_from == "records"
    assert Template(259, base + ((iana.SAMPLING_PACKET_INTERVAL, 4, 0),)
                    ).sampling_from == "records"
    assert Template(260, base + ((iana.SAMPLER_ID, 1, 0),)).sampling_from == "sampler"
    assert Template(261, base + ((iana.SELECTOR_ID, 8, 0),)).sampling_from == "sampler"
