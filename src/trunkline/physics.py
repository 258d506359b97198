"""Path physics: what one TCP stream can carry, and what moving a dataset will take.

Sans-I/O arithmetic used by ``trunkline plan``, the probe and the tuner's sanity checks.
A stream is bounded by its window (at most one window in flight per round trip) and by
loss (Mathis et al. 1997: rate <= MSS/RTT * C/sqrt(p), C = sqrt(3/2)); a link is filled by
enough such streams. Units: sizes in bytes, rates in bytes/s unless named ``_bps`` (bits/s),
times in seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from .telemetry.units import human_bytes as _human_bytes

MATHIS_C = math.sqrt(1.5)
"""Mathis constant for periodic loss with delayed ACKs off: sqrt(3/2) ~ 1.2247."""

DEFAULT_MSS = 1448
"""MSS of a 1500-byte MTU with TCP timestamps: 1500 - 20 (IP) - 20 (TCP) - 12 (options)."""

ETHERNET_OVERHEAD = 38
"""Bytes on the wire per frame beyond the IP packet: preamble 8 + header 14 + FCS 4 + gap 12."""

TCPIP_HEADERS = 52
"""IP (20) + TCP (20) + timestamp option (12) bytes per segment."""

# ---------------------------------------------------------------- units

_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15, "e": 10**18}
_BIN = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}

_NUM = r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_SIZE_RE = re.compile(_NUM + r"\s*(?P<pre>[kmgtpe]?)(?P<i>i?)(?P<b>b?)(?:ytes?)?", re.I)
_RATE_RE = re.compile(_NUM + r"\s*(?P<pre>[kmgtpe]?)(?P<unit>bits/s|bit/s|bits|bit|bps|b/s|b)?", re.I)
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
               "min": 60.0, "h": 3600.0, "d": 86400.0}
_TIME_RE = re.compile(_NUM + r"\s*(?P<unit>ns|us|µs|ms|s|min|m|h|d)", re.I)


def parse_size(text: str | int | float) -> int:
    """Bytes from ``"2PB"`` (decimal), ``"64MiB"``/``"64M"`` (binary) or a number.

    GNU coreutils convention: ``KB, MB, GB, ...`` are powers of 1000; ``K, M, G`` and
    ``KiB, MiB, GiB`` powers of 1024 (so ``--window 64M`` is 64 MiB, as for rclone).
    """
    if isinstance(text, int | float):
        return int(text)
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r} (try 2PB, 64MiB, 64M)")
    pre = m["pre"].lower()
    decimal = bool(m["b"]) and not m["i"] and m["pre"] != ""
    mult = _SI[pre] if decimal else _BIN[pre]
    return int(round(float(m["num"]) * mult))


def parse_rate_bps(text: str | int | float) -> float:
    """Bits/s from ``"100G"``, ``"100Gbps"``, ``"10Gbit/s"``, ``"1.25GB/s"`` (bytes -> x8).

    Network rates are always decimal (100G = 100e9 bit/s). A capital ``B`` names bytes.
    """
    if isinstance(text, int | float):
        return float(text)
    m = _RATE_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a rate: {text!r} (try 100G, 10Gbit/s, 1.25GB/s)")
    mult = _SI[m["pre"].lower()]
    unit = m["unit"] or ""
    per_byte = unit[:1] == "B" and not unit.lower().startswith("bit")
    return float(m["num"]) * mult * (8 if per_byte else 1)


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``"30ms"``, ``"250us"``, ``"1.5s"``, ``"2h"``; a unit is required
    (a bare ``30`` would be ambiguous between ms and s) except for a plain number type."""
    if isinstance(text, int | float):
        return float(text)
    s = text.strip()
    if s in ("0", "0.0"):
        return 0.0
    m = _TIME_RE.fullmatch(s)
    if not m:
        raise ValueError(f"not a duration: {text!r} (give a unit: 30ms, 250us, 1.5s)")
    return float(m["num"]) * _TIME_UNITS[m["unit"].lower()]


def parse_loss(text: str | int | float) -> float:
    """Packet-loss probability from ``"1e-6"``, ``"0.0001"`` or ``"0.01%"``; in [0, 1)."""
    if isinstance(text, int | float):
        p = float(text)
    else:
        s = text.strip()
        p = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    if not 0 <= p < 1:
        raise ValueError(f"loss must be in [0, 1): {text!r}")
    return p


def human_bytes(n: float) -> str:
    """``1.50 GiB`` style (binary), for sizes and memory."""
    return _human_bytes(n, digits=2)


def human_bps(bps: float) -> str:
    """``9.41 Gbit/s`` style (decimal), for rates."""
    if math.isinf(bps):
        return "unbounded"
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s"):
        if abs(bps) < 1000 or unit == "Pbit/s":
            return f"{bps:.3g} {unit}"
        bps /= 1000
    raise AssertionError


def human_duration(s: float) -> str:
    """``3d 04h 12m`` / ``12.3 s`` / ``45 ms`` style."""
    if math.isinf(s):
        return "never"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


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
    window_bytes: int = 64 * 2**20,
    mss: int = DEFAULT_MSS,
    part_buffer_bytes: int = 8 * 2**20,
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
