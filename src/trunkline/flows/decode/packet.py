"""Sampled packet headers (sFlow raw headers, IPFIX dataLinkFrameSection) to flow keys.

Parses Ethernet, 802.1Q / QinQ VLAN tags, MPLS label stacks (with the pseudowire control
word, then the inner Ethernet frame), IPv4, IPv6 (skipping extension headers), and the
TCP/UDP ports. IP-in-IP tunnels (IPv4/IPv6 in IPv4/IPv6, e.g. SRv6 encapsulation) are
reported by their INNER header (the traffic, not the routers' tunnel endpoints); UDP
overlays (VXLAN) by their OUTER header, as the exporter's interface saw them.
Everything is bounds-checked: a truncated header yields whatever was complete.
"""

from __future__ import annotations

import struct

ETH_IPV4, ETH_IPV6, ETH_MPLS, ETH_MPLS_MC = 0x0800, 0x86DD, 0x8847, 0x8848
VLAN_TYPES = {0x8100, 0x88A8, 0x9100}
IPV6_EXT = {0, 43, 60, 44}
PORT_PROTOS = {6, 17, 132, 136}  # TCP, UDP, SCTP, UDP-Lite


class Parsed(dict):
    """Keys: src_addr/dst_addr (bytes), proto, src_port, dst_port, tcp_flags."""


def parse_ethernet(buf: bytes, depth: int = 0) -> Parsed:
    out = Parsed()
    if len(buf) < 14 or depth > 2:
        return out
    etype = int.from_bytes(buf[12:14], "big")
    off = 14
    tags = 0
    while etype in VLAN_TYPES and tags < 4 and len(buf) >= off + 4:
        etype = int.from_bytes(buf[off + 2 : off + 4], "big")
        off += 4
        tags += 1
    return _after_ethertype(buf, off, etype, depth, out)


def _after_ethertype(buf: bytes, off: int, etype: int, depth: int, out: Parsed) -> Parsed:
    if etype in (ETH_MPLS, ETH_MPLS_MC):
        for _ in range(16):
            if len(buf) < off + 4:
                return out
            bottom = buf[off + 2] & 1
            off += 4
            if bottom:
                break
        if len(buf) <= off:
            return out
        nib = buf[off] >> 4
        if nib == 4:
            etype = ETH_IPV4
        elif nib == 6:
            etype = ETH_IPV6
        elif nib == 0:  # pseudowire control word, then an Ethernet frame
            return parse_ethernet(buf[off + 4 :], depth + 1)
        else:
            return out
    if etype == ETH_IPV4:
        return parse_ipv4(buf, off, out)
    if etype == ETH_IPV6:
        return parse_ipv6(buf, off, out)
    return out


def parse_ip(buf: bytes) -> Parsed:
    """A header section that starts at the IP header (IPFIX ipHeaderPacketSection)."""
    if not buf:
        return Parsed()
    return parse_ipv4(buf, 0, Parsed()) if buf[0] >> 4 == 4 else parse_ipv6(buf, 0, Parsed())


def parse_ipv4(buf: bytes, off: int, out: Parsed) -> Parsed:
    if len(buf) < off + 20:
        return out
    ihl = (buf[off] & 0x0F) * 4
    out["proto"] = buf[off + 9]
    out["src_addr"] = bytes(buf[off + 12 : off + 16])
    out["dst_addr"] = bytes(buf[off + 16 : off + 20])
    frag = int.from_bytes(buf[off + 6 : off + 8], "big") & 0x1FFF
    if frag == 0 and ihl >= 20:
        _l4(buf, off + ihl, out["proto"], out)
        if out["proto"] in (4, 41):
            _inner(buf, off + ihl, out)
    return out


def _inner(buf: bytes, off: int, out: Parsed) -> None:
    """IP-in-IP: replace the keys by the inner packet's, when it parses."""
    if out.get("_depth", 0) >= 2 or len(buf) <= off:
        return
    inner = Parsed(_depth=out.get("_depth", 0) + 1)
    nib = buf[off] >> 4
    if nib == 4:
        parse_ipv4(buf, off, inner)
    elif nib == 6:
        parse_ipv6(buf, off, inner)
    if "src_addr" in inner:
        out.clear()
        out.update(inner)


def parse_ipv6(buf: bytes, off: int, out: Parsed) -> Parsed:
    if len(buf) < off + 40:
        return out
    nh = buf[off + 6]
    out["src_addr"] = bytes(buf[off + 8 : off + 24])
    out["dst_addr"] = bytes(buf[off + 24 : off + 40])
    off += 40
    for _ in range(8):
        if nh not in IPV6_EXT or len(buf) < off + 8:
            break
        if nh == 44:
            if int.from_bytes(buf[off + 2 : off + 4], "big") & 0xFFF8:
                out["proto"] = buf[off]
                return out  # non-first fragment: no ports
            nh, off = buf[off], off + 8
        else:
            nh, off = buf[off], off + 8 + buf[off + 1] * 8
    out["proto"] = nh
    _l4(buf, off, nh, out)
    if nh in (4, 41):
        _inner(buf, off, out)
    return out


def _l4(buf: bytes, off: int, proto: int, out: Parsed) -> None:
    if proto in PORT_PROTOS and len(buf) >= off + 4:
        out["src_port"], out["dst_port"] = struct.unpack_from(">HH", buf, off)
        if proto == 6 and len(buf) >= off + 14:
            out["tcp_flags"] = buf[off + 13]
