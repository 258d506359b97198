"""The everyday verbs on a store: ``ls``, ``du``, ``rm``, ``mb`` — what a user types before
and after moving a dataset, so that no second tool needs to stay open.

Every verb streams the listing (ListObjectsV2 page by page): memory stays flat whatever
the number of keys, and the listing guards of the control plane apply to all of them.
Addresses and endpoints follow ``cp``: ``s3://bucket/prefix`` or ``NAME:bucket/prefix``.
"""

from __future__ import annotations

import errno
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..engine.jobs import EndpointCache
from ..storage.s3 import ObjectInfo, S3Endpoint
from ..url import Location, LocationError, glob_base, parse_location


def _remote(url: str | Location, verb: str) -> Location:
    loc = parse_location(url) if isinstance(url, str) else url
    if loc.is_local:
        raise LocationError(f"{verb} takes s3://bucket[/prefix] or NAME:bucket[/prefix], "
                            f"not a local path ({loc})")
    return loc


def _endpoint(loc: Location, eps: EndpointCache | None) -> S3Endpoint:
    return (eps or EndpointCache()).get(loc.endpoint or "s3")


def etag_kind(etag: str | None) -> str:
    """What an ETag can prove: ``md5`` (single-part PUT), ``multipart:N``, or ``opaque``."""
    e = (etag or "").strip('"')
    if len(e) == 32 and all(c in "0123456789abcdef" for c in e.lower()):
        return "md5"
    head, sep, n = e.rpartition("-")
    if sep and n.isdigit() and len(head) == 32:
        return f"multipart:{n}"
    return "opaque" if e else "none"


def folder_prefix(key: str) -> str:
    """A recursive verb's prefix: ``data`` means the folder ``data/``, as for ``cp -r``, so
    that ``rm -r s3://b/data`` can never reach ``s3://b/database/``."""
    return key if key == "" or key.endswith("/") else key + "/"


def _matching(ep: S3Endpoint, loc: Location, recursive: bool) -> Iterator[ObjectInfo]:
    """Objects a verb acts on: a glob's matches, everything under a prefix (recursive),
    or the listing one level down ('/' as delimiter), as ``aws s3 ls`` shows it."""
    if loc.has_glob:
        base = glob_base(loc.key)
        for o in ep.list(loc.bucket, base):
            if fnmatch.fnmatchcase(o.key, loc.key):
                yield o
        return
    if recursive:
        yield from ep.list(loc.bucket, folder_prefix(loc.key))
        return
    yield from ep.list(loc.bucket, loc.key, delimiter="/")


def ls(url: str | Location, *, recursive: bool = False,
       eps: EndpointCache | None = None) -> Iterator[ObjectInfo]:
    """Objects (and, without ``recursive``, common prefixes) under ``url``, streamed."""
    loc = _remote(url, "ls")
    return _matching(_endpoint(loc, eps), loc, recursive)


@dataclass
class DuReport:
    """Objects and bytes under a prefix; with depth 1, per first-level prefix below it."""

    url: str
    objects: int = 0
    bytes: int = 0
    groups: dict[str, list[int]] = field(default_factory=dict)  # name -> [objects, bytes]

    def to_dict(self) -> dict:
        return {"url": self.url, "objects": self.objects, "bytes": self.bytes,
                "groups": [{"prefix": k, "objects": v[0], "bytes": v[1]}
                           for k, v in sorted(self.groups.items())]}


def du(url: str | Location, *, depth: int = 0, eps: EndpointCache | None = None) -> DuReport:
    """Sum the listing under ``url``. Memory: one counter per first-level prefix."""
    if depth not in (0, 1):
        raise LocationError("du --depth takes 0 or 1")
    loc = _remote(url, "du")
    rep = DuReport(str(loc))
    base = glob_base(loc.key) if loc.has_glob else folder_prefix(loc.key)
    for o in _matching(_endpoint(loc, eps), loc, recursive=True):
        rep.objects += 1
        rep.bytes += o.size
        if depth:
            rest = o.key[len(base):]
            name = rest.split("/", 1)[0] + "/" if "/" in rest else "."
            g = rep.groups.setdefault(name, [0, 0])
            g[0] += 1
            g[1] += o.size
    return rep


