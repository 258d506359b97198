"""The finished-file stamp (an xattr): the same compact JSON as ``json.dumps`` writes, for
ETags with quotes, escapes and non-ASCII, so ``read_stamp`` and older stamps agree."""

from __future__ import annotations

import json

import pytest

from trunkline.storage.partial import finished_stamp


@pytest.mark.parametrize("etag,size,crc", [
    (None, 0, None),
    ('"9b2cf535f27731c974343645a3985328"', 262_144, 0),
    ('W/"x\\y"\n\u00e9\u2028', 2**40, 2**32 - 1),
])
def test_stamp_is_the_compact_json_of_its_fields(etag, size, crc):
    want = json.dumps({"etag": etag, "size": size, "crc32c": crc}, separators=(",", ":"))
    got = finished_stamp(etag, size, crc)
    assert got == want.encode()
    assert json.loads(got) == {"etag": etag, "size": size, "crc32c": crc}
