"""The aws-chunked framing of a body whose CRC32C trails it, against botocore's encoder
(``AwsChunkedWrapper``, what AWS SDKs send with flexible checksums) on the same bytes."""

from __future__ import annotations

import io
import os

import google_crc32c
import pytest

pytest.importorskip("awscrt")   # botocore sums CRC32C with the CRT
from botocore.httpchecksum import AwsChunkedWrapper, CrtCrc32cChecksum  # noqa: E402

from trunkline.storage import s3_data


@pytest.mark.parametrize("n", [1, 15, 16, 4095, 65536, 1 << 20, 5 * (1 << 20) + 3])
def test_one_chunk_and_its_trailer_as_botocore_frames_them(n):
    body = os.urandom(n)
    ref = AwsChunkedWrapper(io.BytesIO(body), checksum_cls=CrtCrc32cChecksum,
                            checksum_name="x-amz-checksum-crc32c", chunk_size=n).read()
    b64 = s3_data.crc32c_to_b64(google_crc32c.value(body))
    ours = b"%x\r\n" % n + body + s3_data.trailer_bytes(b64)
    assert ours == ref
    headers = s3_data.trailed_headers(n)
    assert int(headers["Content-Length"]) == len(ref)   # known before the CRC is
    assert headers["x-amz-decoded-content-length"] == str(n)
    assert headers["Content-Encoding"] == "aws-chunked"
    assert headers["x-amz-trailer"] == "x-amz-checksum-crc32c"
