"""Is this GET answer the bytes we asked for? Checked before a byte of the body is written.

Why: a misconfigured proxy or cache in front of a bucket can answer a ranged GET with other
bytes (206 with another Content-Range), with the whole object (200), or with framing that
puts chunk sizes in the body; an object can be replaced between two ranged GETs. Each of
these once landed in a file silently. The rules, all from the request we sent:

- status: 206 to a ranged GET, 200 to a whole one; 412 (our ``If-Match`` failed) means the
  source changed;
- the ETag of every answer equals the listed one (or, with none listed, the first answer's);
- a ranged answer's Content-Range is exactly ``bytes FIRST-LAST/TOTAL`` with the listed size;
- Content-Length equals the bytes asked for, and the body is not chunked.

Sans-I/O: it sees the parsed head only. Errors say what the server did; a ProtocolError
also means the connection is not reused (the caller closes it).
"""

from __future__ import annotations

from ..wire.http1 import ProtocolError, ResponseHead
from .integrity import etags_equal
from .retry import SourceChanged


def check_get(head: ResponseHead, *, first: int, length: int, total: int, ranged: bool,
              etag: str | None, name: str) -> str | None:
    """Raise unless ``head`` answers our GET of ``[first, first+length)`` of a ``total``-byte
    object whose ETag is ``etag``; returns the answer's ETag."""
    if head.status == 412:
        raise SourceChanged(f"source changed during transfer: {name} no longer has ETag "
                            f"{etag} (If-Match failed)")
    got_etag = head.headers.get("etag")
    if etag and got_etag and not etags_equal(etag, got_etag):
        raise SourceChanged(f"source changed during transfer: {name} has ETag {got_etag}, "
                            f"listed {etag}")
    if ranged and head.status == 200:
        raise ProtocolError(f"{name}: server ignored the Range header (200 with the whole "
                            f"object to a ranged GET)")
    want_status = 206 if ranged else 200
    if head.status != want_status:
        raise ProtocolError(f"{name}: status {head.status} to a "
                            f"{'ranged' if ranged else 'whole'} GET (expected {want_status})")
    if head.chunked:
        raise ProtocolError(f"{name}: chunked body to a GET of {length} bytes")
    if ranged:
        want = f"bytes {first}-{first + length - 1}/{total}"
        got = head.headers.get("content-range", "")
        if got.strip() != want:
            raise ProtocolError(f"{name}: asked for {want}, server answered Content-Range "
                                f"{got[:80]!r}")
    n = head.content_length
    if n is None:
        raise ProtocolError(f"{name}: GET answer without Content-Length")
    if n != length:
        if not ranged and not etag:
            raise SourceChanged(f"source changed during transfer: expected {length} bytes, "
                                f"server sends {n}")
        raise ProtocolError(f"{name}: {n} bytes framed for a GET of {length}")
    return got_etag
