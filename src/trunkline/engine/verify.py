"""Compare two trees without copying: every missing, extra, resized or changed object.

Why this order of evidence: the cheapest check that can prove equality wins. A local file
is hashed once (CRC32C and MD5 together) and compared with what the store already knows
(the listing's MD5 ETag, then the object's stored CRC32C, full or COMPOSITE, then a
multipart ETag recomputed with the part size that HEAD partNumber=1 reveals, or with the
likely candidates). Only when the store holds nothing comparable (opaque ETags under
SSE-KMS/SSE-C, unknown part sizes) or a cheap check says "different" do we stream the
object and compare CRC32C of its bytes, which is conclusive. Listings are joined as in
sync (``engine.sync.join``), so memory stays bounded; hashing and HEADs run on a thread pool.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import SourceChanged
from ..results import Mismatch
from ..storage import s3_data
from ..storage.s3 import S3Endpoint, S3Error, is_botocore_error
from ..url import Location
from ..wire.connection import Connection
from .integrity import (
    FileDigest,
    MiB,
    b64_to_crc32c,
    candidate_part_sizes,
    etag_kind,
    etags_equal,
    file_digests,
    parts_in_etag,
    single_etag,
)
from .jobs import EndpointCache
from .listing import Entry, Filters, bounded_map, join, listing, prefix_of
from .receive import receive_crc

__all__ = ["Mismatch", "Verdict", "Verifier", "bounded_map", "compare_entries"]

T = TypeVar("T")
R = TypeVar("R")

MAX_CANDIDATES = 8  # multipart part sizes tried before streaming the object instead


@dataclass(frozen=True)
class Verdict:
    """``same`` is None when nothing comparable was found (and streaming was not allowed)."""

    same: bool | None
    how: str


# --------------------------------------------------------------------------- store facts


@dataclass
class _Obj:
    ep: S3Endpoint
    bucket: str
    key: str
    size: int
    etag: str | None
    _head: dict[str, str] | None = field(default=None, repr=False)

    def head(self) -> dict[str, str]:
        """The object's headers (HEAD with checksum mode, over our connections)."""
        if self._head is None:
            h = self.ep.stat(self.bucket, self.key)
            if h is None:
                raise S3Error(404, "NoSuchKey", "the object does not exist", "HEAD", self.key)
            self._head = h.headers
            if h.headers.get("etag"):
                self.etag = h.headers["etag"]
        return self._head

    @property
    def crc(self) -> str | None:
        return self.head().get("x-amz-checksum-crc32c")

    def part1_size(self) -> int | None:
        """Part 1's length (HEAD partNumber=1), where the store supports it."""
        try:
            h = self.ep.stat(self.bucket, self.key, part_number=1)
        except S3Error:
            return None
        n = (h.content_length or 0) if h is not None else 0
        return n if 0 < n < self.size else None

    def stream_crc(self) -> int:
        """CRC32C of the object's bytes, read through (the conclusive, costly check): a
        whole-object GET over our connections, checked by ``s3_data`` like any other."""
        def read(conn: Connection) -> int:
            ans = s3_data.get(self.ep, conn, self.bucket, self.key, self.key,
                              length=self.size, whole=True)
            buf = memoryview(bytearray(min(4 * MiB, max(ans.length, 1))))
            return receive_crc(conn, ans.length, buf)

        try:
            return self.ep.on_connection(read, "GET", self.key)
        except SourceChanged as e:
            raise S3Error(0, "SizeChanged", str(e), "GET", self.key) from None


def _part_sizes(o: _Obj, n: int) -> tuple[list[int], bool]:
    """Part sizes to try for an N-part object, and whether the first one is known."""
    p1 = o.part1_size()
    if p1 is not None:
        return [p1], True
    return candidate_part_sizes(o.size, n, limit=MAX_CANDIDATES), False


# --------------------------------------------------------------------------- comparisons


def local_vs_object(path: str, o: _Obj, *, allow_stream: bool = True) -> Verdict:
    """Does the local file at ``path`` hold the object's bytes? (sizes already equal)

    The file is read once per part size tried (CRC32C and, where an ETag needs it, MD5 in
    the same pass); the whole-file CRC32C falls out of any of them.
    """
    digests: dict[int, FileDigest] = {}

    def dig(ps: int, md5: bool) -> FileDigest:
        d = digests.get(ps)
        if d is None or (md5 and d.part_md5s is None):
            d = digests[ps] = file_digests(path, ps, want_md5=md5)
        return d

    def whole_crc() -> int:
        return next(iter(digests.values())).crc32c if digests else \
            dig(max(o.size, 1), False).crc32c

    etag = o.etag or ""
    if etag_kind(etag) == "md5":
        d = dig(max(o.size, 1), True)
        if etags_equal(etag, single_etag(d.part_md5s[0])):  # type: ignore[index]
            return Verdict(True, "md5")
    crc = o.crc
    etag = o.etag or ""  # HEAD may have refined it
    if crc and "-" not in crc:
        return Verdict(whole_crc() == b64_to_crc32c(crc), "crc32c")
    tail = crc.rsplit("-", 1)[1] if crc and "-" in crc else ""
    n = (int(tail) if tail.isdigit() else None) or parts_in_etag(etag)
    if n:
        sizes, known = _part_sizes(o, n)
        for ps in sizes:
            d = dig(ps, parts_in_etag(etag) is not None)
            if tail:
                if d.composite() == crc:
                    return Verdict(True, f"composite-crc32c/{ps}")
                if known:  # the store's own part boundaries, and still different: proven
                    return Verdict(False, f"composite-crc32c/{ps}")
            if d.part_md5s is not None and etags_equal(d.etag(multipart=True), etag):
                return Verdict(True, f"multipart-etag/{ps}")
    if not allow_stream:
        return Verdict(None, "no comparable checksum")
    return Verdict(o.stream_crc() == whole_crc(), "stream-crc32c")


