"""Checksums against independent references, strict framing, terminal-safe text, partial
files: the pure pieces behind tests/test_mover_hostile.py."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import zlib

import google_crc32c
import pytest
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.engine.checksums import (
    CRCS,
    PartDigest,
    crc_combine,
    crc_update,
    expectation,
    verdict,
)
from trunkline.storage.partial import PartialFile, partial_name, pwrite_full
from trunkline.text import safe
from trunkline.wire.http1 import ProtocolError, parse_response_head

REF = {"crc32c": crt.crc32c, "crc32": crt.crc32, "crc64nvme": crt.crc64nvme}


def test_check_values():
    # the published check values of each polynomial over "123456789"
    assert crc_update("crc32c", b"123456789") == 0xE3069283
    assert crc_update("crc32", b"123456789") == 0xCBF43926
    assert crc_update("crc64nvme", b"123456789") == 0xAE8B14860A799888


@pytest.mark.parametrize("algo", CRCS)
def test_every_buffer_form_the_loops_pass_gives_the_same_crc(algo):
    """The receive loops hand chunks as memoryview slices of a reused bytearray (taken as
    they are, without a copy, by ISA-L and awscrt); a strided view must still be summed
    right. awscrt over bytes is the reference."""
    data = os.urandom(70_001)                   # past ISA-L's 4 KiB threshold, odd
    want = REF[algo](data)
    buf = bytearray(b"\0" * 13 + data)
    forms = [data, bytearray(data), memoryview(data), memoryview(buf)[13:],
             memoryview(bytearray(data + data))[::2]]
    assert [crc_update(algo, f) for f in forms[:4]] == [want] * 4
    assert crc_update(algo, forms[4]) == REF[algo](bytes(forms[4]))
    cut = 4097
    assert crc_update(algo, memoryview(buf)[13 + cut:],
                      crc_update(algo, memoryview(buf)[13:13 + cut])) == want


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CRCS), st.binary(max_size=3000), st.binary(max_size=3000))
def test_combine_equals_crc_of_concatenation(algo, a, b):
    f = REF[algo]
    assert crc_combine(algo, f(a), f(b), len(b)) == f(a + b)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_full_object_crc_folds_parts_of_any_size():
    data = os.urandom(10_000)
    parts = [(0, 3000), (3000, 4096), (7096, 2904)]
    for algo, f in REF.items():
        width = 8 if algo == "crc64nvme" else 4
        exp = expectation({f"x-amz-checksum-{algo}": _b64(f(data).to_bytes(width, "big")),
                           "x-amz-checksum-type": "FULL_OBJECT"}, '"e"', size=len(data),
                          part_lengths=[n for _, n in parts], whole=False)
        assert exp.algo == algo and exp.parts is None
        got = []
        for off, n in parts:
            d = PartDigest(algo)
            d.update(data[off:off + n])
            got.append((d.value(), n))
        assert verdict(exp, got)
        got[1] = (got[1][0] ^ 1, got[1][1])
        assert not verdict(exp, got)


def test_composite_sha256_matches_the_s3_definition():
    data = os.urandom(9000)
    parts = [data[:4000], data[4000:8000], data[8000:]]
    value = _b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest())
    exp = expectation({"x-amz-checksum-sha256": f"{value}-3",
                       "x-amz-checksum-type": "COMPOSITE"}, None, size=9000,
                      part_lengths=[4000, 4000, 1000], whole=False)
    assert exp.kind == "sha256-composite"
    assert verdict(exp, [(hashlib.sha256(p).digest(), len(p)) for p in parts])
    other = expectation({"x-amz-checksum-sha256": f"{value}-3"}, None, size=9000,
                        part_lengths=[3000, 3000, 3000], whole=False)
    assert other.algo is not None  # 3 equal parts: comparable, and it will not match
    assert not verdict(other, [(hashlib.sha256(data[i:i + 3000]).digest(), 3000)
                               for i in range(0, 9000, 3000)])


def test_what_cannot_be_compared_is_said():
    md5 = hashlib.md5(b"x").hexdigest()
    assert expectation({}, f'"{md5}"', size=1, part_lengths=[1], whole=True).kind == "md5-etag"
    ranged = expectation({}, f'"{md5}"', size=10, part_lengths=[5, 5], whole=False)
    assert ranged.algo is None and "ranged" in ranged.reason
    other = expectation({}, f'"{md5}-7"', size=10, part_lengths=[5, 5], whole=False)
    assert other.algo is None and "7 parts" in other.reason
    opaque = expectation({}, '"kms-opaque"', size=10, part_lengths=[10], whole=True)
    assert opaque.algo is None and opaque.reason
    crc = google_crc32c.value(b"x")
    assert expectation({"x-amz-checksum-crc32c": _b64(crc.to_bytes(4, "big"))}, None, size=1,
                       part_lengths=[1], whole=True).kind == "crc32c"
    assert zlib.crc32(b"x") == crc_update("crc32", b"x")


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
])
def test_ambiguous_framing_is_refused(head):
    with pytest.raises(ProtocolError):
        parse_response_head(head)


def test_terminal_safe_text():
    assert safe("plain/é/日本.bin") == "plain/é/日本.bin"
    assert safe("a\x1b[2Jb\r\n\u202ec\x7f") == "a\\x1b[2Jb\\x0d\\x0a\\u202ec\\x7f"
    assert safe(os.fsdecode(b"bad\xff")) == "bad\\udcff"


def test_partial_names_are_short_fixed_and_unreachable_by_keys():
    from trunkline.url import LocationError, safe_relpath

    n = partial_name("k" * 255)
    assert len(n.encode()) == 40 and n == partial_name("k" * 255) != partial_name("k")
    with pytest.raises(LocationError):
        safe_relpath("d/" + n)


def test_partial_file_refuses_foreign_and_linked_files(tmp_path):
    final = tmp_path / "f"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.link(victim, tmp_path / partial_name("f"))    # a hard link planted at our name
    p = PartialFile(str(final), 4, resume=True)
    p.pwrite(b"data", 0)
    p.commit()
    assert final.read_bytes() == b"data" and victim.read_bytes() == b"keep"
    assert not (tmp_path / partial_name("f")).exists()


def test_pwrite_full_reports_no_progress_as_enospc(tmp_path, monkeypatch):
    fd = os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT)
    try:
        calls = []

        def short(fd_, data, off):
            calls.append(off)
            return 0 if len(calls) > 1 else 3

        monkeypatch.setattr(os, "pwrite", short)
        with pytest.raises(OSError) as e:
            pwrite_full(fd, b"abcdef", 0)
        assert e.value.errno == errno.ENOSPC and calls == [0, 3]
    finally:
        os.close(fd)
