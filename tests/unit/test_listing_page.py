"""One ListObjectsV2 page, read (storage/s3.py ``_contents``, storage/s3_data.py
``parse_xml``): the one-pass reading of a ``<Contents>`` gives what ElementTree's own
``findtext`` gives, on pages a store might send and on ones it should not."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from trunkline.storage.s3 import _contents
from trunkline.storage.s3_data import DTDRefused, parse_xml

NS = "http://s3.amazonaws.com/doc/2006-03-01/"

PAGES = [
    # a plain page, namespaced
    f'<ListBucketResult xmlns="{NS}"><Contents><Key>a/b</Key>'
    "<LastModified>2026-11-30T14:19:28.000Z</LastModified><ETag>\"e1\"</ETag><Size>7</Size>"
    "<StorageClass>STANDARD</StorageClass><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"
    "</Contents></ListBucketResult>",
    # no namespace, fields missing or empty, two checksum algorithms, one empty
    "<ListBucketResult><Contents><Key></Key><Size></Size><ChecksumAlgorithm>CRC32"
    "</ChecksumAlgorithm><ChecksumAlgorithm/></Contents><Contents/></ListBucketResult>",
    # repeated fields (the first counts), and a same-named field of another namespace
    f'<ListBucketResult xmlns="{NS}" xmlns:o="urn:other"><Contents><Key>first</Key>'
    "<Key>second</Key><o:Key>foreign</o:Key><o:Size>99</o:Size><Size>1</Size><Size>2</Size>"
    "<ETag/></Contents></ListBucketResult>",
]


def _by_findtext(c, ns: str):
    return (c.findtext(f"{ns}Key") or "", c.findtext(f"{ns}LastModified"),
            c.findtext(f"{ns}Size"), c.findtext(f"{ns}ETag"),
            tuple(a.text or "" for a in c.iterfind(f"{ns}ChecksumAlgorithm")))


@pytest.mark.parametrize("page", PAGES)
def test_one_pass_equals_findtext(page):
    root = parse_xml(page.encode())
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    contents = list(root.iterfind(f"{ns}Contents"))
    assert contents
    for c in contents:
        assert _contents(c, ns) == _by_findtext(c, ns)


def test_the_first_of_a_repeated_key_and_not_a_foreign_one():
    root = ET.fromstring(PAGES[2])
    c = root.find(f"{{{NS}}}Contents")
    assert _contents(c, f"{{{NS}}}")[:3] == ("first", None, "1")


@pytest.mark.parametrize("doc", [
    b'<!DOCTYPE R [<!ENTITY e "x">]><R>&e;</R>',
    b'<!DOCTYPE R SYSTEM "http://127.0.0.1:9/r.dtd"><R/>',
    b"<!DOCTYPE R><R/>",
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE R [<!ENTITY e "x">]><R>&e;</R>'
    .encode("utf-16"),
])
def test_any_dtd_is_refused(doc):
    with pytest.raises(DTDRefused):
        parse_xml(doc)


@pytest.mark.parametrize("text", ["2026-08-01T10:00:00.000Z", "2026-08-01T10:00:00Z",
                                  "2026-08-01T10:00:00.000", "2026-08-01T10:00:00+00:00",
                                  "2026-08-01T15:30:00.000+05:30"])
def test_last_modified_is_utc_whatever_the_process_zone(monkeypatch, text):
    """A store that leaves the zone out still means UTC: read in the process's zone, a
    sync's "newer" would shift by the zone's offset (here five and a half hours)."""
    import calendar
    import os
    import time

    from trunkline.storage.s3 import _iso_ts

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert _iso_ts(text) == calendar.timegm((2026, 8, 1, 10, 0, 0))
        assert _iso_ts("yesterday") is None
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert os.environ.get("TZ") is None
