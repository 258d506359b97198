"""An S3-compatible endpoint: every request on our own connections, through ``wire``.

The bytes of GET/PUT/UploadPart and every control request (LIST, HEAD, the multipart
calls, server-side copies, deletes, CreateBucket) travel on our own connections
(requests and their checks here and in ``s3_data``, connections in ``wire``), signed by
``sigv4`` without importing botocore: a copy with keys in the environment never loads it
(botocore's import and client cost more than the rest of a short copy's start-up; its
generic parsing cost ~1.5 ms of interpreter time per CopyObject). botocore gives us the
credential chain (beyond keys in the environment), the endpoint of an AWS region, and
the capability probe's client (``storage/capabilities.py``); its own retries are off:
every retry is spent by the one policy of ``engine/retry.py``, which the engine hands to
each endpoint (``retry``); an endpoint built without one makes a single try.
Each answer is held to S3's rules before it is believed (an error sent with 200, a
result element missing, counts that are not counts, page markers that do not advance).
Payloads are sent UNSIGNED-PAYLOAD (integrity comes from the CRC32C/MD5 headers instead),
which S3 and every compatible store accept, and which lets us sendfile() the body.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote_plus

from ..config import (
    EndpointConfig,
    addressing_style,
    ca_bundle,
    endpoint_address,
    endpoint_region,
    env_keys,
    no_credentials,
)
from ..errors import SourceChanged, StoreError
from ..wire.clock import ClockSamples
from ..wire.connection import Connection
from ..wire.http1 import ResponseHead, build_request, decimal_count, http_date
from ..wire.pool import ConnectionPool
from . import s3_data, sigv4
from .s3_data import crc32c_to_b64, parse_error_xml  # noqa: F401  (parse_error_xml re-exported)
from .s3_limits import MAX_PARTS

S3Error = StoreError  # the name the storage layer has always used
T = TypeVar("T")
D = TypeVar("D")

DELETE_BATCH = 1000
"""DeleteObjects' own limit of keys per request."""
DELETE_IN_FLIGHT = 8
"""DeleteObjects requests at once: the store deletes, we wait (s5cmd's rm keeps several)."""
_END = object()
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 cannot carry, not even as references."""


def _count(text: str | None, op: str, name: str) -> int:
    """A count in a store's answer (a size, a part number): decimal digits, nothing else."""
    t = (text or "").strip()
    n = decimal_count(t)
    if n is None:
        raise S3Error(200, "BadNumber", f"{t[:40]!r} is not a count", op, name)
    return n


def _xml_text(text: str) -> str:
    """``text`` as XML character data; a CR as a reference (a parser reads a raw one as LF)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


class ListingError(S3Error):
    """A listing that did not end normally: nothing may be concluded from it."""

    def __init__(self, message: str):
        super().__init__(0, "BadListing", message, "LIST")

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return False


def is_botocore_error(e: BaseException) -> bool:
    """Whether ``e`` is one of botocore's (without importing botocore where it was never
    loaded: then it cannot be)."""
    import sys

    exc = sys.modules.get("botocore.exceptions")
    return exc is not None and isinstance(e, exc.BotoCoreError)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object (or a common prefix) as a listing or a HEAD describes it."""

    key: str
    size: int
    etag: str | None = None
    mtime: float | None = None
    checksum_algorithms: tuple[str, ...] = ()   # ListObjectsV2 ChecksumAlgorithm, if listed
    is_prefix: bool = False                     # a CommonPrefix of a delimited listing


_FIELDS = ("Key", "LastModified", "Size", "ETag")
_ALGO = len(_FIELDS)


def _contents(c, ns: str) -> tuple[str, str | None, str | None, str | None, tuple[str, ...]]:
    """(Key, LastModified, Size, ETag, ChecksumAlgorithms) of one ``<Contents>``, read in
    one pass over its children (four ``findtext`` calls cost five times as much). As
    ``findtext``: only tags of the page's namespace, the first of a repeated field counts,
    an empty one is ``""``, a missing one None (a missing Key ``""``)."""
    slots = _slots(ns)
    got: list[str | None] = [None, None, None, None]
    algos: list[str] = []
    for el in c:
        i = slots.get(el.tag)
        if i == _ALGO:
            algos.append(el.text or "")
        elif i is not None and got[i] is None:
            got[i] = el.text or ""
    return got[0] or "", got[1], got[2], got[3], tuple(algos)


