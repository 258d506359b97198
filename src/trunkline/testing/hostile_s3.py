"""A small S3 server on loopback that misbehaves on purpose, one named mode at a time.

Why: the faults a mover must survive (a proxy answering the wrong range, a cache that
ignores ``Range``, ambiguous framing, a listing that never ends, an object replaced between
two ranged GETs) are produced by no real store on demand, yet each silently corrupted
files once. Each mode here reproduces one, so a test can show the mover ends in a
byte-identical copy or a clear failure. Self-contained (objects in memory, no signature
checks): it speaks just enough S3 for downloads and listings (GET with Range and If-Match,
HEAD with checksum headers, ListObjectsV2 with continuation tokens).

Bounded: loopback only, one thread per connection, a stop() that closes every socket.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from .loopback import LoopbackServer

MODES = (
    "normal",
    "wrong_range",      # 206 whose Content-Range names other bytes than asked (same length)
    "ignored_range",    # 200 with the whole object to a ranged GET
    "te_cl",            # Transfer-Encoding: chunked and Content-Length together
    "long_body",        # more bytes than asked, framed consistently (CL says so)
    "short_body",       # Content-Length right, connection closed halfway
    "info_1xx",         # a 102/103 interim answer (with a body-like header) before the real one
    "repeat_token",     # a listing whose continuation token comes back again
    "missing_token",    # IsTruncated=true without NextContinuationToken
    "change_mid_object",  # the object is replaced (same size) after its first ranged GET
    "slow_trickle",     # the body sent in small pieces with pauses
    "entity_bomb",      # a listing page whose DTD nests entities ("billion laughs")
    "external_entity",  # a listing page whose key names a SYSTEM entity (a local file)
    "utf16_doctype",    # a listing page in UTF-16 with a DTD (its bytes hide "<!DOCTYPE")
    "small_entity",     # a listing page whose DTD declares one short entity, used in a key
    "repeat_key",       # each listing page after the first starts with the previous one's last key
    "list_slow_down",   # a listing page answered 503 SlowDown (S3's throttle), as a busy store does
    "foreign_key",      # a listing page that also names a key outside the prefix asked for
    "bad_size",         # a listing page whose first key's Size is not a count (``bad_size``)
    "wrong_region",     # every answer 301 PermanentRedirect naming another region, as S3 does
)

# what each hostile listing page puts before the root element and in its first key
_DTD_BOMB = ('<!DOCTYPE ListBucketResult [<!ENTITY a0 "laugh">'
             + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
             + "]>", "&a9;")
_DTD_FILE = ('<!DOCTYPE ListBucketResult [<!ENTITY f SYSTEM "file:///etc/hostname">]>', "&f;")
_DTD_SMALL = ('<!DOCTYPE ListBucketResult [<!ENTITY e "injected">]>', "&e;")
"""No amplification, no reference out: expat alone would expand it into a key the store
does not hold; only a parser that refuses every DTD stops it."""


@dataclass
class StoredObject:
    data: bytes
    etag: str = ""
    checksums: dict[str, str] = field(default_factory=dict)   # algo -> header value
    checksum_type: str = "FULL_OBJECT"
    last_modified: float = 1785578400.0   # 2026-08-01T10:00:00Z; a PUT: the store's clock

    def __post_init__(self) -> None:
        if not self.etag:
            self.etag = '"' + hashlib.md5(self.data, usedforsecurity=False).hexdigest() + '"'


class HostileS3(LoopbackServer):
    """``with HostileS3() as s: s.put("b", "k", data); s.set_mode("wrong_range", times=1)``.

    ``times``: how many responses the mode strikes before the server behaves (None:
    always), so a test can show that a retry on a fresh connection heals a transient fault.
    """

    def __init__(self, *, trickle_piece: int = 4096, trickle_pause: float = 0.05,
                 page_size: int = 1000) -> None:
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.mode = "normal"
        self.times: int | None = None
        self.struck = 0
        self.requests: list[str] = []          # "METHOD path" of every request, for tests
        self.trickle_piece = trickle_piece
        self.trickle_pause = trickle_pause
        self.page_size = page_size
        self.replacement: bytes | None = None  # change_mid_object: the new content
        self.bad_size: str | None = "-1"       # bad_size: the Size sent (None: no Size)
        self.clock_skew_s = 0.0                # the Date header's clock against this host's
        self._loopback_init()

    # -- setup -------------------------------------------------------------------------

    def put(self, bucket: str, key: str, data: bytes, **kw) -> StoredObject:
        obj = StoredObject(data, **kw)
        with self._lock:
            self.objects[(bucket, key)] = obj
        return obj

    def set_mode(self, mode: str, times: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        with self._lock:
            self.mode, self.times, self.struck = mode, times, 0

    thread_name = "hostile-s3"

    @property
    def url(self) -> str:
        return self.endpoint_url

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "hostile",
                "AWS_SECRET_ACCESS_KEY": "hostile-secret", "AWS_REGION": "us-east-1"}

    # -- serving (the loop: ``loopback.py``) ---------------------------------------------

    def _strike(self, mode: str) -> bool:
        """Whether this response misbehaves as ``mode`` (counts down ``times``)."""
        with self._lock:
            if self.mode != mode or (self.times is not None and self.struck >= self.times):
                return False
            self.struck += 1
            return True

    def _serve(self, c: socket.socket) -> None:
        buf = b""
        while not self._stopped.is_set():
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
                if len(buf) > 65536:
                    return
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {k.strip().lower(): v.strip() for k, _, v in
                    (ln.partition(":") for ln in lines[1:])}
            n = int(hdrs.get("content-length", "0") or 0)
            while len(buf) < n:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:n], buf[n:]
            with self._lock:
                self.requests.append(f"{method} {target}")
            if not self._answer(c, method, target, hdrs, body):
                return

    def _put(self, c: socket.socket, target: str, body: bytes) -> None:
        """A single PUT (Content-Length framed): stored, stamped with the store's clock
        (this host's + ``clock_skew_s``), as a store does."""
        bucket, _, key = unquote(urlsplit(target).path).lstrip("/").partition("/")
        obj = self.put(bucket, key, body, last_modified=time.time() + self.clock_skew_s)
        _send(c, 200, {"ETag": obj.etag, "Date": email.utils.formatdate(
            time.time() + self.clock_skew_s, usegmt=True)}, b"")

    def _answer(self, c: socket.socket, method: str, target: str, hdrs: dict[str, str],
                body: bytes = b"") -> bool:
        """Send one response; False closes the connection."""
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = unquote(url.path).lstrip("/")
        bucket, _, key = path.partition("/")
        if self._strike("wrong_region"):
            _send(c, 301, {"x-amz-bucket-region": "eu-west-1",
                           "Location": f"https://{bucket}.s3.eu-west-1.amazonaws.com/{key}"},
                  b"" if method == "HEAD" else
                  b"<Error><Code>PermanentRedirect</Code><Message>The bucket you are "
                  b"attempting to access must be addressed using the specified endpoint."
                  b"</Message></Error>", head_only=method == "HEAD")
            return True
        if method == "PUT" and not q:
            self._put(c, target, body)
            return True
        if not key and method == "GET" and q.get("list-type") == "2":
            if self._strike("list_slow_down"):
                _send(c, 503, {}, b"<Error><Code>SlowDown</Code><Message>Please reduce your "
                                  b"request rate.</Message></Error>")
                return True
            return self._list(c, bucket, q)
        obj = self.objects.get((bucket, key))
        if obj is None:
            _send(c, 404, {}, b"<Error><Code>NoSuchKey</Code><Message>no such key</Message>"
                              b"</Error>")
            return True
        match = hdrs.get("if-match")
        if match is not None and match.strip('"') != obj.etag.strip('"'):
            _send(c, 412, {}, b"<Error><Code>PreconditionFailed</Code>"
                              b"<Message>At least one of the pre-conditions you specified did"
                              b" not hold</Message></Error>")
            return True
        extra = {"ETag": obj.etag,
                 "Last-Modified": email.utils.formatdate(obj.last_modified, usegmt=True),
                 "Date": email.utils.formatdate(time.time() + self.clock_skew_s, usegmt=True)}
        if hdrs.get("x-amz-checksum-mode", "").upper() == "ENABLED" and obj.checksums:
            for algo, value in obj.checksums.items():
                extra[f"x-amz-checksum-{algo}"] = value
            extra["x-amz-checksum-type"] = obj.checksum_type
        if method == "HEAD":
            _send(c, 200, {**extra, "Content-Length": str(len(obj.data))}, b"", head_only=True)
            return True
        data = obj.data
        rng = hdrs.get("range")
        if self._strike("info_1xx"):
            c.sendall(b"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n"
                      b"Link: </x>; rel=preload\r\n\r\n")
        if rng is None:
            return self._body(c, 200, extra, data, len(data))
        first, last = (int(x) for x in rng.removeprefix("bytes=").split("-"))
        last = min(last, len(data) - 1)
        body = data[first:last + 1]
        if self._strike("ignored_range"):
            return self._body(c, 200, extra, data, len(data))
        with self._lock:
            new = self.replacement if self.mode == "change_mid_object" else None
            if new is not None:
                self.replacement = None
        if new is not None:   # this answer still has the old bytes; later GETs the new
            self.put(bucket, key, new)
        shown = (first, last)
        if self._strike("wrong_range"):
            shift = len(body) if last + 1 + len(body) <= len(data) else -first
            shown = (first + shift, last + shift)
            body = data[shown[0]:shown[1] + 1]
        if self._strike("long_body"):
            body = data[first:last + 1 + 1024] + b"\0" * 1024
        extra["Content-Range"] = f"bytes {shown[0]}-{shown[1]}/{len(data)}"
        return self._body(c, 206, extra, body, len(body))

    def _body(self, c: socket.socket, status: int, extra: dict[str, str], body: bytes,
              n: int) -> bool:
        if self._strike("te_cl"):
            framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            _send(c, status, {**extra, "Content-Length": str(len(body)),
                              "Transfer-Encoding": "chunked"}, b"", head_only=True)
            c.sendall(framed)
            return True
        if self._strike("short_body"):
            _send(c, status, {**extra, "Content-Length": str(n)}, b"", head_only=True)
            c.sendall(body[: len(body) // 2])
            return False
        if self._strike("slow_trickle"):
            _send(c, status, {**extra, "Content-Length": str(n)}, b"", head_only=True)
            deadline = time.monotonic() + 30
            for i in range(0, len(body), self.trickle_piece):
                if self._stopped.is_set() or time.monotonic() > deadline:
                    return False
                c.sendall(body[i:i + self.trickle_piece])
                time.sleep(self.trickle_pause)
            return True
        _send(c, status, {**extra, "Content-Length": str(n)}, body)
        return True

    def _list(self, c: socket.socket, bucket: str, q: dict[str, str]) -> bool:
        prefix = q.get("prefix", "")
        keys = sorted(k for (b, k) in self.objects if b == bucket and k.startswith(prefix))
        token = q.get("continuation-token")
        start = int(base64.b64decode(token)) if token else 0
        page = keys[start:start + self.page_size]
        nxt = start + len(page)
        if start and self._strike("repeat_key"):
            page = [keys[start - 1], *page]
        truncated = nxt < len(keys)
        token_xml = ""
        if self._strike("repeat_token"):
            truncated, nxt = True, start if token else nxt
            token_xml = f"<NextContinuationToken>{base64.b64encode(b'%d' % nxt).decode()}" \
                        f"</NextContinuationToken>"
        elif self._strike("missing_token"):
            truncated = True
        elif truncated:
            token_xml = f"<NextContinuationToken>{base64.b64encode(b'%d' % nxt).decode()}" \
                        f"</NextContinuationToken>"
        enc = q.get("encoding-type") == "url"   # as S3: keys URL-encoded when asked
        items = "".join(
            f"<Contents><Key>{quote(k) if enc else escape(k)}</Key><Size>{len(self.objects[(bucket, k)].data)}</Size>"
            f"<ETag>{escape(self.objects[(bucket, k)].etag)}</ETag>"
            f"<LastModified>{_iso(self.objects[(bucket, k)].last_modified)}</LastModified>"
            "</Contents>"
            for k in page)
        dtd, key = "", ""
        if self._strike("entity_bomb") or self._strike("utf16_doctype"):
            dtd, key = _DTD_BOMB
        elif self._strike("external_entity"):
            dtd, key = _DTD_FILE
        elif self._strike("small_entity"):
            dtd, key = _DTD_SMALL
        if key:
            items = f"<Contents><Key>{key}</Key><Size>1</Size></Contents>" + items
        if page and self._strike("foreign_key"):   # beside the prefix: 'p/' -> 'p2/...'
            other = (prefix.rstrip("/") + "2/" if prefix else "") + "foreign"
            items = (f"<Contents><Key>{quote(other) if enc else escape(other)}</Key>"
                     f"<Size>{len(self.objects[(bucket, page[0])].data)}</Size></Contents>"
                     + items)
        if page and self._strike("bad_size"):
            sized = f"<Size>{len(self.objects[(bucket, page[0])].data)}</Size>"
            shown = "" if self.bad_size is None else f"<Size>{escape(self.bad_size)}</Size>"
            items = items.replace(sized, shown, 1)
        utf16 = self.mode == "utf16_doctype" and bool(dtd)
        text = (f'<?xml version="1.0" encoding="{"UTF-16" if utf16 else "UTF-8"}"?>{dtd}'
                "<ListBucketResult>"
                + ("<EncodingType>url</EncodingType>" if enc else "")
                + f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                f"<KeyCount>{len(page)}</KeyCount><IsTruncated>{str(truncated).lower()}"
                f"</IsTruncated>{token_xml}{items}</ListBucketResult>")
        xml = text.encode("utf-16") if utf16 else text.encode()
        _send(c, 200, {"Content-Type": "application/xml", "Date": email.utils.formatdate(
            time.time() + self.clock_skew_s, usegmt=True)}, xml)
        return True


_REASONS = {200: "OK", 206: "Partial Content", 404: "Not Found", 412: "Precondition Failed",
            503: "Slow Down"}


def _iso(t: float) -> str:
    """A listing's LastModified: UTC, milliseconds, whole seconds as S3 keeps them."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(int(t)))


def _send(c: socket.socket, status: int, headers: dict[str, str], body: bytes,
          head_only: bool = False) -> None:
    hdrs = dict(headers)
    if not head_only:
        hdrs["Content-Length"] = str(len(body))
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body))
