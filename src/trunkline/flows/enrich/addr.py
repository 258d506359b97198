"""Vectorised IP address parsing: text addresses -> integers for range lookups.

IPv4 becomes uint32; IPv6 is keyed by its upper 64 bits (the routed /64), which is how
every public range table here is aligned. Invalid text maps to ``kind == 0``.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

V4, V6 = 4, 6
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # canonical: no leading zeros, as ipaddress


def parse_v4(texts: pa.Array | list[str]) -> np.ndarray:
    """Dotted-quad strings (all valid IPv4) -> uint32, without a Python loop."""
    arr = pa.array(texts, pa.string()) if not isinstance(texts, pa.Array) else texts
    if len(arr) == 0:
        return np.zeros(0, np.uint32)
    octets = pc.list_flatten(pc.split_pattern(arr, ".")).cast(pa.uint32())
    o = octets.to_numpy().reshape(-1, 4).astype(np.uint32)
    return (o[:, 0] << 24) | (o[:, 1] << 16) | (o[:, 2] << 8) | o[:, 3]


def parse(texts: pa.Array | list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Addresses -> (kind uint8: 4, 6 or 0 invalid, v4 uint32, v6 upper-64 uint64)."""
    arr = pa.array(texts, pa.string()) if not isinstance(texts, pa.Array) else texts
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    kind = np.zeros(n, np.uint8)
    v4 = np.zeros(n, np.uint32)
    v6 = np.zeros(n, np.uint64)
    if n == 0:
        return kind, v4, v6
    is_v4 = pc.fill_null(
        pc.match_substring_regex(arr, rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"), False
    ).to_numpy(zero_copy_only=False)
    idx4 = np.flatnonzero(is_v4)
    if len(idx4):
        sub = arr.take(pa.array(idx4))
        v4[idx4] = parse_v4(sub)
        kind[idx4] = V4
    rest = np.flatnonzero(~is_v4)
    if len(rest):
        texts_rest = arr.take(pa.array(rest)).to_pylist()
        for i, t in zip(rest, texts_rest, strict=True):
            if not t:
                continue
            try:
                ip = ipaddress.ip_address(t)
            except ValueError:
                continue
            if ip.version == 4:
                kind[i], v4[i] = V4, int(ip)
            elif ip.ipv4_mapped is not None:
                kind[i], v4[i] = V4, int(ip.ipv4_mapped)
            else:
                kind[i], v6[i] = V6, int(ip) >> 64
    return kind, v4, v6


def v4_text(values: np.ndarray) -> list[str]:
    """uint32 -> dotted quads (for the simulator and tests)."""
    v = values.astype(np.uint64)
    return [
        f"{a}.{b}.{c}.{d}"
        for a, b, c, d in zip(
            (v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255, v & 255, strict=True
        )
    ]