def object_vs_object(a: _Obj, b: _Obj, *, allow_stream: bool = True) -> Verdict:
    """Do two objects hold the same bytes? (sizes already equal)"""
    if a.etag and b.etag and etag_kind(a.etag) != "opaque" and etags_equal(a.etag, b.etag):
        return Verdict(True, "etag")
    ca, cb = a.crc, b.crc
    if ca and cb:
        if "-" not in ca and "-" not in cb:
            return Verdict(b64_to_crc32c(ca) == b64_to_crc32c(cb), "crc32c")
        if ca == cb:
            return Verdict(True, "composite-crc32c")
    if not allow_stream:
        return Verdict(None, "no comparable checksum")
    return Verdict(a.stream_crc() == b.stream_crc(), "stream-crc32c")


def local_vs_local(pa: str, pb: str) -> Verdict:
    da = file_digests(pa, 64 * MiB, want_md5=False)
    db = file_digests(pb, 64 * MiB, want_md5=False)
    return Verdict(da.crc32c == db.crc32c, "crc32c")


def _side(loc: Location, e: Entry, eps: EndpointCache) -> str | _Obj:
    if loc.is_local:
        return e.info.path  # type: ignore[attr-defined]
    return _Obj(eps.get(loc.endpoint or "s3"), loc.bucket, prefix_of(loc) + e.rel, e.size,
                e.etag)


def compare_entries(src: Location, dst: Location, s: Entry, d: Entry, eps: EndpointCache,
                    *, allow_stream: bool = True) -> Verdict:
    """Content comparison of two equal-sized entries, whichever sides they live on."""
    a, b = _side(src, s, eps), _side(dst, d, eps)
    if isinstance(a, str) and isinstance(b, str):
        return local_vs_local(a, b)
    if isinstance(a, str):
        return local_vs_object(a, b, allow_stream=allow_stream)  # type: ignore[arg-type]
    if isinstance(b, str):
        return local_vs_object(b, a, allow_stream=allow_stream)
    return object_vs_object(a, b, allow_stream=allow_stream)


# --------------------------------------------------------------------------- the walk


@dataclass
class Verifier:
    """Runs a verify; results accumulate on the instance (the API wraps them)."""

    src: Location
    dst: Location
    eps: EndpointCache
    extra: bool = True
    size_only: bool = False
    filters: Filters | None = None
    workers: int = 16
    on_mismatch: Callable[[Mismatch], None] | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    methods: Counter = field(default_factory=Counter)
    src_objects: int = 0
    dst_objects: int = 0
    compared: int = 0
    seconds: float = 0.0

    def _pairs(self) -> Iterator[tuple[str, Entry | None, Entry | None]]:
        for rel, s, d in join(listing(self.src, self.eps), self.dst,
                              listing(self.dst, self.eps)):
            if self.filters and not self.filters.allows(rel):
                continue
            self.src_objects += s is not None
            self.dst_objects += d is not None
            yield rel, s, d

    def _check(self, item: tuple[str, Entry | None, Entry | None]
               ) -> tuple[Mismatch | None, str | None]:
        rel, s, d = item
        if d is None:
            return Mismatch("missing", rel, "not in destination"), None
        if s is None:
            return (Mismatch("extra", rel, "not in source") if self.extra else None), None
        if s.size != d.size:
            return Mismatch("size", rel, f"source {s.size} bytes, destination {d.size}"), None
        if self.size_only:
            return None, "size"
        try:
            v = compare_entries(self.src, self.dst, s, d, self.eps)
        except (S3Error, OSError, ValueError) as e:
            return Mismatch("error", rel, str(e)), None
        except Exception as e:
            if not is_botocore_error(e):   # a profile or credential source that failed
                raise
            return Mismatch("error", rel, str(e)), None
        if v.same is False:
            return Mismatch("content", rel, f"differs ({v.how})"), v.how
        return None, v.how

    def run(self) -> Verifier:
        t0 = time.monotonic()
        for mm, how in bounded_map(self._check, self._pairs(), self.workers):
            if how is not None:
                self.compared += 1
                self.methods[how.split("/")[0]] += 1
            if mm is not None:
                self.mismatches.append(mm)
                if self.on_mismatch is not None:
                    self.on_mismatch(mm)
        self.seconds = time.monotonic() - t0
        return self
