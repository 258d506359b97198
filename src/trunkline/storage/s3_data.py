"""The S3 data plane over our own connections: ranged GET, PUT (object or part), HEAD.

Why one module: every byte of an object travels through one of these three requests,
and each answer has to be checked against the request before a byte of it is trusted
(status, length, framing, checksum headers). When the engine, ``verify`` and ``probe``
each sent their own requests, the checks drifted apart (a HEAD was done three ways);
here they are written once: status, exact Content-Range, ``If-Match`` and the answer's
ETag, Content-Length, unambiguous framing (``check_get``). The scheduler, verify and probe all call these functions.

What stays elsewhere: signing, credentials and the control plane (LIST, multipart
bookkeeping) are ``storage/s3.py``'s (botocore); connections and their reuse are
``wire/``'s; retries are ``engine/retry.py``'s. These functions make one attempt and
raise a classified ``TransferError`` when it fails.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import DataError, IntegrityError, ProtocolError, SourceChanged, StoreError
from ..wire.connection import Connection
from ..wire.http1 import ResponseHead
from . import sigv4

__all__ = ["DataEndpoint", "GetAnswer", "b64_to_crc32c", "check_get", "check_response",
           "crc32c_to_b64", "get", "head", "parse_error_xml", "put"]

ERROR_BODY_LIMIT = 64 * 1024
TRAILER_MISMATCH = ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch")
"""The codes of a 400 that refuses a body whose CRC32C differs from its trailer."""
CRC32C_REJECTED = ("InvalidArgument", "NotImplemented", "InvalidRequest",
                   "XAmzContentChecksumMismatch")


class DataEndpoint(Protocol):
    """What a data request needs from an endpoint: signing, and what it learnt of the store."""

    supports_crc32c: bool | None

    def signed_head(self, method: str, bucket: str, key: str,
                    query: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None,
                    payload: str = ...) -> bytes: ...


def crc32c_to_b64(v: int) -> str:
    """The ``x-amz-checksum-crc32c`` header form: base64 of the big-endian 4 bytes."""
    return base64.b64encode((v & 0xFFFFFFFF).to_bytes(4, "big")).decode("ascii")


def b64_to_crc32c(s: str) -> int:
    """Inverse of ``crc32c_to_b64``; accepts a COMPOSITE ``...-N`` suffix and drops it.
    A malformed value is the store's bytes, not the user's: a plain ``ValueError``."""
    raw = base64.b64decode(s.split("-", 1)[0], validate=True)
    if len(raw) != 4:
        raise ValueError(f"not a CRC32C checksum: {s!r}")
    return int.from_bytes(raw, "big")


class DTDRefused(DataError):
    """A store's XML declared a document type: S3 never sends one, so it is refused."""


def _refuse_dtd(*_args) -> None:
    raise DTDRefused("the document declares a DTD")


def parse_xml(body: bytes):
    """The root element of an XML document from the store; one that declares a DTD is
    refused (``DTDRefused``), so no entity can be declared in it: no expansion ("billion
    laughs"), no external reference.

    Why not defusedxml: its ElementTree runs the pure-Python tree builder (it needs expat's
    handlers, which the C parser does not expose), 2-3x the C parser's time on a 1,000-key
    listing page, paid on every page of every listing (bench/RESULTS.md). The rule here is
    defusedxml's, stricter (no DTD at all, not only no entities): expat first reads the
    document with only the DTD handlers set, so nothing is built and Python is called only
    on a DTD, whatever the encoding; then ElementTree's C parser builds the tree. Imported
    on first use: a download that sees no listing and no error parses no XML."""
    import xml.etree.ElementTree as ET
    from xml.parsers import expat

    check = expat.ParserCreate()
    check.StartDoctypeDeclHandler = _refuse_dtd
    check.EntityDeclHandler = _refuse_dtd
    check.Parse(body, True)
    return ET.fromstring(body)


def parse_error_xml(status: int, body: bytes, op: str = "", key: str = "") -> StoreError:
    """The ``StoreError`` an S3 error document (or a bare status) describes."""
    code, message = "", ""
    if body:
        try:
            root = parse_xml(body)
            code = (root.findtext("Code") or "").strip()
            message = (root.findtext("Message") or "").strip()
        except Exception:  # noqa: BLE001 - not XML: keep a short excerpt
            message = body[:200].decode("utf-8", "replace")
    if not code:
        code = {404: "NoSuchKey", 403: "AccessDenied", 503: "SlowDown"}.get(status, f"HTTP{status}")
    return StoreError(status, code, message, op, key)