@dataclass
class RmResult:
    """What ``rm`` deleted (or, with ``dry_run``, would delete), and what it could not."""

    url: str
    dry_run: bool
    deleted: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"url": self.url, "dry_run": self.dry_run, "deleted": self.deleted,
                "bytes": self.bytes, "ok": self.ok,
                "failures": [{"key": k, "error": e} for k, e in self.failures]}


def rm(url: str | Location, *, recursive: bool = False, dry_run: bool = False,
       force: bool = False, on_deleted: Callable[[ObjectInfo], None] | None = None,
       eps: EndpointCache | None = None) -> RmResult:
    """Delete one object, a glob's matches, or (``recursive``) everything under a prefix,
    in DeleteObjects batches of 1000, several at once (``S3Endpoint.delete_batches``)
    while the listing goes on. A bucket root needs ``force``: one mistyped
    ``rm -r s3://bucket`` must not empty a bucket. ``on_deleted`` sees each deleted (or,
    dry, each doomed) object as its batch completes."""
    loc = _remote(url, "rm")
    if not loc.has_glob and not recursive and (loc.key == "" or loc.key.endswith("/")):
        raise LocationError(f"{loc} names a prefix: use rm -r to delete what is under it")
    if recursive and loc.key.strip("/") == "" and not force:
        raise LocationError(f"refusing to delete everything in bucket {loc.bucket!r} "
                            "without --force")
    ep = _endpoint(loc, eps)
    res = RmResult(str(loc), dry_run)
    if not loc.has_glob and not recursive:
        info = ep.head(loc.bucket, loc.key)
        if info is None:
            res.failures.append((loc.key, "NoSuchKey: the object does not exist"))
            return res
        objects: Iterator[ObjectInfo] = iter([info])
    else:
        objects = _matching(ep, loc, recursive=True)

    def count(batch: list[ObjectInfo], done: set[str]) -> None:
        for o in batch:
            if o.key in done:
                res.deleted += 1
                res.bytes += o.size
                if on_deleted:
                    on_deleted(o)

    if dry_run:
        for o in objects:
            count([o], {o.key})
        return res
    for batch, done, errors in ep.delete_batches(loc.bucket, objects, lambda o: o.key):
        res.failures.extend(errors)
        count(batch, done)
    return res


def mb(url: str | Location, *, eps: EndpointCache | None = None) -> str:
    """Create the bucket of ``url``; -> its name."""
    loc = _remote(url, "mb")
    if loc.key.strip("/"):
        raise LocationError(f"mb takes a bucket, not a key ({loc})")
    _endpoint(loc, eps).create_bucket(loc.bucket)
    return loc.bucket


# --- cat --------------------------------------------------------------------------------

CAT_PART = 8 * 2**20
CAT_CONNECTIONS = 8


@dataclass
class CatResult:
    """What ``cat`` wrote, and how the bytes were checked against the store."""

    url: str
    bytes: int
    verified: str   # "crc32c", "md5" or "unverified" (the store kept nothing comparable)


def _write_all(out: BinaryIO, data: memoryview) -> None:
    """All of ``data`` to ``out``. A buffered stream returns a short count, without an
    error, when the system call took less (a disk that filled, a pipe whose reader left):
    written once, a full disk left a truncated file and exit 0. Writing the rest meets
    the error itself (ENOSPC, EPIPE)."""
    while len(data):
        n = out.write(data)
        if not n:
            raise OSError(errno.EIO, "the output took no bytes")
        data = data[n:]


