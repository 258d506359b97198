"""CRC combination in GF(2): CRC(A||B) from CRC(A), CRC(B) and len(B), without the bytes.

zlib's crc32_combine (1.2.12+), for any reflected CRC polynomial and width: a CRC over
A||B equals CRC(A) * x^(8*len(B)) mod P  xor  CRC(B). x^(2^k) mod P is tabulated once per
polynomial, so the power takes O(log len(B)) carry-less multiplications. zlib indexes its
32-entry table with k & 31, which holds for its polynomial (x^(2^32) = x mod P) but not
for Castagnoli's (period 31): the table here is not wrapped. Used for CRC32C (integrity)
and for CRC32 and CRC64NVME (checksums); no library exposes all three.
"""

from __future__ import annotations

from functools import cache

# reflected polynomials (x^0 is the top bit) and their widths
CRC32C = (0x82F63B78, 32)  # Castagnoli, 0x1EDC6F41
CRC32 = (0xEDB88320, 32)  # IEEE 802.3 / zlib, 0x04C11DB7
CRC64NVME = (0x9A6C9329AC4BC9B5, 64)  # 0xAD93D23594C93659

_TABLE = 64  # x^(2^k) for k < 64: len(B) < 2^61 bytes by lookup, past that by squaring


def multmodp(a: int, b: int, poly: int, width: int) -> int:
    """a(x) * b(x) modulo P(x), bit-reflected; ``a`` nonzero."""
    m = 1 << (width - 1)
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1


@cache
def x2n_table(poly: int, width: int) -> tuple[int, ...]:
    """x^(2^k) mod P for k = 0.._TABLE-1, computed once per polynomial."""
    t = [1 << (width - 2)]  # x^1
    for _ in range(_TABLE - 1):
        t.append(multmodp(t[-1], t[-1], poly, width))
    return tuple(t)


def x8nmodp(n: int, poly: int, width: int) -> int:
    """x^(8n) mod P (the shift of n bytes), for n >= 0."""
    table = x2n_table(poly, width)
    p = 1 << (width - 1)  # x^0
    k = 3  # x^8 = x^(2^3)
    sq = table[k]
    while n:
        if n & 1:
            p = multmodp(sq, p, poly, width)
        n >>= 1
        k += 1
        sq = table[k] if k < _TABLE else multmodp(sq, sq, poly, width)
    return p


def combine(spec: tuple[int, int], crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A||B from CRC(A), CRC(B) and len(B), for ``spec`` = (reflected polynomial,
    width), e.g. ``CRC32C``; O(log len_b), no data."""
    if len_b < 0:
        raise ValueError("len_b must be >= 0")
    poly, width = spec
    return multmodp(x8nmodp(len_b, poly, width), crc_a, poly, width) ^ crc_b
