"""sFlow v5 datagrams: flow samples (compact and expanded) to flow records.

Each sampled packet becomes one record: ``packets`` = 1, ``bytes`` = the frame length the
agent reported, ``sampling_rate`` = the sample's rate (the multiplier to renormalise).
Keys come from the raw packet header record (parsed by ``packet``), else from the sampled
IPv4/IPv6 data records. sFlow carries no flow timestamps: the datagram's arrival time is
used. Counter samples are skipped (counted as ``options_records`` they are not).
"""

from __future__ import annotations

import ipaddress
import struct

from .counters import DecodeError
from .packet import parse_ethernet, parse_ip
from .templated import DecodeState

_U32 = struct.Struct(">I")
MAX_SAMPLES = 1024
INTERNAL_INTERFACE = 0x3FFFFFFF  # sFlow v5: "the device itself", not an ifIndex
MAX_RECORDS = 256


class _Reader:
    __slots__ = ("buf", "off", "end")

    def __init__(self, buf: memoryview, off: int = 0, end: int | None = None):
        self.buf, self.off, self.end = buf, off, len(buf) if end is None else end

    def u32(self) -> int:
        if self.off + 4 > self.end:
            raise DecodeError("truncated", f"at byte {self.off}")
        (v,) = _U32.unpack_from(self.buf, self.off)
        self.off += 4
        return v

    def take(self, n: int) -> memoryview:
        if n < 0 or self.off + n > self.end:
            raise DecodeError("truncated", f"{n} bytes at {self.off}")
        v = self.buf[self.off : self.off + n]
        self.off += n
        return v

    def address(self) -> bytes:
        kind = self.u32()
        if kind == 1:
            return bytes(self.take(4))
        if kind == 2:
            return bytes(self.take(16))
        if kind == 0:
            return b""
        raise DecodeError("bad_address_type", str(kind))


def decode_sflow(data: bytes, exporter: str, st: DecodeState, recv_ms: int) -> None:
    r = _Reader(memoryview(data))
    if r.u32() != 5:
        raise DecodeError("bad_version")
    r.address()  # agent
    r.u32()  # sub-agent id
    r.u32()  # sequence
    r.u32()  # uptime
    n = r.u32()
    if n > MAX_SAMPLES:
        raise DecodeError("bad_count", f"{n} samples")
    staged = st.staged_rows  # committed with the datagram, all or nothing
    for _ in range(n):
        fmt, length = r.u32(), r.u32()
        body = _Reader(r.buf, r.off, r.off + length)
        r.take(length)
        if fmt >> 12 != 0:
            continue  # enterprise-specific sample: skipped safely
        kind = fmt & 0xFFF
        if kind in (1, 3):
            rec = _flow_sample(body, expanded=kind == 3)
            if rec is None:
                continue
            rec["time_start"] = rec["time_end"] = recv_ms
            rec["exporter"] = exporter
            rec["flow_type"] = "sflow"
            staged.append(rec)


def _flow_sample(r: _Reader, expanded: bool) -> dict | None:
    r.u32()  # sequence
    r.u32()  # source id (expanded: type, then index)
    if expanded:
        r.u32()
    rate = r.u32()
    r.u32()  # pool
    r.u32()  # drops
    if expanded:
        in_fmt, in_val, out_fmt, out_val = r.u32(), r.u32(), r.u32(), r.u32()
    else:
        i, o = r.u32(), r.u32()
        in_fmt, in_val, out_fmt, out_val = i >> 30, i & 0x3FFFFFFF, o >> 30, o & 0x3FFFFFFF
    nrec = r.u32()
    if nrec > MAX_RECORDS:
        raise DecodeError("bad_count", f"{nrec} flow records")
    rec: dict = {"sampling_rate": rate or 1, "packets": 1,
                 "in_if": _ifindex(in_fmt, in_val), "out_if": _ifindex(out_fmt, out_val)}
    keyed = False
    for _ in range(nrec):
        fmt, length = r.u32(), r.u32()
        body = _Reader(r.buf, r.off, r.off + length)
        r.take(length)
        if fmt >> 12 != 0:
            continue
        kind = fmt & 0xFFF
        if kind == 1:  # raw packet header
            proto, frame_len = body.u32(), body.u32()
            body.u32()  # stripped
            hlen = body.u32()
            hdr = bytes(body.take(hlen))
            rec["bytes"] = frame_len
            p = parse_ethernet(hdr) if proto == 1 else parse_ip(hdr) if proto in (11, 12) \
                else {}
            if p:
                keyed = True
                _keys(rec, p)
        elif kind in (3, 4) and not keyed:  # sampled IPv4 / IPv6 data
            length_ = body.u32()
            proto = body.u32()
            w = 4 if kind == 3 else 16
            src, dst = bytes(body.take(w)), bytes(body.take(w))
            sport, dport, flags = body.u32(), body.u32(), body.u32()
            rec.setdefault("bytes", length_)
            _keys(rec, {"src_addr": src, "dst_addr": dst, "proto": proto,
                        "src_port": sport, "dst_port": dport, "tcp_flags": flags & 0xFF})
        elif kind == 1003:  # extended gateway: AS numbers
            body.address()  # next hop
            body.u32()  # router AS
            rec["src_as"] = body.u32()
            body.u32()  # src peer AS
            segs = body.u32()
            dst_as = None
            for _ in range(min(segs, 64)):
                body.u32()  # segment type
                cnt = body.u32()
                if cnt > 1024:
                    raise DecodeError("bad_count", "AS path")
                for _ in range(cnt):
                    dst_as = body.u32()
            if dst_as is not None:
                rec["dst_as"] = dst_as
    return rec


def _ifindex(fmt: int, value: int) -> int:
    """sFlow v5 interface encoding to an ifIndex, 0 meaning "no interface".

    Format 0 is an ifIndex, except the sentinel 0x3FFFFFFF: traffic originated by or
    destined to the device itself ("internal"), which has no interface (RFC 2863 ifIndex
    values start at 1, so 0 cannot be confused with one). Format 1 (packet discarded,
    value = reason) and format 2 (multiple output interfaces, value = count) name no
    single interface either: 0.
    """
    if fmt != 0 or value == INTERNAL_INTERFACE:
        return 0
    return value


def _keys(rec: dict, p: dict) -> None:
    src, dst = p.get("src_addr"), p.get("dst_addr")
    if src is not None and dst is not None:
        rec["src_addr"] = str(ipaddress.ip_address(src))
        rec["dst_addr"] = str(ipaddress.ip_address(dst))
    for k in ("proto", "src_port", "dst_port", "tcp_flags"):
        rec[k] = p.get(k, 0) & (0xFF if k in ("proto", "tcp_flags") else 0xFFFF)