def check_response(conn: Connection, head: ResponseHead, op: str, key: str,
                   ok: tuple[int, ...] = (200, 206)) -> None:
    """Raise ``StoreError`` (having read the small error body) unless the status is in ``ok``."""
    if head.status in ok:
        return
    try:
        body = conn.read_body(head, limit=ERROR_BODY_LIMIT) if op != "HEAD" else b""
    except Exception:  # noqa: BLE001 - the error is what matters; the connection says it is spent
        body = b""
    err = parse_error_xml(head.status, body, op, key)
    hint = _where_instead(head)
    if hint:
        raise StoreError(err.status, err.code, f"{err.message} ({hint})" if err.message
                         else hint, op, key)
    raise err


def _where_instead(head: ResponseHead) -> str:
    """What an answer says of where the bucket is: the region S3 names
    (``x-amz-bucket-region``, on a redirect or a wrong-region refusal), or a redirect's
    ``Location``. Redirects are not followed: the request was signed for this host."""
    region = head.headers.get("x-amz-bucket-region", "").strip()
    if region and head.status in (301, 307, 400, 403):
        return f"the bucket is in region {region[:64]}: set AWS_REGION={region[:64]} or the " \
               "endpoint's region"
    where = head.headers.get("location", "").strip()
    if 300 <= head.status < 400:
        return ("the store redirects" + (f" to {where[:200]}" if where else "")
                + "; redirects are not followed: point the endpoint there")
    return ""


def _exchange(ep: DataEndpoint, conn: Connection, method: str, bucket: str, key: str,
              query: dict[str, str] | None, headers: dict[str, str],
              send_body: Callable[[Connection], None] | None = None,
              payload: str = sigv4.UNSIGNED_PAYLOAD) -> tuple[ResponseHead, float]:
    """One request on ``conn``: (response head, seconds from the request's end to the head)."""
    conn.request(method, ep.signed_head(method, bucket, key, query=query, headers=headers,
                                        payload=payload))
    if send_body is not None:
        send_body(conn)
    t0 = time.monotonic()
    head = conn.read_head()
    ttfb = time.monotonic() - t0
    conn.stats.requests += 1
    conn.stats.ttfb_total += ttfb
    if conn.stats.requests % 8 == 1:
        conn.sample_tcp()
    return head, ttfb


@dataclass(frozen=True, slots=True)
class GetAnswer:
    """A GET whose head was checked: its body (``length`` bytes) is next on the connection."""

    length: int
    crc32c: str | None     # the store's full-object checksum header (whole-object GETs only)
    etag: str | None
    ttfb: float
    headers: dict[str, str] | None = None   # all of them (checksum headers of any algorithm)


def _bare_etag(etag: str) -> str:
    e = etag.strip()
    return (e[2:] if e.startswith("W/") else e).strip('"').lower()


def check_get(head: ResponseHead, *, first: int, length: int, total: int | None,
              ranged: bool, etag: str | None, name: str) -> None:
    """Raise unless ``head`` answers our GET of ``[first, first+length)`` of a ``total``-byte
    object whose ETag is ``etag`` — before a byte of the body is read.

    Why each rule: a proxy or cache in front of a bucket can answer a ranged GET with other
    bytes (206 with another Content-Range) or with the whole object (200); framing that
    puts chunk sizes in the body must not reach a file; an object replaced between two
    ranged GETs shows in ``If-Match`` (412) or in the answer's ETag. A ProtocolError means
    the connection cannot be trusted (the caller drops it)."""
    if head.status == 412:
        raise SourceChanged(f"source changed during transfer: {name} no longer has ETag "
                            f"{etag} (If-Match failed)")
    got_etag = head.headers.get("etag")
    if etag and got_etag and _bare_etag(etag) != _bare_etag(got_etag):
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
        want = f"bytes {first}-{first + length - 1}/{total if total is not None else '*'}"
        got = head.headers.get("content-range", "").strip()
        if got != want and not (total is None and got.startswith(want[:-1])):
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


def get(ep: DataEndpoint, conn: Connection, bucket: str, key: str, name: str, *,
        offset: int = 0, length: int, whole: bool, etag: str | None = None,
        total: int | None = None) -> GetAnswer:
    """GET ``length`` bytes from ``offset`` (``whole``: the whole object, with its checksum).

    With ``etag`` (the listed one) the request carries ``If-Match`` and the answer's ETag
    must equal it; ``total`` is the listed size a ranged answer's Content-Range must name.
    Every answer is held against the request by ``check_get`` before its body is read."""
    headers: dict[str, str] = {}
    if whole:
        headers["x-amz-checksum-mode"] = "ENABLED"
    else:
        headers["Range"] = f"bytes={offset}-{offset + length - 1}"
    if etag:
        headers["If-Match"] = etag
    head, ttfb = _exchange(ep, conn, "GET", bucket, key, None, headers)
    if head.status >= 300 and head.status != 412:
        check_response(conn, head, "GET", name)
    check_get(head, first=offset, length=length, total=total, ranged=not whole, etag=etag,
              name=name)
    crc = head.headers.get("x-amz-checksum-crc32c") if whole else None
    return GetAnswer(length, crc, head.headers.get("etag"), ttfb, dict(head.headers))


