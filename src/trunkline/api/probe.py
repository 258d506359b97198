"""``probe`` and ``plan``: what a path to a bucket carries, measured and computed.

``probe`` measures (RTT, one connection's rate, the concurrency where the aggregate stops
growing) within a time budget and recommends connections and a part size; ``plan`` does
the arithmetic from numbers the user already knows. The measuring parts live in
``engine.probe``, the arithmetic in ``physics``.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid

from ..engine.jobs import EndpointCache
from ..engine.probe import (
    WRITE_SIZE,
    Prober,
    ProbeResult,
    conclude,
    find_object,
    put_temp,
    recommend_part_size,
)
from ..errors import UsageError
from ..physics import Plan, plan
from ..storage.s3 import S3Error
from ..units import MiB
from ..url import Location, LocationError, parse_location

__all__ = ["Plan", "ProbeResult", "plan", "probe"]


def probe(
    location: str | Location,
    *,
    duration: float = 10.0,
    write: bool = False,
    max_streams: int = 64,
) -> ProbeResult:
    """Measure the path to ``s3://bucket/prefix`` within about ``duration`` seconds.

    Reads the largest object under the prefix, or with ``write`` a temporary 64 MiB object
    it uploads first (not counted in ``duration``) and deletes after. Raises ``LocationError`` for a local location and
    ``S3Error`` when nothing can be read.
    """
    loc = parse_location(location) if isinstance(location, str) else location
    if loc.is_local:
        raise LocationError(f"probe needs s3://bucket/prefix, not a local path: {location}")
    if duration <= 0 or max_streams < 1:
        raise UsageError("duration must be > 0 and max_streams >= 1")
    ep = EndpointCache().get(loc.endpoint or "s3")
    t_start = time.monotonic()
    temp = None
    if write:
        base = loc.key if loc.key.endswith("/") or not loc.key else loc.key + "/"
        temp = f"{base}.trunkline-probe-{uuid.uuid4().hex[:12]}"
        put_temp(ep, loc.bucket, temp, WRITE_SIZE)
        key, size = temp, WRITE_SIZE
    else:
        key, size = find_object(ep, loc.bucket, loc.key)
        if not key:
            raise S3Error(404, "NoObject", f"no object under {loc} to read "
                          "(give --write to upload a temporary one)", "LIST", str(loc))
    deadline = time.monotonic() + duration   # the upload of --write is not measured time
    try:
        pr = Prober(ep, loc.bucket, key, size)
        connect_s, tcp_rtt, heads, gets = pr.latency()
        rtt = min(heads)
        # one stream: ranges of up to 64 MiB (per-request gaps do not enter the body rate)
        left = deadline - time.monotonic()
        one, one_good = pr.one_stream(max(0.3 * left, 4 * rtt), min(size, 64 * MiB))
        r = ProbeResult(
            url=str(loc), object_key=key, object_size=size, wrote_object=temp is not None,
            connect_s=connect_s, tcp_rtt_s=tcp_rtt, rtt_s=rtt,
            ttfb_head_s=statistics.median(heads), ttfb_get_s=statistics.median(gets),
            one_stream=one, one_stream_goodput=one_good,
        )
        clock = pr.clock.offset()
        if clock is not None:
            r.clock_offset_s, r.clock_error_s = clock
        # sweep: parts long enough that the TTFB gap costs little, steps that fit the time
        part = min(size, recommend_part_size(r.ttfb_get_s, one))
        left = deadline - time.monotonic()
        steps = max(2, min(7, int(math.log2(max_streams)) + 1))
        step_s = max(0.4, left / steps)
        warm = min(step_s / 3, max(0.1, 3 * rtt))
        r.sweep = pr.sweep(step_s, part, max_streams, deadline + step_s / 2, warm)
    finally:
        if temp is not None:
            try:
                ep.delete(loc.bucket, temp)
            except S3Error:
                pass
    r.seconds = time.monotonic() - t_start
    return conclude(r)
