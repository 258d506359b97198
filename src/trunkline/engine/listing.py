"""Listings, filters and the listing join, shared by ``sync`` and ``verify``.

Why a module of its own: ``sync`` (what to copy) and ``verify`` (what differs) walk the
same two listings the same way: entries by relative name, rclone-style filters, a
streaming join of source and destination that never holds a listing in memory, and a
bounded thread-pool map for the per-pair checks. With that in ``sync.py`` and the map in
``verify.py``, each imported the other (a cycle); here both import one lower module.

The join never holds a listing in memory. It is one merge of the two listings in
whatever order each comes: a local folder is walked in S3 key order by construction, a
store lists in its own (AWS in key order, SeaweedFS by directory). What the merge passes
without a partner, where the other side may still name it, waits in a temporary on-disk
index, where that side's entry, arriving out of order, finds it (see ``_merge``).

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
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from ..errors import UsageError
from ..storage import local
from ..storage.s3 import ObjectInfo
from ..url import Location, LocationError
from .jobs import EndpointCache, is_folder_key
from .journal_index import disk_errors

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


def listing(loc: Location, eps: EndpointCache,
            on_skip: Callable[[str, str], None] | None = None) -> Iterator[Entry]:
    """The folder or prefix ``loc`` as Entries in S3 key order (a missing folder is empty);
    names that are not files go to ``on_skip``: a local folder's (``local.walk``), a
    prefix's keys ending in '/' that hold bytes (``is_folder_key``)."""
    if loc.is_local:
        if not os.path.isdir(loc.path):
            return
        for f in local.walk(loc.path, on_skip):
            yield Entry(f.rel, f.size, f.mtime, None, f)
        return
    from ..storage.capabilities import is_probe_key

    prefix = prefix_of(loc)
    for o in eps.get(loc.endpoint or "s3").list(loc.bucket, prefix):
        if is_folder_key(o.key, o.size, o.key[len(prefix):], on_skip):
            continue
        if not prefix and is_probe_key(o.key):
            continue  # a capability probe's own objects, gone again in a second
        yield Entry(o.key[len(prefix):], o.size, o.mtime, o.etag, o)


def _key(rel: str) -> bytes:
    """S3's listing order: UTF-8 bytes (a local name that is not UTF-8 keeps its bytes)."""
    return rel.encode("utf-8", "surrogateescape")


