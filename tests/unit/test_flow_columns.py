"""Addresses to text: the compiled formatter, the NumPy one and the standard library agree."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from trunkline.flows.decode import columns

EDGES = [0, 1, 255, 256, 0x7F000001, 0x0A000001, 0xC0A80101, 0xFFFFFFFF, 0x01020304,
         0x64646464, 0x09090909, 0x63636363]


def _reference(values) -> list[str]:
    return [str(ipaddress.IPv4Address(int(v))) for v in values]


def _random(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.array(EDGES, np.uint32),
                           rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)])


@pytest.mark.skipif(columns._columns is None, reason="the compiled formatter is not built")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_numpy_and_stdlib_agree(seed):
    a = _random(20_000, seed)
    want = _reference(a)
    offsets, data = columns._columns.ipv4_text(a)
    native = pa.StringArray.from_buffers(len(a), pa.py_buffer(offsets), pa.py_buffer(data))
    native.validate(full=True)
    assert native.to_pylist() == want
    assert columns._ipv4_text_numpy(a).to_pylist() == want


def test_public_function_any_layout():
    a = _random(1_000, 7)
    want = _reference(a)
    assert columns.ipv4_text(a).to_pylist() == want
    assert columns.ipv4_text(a[::-1].copy()[::-1]).to_pylist() == want  # a strided view
    assert columns.ipv4_text(a.astype(">u4")).to_pylist() == want  # big-endian values
    assert columns.ipv4_text(a.astype(np.uint64)).to_pylist() == want
    assert columns.ipv4_text(np.array([], np.uint32)).to_pylist() == []


@pytest.mark.skipif(columns._columns is None, reason="the compiled formatter is not built")
def test_compiled_refuses_a_partial_word():
    with pytest.raises(ValueError, match="whole number"):
        columns._columns.ipv4_text(b"\x01\x02\x03")
    offsets, data = columns._columns.ipv4_text(b"")
    assert np.frombuffer(offsets, np.int32).tolist() == [0] and data == b""


def _decode_all(shared: Path) -> dict[str, pa.Table]:
    """Every shared capture, each after its templates ("X-data" after "X-template(s)",
    "data" after "template"), decoded."""
    from trunkline.flows.decode import FlowDecoder
    from trunkline.flows.sources.pcap import read_udp

    out = {}
    for cap in sorted((shared / "flows").rglob("*.pcap")):
        stem = cap.stem.removesuffix("data").rstrip("-")
        partners = [cap.with_name(f"{stem}-{t}.pcap" if stem else f"{t}.pcap")
                    for t in ("template", "templates", "options-template")]
        d = FlowDecoder()
        for f in [*(p for p in partners if p.exists()), cap]:
            for dg in read_udp(f):
                d.feed(dg.payload, "192.0.2.1", 1_700_000_000_000)
        out[cap.name] = d.flush()
    d = FlowDecoder()  # many chunks of one template, from several exporters
    for i, dg in enumerate(list(read_udp(shared / "flows/netflow/nfv5.pcap")) * 300):
        d.feed(dg.payload, f"192.0.2.{i % 7}", 1_700_000_000_000)
    out["nfv5 x300"] = d.flush()
    return out


@pytest.mark.skipif(columns._columns is None, reason="the compiled gather is not built")
def test_gathered_fields_build_the_same_tables_as_numpy(shared_data, monkeypatch):
    """v5, v9 and IPFIX (odd widths, IPv6, options, sections) and sFlow: the same table
    with the fields gathered in C and converted by NumPy."""
    monkeypatch.setattr(columns, "NATIVE", True)
    native = _decode_all(shared_data)
    monkeypatch.setattr(columns, "NATIVE", False)
    numpy_ = _decode_all(shared_data)
    kinds = {k for t in native.values() for k in t.column("flow_type").to_pylist()}
    assert kinds == {"netflow5", "netflow9", "ipfix", "sflow"}
    assert sum(t.num_rows for t in native.values()) > 8000
    for name, t in native.items():
        assert t.equals(numpy_[name]), name


@pytest.mark.skipif(columns._columns is None, reason="the compiled gather is not built")
def test_gather_widths_and_refusals(monkeypatch):
    monkeypatch.setattr(columns, "NATIVE", True)  # also under TRUNKLINE_NATIVE=0
    rng = np.random.default_rng(5)
    dtype = np.dtype([("a", ">u2"), ("b", "V3"), ("c", ">u4"), ("d", "V7"), ("e", "u1"),
                      ("f", ">u8")])
    parts = [np.frombuffer(rng.bytes(dtype.itemsize * k), dtype) for k in (0, 1, 29, 300)]
    fields = [(dtype.fields[n][1], w) for n, w in zip("abcdef", (2, 3, 4, 7, 1, 8), strict=True)]
    got = columns.gather(parts, dtype.itemsize, fields)
    joined = np.concatenate([p.view(np.uint8) for p in parts]).view(dtype)
    for (n, w), g in zip(zip("abcdef", (2, 3, 4, 7, 1, 8), strict=True), got, strict=True):
        want = columns.uint_from_bytes(joined[n], w) if joined[n].dtype.kind == "V" \
            else joined[n].astype(np.uint64)
        assert g.dtype == columns.native_uint(w) and g.tolist() == want.tolist(), n
    g = columns._columns.gather
    with pytest.raises(ValueError, match="whole number"):
        g([b"\x00" * (dtype.itemsize + 1)], dtype.itemsize, fields)
    with pytest.raises(ValueError, match="outside"):
        g([], 4, [(2, 4)])
    with pytest.raises(ValueError, match="outside"):
        g([], 16, [(0, 9)])
    with pytest.raises(ValueError, match="itemsize"):
        g([], 0, [])
    with pytest.raises((ValueError, BufferError)):
        g([np.zeros(8, np.uint8)[::2]], 2, [(0, 1)])  # not contiguous
    assert g([], 4, [(0, 4)]) == [b""]
