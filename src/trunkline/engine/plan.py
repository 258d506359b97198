"""Objects -> parts: the one part planner (sans-I/O).

S3 multipart rules shape it: parts of at least 5 MiB (but the last), at most 10,000
parts, at most 5 GiB each. Downloads use the same split so that a journal, a composite
ETag and a resume all agree on part boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage.s3_limits import MAX_PART, MAX_PARTS, MIN_PART  # noqa: F401  (re-exported)
from ..units import MiB, parse_size  # noqa: F401  (re-exported: callers of the planner)


@dataclass(frozen=True, slots=True)
class Part:
    """A byte range of an object, moved by one request."""

    number: int   # 1-based, as S3 numbers them
    offset: int
    length: int


def effective_part_size(size: int, part_size: int) -> int:
    """The part size actually used for an object: grown so there are <= 10,000 parts."""
    ps = max(MIN_PART, min(part_size, MAX_PART))
    if size > ps * MAX_PARTS:
        ps = -(-size // MAX_PARTS)
        ps = -(-ps // MiB) * MiB  # round up to whole MiB
    return ps


def is_multipart(size: int, part_size: int) -> bool:
    return size > effective_part_size(size, part_size)


def plan_parts(size: int, part_size: int) -> list[Part]:
    """Split ``size`` bytes into parts; one part for objects up to the part size."""
    if size <= 0:
        return [Part(1, 0, 0)]
    ps = effective_part_size(size, part_size)
    parts = []
    off = 0
    n = 1
    while off < size:
        ln = min(ps, size - off)
        parts.append(Part(n, off, ln))
        off += ln
        n += 1
    return parts
