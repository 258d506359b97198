"""``verify``: compare two trees without copying, and report every difference.

The comparison itself (which evidence proves two objects equal) is ``engine.verify``'s;
this module checks the locations and shapes the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ..engine.jobs import EndpointCache
from ..engine.listing import Filters, check_locations
from ..engine.verify import Verifier
from ..reports import Mismatch, VerifyReport
from ..url import Location, LocationError, parse_location

__all__ = ["verify"]


def verify(
    src: str | Location,
    dst: str | Location,
    *,
    extra: bool = True,
    size_only: bool = False,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    filters: Iterable[tuple[bool, str]] | None = None,
    checkers: int = 16,
    read: bool = True,
    require_verified: bool = False,
    on_mismatch: Callable[[Mismatch], None] | None = None,
) -> VerifyReport:
    """Compare the folder/prefix ``src`` with ``dst`` without copying; report every
    mismatch: missing, extra (unless ``extra=False``), size, content, error.

    Content is proven with whatever checksum the store keeps; where none settles a pair,
    the object is read back, unless ``read=False``: the pair is then reported unverified
    (a failure with ``require_verified``)."""
    s = parse_location(src) if isinstance(src, str) else src
    d = parse_location(dst) if isinstance(dst, str) else dst
    if s.is_local and d.is_local:
        if not os.path.isdir(s.path):
            raise LocationError(f"no such directory: {s.path}")
    else:
        check_locations(s, d)
    v = Verifier(s, d, EndpointCache(), extra=extra, size_only=size_only,
                 filters=Filters.of(include, exclude,
                                    list(filters) if filters is not None else None),
                 workers=checkers, read=read, on_mismatch=on_mismatch).run()
    return VerifyReport(str(s), str(d), v.src_objects, v.dst_objects, v.compared,
                        v.mismatches, dict(v.methods), v.seconds, v.unverified,
                        require_verified, v.skipped.entries)
