"""Listings, filters and the listing join, shared by ``sync`` and ``verify``.

Why a module of its own: ``sync`` (what to copy) and ``verify`` (what differs) walk the
same two listings the same way: entries by relative name, rclone-style filters, a
streaming join of source and destination that never holds a listing in memory, and a
bounded thread-pool map for the per-pair checks. With that in ``sync.py`` and the map in
``verify.py``, each imported the other (a cycle); here both import one lower module.

The join never holds a listing in memory, and copies start while the source is still
being listed. A local folder is walked in S3 key order by construction, so it is merged
with the other side (the store's listing, in whatever order the store lists) in one
pass; what the merge passes unmatched waits in a temporary on-disk index, where a store
that lists out of key order (SeaweedFS lists by directory) still finds it. Between two
stores neither order can be trusted: the destination's listing streams into the index
first, then the source streams through it in batches (see ``_Index``).

Filters follow rclone: ``--include``/``--exclude`` rules are tried in the order given and
the first that matches decides; when any ``--include`` is given, a key matched by no rule
is excluded. A pattern without a leading '/' matches at any depth ("*.jpg" matches
"a/b.jpg"); a leading '/' anchors it at the root; '*' and '?' stop at '/', '**' crosses
it; "dir/" matches everything under dir; ``{a,b}`` alternates and ``[...]`` is a class.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from ..errors import UsageError
from ..storage import local
from ..storage.s3 import ObjectInfo
from ..url import Location, LocationError
from .jobs import EndpointCache

__all__ = ["Entry", "Filters", "bounded_map", "check_locations", "join", "listing",
           "prefix_of"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed object or file, by its name relative to the synced folder/prefix."""

    rel: str
    size: int
    mtime: float | None
    etag: str | None
    info: object          # the LocalFile or ObjectInfo it came from (jobs need it)


# --------------------------------------------------------------------------- filters