class _Index:
    """Entries of one listing in a temporary SQLite database: looked up by key, then walked
    for leftovers.

    Why on disk: how far two stores' orders disagree is not bounded (SeaweedFS lists
    'b/c' before 'b-x', by directory), so what waits for a partner can be most of a
    listing. SQLite keeps memory bounded by its page cache (1,000,000 keys: 48 MiB peak
    RSS, ~28 µs/key to index and look up; measured). Names are kept as their bytes: a
    local file name that is not UTF-8 is a name too, and the bytes sort in S3's order.
    """

    def __init__(self, make: Callable[[str, int, float | None, str | None], Entry]):
        self.make = make
        # "": SQLite's private temporary database, spilled to an unlinked temp file once
        # past the page cache and gone when closed, even if the process is killed
        self.con = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=OFF")
        self.con.execute("PRAGMA synchronous=OFF")
        self.con.execute("PRAGMA cache_size=-16384")  # 16 MiB
        self.con.execute("CREATE TABLE d (rel BLOB PRIMARY KEY, size INTEGER, mtime REAL, "
                         "etag TEXT, seen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
        # where its spilled pages go (SQLite reads $SQLITE_TMPDIR, then $TMPDIR, then /tmp)
        self.where = f"in {os.environ.get('SQLITE_TMPDIR') or tempfile.gettempdir()}"

    def add(self, batch: list[Entry]) -> None:
        """Index ``batch`` (one transaction) and empty it."""
        if not batch:
            return
        with disk_errors("listing index", self.where):
            self.con.execute("BEGIN")
            try:
                self.con.executemany("INSERT OR REPLACE INTO d (rel, size, mtime, etag) "
                                     "VALUES (?, ?, ?, ?)",
                                     [(_key(e.rel), e.size, e.mtime, e.etag) for e in batch])
                self.con.execute("COMMIT")
            except BaseException:
                if self.con.in_transaction:
                    self.con.execute("ROLLBACK")
                raise
        batch.clear()

    def take(self, rels: list[str]) -> dict[str, Entry]:
        """The entries of ``rels`` that exist, marked as seen."""
        out: dict[str, Entry] = {}
        for i in range(0, len(rels), 500):
            chunk = [_key(r) for r in rels[i:i + 500]]
            q = ",".join("?" * len(chunk))
            with disk_errors("listing index", self.where):
                rows = self.con.execute(f"UPDATE d SET seen = 1 WHERE rel IN ({q}) "
                                        "RETURNING rel, size, mtime, etag", chunk).fetchall()
            for rel, size, mtime, etag in rows:
                name = rel.decode("utf-8", "surrogateescape")
                out[name] = self.make(name, size, mtime, etag)
        return out

    def unseen(self) -> Iterator[Entry]:
        cur = self.con.execute("SELECT rel, size, mtime, etag FROM d WHERE seen = 0 ORDER BY rel")
        while True:
            with disk_errors("listing index", self.where):   # its pages may be on disk
                rows = cur.fetchmany(1000)
            if not rows:
                return
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


def join(src: Iterable[Entry], dst_loc: Location, dst: Iterable[Entry], *,
         src_loc: Location) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """Full outer join of two listings: (rel, src or None, dst or None), each name once.

    One merge of the two listings, whatever order each comes in: pairs come out as the
    merge meets them. An entry without a partner so far comes out at once where the other
    side cannot name it later (that side is a local walk, in key order by construction, or
    it has ended); otherwise it waits in an on-disk index, where the other side's entry of
    that name, arriving out of order, finds it. What still waits at the end comes last.
    Memory: a batch of waiting entries and SQLite's page cache.
    """
    return _merge(_Side(src, src_loc), _Side(dst, dst_loc))


class _Side:
    """One listing as the merge walks it: its head, the highest key it has given, and what
    it gave without a partner yet (indexed only where that is needed: lazily)."""

    __slots__ = ("it", "loc", "sorted", "head", "hk", "top", "waiting", "index", "done")

    def __init__(self, entries: Iterable[Entry], loc: Location):
        self.it = iter(entries)
        self.loc = loc
        self.sorted = loc.is_local        # a local walk: key order, checked as it comes
        self.top: bytes | None = None
        self.waiting: list[Entry] = []
        self.index: _Index | None = None
        self.head: Entry | None = None
        self.hk = b""
        self.done = False
        self.next()

    def next(self) -> None:
        """Done with the head: the next entry becomes it."""
        if self.head is not None and (self.top is None or self.hk > self.top):
            self.top = self.hk
        e = next(self.it, None)
        if e is None:
            self.head, self.done = None, True
            return
        k = _key(e.rel)
        if self.sorted and self.top is not None and k <= self.top:
            raise RuntimeError(f"the local listing is not in key order at {e.rel!r}")
        self.head, self.hk = e, k

    def keep(self, e: Entry) -> None:
        """``e`` has no partner yet, and the other side may still name it."""
        self.waiting.append(e)
        if len(self.waiting) >= 1000:
            self._flush()

    def _flush(self) -> None:
        if self.waiting:
            if self.index is None:
                self.index = _Index(_maker(self.loc))
            self.index.add(self.waiting)

    def take(self, rel: str) -> Entry | None:
        """This side's kept entry named ``rel``, if any (it has a partner now)."""
        self._flush()
        return self.index.take([rel]).get(rel) if self.index is not None else None

    def unmatched(self) -> Iterator[Entry]:
        self._flush()
        if self.index is not None:
            yield from self.index.unseen()

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


def _merge(a: _Side, b: _Side) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """The join's merge: the smaller head goes first, equal heads are a pair.

    Why it is exact in any order: an entry is looked for among the other side's kept ones
    when its key is at most the highest key that side has given (the partner may have
    come already, and was then kept), and it is given out alone only where the partner
    cannot come later (that side ended, or is sorted and already past the key); every
    other entry is kept. So two stores that both list in key order (AWS) or in the same
    order (two SeaweedFS) join as a plain merge: an unchanged ``sync`` indexes nothing,
    where indexing the destination first cost ~15 µs a key. SeaweedFS against a
    key-ordered side keeps only what the orders disagree on.
    """
    try:
        while not (a.done or b.done):
            if a.hk == b.hk:
                yield a.head.rel, a.head, b.head  # type: ignore[union-attr]
                a.next()
                b.next()
                continue
            x, y = (a, b) if a.hk < b.hk else (b, a)
            e = x.head
            assert e is not None
            partner = y.take(e.rel) if y.top is not None and x.hk <= y.top else None
            if partner is not None or y.sorted:
                yield (e.rel, e, partner) if x is a else (e.rel, partner, e)
            else:
                x.keep(e)
            x.next()
        # one side ended: what the other kept has no partner now, and comes first (for a
        # local side that keeps key order); then its rest, each perhaps one the ended
        # side kept; then what the ended side kept and nobody named
        z = b if a.done else a
        w = a if z is b else b
        for e in z.unmatched():
            yield (e.rel, e, None) if z is a else (e.rel, None, e)
        while not z.done:
            e = z.head
            assert e is not None
            partner = w.take(e.rel) if w.top is not None and z.hk <= w.top else None
            yield (e.rel, e, partner) if z is a else (e.rel, partner, e)
            z.next()
        for e in w.unmatched():
            yield (e.rel, e, None) if w is a else (e.rel, None, e)
    finally:
        a.close()
        b.close()


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
