"""Vectorised column helpers: addresses to text, odd-width integers, Arrow arrays.

The decode hot path ends here: NumPy arrays of a whole batch in, Arrow arrays out,
no per-record Python.
"""

from __future__ import annotations

import ipaddress
import os

import numpy as np
import pyarrow as pa

try:  # the compiled address formatter (setup.py builds it; optional)
    from . import _columns
except ImportError:  # pragma: no cover - a build without a C compiler
    _columns = None

# TRUNKLINE_NATIVE=0 runs the NumPy version, as the mover's and the receiver's do
NATIVE = _columns is not None and os.environ.get("TRUNKLINE_NATIVE", "1") != "0"

# Each octet's decimal text in a 4-byte word ("123." / "7." + zero padding): text bytes
# are never zero, so padding is found by comparing with zero.
_W_DOT = np.zeros((256, 4), np.uint8)
_W_END = np.zeros((256, 4), np.uint8)
_L_DOT = np.zeros(256, np.int32)
_L_END = np.zeros(256, np.int32)
for _i in range(256):
    _s = str(_i).encode()
    _W_DOT[_i, : len(_s) + 1] = list(_s + b".")
    _W_END[_i, : len(_s)] = list(_s)
    _L_DOT[_i] = len(_s) + 1
    _L_END[_i] = len(_s)
_W_DOT32 = _W_DOT.view(np.uint32).ravel()
_W_END32 = _W_END.view(np.uint32).ravel()


def ipv4_text(addrs: np.ndarray) -> pa.StringArray:
    """uint32 (host order) IPv4 addresses to dotted-quad text, in bulk."""
    a = np.ascontiguousarray(addrs, dtype=np.uint32)
    if NATIVE:
        offsets, data = _columns.ipv4_text(a)
        return pa.StringArray.from_buffers(len(a), pa.py_buffer(offsets), pa.py_buffer(data))
    return _ipv4_text_numpy(a)


def _ipv4_text_numpy(a: np.ndarray) -> pa.StringArray:
    """The same text by NumPy table lookups (~15x slower than the compiled loop)."""
    n = len(a)
    b = a.astype(">u4").view(np.uint8).reshape(n, 4)
    words = np.empty((n, 4), np.uint32)
    words[:, 0] = _W_DOT32[b[:, 0]]
    words[:, 1] = _W_DOT32[b[:, 1]]
    words[:, 2] = _W_DOT32[b[:, 2]]
    words[:, 3] = _W_END32[b[:, 3]]
    raw = words.view(np.uint8).reshape(n, 16)
    data = raw[raw != 0]
    lens = _L_DOT[b[:, 0]] + _L_DOT[b[:, 1]] + _L_DOT[b[:, 2]] + _L_END[b[:, 3]]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def ipv6_text(addrs: np.ndarray) -> pa.Array:
    """16-byte IPv6 addresses (an ``(n, 16)`` uint8 or ``V16`` array) to RFC 5952 text.

    Converted once per distinct address (flows repeat addresses heavily).
    """
    a = np.ascontiguousarray(addrs).view(np.uint8).reshape(-1, 16)
    n = len(a)
    if n == 0:
        return pa.array([], pa.string())
    keys = a.view("V16").ravel()
    uniq, inverse = np.unique(keys, return_inverse=True)
    texts = [str(ipaddress.IPv6Address(u.tobytes())) for u in uniq]
    return pa.DictionaryArray.from_arrays(
        pa.array(inverse.astype(np.int32)), pa.array(texts, pa.string())
    ).cast(pa.string())


def native_uint(width: int) -> np.dtype:
    """The native column type of a big-endian field of ``width`` (1..8) bytes."""
    return np.dtype(np.uint8 if width == 1 else np.uint16 if width == 2 else
                    np.uint32 if width <= 4 else np.uint64)


def gather(parts: list[np.ndarray], itemsize: int,
           fields: list[tuple[int, int]]) -> list[np.ndarray] | None:
    """Fields ``(offset, width)`` of every record of ``parts`` (C-contiguous arrays of
    ``itemsize``-byte records) as native columns (``native_uint``), in one compiled
    pass; None without the compiled module (the caller converts field by field)."""
    if not NATIVE:
        return None
    cols = _columns.gather(parts, itemsize, fields)
    return [np.frombuffer(b, native_uint(w)) for (_, w), b in zip(fields, cols, strict=True)]


def uint_from_bytes(raw: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of any width 1..8 (a ``V<width>`` field) to uint64."""
    b = np.ascontiguousarray(raw).view(np.uint8).reshape(-1, width)
    out = np.zeros((len(b), 8), np.uint8)
    out[:, 8 - width :] = b
    return out.view(">u8").ravel().astype(np.uint64)


def repeat_text(values: list[str], counts: list[int]) -> pa.Array:
    """A text column where ``values[i]`` repeats ``counts[i]`` times (exporter, flow type)."""
    uniq = sorted(set(values))
    index = {v: i for i, v in enumerate(uniq)}
    idx = np.repeat(np.array([index[v] for v in values], np.int32), counts)
    return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(uniq, pa.string())).cast(
        pa.string()
    )


def text_from_bytes(values: list[bytes | None]) -> pa.Array:
    """Per-record raw addresses (4 or 16 bytes, or None) to text (the slow, sparse path)."""
    out: list[str | None] = []
    cache: dict[bytes, str] = {}
    for v in values:
        if v is None:
            out.append(None)
            continue
        s = cache.get(v)
        if s is None:
            s = cache[v] = str(ipaddress.ip_address(v))
        out.append(s)
    return pa.array(out, pa.string())
