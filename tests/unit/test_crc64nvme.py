"""CRC64NVME (native/crc64nvme.c, native/crc.py) against awscrt, an independent reference.

Both ways of the compiled core (carry-less folding, byte table) and the awscrt way the
Python side falls back to must give awscrt's values: every length around the folding's
16- and 64-byte steps, continued from any value, split anywhere, over any buffer.
"""

from __future__ import annotations

import os
import random

import pytest
from awscrt import checksums

from trunkline.native import crc

hotpath = pytest.importorskip("trunkline.native._hotpath")

LENGTHS = [*range(0, 200), 255, 256, 257, 1023, 4096, 65535, 65536, 65537, (1 << 20) + 13]


def test_the_catalogue_check_value():
    assert hotpath.crc64nvme(b"123456789") == 0xAE8B14860A799888
    assert hotpath.crc64nvme(b"123456789", clmul=False) == 0xAE8B14860A799888


@pytest.mark.parametrize("clmul", [True, False])
def test_every_length_and_start_equals_awscrt(clmul):
    rng = random.Random(18)
    for n in LENGTHS:
        data = os.urandom(n)
        start = rng.getrandbits(64) if n % 2 else 0
        assert hotpath.crc64nvme(data, start, clmul=clmul) == checksums.crc64nvme(data, start), n


def test_the_folding_is_in_use_where_the_cpu_has_it():
    """On x86-64 with PCLMULQDQ (every CI machine here) the fast way is the one taken."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if "pclmulqdq" not in flags:
        pytest.skip("no PCLMULQDQ on this CPU")
    assert hotpath.CLMUL_CRC64 == 1 and crc.crc64_native()


def test_split_anywhere_continues_to_the_same_value():
    data = os.urandom(300_000)
    whole = checksums.crc64nvme(data)
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 3))
        v = 0
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            v = crc.crc64nvme(memoryview(data)[a:b], v)
        assert v == whole


def test_buffers_of_every_kind(monkeypatch):
    data = bytearray(os.urandom(100_000))
    want = checksums.crc64nvme(bytes(data))
    strided = memoryview(bytes(data) * 2)[::2]       # not contiguous: copied first
    for native in (True, False):
        monkeypatch.setattr(crc, "crc64_native", lambda n=native: n)
        assert crc.crc64nvme(data) == want
        assert crc.crc64nvme(memoryview(data)) == want
        assert crc.crc64nvme(bytes(data)) == want
        assert crc.crc64nvme(strided) == checksums.crc64nvme(bytes(strided))
