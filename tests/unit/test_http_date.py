"""``http1.http_date``: the IMF-fixdate parsed by hand agrees with the standard library to
the second for any valid date, anything malformed is None (never an exception), and the
process's time zone never leaks in."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from trunkline.wire.http1 import http_date


def test_fixdate_matches_the_standard_library_for_random_dates():
    rng = random.Random(7)
    lo, hi = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    span = int((hi - lo).total_seconds())
    for _ in range(20_000):
        dt = lo + timedelta(seconds=rng.randrange(span))
        s = format_datetime(dt, usegmt=True)
        assert http_date(s) == dt.timestamp(), s
    for s, want in (("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0),
                    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
                    ("Tue, 29 Feb 2000 12:00:00 GMT", 951825600.0)):
        assert http_date(s) == want


@pytest.mark.parametrize("bad", [
    None, "", "yesterday", "Sun, 31 Feb 1994 08:49:37 GMT",
    "Sun, 29 Feb 1900 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
    "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1994 08:49:60 GMT",
    "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 0x Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 0000 08:49:37 GMT", "Sun, ٠٦ Nov 1994 08:49:37 GMT", "\x00" * 29,
    "x" * 10_000,
])
def test_malformed_is_none(bad):
    assert http_date(bad) is None


def test_other_formats_are_utc_whatever_the_process_zone(monkeypatch):
    """RFC 850 / asctime / numeric-zone dates go to email.utils; a date without a zone
    ("-0000") is UTC, not the local time of the process."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777.0
        assert http_date("Sun, 06 Nov 1994 08:49:37 -0000") == 784111777.0
        assert http_date("Sun, 06 Nov 1994 17:49:37 +0900") == 784111777.0
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert os.environ.get("TZ") is None
