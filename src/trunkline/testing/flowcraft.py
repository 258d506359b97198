"""Hand-built NetFlow/IPFIX/sFlow datagrams for tests and the fuzz campaign.

Hostile input is easiest to reason about when it is spelled out byte by byte: these
helpers build IPFIX messages (sets, templates, withdrawals, data) with known contents, so
a test states the attack and its expected outcome, not a hex dump.
"""

from __future__ import annotations

import struct


def ipfix_msg(*sets: bytes, domain: int = 1, export: int = 1_700_000_000, seq: int = 0) -> bytes:
    """An IPFIX message (RFC 7011 header) around ready-made sets."""
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export, seq, domain) + body


def ipfix_set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def template_record(tid: int, fields: list[tuple[int, int]]) -> bytes:
    """One template record (in a set with id 2); ``fields`` = [(element id, length)]."""
    return struct.pack(">HH", tid, len(fields)) + b"".join(
        struct.pack(">HH", ie, ln) for ie, ln in fields)


def withdrawal(tid: int) -> bytes:
    """A template withdrawal record (field count 0)."""
    return struct.pack(">HH", tid, 0)


def template_set(*records: bytes) -> bytes:
    return ipfix_set(2, b"".join(records))


# src addr, dst addr, octets (4 bytes), start/end seconds
FLOW_FIELDS = [(8, 4), (12, 4), (1, 4), (150, 4), (151, 4)]


def flow_record(src: int, dst: int, octets: int, start_s: int, end_s: int | None = None) -> bytes:
    return struct.pack(">IIIII", src, dst, octets, start_s, start_s if end_s is None else end_s)


def define_and_withdraw_datagram(tid: int = 300, export: int = 1_700_000_000) -> bytes:
    """Issue 15's one-datagram stopper: data for ``tid`` (buffered: no template yet), then
    a template set that defines ``tid`` and withdraws it in the same set."""
    data = ipfix_set(tid, flow_record(0x0A000001, 0x0A000002, 100, export))
    tmpl = template_set(template_record(tid, FLOW_FIELDS), withdrawal(tid))
    return ipfix_msg(data, tmpl, export=export)