def put(ep: DataEndpoint, conn: Connection, bucket: str, key: str, name: str, *,
        length: int, send_body: Callable[[Connection], None], crc32c_b64: str | None = None,
        query: dict[str, str] | None = None,
        trailer: Callable[[], int] | None = None) -> tuple[str, float]:
    """PUT an object (or, with ``query`` partNumber/uploadId, a part) whose ``length``-byte
    body ``send_body(conn)`` sends; returns (ETag, TTFB).

    With ``crc32c_b64`` the store checks the bytes it received. A store that rejects the
    header is remembered (``ep.supports_crc32c = False``) and the try fails with a
    retryable ``IntegrityError``, so the retry goes without it.

    With ``trailer`` (only to a store whose probe found trailers checked: the endpoint's
    ``trailer_crc32c``) the CRC32C is not known before the body: the body goes framed as
    one aws-chunked chunk, and ``trailer()``, called once the body is sent, gives the
    CRC32C the store checks from the trailer. A ``send_body`` that raises leaves the
    chunk short: the store never completes the request, and the connection is spent."""
    headers = {"Content-Length": str(length)}
    payload = sigv4.UNSIGNED_PAYLOAD
    body = send_body
    if trailer is not None and length > 0:
        headers = trailed_headers(length)
        payload = sigv4.TRAILER_PAYLOAD

        def body(conn: Connection) -> None:
            conn.send(b"%x\r\n" % length)
            send_body(conn)
            conn.send(trailer_bytes(crc32c_to_b64(trailer())))
    elif crc32c_b64 is not None and ep.supports_crc32c is not False:
        headers["x-amz-checksum-crc32c"] = crc32c_b64
    head, ttfb = _exchange(ep, conn, "PUT", bucket, key, query, headers, body, payload)
    try:
        check_response(conn, head, "PUT", name, ok=(200,))
    except StoreError as e:
        if payload == sigv4.TRAILER_PAYLOAD and e.status == 400 and e.code in TRAILER_MISMATCH:
            # the store summed other bytes than we did: damaged on the way (SeaweedFS
            # answers InvalidDigest, AWS BadDigest): sent again, like damage in a GET
            raise IntegrityError(f"{name}: the store's CRC32C differs from the trailer's "
                                 f"({e.code}): damaged on the way") from e
        if ("x-amz-checksum-crc32c" in headers and ep.supports_crc32c is None
                and e.code in CRC32C_REJECTED):
            ep.supports_crc32c = False  # this store rejects the header: go on without it
            raise IntegrityError("endpoint rejects x-amz-checksum-crc32c; retrying without") from e
        raise
    conn.read_body(head, limit=ERROR_BODY_LIMIT)
    if "x-amz-checksum-crc32c" in headers:
        ep.supports_crc32c = True
    return head.headers.get("etag", ""), ttfb


_TRAILER_NAME = "x-amz-checksum-crc32c"


def trailed_headers(length: int) -> dict[str, str]:
    """The headers of a ``length``-byte body sent as one aws-chunked chunk and a CRC32C
    trailer (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``): the framed Content-Length is known
    before the CRC is, since a CRC32C is always 8 characters of base64."""
    framed = len(b"%x\r\n" % length) + length + len(trailer_bytes("A" * 8))
    return {"Content-Length": str(framed), "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(length), "x-amz-trailer": _TRAILER_NAME}


def trailer_bytes(crc32c_b64: str) -> bytes:
    """What follows the chunk's data: its end, the last (empty) chunk, the trailer."""
    return f"\r\n0\r\n{_TRAILER_NAME}:{crc32c_b64}\r\n\r\n".encode("ascii")


def head(ep: DataEndpoint, conn: Connection, bucket: str, key: str, name: str, *,
         checksums: bool = True, part_number: int | None = None) -> ResponseHead | None:
    """HEAD an object (``checksums``: with its checksum headers; ``part_number``: the size
    of that part). None when the object does not exist."""
    headers = {"x-amz-checksum-mode": "ENABLED"} if checksums else {}
    query = {"partNumber": str(part_number)} if part_number is not None else None
    h, _ = _exchange(ep, conn, "HEAD", bucket, key, query, headers)
    if h.status == 404:
        return None
    check_response(conn, h, "HEAD", name, ok=(200, 206))
    return h
