"""Compare two trees without copying: every missing, extra, resized or changed object.

Why this order of evidence: the cheapest check that can prove equality wins. A local file
is hashed (``file_checksums``, every digest a question needs in one pass) and compared
with what the store already keeps, in whichever algorithm it keeps it: the listing's MD5
ETag, then a full-object CRC32C, CRC32, CRC64NVME, SHA-1 or SHA-256, then a COMPOSITE
value or a multipart ETag recomputed with the part size that HEAD partNumber=1 reveals,
or with the likely candidates. The values mean what ``engine/checksums`` says, the module
``cp`` checks its downloads with. Only when the store holds nothing comparable (opaque
ETags under SSE-KMS/SSE-C, unknown part sizes) or a cheap check says "different" do we
stream the object and compare its bytes, which is conclusive; with ``read=False``
(``--no-read``) such a pair is reported **unverified**, with the reason. Listings are
joined as in sync (``engine.listing.join``), so memory stays bounded; hashing and HEADs
run on a thread pool.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import SourceChanged
from ..reports import Mismatch
from ..results import Skips, Unverified
from ..storage import s3_data
from ..storage.s3 import S3Endpoint, S3Error, is_botocore_error
from ..url import Location
from ..wire.connection import Connection
from .checksums import ALGORITHMS, Expectation, PartDigest, expectation, verdict
from .file_checksums import FileChecksums, part_lengths
from .integrity import (
    MiB,
    bare_etag,
    candidate_part_sizes,
    etag_kind,
    etags_equal,
    file_digests,
    parts_in_etag,
)
from .jobs import EndpointCache
from .listing import Entry, Filters, bounded_map, join, listing, prefix_of
from .receive import receive

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

    def full(self) -> Expectation | None:
        """The store's full-object checksum, of whichever algorithm it keeps."""
        e = expectation(self.head(), None, size=self.size, part_lengths=[self.size],
                        whole=True)
        return e if e.algo is not None and e.parts is None else None

    def composite(self) -> tuple[str, str, int] | None:
        """(algorithm, value, N) of a COMPOSITE checksum ``b64-N`` the store keeps."""
        h = self.head()
        for a in ALGORITHMS:
            v = h.get(f"x-amz-checksum-{a}", "")
            b, _, n = v.rpartition("-")
            if b and n.isdigit():
                return a, b, int(n)
        return None

    def part1_size(self) -> int | None:
        """Part 1's length (HEAD partNumber=1), where the store supports it."""
        try:
            h = self.ep.stat(self.bucket, self.key, part_number=1)
        except S3Error:
            return None
        n = (h.content_length or 0) if h is not None else 0
        return n if 0 < n < self.size else None

    def stream(self, algo: str = "crc32c") -> int | bytes:
        """The digest ``algo`` of the object's bytes, read through (the conclusive, costly
        check): a whole-object GET over our connections, checked by ``s3_data`` like any
        other, received by the one receive loop."""
        def read(conn: Connection) -> int | bytes:
            ans = s3_data.get(self.ep, conn, self.bucket, self.key, self.key,
                              length=self.size, whole=True)
            buf = memoryview(bytearray(min(4 * MiB, max(ans.length, 1))))
            d = None if algo == "crc32c" else PartDigest(algo)
            crc = receive(conn, ans.length, lambda off, left: buf[: min(len(buf), left)],
                          digest=d)
            return crc if d is None else d.value()

        try:
            return self.ep.on_connection(read, "GET", self.key)
        except SourceChanged as e:
            raise S3Error(0, "SizeChanged", str(e), "GET", self.key) from None

    def stream_matches(self, exp: Expectation) -> bool:
        """Whether the object's bytes, read through, match another object's checksum."""
        return verdict(exp, [(self.stream(exp.algo or "crc32c"), self.size)])

    def unverified_reason(self) -> str:
        return expectation(self.head(), self.etag, size=self.size, part_lengths=[self.size],
                           whole=True).reason or "no checksum comparable without reading"


def _part_sizes(o: _Obj, n: int) -> tuple[list[int], bool]:
    """Part sizes to try for an N-part object, and whether the first one is known."""
    p1 = o.part1_size()
    if p1 is not None:
        return [p1], True
    return candidate_part_sizes(o.size, n, limit=MAX_CANDIDATES), False


def _same_b64(a: str, b: str) -> bool:
    """Two stored values, equal as bytes; a value that is not base64 only as text
    (without ``validate``, b64decode drops what is not of its alphabet: "!!" == "??")."""
    try:
        return base64.b64decode(a, validate=True) == base64.b64decode(b, validate=True)
    except ValueError:
        return a == b


# --------------------------------------------------------------------------- comparisons


