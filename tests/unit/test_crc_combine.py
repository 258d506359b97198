"""CRC combination (trunkline.engine.crc_combine, and the public combines of integrity and
checksums on top of it), CRC(A||B) from CRC(A), CRC(B) and len(B), against the CRC the
libraries themselves compute over the concatenation: google-crc32c, zlib, awscrt (when
installed)."""

from __future__ import annotations

import random
import zlib

import google_crc32c
import pytest

from trunkline.engine import crc_combine as cc
from trunkline.engine.checksums import crc_combine
from trunkline.engine.integrity import crc32c_combine, crc32c_combine_all

try:
    from awscrt import checksums as crt
except ImportError:  # pragma: no cover - awscrt is a dependency, but optional here
    crt = None

REF = {
    "crc32c": lambda data, value=0: google_crc32c.extend(value, data),
    "crc32": lambda data, value=0: zlib.crc32(data, value),
    "crc64nvme": lambda data, value=0: crt.crc64nvme(data, value),
}
SPEC = {"crc32c": cc.CRC32C, "crc32": cc.CRC32, "crc64nvme": cc.CRC64NVME}
ALGOS = [
    "crc32c",
    "crc32",
    pytest.param("crc64nvme", marks=pytest.mark.skipif(crt is None, reason="no awscrt")),
]

_rng = random.Random(20261128)
LENGTHS = [0, 1, 2, 3, 4, 8, *(_rng.randrange(5, 1 << 16) for _ in range(4))]


def _combine(algo: str, crc_a: int, crc_b: int, len_b: int) -> int:
    got = cc.combine(SPEC[algo], crc_a, crc_b, len_b)
    assert crc_combine(algo, crc_a, crc_b, len_b) == got
    if algo == "crc32c":
        assert crc32c_combine(crc_a, crc_b, len_b) == got
    return got


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("len_a", [0, 1, 333])
@pytest.mark.parametrize("len_b", LENGTHS)
def test_combine_equals_crc_of_concatenation(algo, len_a, len_b):
    f = REF[algo]
    rng = random.Random(len_a * 1_000_003 + len_b)
    a, b = rng.randbytes(len_a), rng.randbytes(len_b)
    assert _combine(algo, f(a), f(b), len(b)) == f(a + b)


def test_crc32c_combine_all_folds_parts_in_order():
    rng = random.Random(7)
    pieces = [rng.randbytes(n) for n in (0, 1, 4096, 0, 17, 70_000, 1)]
    parts = [(google_crc32c.value(p), len(p)) for p in pieces]
    assert crc32c_combine_all(parts) == google_crc32c.value(b"".join(pieces))
    assert crc32c_combine_all([]) == 0


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("len_b", [(1 << 29) + 3])  # past 512 MiB (S3 parts reach 5 GiB)
def test_combine_over_long_parts(algo, len_b):
    """Lengths from 2^29 bytes need x^(2^k) for k >= 32 (a table wrapped at 32 entries, as
    zlib's, is wrong there for CRC32C). B is zeros, so the direct CRC needs no big buffer."""
    f = REF[algo]
    a = random.Random(len_b).randbytes(100)
    zeros = bytes(16 << 20)

    def over_zeros(value: int) -> int:
        left = len_b
        while left:
            n = min(left, len(zeros))
            value = f(zeros[:n] if n < len(zeros) else zeros, value)
            left -= n
        return value

    assert _combine(algo, f(a), over_zeros(0), len_b) == over_zeros(f(a))


def test_negative_length_is_refused():
    with pytest.raises(ValueError):
        crc32c_combine(1, 2, -1)
    with pytest.raises(ValueError):
        crc_combine("crc64nvme", 1, 2, -1)


def test_the_power_table_is_built_once_per_polynomial():
    assert cc.x2n_table(*cc.CRC32C) is cc.x2n_table(*cc.CRC32C)
    assert cc.x2n_table(*cc.CRC32C) != cc.x2n_table(*cc.CRC32)
