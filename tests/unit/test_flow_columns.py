"""Addresses to text: the compiled formatter, the NumPy one and the standard library agree."""

from __future__ import annotations

import ipaddress

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
