"""Path physics: what one TCP stream can carry, and what moving a dataset will take.

Sans-I/O arithmetic used by ``trunkline plan``, the probe and the tuner's sanity checks.
A stream is bounded by its window (at most one window in flight per round trip) and by
loss (Mathis et al. 1997: rate <= MSS/RTT * C/sqrt(p), C = sqrt(3/2)); a link is filled by
enough such streams. Units: sizes in bytes, rates in bytes/s unless named ``_bps`` (bits/s),
times in seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# the units of the plan live in trunkline.units; re-exported for ``trunkline plan``'s users
from .units import (  # noqa: F401
    MiB,
    human_bps,
    human_duration,
    parse_duration,
    parse_loss,
    parse_rate_bps,
    parse_size,
)
from .units import human_bytes as _human_bytes


def human_bytes(n: float) -> str:
    """``1.50 GiB`` style (binary, two decimals): the plan's sizes."""
    return _human_bytes(n, digits=2)


MATHIS_C = math.sqrt(1.5)
"""Mathis constant for periodic loss with delayed ACKs off: sqrt(3/2) ~ 1.2247."""

DEFAULT_MSS = 1448
"""MSS of a 1500-byte MTU with TCP timestamps: 1500 - 20 (IP) - 20 (TCP) - 12 (options)."""

ETHERNET_OVERHEAD = 38
"""Bytes on the wire per frame beyond the IP packet: preamble 8 + header 14 + FCS 4 + gap 12."""

TCPIP_HEADERS = 52
"""IP (20) + TCP (20) + timestamp option (12) bytes per segment."""

# ---------------------------------------------------------------- physics


def bdp_bytes(link_bps: float, rtt_s: float) -> float:
    """Bandwidth-delay product: the bytes that must be in flight to keep the link full."""
    return link_bps / 8 * rtt_s


def window_ceiling(window_bytes: float, rtt_s: float) -> float:
    """One stream sends at most one window per round trip: window / RTT, in bytes/s."""
    return math.inf if rtt_s <= 0 else window_bytes / rtt_s


def mathis_ceiling(mss: int, rtt_s: float, loss: float) -> float:
    """Mathis et al.: a loss-limited Reno/CUBIC-like stream, MSS/RTT * C/sqrt(p), bytes/s."""
    if loss <= 0 or rtt_s <= 0:
        return math.inf
    return mss / rtt_s * MATHIS_C / math.sqrt(loss)


def wire_efficiency(mss: int = DEFAULT_MSS) -> float:
    """Payload share of the bytes on an Ethernet wire: MSS / (MSS + 52 + 38)."""
    return mss / (mss + TCPIP_HEADERS + ETHERNET_OVERHEAD)


def stream_ceiling(window_bytes: float, mss: int, rtt_s: float, loss: float) -> float:
    """What one stream can carry: the smaller of the window and the loss bound, bytes/s."""
    return min(window_ceiling(window_bytes, rtt_s), mathis_ceiling(mss, rtt_s, loss))


def streams_needed(link_bps: float, per_stream_bytes_s: float, mss: int = DEFAULT_MSS) -> int:
    """Streams that together fill the link's payload capacity (at least 1)."""
    goodput = link_bps / 8 * wire_efficiency(mss)
    if math.isinf(per_stream_bytes_s) or per_stream_bytes_s <= 0:
        return 1
    return max(1, math.ceil(goodput / per_stream_bytes_s - 1e-9))


def memory_needed(streams: int, window_bytes: int, part_buffer_bytes: int = 0) -> int:
    """Socket buffers (one window per stream) plus user-space part buffers per stream."""
    return streams * (window_bytes + part_buffer_bytes)


def transfer_time(size_bytes: float, rate_bytes_s: float) -> float:
    """Seconds to move ``size_bytes`` at a steady ``rate_bytes_s``."""
    return math.inf if rate_bytes_s <= 0 else size_bytes / rate_bytes_s


@dataclass(frozen=True)
class Plan:
    """The answer of ``trunkline plan``; every rate in bytes/s, every time in seconds."""

    size_bytes: int
    link_bps: float
    rtt_s: float
    loss: float
    window_bytes: int
    mss: int
    part_buffer_bytes: int
    bdp_bytes: float
    window_ceiling: float
    mathis_ceiling: float
    stream_ceiling: float
    limited_by: str
    link_goodput: float
    streams_needed: int
    memory_needed: int
    one_stream_time_s: float
    time_s: float

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in d.items()}


def plan(
    size_bytes: int,
    link_bps: float,
    rtt_s: float,
    loss: float = 0.0,
    window_bytes: int = 64 * MiB,
    mss: int = DEFAULT_MSS,
    part_buffer_bytes: int = 8 * MiB,
) -> Plan:
    """Everything a user needs to size a transfer over a path, from five numbers."""
    wc = window_ceiling(window_bytes, rtt_s)
    mc = mathis_ceiling(mss, rtt_s, loss)
    goodput = link_bps / 8 * wire_efficiency(mss)
    per = min(wc, mc, goodput)
    limited_by = "link" if per == goodput else ("window" if wc <= mc else "loss")
    n = streams_needed(link_bps, per, mss)
    return Plan(
        size_bytes=size_bytes,
        link_bps=link_bps,
        rtt_s=rtt_s,
        loss=loss,
        window_bytes=window_bytes,
        mss=mss,
        part_buffer_bytes=part_buffer_bytes,
        bdp_bytes=bdp_bytes(link_bps, rtt_s),
        window_ceiling=wc,
        mathis_ceiling=mc,
        stream_ceiling=per,
        limited_by=limited_by,
        link_goodput=goodput,
        streams_needed=n,
        memory_needed=memory_needed(n, window_bytes, part_buffer_bytes),
        one_stream_time_s=transfer_time(size_bytes, per),
        time_s=transfer_time(size_bytes, min(goodput, n * per)),
    )


# --- what a listing says about a dataset ----------------------------------------------

SIZE_CLASSES: tuple[tuple[str, int], ...] = (
    ("<64KiB", 64 << 10), ("<1MiB", 1 << 20), ("<16MiB", 16 << 20),
    ("<256MiB", 256 << 20), ("<4GiB", 4 << 30), (">=4GiB", 1 << 62),
)


@dataclass(frozen=True)
class SizeProfile:
    """Object count, bytes and a size histogram of a dataset (from its listing)."""

    objects: int
    size_bytes: int
    histogram: tuple[tuple[str, int, int], ...]   # (class, objects, bytes)

    def to_dict(self) -> dict:
        return {"objects": self.objects, "size_bytes": self.size_bytes,
                "histogram": [{"class": c, "objects": n, "bytes": b}
                              for c, n, b in self.histogram]}


def size_profile(sizes) -> SizeProfile:
    """Count objects and bytes per size class, in one pass over any iterable of sizes."""
    counts = [[0, 0] for _ in SIZE_CLASSES]
    n = total = 0
    for s in sizes:
        n += 1
        total += s
        for i, (_, bound) in enumerate(SIZE_CLASSES):
            if s < bound:
                counts[i][0] += 1
                counts[i][1] += s
                break
    return SizeProfile(n, total, tuple((c, a, b) for (c, _), (a, b) in zip(SIZE_CLASSES, counts,
                                                                           strict=True)))


def request_bound_time(objects: int, rtt_s: float, streams: int) -> float:
    """Seconds the requests alone take: one round trip per object (its GET or PUT) on each
    of ``streams`` connections. When this exceeds the bandwidth time, the dataset is
    small-object bound: more connections (or fewer, larger objects) pay, a faster link
    does not."""
    return objects * rtt_s / max(1, streams)