def local_vs_object(path: str, o: _Obj, *, allow_stream: bool = True) -> Verdict:
    """Does the local file at ``path`` hold the object's bytes? (sizes already equal)

    Every stored value is checked with ``engine/checksums`` (the algorithms ``cp``
    checks on the wire); the file is read once per part size tried, every digest a
    question needs in the same pass.
    """
    f = FileChecksums(path, o.size)
    whole = max(o.size, 1)
    etag = o.etag or ""
    if etag_kind(etag) == "md5":          # the listing's single-PUT MD5: no HEAD needed
        if verdict(Expectation("md5", bare_etag(etag)), f.parts(whole, "md5", "crc32c")):
            return Verdict(True, "md5")
    full = o.full()                       # any full-object checksum proves either way
    if full is not None:
        return Verdict(verdict(full, f.parts(whole, full.algo, "crc32c")), full.algo or "")
    etag = o.etag or ""                   # HEAD may have refined it
    comp = o.composite()
    n = comp[2] if comp else parts_in_etag(etag)
    if n:
        sizes, known = _part_sizes(o, n)
        for ps in sizes:
            if len(part_lengths(o.size, ps)) != n:
                continue
            algos = ([comp[0]] if comp else []) + (["md5"] if parts_in_etag(etag) else [])
            if comp:
                a, value, _ = comp
                same = verdict(Expectation(a, value, parts=n), f.parts(ps, a, *algos))
                if same:
                    return Verdict(True, f"composite-{a}/{ps}")
                if known:  # the store's own part boundaries, and still different: proven
                    return Verdict(False, f"composite-{a}/{ps}")
            if parts_in_etag(etag) and verdict(
                    Expectation("md5", bare_etag(etag).split("-", 1)[0], parts=n),
                    f.parts(ps, "md5", *algos)):
                return Verdict(True, f"multipart-etag/{ps}")
    if not allow_stream:
        return Verdict(None, o.unverified_reason())
    return Verdict(o.stream() == f.whole_crc32c(), "stream-crc32c")


def object_vs_object(a: _Obj, b: _Obj, *, allow_stream: bool = True) -> Verdict:
    """Do two objects hold the same bytes? (sizes already equal)"""
    if a.etag and b.etag and etag_kind(a.etag) != "opaque" and etags_equal(a.etag, b.etag):
        return Verdict(True, "etag")
    fa, fb = a.full(), b.full()
    if fa is not None and fb is not None and fa.algo == fb.algo:
        return Verdict(_same_b64(fa.value, fb.value), fa.algo or "")
    ca, cb = a.composite(), b.composite()
    if ca is not None and ca == cb:
        return Verdict(True, f"composite-{ca[0]}")
    if not allow_stream:
        return Verdict(None, f"{b.key}: {b.unverified_reason()}" if fb is None else
                       f"{a.key}: {a.unverified_reason()}")
    # one side keeps a full-object checksum: reading the other side settles it
    if fb is not None:
        return Verdict(a.stream_matches(fb), f"stream-{fb.algo}")
    if fa is not None:
        return Verdict(b.stream_matches(fa), f"stream-{fa.algo}")
    return Verdict(a.stream() == b.stream(), "stream-crc32c")


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
    read: bool = True          # read objects back where no stored checksum settles a pair
    on_mismatch: Callable[[Mismatch], None] | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    unverified: list[Unverified] = field(default_factory=list)
    methods: Counter = field(default_factory=Counter)
    skipped: Skips = field(default_factory=Skips)   # source names that are not files
    src_objects: int = 0
    dst_objects: int = 0
    compared: int = 0
    seconds: float = 0.0

    def _pairs(self) -> Iterator[tuple[str, Entry | None, Entry | None]]:
        for rel, s, d in join(listing(self.src, self.eps, self.skipped), self.dst,
                              listing(self.dst, self.eps), src_loc=self.src):
            if self.filters and not self.filters.allows(rel):
                continue
            self.src_objects += s is not None
            self.dst_objects += d is not None
            yield rel, s, d

    def _check(self, item: tuple[str, Entry | None, Entry | None]
               ) -> tuple[Mismatch | Unverified | None, str | None]:
        rel, s, d = item
        if d is None:
            return Mismatch("missing", rel, "not in destination"), None
        if s is None:   # under a source name that is not a file: listed as skipped (as
            extra = self.extra and not self.skipped.covers(rel)   # sync --delete keeps it)
            return (Mismatch("extra", rel, "not in source") if extra else None), None
        if s.size != d.size:
            return Mismatch("size", rel, f"source {s.size} bytes, destination {d.size}"), None
        if self.size_only:
            return None, "size"
        try:
            v = compare_entries(self.src, self.dst, s, d, self.eps, allow_stream=self.read)
        except (S3Error, OSError, ValueError) as e:
            return Mismatch("error", rel, str(e)), None
        except Exception as e:
            if not is_botocore_error(e):   # a profile or credential source that failed
                raise
            return Mismatch("error", rel, str(e)), None
        if v.same is None:
            return Unverified(rel, v.how), None
        if v.same is False:
            return Mismatch("content", rel, f"differs ({v.how})"), v.how
        return None, v.how

    def run(self) -> Verifier:
        t0 = time.monotonic()
        for mm, how in bounded_map(self._check, self._pairs(), self.workers):
            if how is not None:
                self.compared += 1
                self.methods[how.split("/")[0]] += 1
            if isinstance(mm, Unverified):
                self.unverified.append(mm)
            elif mm is not None:
                self.mismatches.append(mm)
                if self.on_mismatch is not None:
                    self.on_mismatch(mm)
        self.seconds = time.monotonic() - t0
        return self
