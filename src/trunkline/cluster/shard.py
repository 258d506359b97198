"""Listing -> shards (sans-I/O): the units of work the driver hands to Ray workers.

A shard is either a batch of whole objects (closed when it holds ``shard_bytes`` or
``shard_objects``) or a range of parts of one large object (s3 -> s3 only), so a 1 TB
object is moved by every node at once into one multipart upload that the driver owns.

Shard ids are sha256 over what the shard moves (keys, sizes, ETags, part ranges), so
the same listing gives the same shards: a rerun skips the shards its ledger records as
done, and a changed object changes the id of the shard that holds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..engine.plan import effective_part_size, is_multipart
from ..units import GiB


@dataclass(frozen=True, slots=True)
class Item:
    """One object of a shard, or one part range of a split object."""

    rel: str                          # name under the source prefix
    key: str                          # source key (a local source: the file's path)
    size: int
    etag: str | None
    mtime: float | None
    part_size: int
    first: int = 0                    # part range [first, last] of a split object; 0 = whole
    last: int = 0
    upload_id: str | None = None      # the driver's multipart upload of a split object


@dataclass(slots=True)
class Shard:
    id: str
    items: list[Item]
    bytes: int
    split: str | None = None          # rel of the split object this range belongs to
    attempts: int = 0

    @property
    def objects(self) -> int:
        return 0 if self.split else len(self.items)


@dataclass
class SplitPlan:
    """What the driver needs to finish a split object: its upload and expected ranges."""

    rel: str
    bucket: str                                      # destination
    key: str
    size: int
    upload_id: str
    ranges: int                                      # range shards still to move
    etags: dict[int, str] = field(default_factory=dict)
    failed: bool = False


def shard_id(items: Iterable[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        # a local file has no ETag: its mtime tells a changed file apart
        tag = it.etag if it.etag is not None else it.mtime
        h.update(f"{it.rel}\0{it.size}\0{tag}\0{it.part_size}\0{it.first}-{it.last}\n"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


def part_ranges(size: int, part_size: int, shard_bytes: int) -> list[tuple[int, int]]:
    """[first, last] part numbers of ~shard_bytes each covering an object of ``size``."""
    ps = effective_part_size(size, part_size)
    n = -(-size // ps)
    per = max(1, shard_bytes // ps)
    return [(a, min(n, a + per - 1)) for a in range(1, n + 1, per)]


def plan_shards(
    listing: Iterable[tuple[str, object]],
    *,
    part_size: int,
    shard_bytes: int = GiB,
    shard_objects: int = 1000,
    split: Callable[[str, object, int, list[tuple[int, int]]],
                    tuple[str, set[tuple[int, int]]] | None] | None = None,
) -> Iterator[Shard]:
    """Stream shards from ``(rel, info)`` pairs (``info``: an S3 listing's key, size, etag,
    mtime, or a local file's path, size, mtime).

    ``split`` (s3 destinations only) is called for a multipart object larger than
    ``shard_bytes`` with its planned part ranges; it returns ``(upload_id, ranges already
    done)``, or None when the whole object is already done. Without it, large objects
    travel whole in their own shard (one node: e.g. to that node's local disk).
    """
    batch: list[Item] = []
    nbytes = 0
    for rel, info in listing:
        size = info.size  # type: ignore[attr-defined]
        # an S3 object's key, a local file's path (an upload's source)
        key = info.key if hasattr(info, "key") else getattr(info, "path", rel)
        etag = getattr(info, "etag", None)
        mtime = getattr(info, "mtime", None)
        ps = effective_part_size(size, part_size)
        if split is not None and size > shard_bytes and is_multipart(size, part_size):
            ranges = part_ranges(size, part_size, shard_bytes)
            got = split(rel, info, ps, ranges)
            if got is None:
                continue
            upload_id, done = got
            for a, b in ranges:
                if (a, b) in done:
                    continue
                it = Item(rel, key, size, etag, mtime, ps, a, b, upload_id)
                first_off = (a - 1) * ps
                yield Shard(shard_id([it]), [it], min(size, b * ps) - first_off, split=rel)
            continue
        batch.append(Item(rel, key, size, etag, mtime, ps))
        nbytes += size
        if nbytes >= shard_bytes or len(batch) >= shard_objects:
            yield Shard(shard_id(batch), batch, nbytes)
            batch, nbytes = [], 0
    if batch:
        yield Shard(shard_id(batch), batch, nbytes)
