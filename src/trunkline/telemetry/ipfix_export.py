"""IPFIX export of flow records (RFC 7011), with trunkline's TCP_INFO enterprise fields.

Standard elements: source/destination IPv4 or IPv6 address, ports, protocol,
octetDeltaCount, packetDeltaCount, flowStart/EndMilliseconds; enterprise elements under
PEN 32473 (RFC 5612's documentation PEN): 1 rtt_us (unsigned32), 2 retransmits
(unsigned32), 3 delivery_rate_bps (unsigned64). IPFIX has no null: missing values are
sent as 0. Records are packed in bulk with a NumPy structured dtype, like the decoder
reads them.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from ..flows.ipfix import EXPORT_FIELDS as FIELDS  # the ids, defined once
from ..flows.ipfix import EXPORT_TEMPLATE_V4 as TEMPLATE_V4
from ..flows.ipfix import EXPORT_TEMPLATE_V6 as TEMPLATE_V6
from ..flows.ipfix import TRUNKLINE_PEN as PEN  # noqa: F401 - re-exported

_TAIL_NAMES = ["src_port", "dst_port", "proto", "bytes", "packets", "time_start",
               "time_end", "rtt_us", "retransmits", "delivery_rate_bps"]
_TAIL_FMTS = [">u2", ">u2", "u1", ">u8", ">u8", ">u8", ">u8", ">u4", ">u4", ">u8"]
DTYPES = {
    TEMPLATE_V4: np.dtype({"names": ["src", "dst", *_TAIL_NAMES],
                           "formats": [">u4", ">u4", *_TAIL_FMTS]}),
    TEMPLATE_V6: np.dtype({"names": ["src", "dst", *_TAIL_NAMES],
                           "formats": ["V16", "V16", *_TAIL_FMTS]}),
}


def _template_set() -> bytes:
    body = b""
    for tid, fields in FIELDS.items():
        body += struct.pack(">HH", tid, len(fields))
        for ie, ln, pen in fields:
            if pen:
                body += struct.pack(">HHI", ie | 0x8000, ln, pen)
            else:
                body += struct.pack(">HH", ie, ln)
    return struct.pack(">HH", 2, 4 + len(body)) + body


TEMPLATE_SET = _template_set()


def _as_table(records: pa.Table | Iterable[Mapping]) -> pa.Table:
    if isinstance(records, pa.Table):
        return records
    return pa.Table.from_pylist([dict(r) for r in records])


def _ms(col: pa.ChunkedArray | None, n: int) -> np.ndarray:
    if col is None:
        return np.zeros(n, np.uint64)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("ms", tz=col.type.tz), safe=False).cast(pa.int64())
    return np.asarray(col.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint64)


def _num(t: pa.Table, name: str, dtype) -> np.ndarray:
    if name not in t.column_names:
        return np.zeros(t.num_rows, dtype)
    return np.asarray(t.column(name).fill_null(0).to_numpy(zero_copy_only=False)).astype(dtype)


def pack_records(records: pa.Table | Iterable[Mapping]) -> dict[int, np.ndarray]:
    """Records -> {template id: structured array} (IPv4 and IPv6 rows apart)."""
    t = _as_table(records)
    n = t.num_rows
    src = t.column("src_addr").to_pylist() if n else []
    dst = t.column("dst_addr").to_pylist() if n else []
    addrs = [(ipaddress.ip_address(s or "0.0.0.0"), ipaddress.ip_address(d or "0.0.0.0"))
             for s, d in zip(src, dst, strict=True)]
    is6 = np.array([a.version == 6 or b.version == 6 for a, b in addrs], bool)
    tail = {
        "src_port": _num(t, "src_port", np.uint16), "dst_port": _num(t, "dst_port", np.uint16),
        "proto": _num(t, "proto", np.uint8), "bytes": _num(t, "bytes", np.uint64),
        "packets": _num(t, "packets", np.uint64),
        "time_start": _ms(t.column("time_start") if "time_start" in t.column_names else None, n),
        "time_end": _ms(t.column("time_end") if "time_end" in t.column_names else None, n),
        "rtt_us": _num(t, "rtt_us", np.uint32), "retransmits": _num(t, "retransmits", np.uint32),
        "delivery_rate_bps": _num(t, "delivery_rate_bps", np.uint64),
    }
    out = {}
    for tid, mask in ((TEMPLATE_V4, ~is6), (TEMPLATE_V6, is6)):
        k = int(mask.sum())
        if not k:
            continue
        rec = np.zeros(k, DTYPES[tid])
        sel = [a for a, m in zip(addrs, mask, strict=True) if m]
        if tid == TEMPLATE_V4:
            rec["src"] = [int(a) for a, _ in sel]
            rec["dst"] = [int(b) for _, b in sel]
        else:
            rec["src"] = np.frombuffer(b"".join(_v6(a).packed for a, _ in sel), "V16")
            rec["dst"] = np.frombuffer(b"".join(_v6(b).packed for _, b in sel), "V16")
        for name, arr in tail.items():
            rec[name] = arr[mask]
        out[tid] = rec
    return out


def _v6(a) -> ipaddress.IPv6Address:
    return a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}")


class IpfixEncoder:
    """Stateful (sequence number) IPFIX message builder for one observation domain."""

    def __init__(self, domain_id: int = 0, mtu: int = 1400, template_every: int = 16):
        self.domain_id = domain_id
        self.mtu = mtu
        self.template_every = template_every
        self.sequence = 0
        self.messages = 0

    def encode(self, records: pa.Table | Iterable[Mapping],
               export_time: int | None = None) -> list[bytes]:
        """Records -> IPFIX messages, each at most ``mtu`` bytes (templates included
        in the first message and every ``template_every`` messages)."""
        export_time = int(time.time()) if export_time is None else export_time
        msgs = []
        for tid, rec in pack_records(records).items():
            size = rec.dtype.itemsize
            pos = 0
            while pos < len(rec):
                tmpl = TEMPLATE_SET if self.messages % self.template_every == 0 else b""
                room = self.mtu - 16 - len(tmpl) - 4
                k = max(1, min(len(rec) - pos, room // size))
                data = rec[pos : pos + k].tobytes()
                body = tmpl + struct.pack(">HH", tid, 4 + len(data)) + data
                msgs.append(struct.pack(">HHIII", 10, 16 + len(body), export_time,
                                        self.sequence & 0xFFFFFFFF, self.domain_id) + body)
                self.sequence += k
                self.messages += 1
                pos += k
        return msgs


def send_ipfix(records: pa.Table | Iterable[Mapping], url: str, *, domain_id: int = 0,
               mtu: int = 1400, encoder: IpfixEncoder | None = None) -> int:
    """Send records as IPFIX over UDP to ``udp://HOST:PORT``; returns messages sent."""
    u = urlparse(url)
    if u.scheme != "udp" or not u.hostname or not u.port:
        raise ValueError(f"IPFIX destination must be udp://HOST:PORT, not {url!r}")
    enc = encoder or IpfixEncoder(domain_id, mtu)
    msgs = enc.encode(records)
    fam = socket.AF_INET6 if ":" in u.hostname else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        for m in msgs:
            s.sendto(m, (u.hostname, u.port))
    return len(msgs)
