"""What ``sync`` must do: decide, per joined pair of listings, copy, delete or skip.

The listings, filters and their streaming join are ``listing.py``'s (shared with
``verify``); the decisions themselves (``decide``) are pure; listing and the optional
checksum comparison are the only I/O, and they stay at the edges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..results import Skips
from ..storage.partial import read_stamp, xattrs_supported
from ..storage.s3 import S3Endpoint
from ..url import Location
from .jobs import EndpointCache, ObjectJob, job_for
from .listing import Entry, Filters, bounded_map, check_locations, join, listing, prefix_of

__all__ = ["Action", "Entry", "Filters", "SyncPlanner", "decide", "join", "listing",
           "prefix_of", "check_locations"]


@dataclass(frozen=True, slots=True)
class Action:
    """A decision: ``op`` is copy, delete or skip; ``reason`` says why (for --dry-run)."""

    op: str
    rel: str
    reason: str
    size: int = 0
    src: Entry | None = None


# --------------------------------------------------------------------------- decisions


MODIFY_WINDOW = 1.0  # seconds: S3's LastModified has one-second precision


def decide(direction: str, s: Entry, d: Entry, shift: float = 0.0) -> str | None:
    """Why ``s`` must be copied over ``d`` (both present), or None when unchanged.

    ``direction`` is upload (local->s3), download (s3->local) or s3 (s3->s3). Without
    checksums: size first, then modification times as each direction can trust them
    (an upload's LastModified is the upload time; a download gets the object's time).
    ``shift`` (upload, s3): seconds added to the source's time to read it on the
    destination's clock (``SyncPlanner.clock_shift``).
    """
    if s.size != d.size:
        return "size"
    if s.mtime is None or d.mtime is None:
        return None
    if direction == "upload":
        # LastModified is truncated to whole seconds: compare the local time likewise
        return "newer" if math.floor(s.mtime + shift) > d.mtime else None
    if direction == "download":
        return "mtime" if abs(s.mtime - d.mtime) > MODIFY_WINDOW else None
    if s.etag and d.etag and s.etag.strip('"') == d.etag.strip('"'):
        return None
    return "newer" if s.mtime + shift > d.mtime + MODIFY_WINDOW else None


def _finished_by_us(s: Entry, d: Entry) -> bool:
    """A local file is trusted as a copy of ``s`` only if trunkline finished it from that
    very object (its stamp names the ETag and size). Where the filesystem keeps no xattrs
    there is no stamp to read: size and time decide, as they did."""
    path = getattr(d.info, "path", None)
    if path is None:
        return True
    stamp = read_stamp(path)
    if stamp is None:
        return not xattrs_supported(path)
    if stamp.get("size") != d.size:
        return False
    return not (s.etag and stamp.get("etag")
                and s.etag.strip('"') != str(stamp["etag"]).strip('"'))


class SyncPlanner:
    """Merges the listings and decides each key; counts what it saw.

    ``same_content(s, d) -> bool | None`` is the ``--checksum`` comparison (None: could
    not compare, so copy); it runs in a bounded thread pool, in listing order.
    """

    def __init__(self, src: Location, dst: Location, eps: EndpointCache, *,
                 delete: bool = False, filters: Filters | None = None,
                 same_content: Callable[[Entry, Entry], bool | None] | None = None,
                 workers: int = 16):
        check_locations(src, dst)
        self.src, self.dst, self.eps = src, dst, eps
        self.delete = delete
        self.filters = filters or Filters()
        self.same_content = same_content
        self.workers = workers
        self.direction = "upload" if src.is_local else "download" if dst.is_local else "s3"
        self.src_objects = self.dst_objects = self.excluded = 0
        self.unchanged = self.to_copy = self.to_delete = 0
        self.copy_bytes = 0
        self.skipped = Skips()   # source names that are not files (local.walk)

    def _pairs(self) -> Iterator[tuple[str, Entry | None, Entry | None]]:
        for rel, s, d in join(listing(self.src, self.eps, self.skipped), self.dst,
                              listing(self.dst, self.eps), src_loc=self.src):
            self.src_objects += s is not None
            self.dst_objects += d is not None
            if self.filters and not self.filters.allows(rel):
                self.excluded += 1
                continue
            yield rel, s, d

    def _first_look(self, item: tuple[str, Entry | None, Entry | None]) -> Action:
        rel, s, d = item
        if s is None and self.delete and self.skipped.covers(rel):
            # the source has this name, only not as a file (a symlinked folder, a FIFO):
            # walked past, before this key (listing order), so known here
            return Action("skip", rel, "its source name is not a file (skipped)")
        if s is None:
            return Action("delete" if self.delete else "skip", rel, "not in source")
        if d is None:
            return Action("copy", rel, "new", s.size, s)
        why = decide(self.direction, s, d, self.clock_shift())
        if why is None and self.direction == "download" and not _finished_by_us(s, d):
            why = "not finished by trunkline"
        if why is None and self.same_content is not None:
            why = None if self.same_content(s, d) else "checksum"
        return Action("copy", rel, why, s.size, s) if why else Action("skip", rel, "unchanged")

    def clock_shift(self) -> float:
        """Seconds to add to a source time to compare it with a destination store's
        LastModified, from the ``Date`` of the stores' answers (``wire/clock.py``): a store
        whose clock leads this host's (or the source store's) made an edit within that
        lead after a copy look older than the copy, and it stayed behind. Taken at the
        bound that copies rather than skips (the estimate's error counts toward "newer").
        0 where a side's offset is unknown, and between two prefixes of one store."""
        if self.direction == "download" or self.dst.is_local:
            return 0.0
        dst = self.eps.get(self.dst.endpoint or "s3").clock.offset()
        if dst is None:
            return 0.0
        # never below 0: a store's Date is its word, and a store that claims a clock far
        # behind would otherwise make every changed file look unchanged; a shift only
        # ever adds copies to the rule as it was
        if self.direction == "upload":
            return max(0.0, dst[0] + dst[1])
        if (self.src.endpoint or "s3") == (self.dst.endpoint or "s3"):
            return 0.0
        src = self.eps.get(self.src.endpoint or "s3").clock.offset()
        return 0.0 if src is None else max(0.0, (dst[0] + dst[1]) - (src[0] - src[1]))

    def actions(self) -> Iterator[Action]:
        """Every decision, in key order (skips included, so callers can count them)."""
        if self.same_content is None:
            looks: Iterable[Action] = map(self._first_look, self._pairs())
        else:

            looks = bounded_map(self._first_look, self._pairs(), self.workers)
        for a in looks:
            if a.op == "copy":
                self.to_copy += 1
                self.copy_bytes += a.size
            elif a.op == "delete":
                self.to_delete += 1
            elif a.reason == "unchanged":
                self.unchanged += 1
            yield a

    def jobs(self, actions: Iterable[Action], part_size: Callable[[str], int],
             server_side: bool = True) -> Iterator[ObjectJob]:
        """The Runner's jobs for the copy actions (deletes are the caller's, after)."""
        src_ep = None if self.src.is_local else self.eps.get(self.src.endpoint or "s3")
        dst_ep = None if self.dst.is_local else self.eps.get(self.dst.endpoint or "s3")
        dst_base = os.path.realpath(self.dst.path) if self.dst.is_local else None
        for a in actions:
            if a.op != "copy" or a.src is None:
                continue
            name = str(self.src.child(a.rel))
            yield job_for(self.src, self.dst, a.rel, a.src.info, many=True, into=True,
                          src_ep=src_ep, dst_ep=dst_ep, part_size=part_size(name),
                          server_side=server_side, dst_base=dst_base)

    def dst_endpoint(self) -> S3Endpoint | None:
        return None if self.dst.is_local else self.eps.get(self.dst.endpoint or "s3")