@functools.lru_cache(maxsize=8)
def _slots(ns: str) -> dict[str, int]:
    return {f"{ns}{name}": i for i, name in enumerate((*_FIELDS, "ChecksumAlgorithm"))}


def _listed_key(bucket: str, prefix: str, key: str) -> str:
    """A key of a listing of ``prefix``: it must be under it, and not empty. A key beside
    the prefix (``p2/x`` in a listing of ``p/``) would be named by a wrong relative name
    (``2/x``; a sync would compare and delete by it): a listing that names one cannot be
    trusted to be the prefix's."""
    if not key or not key.startswith(prefix):
        raise ListingError(f"listing of s3://{bucket}/{prefix}: the server listed "
                           f"{key!r}, which is not under the prefix asked for")
    return key


def _listed_size(bucket: str, key: str, size: str | None) -> int:
    """A listed object's Size: decimal digits that fit an int64. A missing Size was read as
    0 (an empty file made, "copied", exit 0), and "-1", "1_0" or "abc" as what ``int``
    makes of them, or a traceback."""
    n = decimal_count((size or "").strip()) if size is not None else None
    if n is None:
        shown = "no Size" if size is None else f"Size {size[:40]!r}"
        raise ListingError(f"listing of s3://{bucket}: the server listed {key!r} with "
                           f"{shown}, not a count of bytes")
    return n


def _iso_ts(text: str) -> float | None:
    """A listing's LastModified as epoch seconds. S3's times are UTC: one a store sends
    without a zone is read as UTC too, never in the process's zone (a sync's "newer" would
    then shift by the zone's offset, and a changed file could stay behind)."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def _ns(root) -> str:
    """The ``{namespace}`` prefix of ``root``'s tag ("" for an answer without one)."""
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def _list_query(prefix: str, delimiter: str, token: str | None) -> dict[str, str]:
    """ListObjectsV2's query for one page."""
    q = {"list-type": "2", "prefix": prefix, "encoding-type": "url", "max-keys": "1000"}
    if delimiter:
        q["delimiter"] = delimiter
    if token:
        q["continuation-token"] = token
    return q