def _glob_regex(pattern: str) -> str:
    anchored = pattern.startswith("/")
    p = pattern.lstrip("/")
    under = p.endswith("/")
    p = p.rstrip("/")
    out, i, depth = [], 0, 0
    while i < len(p):
        c = p[i]
        if p.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = p.find("]", i + 2 if p.startswith("[!", i) or p.startswith("[]", i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = p[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "{":
            out.append("(?:")
            depth += 1
        elif c == "}" and depth:
            out.append(")")
            depth -= 1
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < len(p):
            i += 1
            out.append(re.escape(p[i]))
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise UsageError(f"unbalanced '{{' in filter {pattern!r}")
    head = "" if anchored else "(?:.*/)?"
    tail = "/.*" if under else ""
    return f"{head}{''.join(out)}{tail}"


class Filters:
    """Ordered include/exclude rules over relative names (rclone's semantics, see above)."""

    def __init__(self, rules: Iterable[tuple[bool, str]] = ()):
        self.rules: list[tuple[bool, re.Pattern[str], str]] = []
        for include, pattern in rules:
            if not pattern:
                raise UsageError("empty filter pattern")
            self.rules.append((include, re.compile(_glob_regex(pattern), re.S), pattern))
        self.default = not any(inc for inc, _, _ in self.rules)

    @classmethod
    def of(cls, include: Iterable[str] = (), exclude: Iterable[str] = (),
           ordered: Iterable[tuple[bool, str]] | None = None) -> Filters:
        """From ordered rules, or (API convenience) excludes first, then includes."""
        if ordered is not None:
            return cls(ordered)
        return cls([(False, g) for g in exclude] + [(True, g) for g in include])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows(self, rel: str) -> bool:
        for include, rx, _ in self.rules:
            if rx.fullmatch(rel):
                return include
        return self.default


# --------------------------------------------------------------------------- listing


def prefix_of(loc: Location) -> str:
    """The key prefix a folder-like S3 location stands for ('' or ending in '/')."""
    return loc.key if (loc.key == "" or loc.key.endswith("/")) else loc.key + "/"


def check_locations(src: Location, dst: Location) -> None:
    """Usage errors of sync/verify, raised before anything is listed."""
    if src.is_local and dst.is_local:
        raise LocationError("both source and destination are local; use rsync(1)")
    for loc, what in ((src, "source"), (dst, "destination")):
        if loc.has_glob:
            raise LocationError(f"the {what} must be a folder or prefix, not a glob: {loc}")
        if loc.is_local and os.path.exists(loc.path) and not os.path.isdir(loc.path):
            raise LocationError(f"the {what} must be a folder, not a file: {loc.path}")
    if src.is_local and not os.path.isdir(src.path):
        raise LocationError(f"no such directory: {src.path}")
    # one inside the other: the source listing would see the copies it causes
    if src.is_local or dst.is_local:
        return
    if (src.endpoint, src.bucket) == (dst.endpoint, dst.bucket):
        a, b = prefix_of(src), prefix_of(dst)
        if a.startswith(b) or b.startswith(a):
            raise LocationError(f"source and destination overlap: {src} and {dst}")


def listing(loc: Location, eps: EndpointCache) -> Iterator[Entry]:
    """The folder or prefix ``loc`` as Entries in S3 key order (a missing folder is empty)."""
    if loc.is_local:
        if not os.path.isdir(loc.path):
            return
        for f in local.walk(loc.path):
            yield Entry(f.rel, f.size, f.mtime, None, f)
        return
    from ..storage.capabilities import is_probe_key

    prefix = prefix_of(loc)
    for o in eps.get(loc.endpoint or "s3").list(loc.bucket, prefix):
        if o.key.endswith("/"):
            continue  # folder markers are not files
        if not prefix and is_probe_key(o.key):
            continue  # a capability probe's own objects, gone again in a second
        yield Entry(o.key[len(prefix):], o.size, o.mtime, o.etag, o)


def _key(rel: str) -> bytes:
    """S3's listing order: UTF-8 bytes (a local name that is not UTF-8 keeps its bytes)."""
    return rel.encode("utf-8", "surrogateescape")


class _Index:
    """One listing in a temporary SQLite database: looked up by key, then walked for leftovers.

    Why not a pure merge-join: stores disagree on listing order. AWS lists keys in UTF-8
    byte order, SeaweedFS in directory-tree order ('b/c' before 'b-x'), and the difference
    cannot be repaired with a bounded buffer. A disk index takes any order and keeps
    memory bounded by SQLite's page cache (1,000,000 keys: 48 MiB peak RSS, ~28 µs/key to
    index and look up; measured). Names are kept as their bytes: a local file name that is
    not UTF-8 is a name too, and the bytes sort in S3's order.
    """

    def __init__(self, make: Callable[[str, int, float | None, str | None], Entry],
                 entries: Iterable[Entry] = ()):
        self.make = make
        self.count = 0
        # "": SQLite's private temporary database, spilled to an unlinked temp file once
        # past the page cache and gone when closed, even if the process is killed
        self.con = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=OFF")
        self.con.execute("PRAGMA synchronous=OFF")
        self.con.execute("PRAGMA cache_size=-16384")  # 16 MiB
        self.con.execute("CREATE TABLE d (rel BLOB PRIMARY KEY, size INTEGER, mtime REAL, "
                         "etag TEXT, seen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
        batch: list[Entry] = []
        for e in entries:
            batch.append(e)
            if len(batch) >= 1000:
                self.add(batch)
        self.add(batch)

    def add(self, batch: list[Entry]) -> None:
        """Index ``batch`` (one transaction) and empty it."""
        if not batch:
            return
        self.con.execute("BEGIN")
        self.con.executemany("INSERT OR REPLACE INTO d (rel, size, mtime, etag) "
                             "VALUES (?, ?, ?, ?)",
                             [(_key(e.rel), e.size, e.mtime, e.etag) for e in batch])
        self.con.execute("COMMIT")
        self.count += len(batch)
        batch.clear()

    def take(self, rels: list[str]) -> dict[str, Entry]:
        """The entries of ``rels`` that exist, marked as seen."""
        out: dict[str, Entry] = {}
        for i in range(0, len(rels), 500):
            chunk = [_key(r) for r in rels[i:i + 500]]
            q = ",".join("?" * len(chunk))
            for rel, size, mtime, etag in self.con.execute(
                    f"UPDATE d SET seen = 1 WHERE rel IN ({q}) RETURNING rel, size, mtime, etag",
                    chunk):
                name = rel.decode("utf-8", "surrogateescape")
                out[name] = self.make(name, size, mtime, etag)
        return out

    def unseen(self) -> Iterator[Entry]:
        cur = self.con.execute("SELECT rel, size, mtime, etag FROM d WHERE seen = 0 ORDER BY rel")
        while rows := cur.fetchmany(1000):
            for rel, size, mtime, etag in rows:
                yield self.make(rel.decode("utf-8", "surrogateescape"), size, mtime, etag)

    def close(self) -> None:
        self.con.close()


def _maker(loc: Location) -> Callable[[str, int, float | None, str | None], Entry]:
    """Rebuilds an indexed Entry with the LocalFile/ObjectInfo that jobs and verify need."""
    if loc.is_local:
        root = loc.path
        return lambda rel, size, mtime, etag: Entry(
            rel, size, mtime, etag,
            local.LocalFile(rel, os.path.join(root, *rel.split("/")), size, mtime or 0.0))
    prefix = prefix_of(loc)
    return lambda rel, size, mtime, etag: Entry(
        rel, size, mtime, etag, ObjectInfo(prefix + rel, size, etag, mtime))


def join(src: Iterable[Entry], dst_loc: Location, dst: Iterable[Entry], batch: int = 256,
         src_loc: Location | None = None) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """Full outer join of two listings: (rel, src or None, dst or None).

    A local folder is walked in S3 key order (``local.walk``), so it is merged with the
    other side in one pass. A local destination: source pairs in source order, then the
    destination's own. A local source (``src_loc``) against a store: pairs in the store's
    order, then the source's own. Two stores: neither order can be trusted, so the
    destination is indexed on disk first and the source streams through it (source order,
    then the destination's own). Memory: one batch and one page.
    """
    if dst_loc.is_local:
        return _merge_join(src, dst_loc, dst)
    if src_loc is not None and src_loc.is_local:
        return ((rel, s, d) for rel, d, s in _merge_join(dst, src_loc, src))
    return _index_join(src, dst_loc, dst, batch)


def _merge_join(driver: Iterable[Entry], ordered_loc: Location, ordered: Iterable[Entry]
                ) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """(rel, driver's, ordered's): ``ordered`` (a local walk) in key order, ``driver`` in
    any; a merge, and an index of what it passed. Driver pairs in driver order, then the
    ordered side's own.

    Why: an unchanged ``sync`` is mostly this join; indexing a whole listing first cost
    ~15 µs a key in SQLite, a merge step well under one. A driver in key order (AWS)
    meets each ordered entry at the merge. A driver out of order (SeaweedFS lists 'b/c'
    before 'b-x') asks for a key the merge already passed: every ordered key below the
    highest driver key so far has been passed, matched or put into the index unmatched,
    so the index holds it if the ordered side has it.
    """
    passed = _Index(_maker(ordered_loc))   # ordered entries passed unmatched
    waiting: list[Entry] = []              # of them, not yet written to the index
    it = iter(ordered)

    def step(prev: bytes | None) -> tuple[Entry | None, bytes]:
        o = next(it, None)
        if o is None:
            return None, b""
        k = _key(o.rel)
        if prev is not None and k <= prev:
            raise RuntimeError(f"the local listing is not in key order at {o.rel!r}")
        return o, k

    try:
        o, ok = step(None)
        top: bytes | None = None           # the highest driver key so far
        for e in driver:
            ek = _key(e.rel)
            if top is not None and ek <= top:
                passed.add(waiting)
                yield e.rel, e, passed.take([e.rel]).get(e.rel)
                continue
            top = ek
            while o is not None and ok < ek:
                waiting.append(o)
                if len(waiting) >= 1000:
                    passed.add(waiting)
                o, ok = step(ok)
            if o is not None and ok == ek:
                yield e.rel, e, o
                o, ok = step(ok)
            else:
                yield e.rel, e, None
        passed.add(waiting)
        for p in passed.unseen():
            yield p.rel, None, p
        while o is not None:
            yield o.rel, None, o
            o, ok = step(ok)
    finally:
        passed.close()


def _index_join(src: Iterable[Entry], dst_loc: Location, dst: Iterable[Entry], batch: int
                ) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """The join against a destination in any order: the destination indexed on disk
    first, then the source streamed through it in batches (source order)."""
    idx = _Index(_maker(dst_loc), dst)
    try:
        pending: list[Entry] = []

        def flush() -> Iterator[tuple[str, Entry | None, Entry | None]]:
            found = idx.take([e.rel for e in pending])
            for e in pending:
                yield e.rel, e, found.get(e.rel)
            pending.clear()

        for e in src:
            pending.append(e)
            if len(pending) >= batch:
                yield from flush()
        yield from flush()
        for d in idx.unseen():
            yield d.rel, None, d
    finally:
        idx.close()


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                window: int | None = None) -> Iterator[R]:
    """``map`` on a thread pool, results in input order, at most ``window`` in flight
    (so a listing of millions is consumed as fast as it is checked, never held)."""
    window = window or workers * 4
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tl-verify") as ex:
        pending: deque = deque()
        for it in items:
            pending.append(ex.submit(fn, it))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
