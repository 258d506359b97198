"""A small pcap / pcapng reader: UDP datagrams out of capture files.

Only what a flow collector needs: classic pcap (both byte orders, micro/nanosecond),
pcapng (section, interface and enhanced/simple packet blocks), link types Ethernet,
Linux cooked (SLL, SLL2), raw IP and BSD loopback; IPv4/IPv6 (unfragmented) UDP.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_SLL, LINKTYPE_SLL2, LINKTYPE_IPV4, LINKTYPE_IPV6 = 113, 276, 228, 229


@dataclass(slots=True)
class Datagram:
    ts_ms: int
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


class PcapError(DataError):
    """A file that is not a readable pcap/pcapng capture."""


def read_frames(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """(timestamp ms, link type, frame bytes) for every packet of a pcap or pcapng file."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise PcapError(f"{path}: too short for a capture file")
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from _pcapng(data, str(path))
        return
    for endian in "<>":
        (m,) = struct.unpack(endian + "I", magic)
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise PcapError(f"{path}: not a pcap or pcapng file")
    div = 1000 if m == 0xA1B2C3D4 else 1_000_000
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        if off + incl > len(data):
            break  # truncated last packet
        yield sec * 1000 + frac // div, linktype, data[off : off + incl]
        off += incl


def _pcapng(data: bytes, name: str) -> Iterator[tuple[int, int, bytes]]:
    off, endian = 0, "<"
    ifaces: list[tuple[int, int]] = []  # (linktype, ticks per second)
    while off + 12 <= len(data):
        btype = struct.unpack_from(endian + "I", data, off)[0]
        if btype == 0x0A0D0D0A:
            bom = data[off + 8 : off + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        (blen,) = struct.unpack_from(endian + "I", data, off + 4)
        if blen < 12 or off + blen > len(data):
            break
        body = data[off + 8 : off + blen - 4]
        if btype == 1 and len(body) >= 8:
            lt = struct.unpack_from(endian + "H", body, 0)[0]
            ifaces.append((lt, _tsresol(body[8:], endian)))
        elif btype == 6 and len(body) >= 20:
            iface, hi, lo, cap = struct.unpack_from(endian + "IIII", body, 0)
            if iface < len(ifaces):
                lt, tps = ifaces[iface]
                yield ((hi << 32) | lo) * 1000 // tps, lt, body[20 : 20 + cap]
        elif btype == 3 and len(body) >= 4 and ifaces:
            yield 0, ifaces[0][0], body[4:]
        off += blen


def _tsresol(opts: bytes, endian: str) -> int:
    off = 0
    while off + 4 <= len(opts):
        code, ln = struct.unpack_from(endian + "HH", opts, off)
        if code == 0:
            break
        if code == 9 and ln >= 1:
            v = opts[off + 4]
            return 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
        off += 4 + ln + (-ln % 4)
    return 1_000_000


def _l3(linktype: int, f: bytes) -> tuple[int, int] | None:
    """(ethertype-ish version 4/6, offset of the IP header)."""
    if linktype == LINKTYPE_ETHERNET:
        off, et = 14, int.from_bytes(f[12:14], "big") if len(f) >= 14 else 0
        while et in (0x8100, 0x88A8) and len(f) >= off + 4:
            et, off = int.from_bytes(f[off + 2 : off + 4], "big"), off + 4
        return (4, off) if et == 0x0800 else (6, off) if et == 0x86DD else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        off = 4
    elif linktype == LINKTYPE_SLL:
        off = 16
    elif linktype == LINKTYPE_SLL2:
        off = 20
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        off = 0
    else:
        return None
    if len(f) <= off:
        return None
    v = f[off] >> 4
    return (v, off) if v in (4, 6) else None


def udp_datagram(ts_ms: int, linktype: int, f: bytes) -> Datagram | None:
    l3 = _l3(linktype, f)
    if l3 is None:
        return None
    v, off = l3
    if v == 4:
        if len(f) < off + 20 or f[off + 9] != 17:
            return None
        if int.from_bytes(f[off + 6 : off + 8], "big") & 0x3FFF:
            return None  # fragment
        ihl = (f[off] & 0x0F) * 4
        src, dst = f[off + 12 : off + 16], f[off + 16 : off + 20]
        u = off + ihl
    else:
        if len(f) < off + 40 or f[off + 6] != 17:
            return None
        src, dst = f[off + 8 : off + 24], f[off + 24 : off + 40]
        u = off + 40
    if len(f) < u + 8:
        return None
    sport, dport, ulen = struct.unpack_from(">HHH", f, u)
    end = u + ulen if 8 <= ulen <= len(f) - u else len(f)
    return Datagram(ts_ms, str(ipaddress.ip_address(src)), sport,
                    str(ipaddress.ip_address(dst)), dport, f[u + 8 : end])


def read_udp(path: str | Path) -> Iterator[Datagram]:
    """Every UDP datagram of a capture file, in order."""
    for ts, lt, frame in read_frames(path):
        d = udp_datagram(ts, lt, frame)
        if d is not None:
            yield d


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def eth_ipv4_frame(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    """An Ethernet + IPv4 frame around a ready-made L4 header and payload."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + l4


def write_pcap(path: str | Path, frames: list[tuple[float, bytes]]) -> None:
    """A classic pcap (Ethernet, microseconds) of (timestamp, frame) pairs."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET))
        for ts, frame in frames:
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(frame),
                                len(frame)))
            f.write(frame)


def write_udp_pcap(path: str | Path, datagrams: list[tuple[bytes, int]],
                   src: str = "127.0.0.1", dst: str = "127.0.0.1", ts: float = 0.0) -> None:
    """A pcap of UDP datagrams (payload, destination port), e.g. exports for tshark."""
    frames = []
    for i, (payload, dport) in enumerate(datagrams):
        udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
        frames.append((ts + i * 1e-3, eth_ipv4_frame(src, dst, 17, udp)))
    write_pcap(path, frames)