class S3Endpoint:
    """One store (URL + credentials). Thread-safe; shared by all workers.

    Start-up matters for short copies, so the fast path needs no botocore session or
    client: with the endpoint URL, region and keys known from config/env, signing is all we
    need, and LIST/HEAD travel on our own connections (XML with a DTD refused). The
    botocore client (service model load: ~70 ms) is created on first control-plane call
    that needs it (multipart, copy), or up front when the URL or keys must come from
    profiles.
    """

    def __init__(self, cfg: EndpointConfig,
                 retry: Callable[[Callable[[], Any]], Any] | None = None):
        self.cfg = cfg
        # retry(fn) calls fn under the retry policy (engine/retry.py); None: one try
        self.retry = retry or (lambda fn: fn())
        self._session = None
        self._client = None
        self._client_lock = threading.Lock()
        keys = env_keys(cfg)  # the AWS conventions live in config.py, one place each
        access, secret, token = keys or (None, None, None)
        self._static_keys = (access, secret) if cfg.access_key_id_env else (None, None)
        self.region = endpoint_region(cfg, lambda: self.session.get_config_variable("region"))
        self.addressing_style = addressing_style(cfg)
        # keys from env (read above) need no botocore; any other source is botocore's
        # chain, whose credentials may refresh: asked for frozen ones at each signature
        self._keys = sigv4.Keys(access, secret, token) if access and secret else None
        self._creds = None
        if self._keys is None:
            self._creds = self.session.get_credentials()
            if self._creds is None:
                raise no_credentials(cfg)
        endpoint_url = cfg.url or self.client.meta.endpoint_url
        self.scheme, self.host, self.port = endpoint_address(endpoint_url)
        self._tls = None
        if self.scheme == "https":
            from ..wire.tls import client_context  # ssl only for TLS (~10 ms of start-up)

            self._tls = client_context(ca_bundle(cfg))
        self.clock = ClockSamples()   # the store's clock against this host's (sync's times)
        self.supports_crc32c: bool | None = None   # learnt on first upload
        self.trailer_crc32c = False   # a CRC32C trailer is checked (the probe found it)
        self.verifies_crc32c: bool | None = None   # refuses a body that does not match it
        self.full_object_crc: bool | None = None   # FULL_OBJECT CRC32C multipart uploads
        # control-plane requests (LIST, HEAD, verify's reads) share one pool of our own
        self.pool = ConnectionPool(lambda t: self.new_connection(read_timeout=t))
        self.answers: dict[str, float] = {}
        """Per kind of control request (HEAD, LIST, ...), the quickest seen: from the request
        sent to its answer's head (a LIST: to its body read, signing included). How long
        the store takes to answer; the tuner's start for small objects reads it
        (``engine/tune.start_level``)."""

    @property
    def session(self):
        if self._session is None:
            # isort: off
            from . import botocore_lite  # noqa: F401  (first: botocore without the CRT)
            import botocore.session  # lazily: it drags in the client machinery
            # isort: on

            self._session = botocore.session.Session(profile=self.cfg.profile)
        return self._session

    @property
    def client(self):
        """The botocore client (control plane), created on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from botocore.config import Config

                    access, secret = self._static_keys
                    self._client = self.session.create_client(
                        "s3",
                        endpoint_url=self.cfg.url,
                        region_name=self.region,
                        aws_access_key_id=access,
                        aws_secret_access_key=secret,
                        verify=self.cfg.ca_bundle or None,
                        config=Config(
                            s3={"addressing_style": self.addressing_style},
                            retries={"total_max_attempts": 1},  # ours: engine/retry.py
                            max_pool_connections=32,
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required",
                        ),
                    )
        return self._client

    def __repr__(self) -> str:  # never show credentials
        return f"S3Endpoint({self.cfg.name!r}, {self.scheme}://{self.host}:{self.port})"

    def close(self) -> None:
        self.pool.close()

    @property
    def origin(self) -> tuple[str, str, int]:
        """Where connections go: endpoints on one origin share a connection pool."""
        return (self.scheme, self.host, self.port)

    @property
    def identity(self) -> tuple:
        """Two endpoints with the same identity can copy server-side."""
        return (self.scheme, self.host, self.port, self.cfg.profile, self.cfg.access_key_id_env)

    # -- data plane ----------------------------------------------------------------------

    def new_connection(self, read_timeout: float = 60.0) -> Connection:
        host = self.host
        return Connection(
            host=host,
            port=self.port,
            tls=self._tls,
            server_hostname=host,
            read_timeout=read_timeout,
        )

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        """(Host header, path) for this addressing style."""
        qkey = quote(key, safe="/~")
        hostport = self.host if self.port in (80, 443) else f"{self.host}:{self.port}"
        if self.addressing_style == "virtual" and "." not in bucket:
            return f"{bucket}.{hostport}", "/" + qkey
        return hostport, f"/{bucket}/{qkey}"

    def signed_head(
        self,
        method: str,
        bucket: str,
        key: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        payload: str = sigv4.UNSIGNED_PAYLOAD,
    ) -> bytes:
        """The signed request head bytes (SigV4 over the ``payload`` literal)."""
        host, path = self._target(bucket, key)
        qs = sigv4.canonical_query(query)
        hdrs = dict(headers or {})
        hdrs["Host"] = host
        keys = self._keys
        if keys is None:
            c = self._creds.get_frozen_credentials()
            keys = sigv4.Keys(c.access_key, c.secret_key, c.token)
        signed = sigv4.sign(method, path, qs, hdrs, keys, self.region, payload=payload)
        return build_request(method, path + ("?" + qs if qs else ""), signed)

    def check_response(self, conn: Connection, head: ResponseHead, op: str, key: str,
                       ok: tuple[int, ...] = (200, 206)) -> None:
        """Raise S3Error unless the status is in ``ok`` (``s3_data.check_response``)."""
        s3_data.check_response(conn, head, op, key, ok)

    # -- control plane (our connections) ----------------------------------------------

    def on_connection(self, request: Callable[[Connection], T], op: str, key: str) -> T:
        """Run ``request(conn)`` on a pooled connection of ours, retried under our policy;
        a failure other than the store's answer is reported as a ``StoreError``."""
        try:
            return self.retry(lambda: self._once(request, op))
        except S3Error:
            raise
        except Exception as e:  # noqa: BLE001 - a reset, a timeout: one clear line
            raise S3Error(0, type(e).__name__, str(e), op, key) from None

    def _once(self, request: Callable[[Connection], T], op: str) -> T:
        """One attempt of ``request`` on a pooled connection, its answer time kept."""
        conn = self.pool.acquire()
        t0, ttfb0 = time.monotonic(), conn.stats.ttfb_total
        try:
            out = request(conn)
        except BaseException:
            self.pool.release(conn)   # closed unless its exchange ended cleanly
            raise
        seconds = conn.stats.ttfb_total - ttfb0 or time.monotonic() - t0
        self.pool.release(conn)
        best = self.answers.get(op)
        if best is None or seconds < best:
            self.answers[op] = seconds
        return out

    @property
    def round_trip_s(self) -> float | None:
        """The quickest control request of any kind seen, None before the first."""
        return min(self.answers.values(), default=None)

    def time_answer(self, bucket: str, key: str) -> None:
        """One HEAD of ``key`` only to time the store's answer (``answers``): one attempt,
        any failure ignored (the copy that follows meets it for real)."""
        try:
            self._once(lambda conn: s3_data.head(self, conn, bucket, key, key), "HEAD")
        except Exception:  # noqa: BLE001 - see above
            pass

    def _control(self, method: str, bucket: str, key: str, query: dict[str, str] | None,
                 op: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> tuple[ResponseHead, bytes]:
        """A small control-plane request (LIST, multipart create/complete/abort) on our own
        connections, with its small body, if any; a 204 answer has none."""
        def request(conn: Connection) -> tuple[ResponseHead, bytes]:
            hdrs = None if headers is None and not body else \
                {**(headers or {}), "Content-Length": str(len(body))}
            before = time.time()
            conn.request(method, self.signed_head(method, bucket, key, query=query,
                                                  headers=hdrs))
            if body:
                conn.send(body)
            head = conn.read_head()
            self.clock.add(before, time.time(), head.headers.get("date"))
            if head.status in (200, 206):
                answer = conn.read_body(head, limit=64 << 20)
            elif head.status == 204 or (head.status == 404 and method == "HEAD"):
                answer = b""
            else:
                self.check_response(conn, head, op, f"{bucket}/{key}")
            return head, answer

        return self.on_connection(request, op, f"{bucket}/{key}")

    def stat(self, bucket: str, key: str, *, part_number: int | None = None
             ) -> ResponseHead | None:
        """HEAD with checksum headers (``s3_data.head``), None if there is no such object."""
        return self.on_connection(
            lambda conn: s3_data.head(self, conn, bucket, key, key, part_number=part_number),
            "HEAD", f"{bucket}/{key}")

    def list(self, bucket: str, prefix: str = "", delimiter: str = "") -> Iterator[ObjectInfo]:
        """Stream ListObjectsV2 page by page (never the whole listing in memory); with a
        ``delimiter``, common prefixes come as ``ObjectInfo(is_prefix=True)``. Raises
        ListingError unless the listing ends normally.

        A key is listed once. A page that names a key twice, or a key of the page before
        (pages that overlap: a continuation that starts at the last key instead of after
        it), is a listing that cannot be trusted to have skipped nothing either; and a key
        listed twice would be copied twice, by two jobs at one destination. Memory: the
        keys of two pages."""
        token: str | None = None
        seen: set[str] = set()   # tokens only: one short string per page
        before: set[str] = set()  # the keys of the page before
        sent: tuple[Connection, float] | None = None   # the next page, already asked for
        try:
            while True:
                q = _list_query(prefix, delimiter, token)
                body = self._list_page(bucket, q, sent)
                sent = None
                try:
                    root = s3_data.parse_xml(body)
                except Exception as e:  # noqa: BLE001 - ParseError, ExpatError or DTDRefused
                    raise ListingError(f"listing of s3://{bucket}/{prefix}: the server sent a "
                                       f"page that is not XML ({type(e).__name__})") from None
                ns = _ns(root)
                encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
                truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
                nxt = root.findtext(f"{ns}NextContinuationToken") if truncated else None
                if nxt and nxt not in seen:
                    # the store works on the next page while the caller works through
                    # this one (two listings joined: while it works through the other's)
                    sent = self._send_list(bucket, _list_query(prefix, delimiter, nxt))
                page: set[str] = set()
                for c in root.iterfind(f"{ns}Contents"):
                    k, lm, size, etag, algos = _contents(c, ns)
                    key = _listed_key(bucket, prefix, unquote_plus(k) if encoded else k)
                    if key in page or key in before:
                        raise ListingError(f"listing of s3://{bucket}/{prefix}: the server "
                                           f"listed {key!r} twice (its pages overlap)")
                    page.add(key)
                    yield ObjectInfo(key, _listed_size(bucket, key, size), etag,
                                     _iso_ts(lm) if lm else None, algos)
                before = page
                for cp in root.iterfind(f"{ns}CommonPrefixes"):
                    k = cp.findtext(f"{ns}Prefix") or ""
                    yield ObjectInfo(_listed_key(bucket, prefix, unquote_plus(k) if encoded
                                                 else k), 0, is_prefix=True)
                if not truncated:
                    return
                # A listing must end or fail: a repeated token would loop forever (the same
                # keys again and again), a truncated page without a token would end early
                # and make ``sync --delete`` remove what the source still holds.
                if not nxt:
                    raise ListingError(f"listing of s3://{bucket}/{prefix} is truncated but "
                                       "the server sent no continuation token")
                if nxt in seen:
                    raise ListingError(f"listing of s3://{bucket}/{prefix}: the server "
                                       "repeated a continuation token (it would never end)")
                seen.add(nxt)
                token = nxt
        finally:
            if sent is not None:   # a listing left early: its next answer is not read
                self.pool.discard(sent[0])

    def _send_list(self, bucket: str, query: dict[str, str]
                   ) -> tuple[Connection, float] | None:
        """A listing page's request, sent now and answered later (``_list_page``), and
        when it was sent; None where it could not be (the page is then asked for the usual
        way)."""
        try:
            conn = self.pool.acquire()
        except Exception:  # noqa: BLE001 - the usual way meets it, under the retry policy
            return None
        try:
            sent_at = time.time()   # the Date of its answer is after this
            conn.request("GET", self.signed_head("GET", bucket, "", query=query))
        except Exception:  # noqa: BLE001 - see above
            self.pool.discard(conn)
            return None
        return conn, sent_at

    def _list_page(self, bucket: str, query: dict[str, str],
                   ahead: tuple[Connection, float] | None) -> bytes:
        """The body of a listing page: the answer on ``sent`` where its request went ahead,
        else (and where that answer is anything but a page) one asked for now, under the
        retry policy and the store's error answers (a LIST is safe to ask twice)."""
        if ahead is not None:
            sent, sent_at = ahead
            try:
                head = sent.read_head()
                self.clock.add(sent_at, time.time(), head.headers.get("date"))
                if head.status == 200:
                    body = sent.read_body(head, limit=64 << 20)
                    self.pool.release(sent)
                    return body
            except Exception:  # noqa: BLE001 - asked again below, under the retry policy
                pass
            self.pool.discard(sent)
        return self._control("GET", bucket, "", query, "LIST")[1]

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's size, ETag and mtime (``stat``: the one HEAD), None if absent."""
        head = self.stat(bucket, key)
        if head is None:
            return None
        return ObjectInfo(key, head.content_length or 0, head.headers.get("etag"),
                          http_date(head.headers.get("last-modified")))

    def _xml_call(self, method: str, bucket: str, key: str, query: dict[str, str], op: str,
                  headers: dict[str, str] | None = None, body: bytes = b""):
        """A multipart control request on our own connections, its XML answer's root (None
        for an answer without a body); retried under our policy like every control call.

        Why not botocore's client: importing it and building one costs an upload ~0.25 s
        of start, for three small requests. An S3 error sent with status 200 (as
        CompleteMultipartUpload may, once it has begun) is an error here too."""
        name = f"{bucket}/{key}"
        _, data = self._control(method, bucket, key, query, op, headers or {}, body)
        if not data.strip():
            return None
        root = s3_data.parse_xml(data)
        if root.tag.rpartition("}")[2] == "Error":
            raise s3_data.parse_error_xml(200, data, op, name)
        return root

    @staticmethod
    def _text(root, tag: str) -> str:
        """``tag``'s text below ``root``, with or without S3's XML namespace."""
        return (root.findtext(_ns(root) + tag) or "").strip()

    def create_multipart(self, bucket: str, key: str, crc32c: bool = False) -> str:
        """Start a multipart upload; with ``crc32c`` ask for a FULL_OBJECT CRC32C, so the
        store checks the whole object at completion and reports its CRC to later readers
        (stores that refuse it are remembered and asked plainly)."""
        def create(headers: dict[str, str]) -> str:
            root = self._xml_call("POST", bucket, key, {"uploads": ""}, "CreateMultipartUpload",
                                  headers)
            upload_id = self._text(root, "UploadId") if root is not None else ""
            if not upload_id:
                raise S3Error(0, "NoUploadId", "the answer names no UploadId",
                              "CreateMultipartUpload", f"{bucket}/{key}")
            return upload_id

        if crc32c and self.full_object_crc is not False:
            try:
                upload_id = create({"x-amz-checksum-algorithm": "CRC32C",
                                    "x-amz-checksum-type": "FULL_OBJECT"})
                self.full_object_crc = True
                return upload_id
            except S3Error as e:
                if e.status not in (400, 501):
                    raise
                self.full_object_crc = False
        return create({})

    def complete_multipart(self, bucket: str, key: str, upload_id: str,
                           parts: list[tuple[int, str]], part_crcs: dict[int, int] | None = None,
                           full_crc: int | None = None) -> str:
        """Complete; with ``full_crc`` the store compares it with the bytes it holds."""
        def call(with_crc: bool) -> str:
            xml = ['<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
            for n, e in parts:
                crc = (f"<ChecksumCRC32C>{crc32c_to_b64(part_crcs[n])}</ChecksumCRC32C>"
                       if with_crc and part_crcs is not None else "")
                xml.append(f"<Part><PartNumber>{n}</PartNumber><ETag>{_xml_text(e)}</ETag>"
                           f"{crc}</Part>")
            xml.append("</CompleteMultipartUpload>")
            headers = {"Content-Type": "application/xml"}
            if with_crc:
                headers.update({"x-amz-checksum-crc32c": crc32c_to_b64(full_crc),
                                "x-amz-checksum-type": "FULL_OBJECT"})
            root = self._xml_call("POST", bucket, key, {"uploadId": upload_id},
                                  "CompleteMultipartUpload", headers, "".join(xml).encode())
            # nothing checks the object after this answer: only the result says it is whole
            root = self._answer(root, "CompleteMultipartUploadResult", "CompleteMultipartUpload",
                                f"{bucket}/{key}", "NoCompleteResult")
            return self._text(root, "ETag")

        if full_crc is not None and part_crcs is not None:
            try:
                return call(True)
            except S3Error as e:
                # an upload started without a checksum (an older run, another tool) is
                # refused with one: complete it plainly; a real mismatch still fails below
                if e.status != 400 or e.code == "BadDigest":
                    raise
        return call(False)

    def abort_multipart(self, bucket: str, key: str, upload_id: str,
                        strict: bool = False) -> bool:
        """AbortMultipartUpload -> True, or False where the upload is gone already
        (NoSuchUpload). A failure is ignored (a clean-up on the way out) unless
        ``strict`` (``gc``: an upload left open costs its parts' storage)."""
        try:
            self._xml_call("DELETE", bucket, key, {"uploadId": upload_id},
                           "AbortMultipartUpload")
        except S3Error as e:
            if e.code == "NoSuchUpload" or not strict:
                return False
            raise
        return True

    @staticmethod
    def _answer(root, result: str, op: str, name: str, code: str = ""):
        """``root`` if it is the ``result`` element ``op`` must answer with, else an error
        ``code`` (an empty 200, or another document, says nothing about what was asked):
        the one rule for every control answer whose result matters."""
        if root is None or root.tag.rpartition("}")[2] != result:
            raise S3Error(200, code or f"No{result}", f"the answer is not a {result}", op,
                          name)
        return root

    def list_parts(self, bucket: str, key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """The parts a multipart upload holds: {number: (ETag, size)}, every page (a resume
        skips what is there). A part number out of 1..10,000, a size that is not a count,
        or a marker that does not advance (a page loop) is an error."""
        name = f"{bucket}/{key}"
        out: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            q = {"uploadId": upload_id, **({"part-number-marker": str(marker)} if marker else {})}
            root = self._answer(self._xml_call("GET", bucket, key, q, "ListParts"),
                                "ListPartsResult", "ListParts", name)
            ns = _ns(root)
            for p in root.iterfind(f"{ns}Part"):
                n = _count(p.findtext(f"{ns}PartNumber"), "ListParts", name)
                if not 1 <= n <= MAX_PARTS:
                    raise S3Error(200, "BadListParts", f"part number {n}", "ListParts", name)
                out[n] = ((p.findtext(f"{ns}ETag") or "").strip(),
                          _count(p.findtext(f"{ns}Size"), "ListParts", name))
            if self._text(root, "IsTruncated").lower() != "true":
                return out
            nxt = _count(self._text(root, "NextPartNumberMarker"), "ListParts", name)
            if nxt <= marker:
                raise S3Error(200, "BadListParts", "the part marker does not advance",
                              "ListParts", name)
            marker = nxt

    def _uploads(self, bucket: str, prefix: str) -> Iterator[tuple[str, str, float]]:
        """In-progress multipart uploads under ``prefix``: (key, upload id, initiated
        epoch), every page; markers met before are an error (a page loop)."""
        markers: tuple[str, str] = ("", "")
        seen: set[tuple[str, str]] = set()
        while True:
            # no encoding-type=url: Ceph RGW encodes the keys then but does not say so
            # (no <EncodingType>), and a key read wrong would name another upload
            q = {"uploads": "", "prefix": prefix}
            if markers[0]:
                q.update({"key-marker": markers[0], "upload-id-marker": markers[1]})
            root = self._answer(
                self._xml_call("GET", bucket, "", q, "ListMultipartUploads"),
                "ListMultipartUploadsResult", "ListMultipartUploads", f"{bucket}/{prefix}")
            ns = _ns(root)
            for u in root.iterfind(f"{ns}Upload"):
                yield (u.findtext(f"{ns}Key") or "", u.findtext(f"{ns}UploadId") or "",
                       _iso_ts(u.findtext(f"{ns}Initiated") or "") or 0.0)
            if self._text(root, "IsTruncated").lower() != "true":
                return
            nxt = (root.findtext(f"{ns}NextKeyMarker") or "",
                   root.findtext(f"{ns}NextUploadIdMarker") or "")
            if not nxt[0] or nxt in seen:   # (stores differ in key order: no "<" here)
                raise S3Error(200, "BadListing", "the upload markers do not advance",
                              "ListMultipartUploads", f"{bucket}/{prefix}")
            seen.add(nxt)
            markers = nxt

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        """In-progress multipart uploads under ``prefix``: (key, upload id)."""
        return [(k, u) for k, u, _ in self._uploads(bucket, prefix)]

    def uploads_for_key(self, bucket: str, key: str) -> list[tuple[str, float]]:
        """In-progress multipart uploads of exactly ``key``: (upload id, initiated epoch)."""
        return [(u, t) for k, u, t in self._uploads(bucket, key) if k == key]

    def _copy_call(self, op: str, result: str, src_bucket: str, src_key: str, bucket: str,
                   key: str, if_match: str | None, query: dict[str, str],
                   extra: dict[str, str] | None = None) -> str:
        """A server-side copy request on our own connections -> the new ETag.

        ``if_match`` (the listed ETag) goes as ``x-amz-copy-source-if-match``: a source
        replaced after it was listed fails ``SourceChanged`` (412) instead of being copied.
        For a multipart copy that is what keeps two versions from meeting in one object:
        each part is a separate request, and nothing compares the parts afterwards. The
        answer must be ``result`` (an error may come with status 200, as AWS documents)."""
        headers = {"x-amz-copy-source": quote(f"{src_bucket}/{src_key}", safe="/~"),
                   **(extra or {})}
        if if_match:
            headers["x-amz-copy-source-if-match"] = if_match
        name = f"{bucket}/{key}"
        try:
            root = self._xml_call("PUT", bucket, key, query, op, headers)
        except S3Error as e:
            if e.status == 412 or e.code == "PreconditionFailed":
                raise SourceChanged(f"source changed during transfer: {src_bucket}/{src_key} "
                                    f"no longer has ETag {if_match} ({op} refused)") from None
            raise
        return self._text(self._answer(root, result, op, name, "NoCopyResult"), "ETag")

    def copy_object(self, src_bucket: str, src_key: str, bucket: str, key: str,
                    if_match: str | None = None) -> str:
        """CopyObject (the store copies the whole object) -> the copy's ETag."""
        return self._copy_call("CopyObject", "CopyObjectResult", src_bucket, src_key, bucket,
                               key, if_match, {})

    def upload_part_copy(self, src_bucket: str, src_key: str, bucket: str, key: str,
                         upload_id: str, part_number: int, start: int, length: int,
                         if_match: str | None = None) -> str:
        """UploadPartCopy of ``[start, start+length)`` of the source -> the part's ETag."""
        return self._copy_call(
            "UploadPartCopy", "CopyPartResult", src_bucket, src_key, bucket, key, if_match,
            {"partNumber": str(part_number), "uploadId": upload_id},
            {"x-amz-copy-source-range": f"bytes={start}-{start + length - 1}"})

    def delete(self, bucket: str, key: str) -> None:
        """DeleteObject (a key that is gone already is no error, as S3 says)."""
        self._control("DELETE", bucket, key, None, "DeleteObject")

    def delete_many(self, bucket: str, keys: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """DeleteObjects for up to 1000 keys, on our own connections: -> (deleted keys,
        [(key, error)]). Only keys asked for count as deleted, whatever the answer names.
        A key that XML 1.0 cannot carry (a control character) goes alone as a
        DeleteObject, which names it in the path instead."""
        if not keys:
            return [], []
        if len(keys) > 1000:
            raise ValueError("DeleteObjects takes at most 1000 keys")
        plain: list[str] = []
        odd: list[str] = []
        for k in keys:
            (odd if _XML_UNSAFE.search(k) else plain).append(k)
        done: list[str] = []
        errors: list[tuple[str, str]] = []
        for k in odd:
            try:
                self.delete(bucket, k)
                done.append(k)
            except S3Error as e:
                errors.append((k, f"{e.code}: {e.message}"))
        if not plain:
            return done, errors
        body = "".join(["<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
                        "<Quiet>false</Quiet>",
                        *(f"<Object><Key>{_xml_text(k)}</Key></Object>" for k in plain),
                        "</Delete>"]).encode()
        headers = {"Content-Type": "application/xml",   # S3 wants a digest of this body
                   "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        root = self._answer(self._xml_call("POST", bucket, "", {"delete": ""}, "DeleteObjects",
                                           headers, body),
                            "DeleteResult", "DeleteObjects", f"{bucket}/{plain[0]}")
        ns = _ns(root)
        asked = set(plain)
        named = [d.findtext(f"{ns}Key") for d in root.iterfind(f"{ns}Deleted")]
        for e in root.iterfind(f"{ns}Error"):
            errors.append((e.findtext(f"{ns}Key") or "",
                           f"{e.findtext(f'{ns}Code') or ''}: {e.findtext(f'{ns}Message') or ''}"))
        failed = {k for k, _ in errors}
        if all(named):
            confirmed = asked.intersection(named) - failed
        else:
            # the JuiceFS gateway answers <Deleted></Deleted> without the key: every key it
            # does not name in an error was deleted (the count must agree, else none was)
            rest = asked - failed
            confirmed = rest if len(rest) == len(named) else set()
        # each key asked for ends deleted or failed: one the answer does not account for
        # is not taken as deleted (a sync would report a clean --delete)
        errors += [(k, "NotConfirmed: the store's answer does not name it as deleted")
                   for k in plain if k not in confirmed and k not in failed]
        return done + [k for k in plain if k in confirmed], errors

    def delete_batches(self, bucket: str, items: Iterable[D], key: Callable[[D], str],
                       in_flight: int = DELETE_IN_FLIGHT
                       ) -> Iterator[tuple[list[D], set[str], list[tuple[str, str]]]]:
        """Delete ``items`` (their keys by ``key``) in DeleteObjects batches of 1000, up to
        ``in_flight`` batches at once, while the caller's iterator (a listing) goes on:
        -> (batch, deleted keys, [(key, error)]) per batch as it ends. A batch that
        failed as a whole comes back with every key as an error."""
        from concurrent.futures import ThreadPoolExecutor  # (loads logging: not at start-up)

        def one(batch: list[D]) -> tuple[list[D], set[str], list[tuple[str, str]]]:
            try:
                deleted, errors = self.delete_many(bucket, [key(i) for i in batch])
            except Exception as e:  # noqa: BLE001 - this batch failed; the others go on
                return batch, set(), [(key(i), str(e)) for i in batch]
            return batch, set(deleted), errors

        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tl-delete") as ex:
            batch: list[D] = []
            for item in itertools.chain(items, [_END]):
                last = item is _END
                if not last:
                    batch.append(item)  # type: ignore[arg-type]
                if batch and (len(batch) >= DELETE_BATCH or last):
                    pending.append(ex.submit(one, batch))
                    batch = []
                while len(pending) >= in_flight or (last and pending):
                    yield pending.popleft().result()

    def create_bucket(self, bucket: str) -> None:
        """CreateBucket, with the region as location constraint outside us-east-1."""
        body = b""
        if self.region and self.region != "us-east-1":
            body = ('<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<LocationConstraint>{_xml_text(self.region)}</LocationConstraint>"
                    "</CreateBucketConfiguration>").encode()
        self._control("PUT", bucket, "", None, "CreateBucket",
                      {"Content-Type": "application/xml"} if body else None, body)
