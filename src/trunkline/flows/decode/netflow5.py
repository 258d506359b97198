"""NetFlow v5: a fixed 24-byte header and fixed 48-byte records, decoded in one frombuffer.

The record layout is expressed as a template of IPFIX element ids, so v5 shares the
column builder (and its sysUptime arithmetic) with v9. Sampling comes from the header's
``sampling_interval`` (low 14 bits; 0 means unsampled).
"""

from __future__ import annotations

import struct

import numpy as np

from .batch import Chunk
from .counters import DecodeError
from .template import Template
from .templated import DecodeState

_HDR = struct.Struct(">HHIIIIBBH")
RECORD_LEN = 48
# srcaddr dstaddr nexthop input output dPkts dOctets first last srcport dstport pad1
# tcp_flags prot tos src_as dst_as src_mask dst_mask pad2
V5_TEMPLATE = Template(0, (
    (8, 4, 0), (12, 4, 0), (15, 4, 0), (10, 2, 0), (14, 2, 0), (2, 4, 0), (1, 4, 0),
    (22, 4, 0), (21, 4, 0), (7, 2, 0), (11, 2, 0), (210, 1, 0), (6, 1, 0), (4, 1, 0),
    (5, 1, 0), (16, 2, 0), (17, 2, 0), (9, 1, 0), (13, 1, 0), (210, 2, 0),
))
assert V5_TEMPLATE.record_len == RECORD_LEN


def decode_v5(data: bytes, exporter: str, st: DecodeState) -> None:
    if len(data) < 24:
        raise DecodeError("short_header", f"{len(data)} bytes")
    _, count, uptime, secs, nsecs, _seq, _etype, _eid, sampling = _HDR.unpack_from(data)
    if count == 0 or count > 30:
        raise DecodeError("bad_count", f"count {count}")
    if 24 + count * RECORD_LEN > len(data):
        raise DecodeError("truncated", f"{count} records need {24 + count * 48} bytes")
    recs = np.frombuffer(data, V5_TEMPLATE.dtype, count=count, offset=24)
    rate = sampling & 0x3FFF or 1
    export_ms = secs * 1000 + nsecs // 1_000_000
    st.add(V5_TEMPLATE, Chunk(recs, export_ms, uptime, None, exporter, "netflow5", rate))
