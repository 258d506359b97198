"""Every CRC32C library the project can pick (native/crc.py: ISA-L, google-crc32c's C
library, its extension module) gives the CRC32C of the definition, through the Python
entry and through the compiled core, for every buffer form the engine hands it.

Why a subprocess per library: the choice is made once, at import (``TRUNKLINE_CRC32C``
pins it), for the whole process. The reference is computed apart: the CRC32C bit by bit as
RFC 3720 defines it, and google-crc32c's own extension for the large buffers.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from trunkline import native

CHECK = r"""
import json, random, sys
import google_crc32c
from trunkline.native import _hotpath, crc

def bitwise(data, value=0):
    c = ~value & 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return ~c & 0xFFFFFFFF

rng = random.Random(int(sys.argv[1]))
bad = []
def check(what, got, want):
    if got != want:
        bad.append(f"{what}: {got:#x} != {want:#x}")

check("check value", crc.crc32c(b"123456789"), 0xE3069283)
for n in [0, 1, 3, 7, 8, 15, 16, 63, 64, 255, 256, 4095, 4096, 4097, 20000]:
    data = rng.randbytes(n)
    want = bitwise(data)
    for form in (data, bytearray(data), memoryview(data), memoryview(bytearray(data))):
        check(f"{n} {type(form).__name__}", crc.crc32c(form), want)
    check(f"{n} core", _hotpath.crc32c(data), want)
    cut = rng.randrange(n + 1)
    check(f"{n} chained at {cut}", crc.crc32c(data[cut:], crc.crc32c(data[:cut])), want)
    check(f"{n} core chained", _hotpath.crc32c(data[cut:], _hotpath.crc32c(data[:cut])), want)
    big = bytearray(rng.randbytes(n + 13))    # a slice that starts unaligned
    check(f"{n} unaligned", crc.crc32c(memoryview(big)[5:5 + n]), bitwise(big[5:5 + n]))
for n in [(1 << 20) + 3, 5 << 20]:            # past every library's block sizes
    data = rng.randbytes(n)
    want = google_crc32c.value(data)
    check(f"{n} bytearray", crc.crc32c(bytearray(data)), want)
    check(f"{n} core", _hotpath.crc32c(data), want)
    check(f"{n} chained", crc.crc32c(data[999:], crc.crc32c(data[:999])), want)
print(json.dumps({"backend": crc.BACKEND, "bad": bad}))
"""


def _isal_here() -> bool:
    """Whether ISA-L is installed; where CI asks for every tool (TRUNKLINE_REQUIRE_TOOLS=1),
    its absence is a failure: a missing install step must not hide behind a skip."""
    try:
        ctypes.CDLL("libisal.so.2")
    except OSError:
        if os.environ.get("TRUNKLINE_REQUIRE_TOOLS") == "1":
            pytest.fail("libisal.so.2 (Debian libisal2) not installed and "
                        "TRUNKLINE_REQUIRE_TOOLS=1: scripts/system-deps.sh installs it")
        return False
    return True


def _env(library: str | None) -> dict[str, str]:
    """This process's environment for a child, with ``TRUNKLINE_CRC32C`` set to
    ``library`` (None: unset, the default choice)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("TRUNKLINE_CRC32C", None)
    if library is not None:
        env["TRUNKLINE_CRC32C"] = library
    return env


def _run(env_value: str | None, seed: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK, str(seed)], env=_env(env_value),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(native._hotpath is None, reason="the compiled core is not built")
@pytest.mark.parametrize("backend", ["isal", "google", "python"])
def test_each_library_gives_the_crc32c_of_the_definition(backend):
    if backend == "isal" and not _isal_here():
        pytest.skip("libisal.so.2 (Debian libisal2) not installed: scripts/system-deps.sh")
    r = _run(backend, seed=["isal", "google", "python"].index(backend) + 1)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"backend": backend, "bad": []}


def test_the_fastest_library_found_is_the_default():
    """Where ISA-L is installed (system-deps installs it) it is what a run uses."""
    r = _run(None)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backend"] == ("isal" if _isal_here() else "google")


def test_an_unknown_library_name_is_refused(tmp_path):
    r = _run("zlib")
    assert r.returncode != 0
    assert "TRUNKLINE_CRC32C='zlib'" in r.stderr
    # the CLI: a usage error (exit 2, one line), before anything is copied
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    env = _env("zlib")
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", str(src),
                        str(tmp_path / "dst.bin")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "trunkline: error: TRUNKLINE_CRC32C='zlib': expected auto, isal, google or python"]
    assert not (tmp_path / "dst.bin").exists()


@pytest.mark.skipif(native._hotpath is None, reason="the compiled core is not built")
def test_a_buffer_past_two_gib_is_summed_in_pieces():
    """ISA-L takes an ``int`` length: a longer buffer goes in pieces (both entries), and
    the sum is the whole buffer's. 2 GiB + 5 bytes of an anonymous mapping, zero pages but
    for a few marked bytes on both sides of each piece's edge (so a piece summed twice,
    skipped or cut short changes the sum; only the marked pages take memory); the
    reference is google-crc32c over the same bytes, 64 MiB at a time."""
    import mmap

    import google_crc32c

    from trunkline.native import crc

    n = (1 << 31) + 5
    mm = mmap.mmap(-1, n)
    try:
        for i, at in enumerate([0, (1 << 30) - 1, 1 << 30, (1 << 30) + 7, (1 << 31) - 3,
                                1 << 31, n - 1]):
            mm[at] = 0x5A + i
        want = 0
        for off in range(0, n, 64 << 20):
            want = google_crc32c.extend(want, mm[off:off + (64 << 20)])
        assert crc.crc32c(mm) == want
        assert native._hotpath.crc32c(mm) == want
    finally:
        mm.close()


@pytest.mark.parametrize("backend", ["isal", "google", "python"])
def test_a_round_trip_with_each_library_is_checked_by_the_store(aws_env, tmp_path, backend):
    """An upload and a download through the CLI with each library pinned: the store checks
    the upload's ``x-amz-checksum-crc32c`` against the bytes it received (a wrong sum is
    refused), the download comes back byte-identical, and ``--json`` names the library."""
    import hashlib

    if backend == "isal" and not _isal_here():
        pytest.skip("libisal.so.2 (Debian libisal2) not installed: scripts/system-deps.sh")
    aws_env.create_bucket(f"crc-{backend}")
    data = os.urandom((15 << 20) + 4099)       # three 5 MiB parts and a tail
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    env = _env(backend)
    back = tmp_path / "back.bin"
    for argv in ([str(src), f"s3://crc-{backend}/obj"], [f"s3://crc-{backend}/obj", str(back)]):
        r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "--json",
                            "--no-resume", "--part-size", "5M", *argv],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["options"]["crc32c"] == backend
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
