"""Integrity helpers against independent references: google_crc32c on whole buffers,
hashlib, and the ETags/checksums a real SeaweedFS reports after real uploads."""

from __future__ import annotations

import hashlib
import os
import random

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.engine.integrity import (
    FileDigest,
    b64_to_crc32c,
    candidate_part_sizes,
    composite_checksum,
    crc32c,
    crc32c_combine,
    crc32c_combine_all,
    crc32c_to_b64,
    etag_kind,
    etags_equal,
    expected_etag_for_file,
    file_digests,
    multipart_etag,
    part_count,
    parts_in_etag,
    single_etag,
)

MiB = 1024 * 1024


def test_crc32c_check_value_and_buffer_kinds():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue check value
    data = os.urandom(3 * MiB + 17)
    ref = google_crc32c.value(data)
    assert crc32c(data) == ref
    assert crc32c(bytearray(data)) == ref
    assert crc32c(memoryview(data)) == ref  # read-only, not bytes
    assert crc32c(memoryview(bytearray(data))[10:]) == google_crc32c.value(data[10:])
    assert crc32c(data[100:], crc32c(data[:100])) == ref  # continuation
    assert crc32c(b"", 1234) == 1234
    assert crc32c(memoryview(bytearray())) == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=4096), cuts=st.lists(st.integers(0, 4096), max_size=6))
def test_combine_equals_whole_buffer(data: bytes, cuts: list[int]):
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    parts = [(google_crc32c.value(p), len(p)) for p in pieces]
    assert crc32c_combine_all(parts) == google_crc32c.value(data)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), cut=st.integers(0, 1 << 22))
def test_combine_large_split(seed: int, cut: int):
    data = random.Random(seed).randbytes(1 << 22)
    a, b = data[:cut], data[cut:]
    assert crc32c_combine(crc32c(a), crc32c(b), len(b)) == google_crc32c.value(data)


def test_b64_roundtrip_and_composite_shape():
    for v in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert b64_to_crc32c(crc32c_to_b64(v)) == v
    assert crc32c_to_b64(0xE3069283) == "4waSgw=="
    assert b64_to_crc32c("xJXX1w==-3") == b64_to_crc32c("xJXX1w==")
    assert composite_checksum([1, 2, 3]).endswith("-3")
    with pytest.raises(ValueError):
        b64_to_crc32c("AAAA")


def test_etag_shapes():
    md5 = hashlib.md5(b"x").digest()
    assert etag_kind(single_etag(md5)) == "md5"
    assert etag_kind(multipart_etag([md5, md5])) == "multipart"
    assert parts_in_etag(multipart_etag([md5] * 7)) == 7
    assert parts_in_etag(single_etag(md5)) is None
    assert etag_kind('"abc"') == "opaque"
    assert etag_kind('W/"' + md5.hex().upper() + '"') == "md5"
    assert etags_equal(single_etag(md5), md5.hex().upper())


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 1 << 40), n=st.integers(1, 10_000))
def test_candidate_part_sizes_give_n_parts(size: int, n: int):
    for ps in candidate_part_sizes(size, n):
        assert part_count(size, ps) == n


def test_candidate_part_sizes_find_common_choices():
    for ps in (5 * MiB, 8 * MiB, 16 * MiB, 64 * MiB):
        size = 37 * ps + 12345
        assert ps in candidate_part_sizes(size, part_count(size, ps))


def test_file_digests_against_hashlib(tmp_path):
    data = os.urandom(5 * MiB + 333)
    p = tmp_path / "f"
    p.write_bytes(data)
    ps = 2 * MiB
    d = file_digests(p, ps, want_md5=True, chunk=MiB // 2 + 1)  # chunk not dividing part
    pieces = [data[i : i + ps] for i in range(0, len(data), ps)]
    assert d.parts == 3 == part_count(len(data), ps)
    assert d.part_crcs == [google_crc32c.value(x) for x in pieces]
    assert d.part_md5s == [hashlib.md5(x).digest() for x in pieces]
    assert d.crc32c == google_crc32c.value(data)
    assert d.part_range(2) == (4 * MiB, MiB + 333)
    assert file_digests(p, ps, want_md5=False).part_md5s is None
    assert expected_etag_for_file(p, 8 * MiB) == single_etag(hashlib.md5(data).digest())
    assert expected_etag_for_file(p, ps) == multipart_etag(
        [hashlib.md5(x).digest() for x in pieces]
    )
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    de = file_digests(empty, ps, want_md5=True)
    assert de.parts == 1 and de.crc32c == 0
    assert de.etag() == single_etag(hashlib.md5(b"").digest())
    with pytest.raises(ValueError):
        FileDigest(size=1, part_size=1, part_crcs=[0]).etag()


def test_etags_and_checksums_match_seaweedfs(s3server, tmp_path):
    """A real multipart upload and a real PUT: our recomputation equals what the server says."""
    c = s3server.client()
    s3server.create_bucket("integrity")
    ps = 5 * MiB  # the S3 minimum part size
    data = os.urandom(2 * ps + 4097)
    p = tmp_path / "obj"
    p.write_bytes(data)
    d = file_digests(p, ps, want_md5=True)

    mu = c.create_multipart_upload(Bucket="integrity", Key="mp")
    parts = []
    for i in range(d.parts):
        off, n = d.part_range(i)
        r = c.upload_part(
            Bucket="integrity",
            Key="mp",
            UploadId=mu["UploadId"],
            PartNumber=i + 1,
            Body=data[off : off + n],
            ChecksumCRC32C=crc32c_to_b64(d.part_crcs[i]),
        )
        assert etags_equal(r["ETag"], single_etag(d.part_md5s[i]))
        assert b64_to_crc32c(r["ChecksumCRC32C"]) == d.part_crcs[i]
        parts.append(
            {"PartNumber": i + 1, "ETag": r["ETag"], "ChecksumCRC32C": r["ChecksumCRC32C"]}
        )
    done = c.complete_multipart_upload(
        Bucket="integrity", Key="mp", UploadId=mu["UploadId"], MultipartUpload={"Parts": parts}
    )
    head = c.head_object(Bucket="integrity", Key="mp", ChecksumMode="ENABLED")
    assert head["ETag"] == done["ETag"] == expected_etag_for_file(p, ps) == d.etag()
    assert parts_in_etag(head["ETag"]) == 3
    assert ps in candidate_part_sizes(head["ContentLength"], 3)
    if "ChecksumCRC32C" in head:  # COMPOSITE checksum of the part checksums
        assert head["ChecksumCRC32C"] == d.composite()

    small = data[:1000]
    r = c.put_object(
        Bucket="integrity", Key="one", Body=small, ChecksumCRC32C=crc32c_to_b64(crc32c(small))
    )
    head = c.head_object(Bucket="integrity", Key="one")
    assert r["ETag"] == head["ETag"] == single_etag(hashlib.md5(small).digest())
    assert etag_kind(head["ETag"]) == "md5"