def cat(url: str | Location, out: BinaryIO, *, part_size: int = CAT_PART,
        connections: int = CAT_CONNECTIONS, eps: EndpointCache | None = None) -> CatResult:
    """Stream one object to ``out`` through the owned data path: ranged GETs on up to
    ``connections`` connections in parallel, written in order, at most ``connections + 1``
    parts in memory. The bytes are checked as they pass: CRC32C of the parts combined and
    compared with the store's full-object CRC32C, else the MD5 of a single-part ETag; a
    mismatch raises ``IntegrityError`` (what was written cannot be taken back, so the
    caller must fail loudly). The object is pinned by its ETag: a part that comes back from
    another version fails the copy (``SourceChanged``)."""
    import hashlib
    import queue
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from ..engine.integrity import crc32c_combine_all
    from ..engine.receive import receive
    from ..errors import IntegrityError, SourceChanged
    from ..storage import s3_data

    loc = _remote(url, "cat")
    if loc.has_glob or loc.key == "" or loc.key.endswith("/"):
        raise LocationError(f"cat takes one object, not a prefix or a glob ({loc})")
    ep = _endpoint(loc, eps)
    head = ep.stat(loc.bucket, loc.key)
    if head is None:
        from ..storage.s3 import S3Error

        raise S3Error(404, "NoSuchKey", "the object does not exist", "HEAD", str(loc))
    size = head.content_length or 0
    etag = head.headers.get("etag")
    store_crc = head.headers.get("x-amz-checksum-crc32c")
    kind = (head.headers.get("x-amz-checksum-type") or "").upper()
    want_crc = None
    if store_crc and "-" not in store_crc and kind != "COMPOSITE":
        try:
            want_crc = s3_data.b64_to_crc32c(store_crc)
        except ValueError:
            want_crc = None
    md5 = hashlib.md5(usedforsecurity=False) if etag_kind(etag) == "md5" else None
    name = str(loc)
    part_size = max(1, part_size)
    spans = [(off, min(part_size, size - off)) for off in range(0, size, part_size)]

    # connections + 2 reused part buffers: connections + 1 fetched ahead, one being written.
    # Reused, not allocated per part: freed 8 MiB blocks of many threads' malloc arenas
    # are not given back to the system, and RSS would grow with the object.
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(min(len(spans), connections + 2)):
        free.put(bytearray(min(part_size, size)))

    def fetch(span: tuple[int, int]) -> tuple[bytearray, int]:
        off, n = span
        buf = free.get()
        mv = memoryview(buf)[:n]

        def once(conn):
            ans = s3_data.get(ep, conn, loc.bucket, loc.key, name, offset=off, length=n,
                              whole=False, etag=etag, total=size)   # If-Match, exact range
            if etag and ans.etag and ans.etag != etag:
                raise SourceChanged(f"{name} changed during cat (ETag {ans.etag} != {etag})")
            return receive(conn, n, lambda o, left: mv[o:o + min(left, 1 << 20)])

        try:
            return buf, ep.on_connection(once, "GET", name)
        except BaseException:
            free.put(buf)
            raise

    # At most connections + 1 parts are fetched ahead of the writer: the next part is
    # submitted as one is taken, so memory is bounded and no fetch waits on a later one.
    crcs: list[tuple[int, int]] = []
    ahead: deque = deque()
    todo = iter(spans)
    with ThreadPoolExecutor(max_workers=max(1, connections)) as pool:

        def fill() -> None:
            while len(ahead) < connections + 1:
                span = next(todo, None)
                if span is None:
                    return
                ahead.append((span[1], pool.submit(fetch, span)))

        try:
            fill()
            while ahead:
                n, fut = ahead.popleft()
                buf, crc = fut.result()
                fill()
                part = memoryview(buf)[:n]
                _write_all(out, part)
                if md5 is not None:
                    md5.update(part)
                crcs.append((crc, n))
                del part
                free.put(buf)
        except BaseException:
            for _, f in ahead:
                f.cancel()
            raise
    out.flush()
    if want_crc is not None:
        got = crc32c_combine_all(crcs) if crcs else 0
        if got != want_crc:
            raise IntegrityError(f"{name}: CRC32C of the bytes read differs from the store's")
        return CatResult(name, size, "crc32c")
    if md5 is not None:
        if f'"{md5.hexdigest()}"' != etag and md5.hexdigest() != (etag or "").strip('"'):
            raise IntegrityError(f"{name}: MD5 of the bytes read differs from the ETag")
        return CatResult(name, size, "md5")
    return CatResult(name, size, "unverified")
