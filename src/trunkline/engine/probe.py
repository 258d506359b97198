"""``trunkline probe``: measure a path to a bucket, then say what a transfer can reach.

Why: the right number of connections and part size follow from the path (RTT, what one
connection carries, where the aggregate stops growing), and a user should see those
numbers, not guess them. The probe measures, in a bounded time:

* RTT: TCP connect time, the kernel's TCP_INFO rtt, and the request RTT (the smallest
  time to first byte of a HEAD). Behind a proxy or a WAN emulator only the last one sees
  the whole path, so it is the one the arithmetic uses;
* TTFB of small requests (HEAD, 1-byte ranged GET);
* one connection's throughput: body bytes over body time of ranged GETs on one
  keep-alive connection (what window/RTT predicts), and its goodput with request gaps;
* the saturating concurrency: 1, 2, 4, 8, ... streams of ranged GETs until the aggregate
  stops growing by more than 5 %.

Then it recommends connections and a part size and states the ceiling with ``physics``.
The arithmetic (``saturation``, ``recommend``) is sans-I/O; sockets live in ``Prober``;
``trunkline.api.probe`` runs the steps within the time budget.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field

from .. import physics
from ..errors import ConnectionClosed, TrunklineError, UsageError
from ..storage import s3_data
from ..storage.s3 import S3Endpoint, S3Error
from ..units import MiB
from ..wire.clock import ClockSamples
from ..wire.connection import Connection

GAIN = 0.10
"""A doubling of streams must raise goodput by more than this to count as growth: a sweep
step lasts well under a second, and at a shaped cap such steps scatter by +/-7 % (measured
through the test WAN), so a smaller threshold found knees in noise."""
OVERHEAD = 0.10
"""Part size: a request's TTFB should cost at most this share of the part's transfer time."""
MIN_PART, MAX_PART = 8 * MiB, 512 * MiB
WRITE_SIZE = 64 * MiB


# ------------------------------------------------------------------ sans-I/O arithmetic


def saturation(sweep: list[tuple[int, float]], gain: float = GAIN) -> tuple[int, float]:
    """(streams, rate) of the knee: the fewest streams after which doubling did not raise
    the rate by more than ``gain``; the last point if it never stopped growing."""
    if not sweep:
        raise UsageError("empty sweep")
    best_n, best = sweep[0]
    for n, rate in sweep[1:]:
        if rate <= best * (1 + gain):
            return best_n, max(best, rate)
        best_n, best = n, rate
    return best_n, best


def recommend_part_size(ttfb_s: float, per_stream: float) -> int:
    """The smallest power-of-two MiB part whose transfer takes >= TTFB / OVERHEAD."""
    want = ttfb_s / OVERHEAD * per_stream
    size = MIN_PART
    while size < want and size < MAX_PART:
        size *= 2
    return size


@dataclass
class ProbeResult:
    """Everything measured, and what follows from it. Rates in bytes/s, times in s."""

    url: str
    object_key: str
    object_size: int
    wrote_object: bool
    connect_s: float
    tcp_rtt_s: float | None
    rtt_s: float
    ttfb_head_s: float
    ttfb_get_s: float
    one_stream: float            # body bytes / body time on one connection
    one_stream_goodput: float    # including the gaps between requests
    sweep: list[tuple[int, float]] = field(default_factory=list)
    saturating_streams: int = 1
    peak: float = 0.0
    window_bytes: float = 0.0    # what one stream carries per RTT: the path's window
    bdp_bytes: float = 0.0
    per_stream_ceiling: float = 0.0
    recommended_connections: int = 1
    recommended_part_size: int = MIN_PART
    expected_ceiling: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    clock_offset_s: float | None = None   # the store's clock minus this host's (Date headers)
    clock_error_s: float | None = None    # +/- of that estimate

    def to_dict(self) -> dict:
        return asdict(self)


def conclude(r: ProbeResult) -> ProbeResult:
    """Fill in the physics and the recommendation from the measured figures."""
    r.window_bytes = r.one_stream * r.rtt_s
    r.per_stream_ceiling = physics.window_ceiling(r.window_bytes, r.rtt_s)
    if r.sweep:
        r.saturating_streams, r.peak = saturation(r.sweep)
    else:
        r.peak = r.one_stream_goodput
    r.bdp_bytes = physics.bdp_bytes(r.peak * 8, r.rtt_s)
    r.recommended_connections = r.saturating_streams
    r.recommended_part_size = recommend_part_size(r.ttfb_get_s, r.one_stream)
    r.expected_ceiling = min(r.peak, r.recommended_connections * r.per_stream_ceiling)
    off = r.clock_offset_s
    if off is not None and off > CLOCK_NOTE_S:
        r.notes.append(
            f"the store's clock is {off:.1f} s ahead of this host's: `sync` to the store "
            "takes a file edited within that time after its upload for unchanged (its time "
            "is before the upload's LastModified); use --checksum, or set the clocks right "
            "(signed requests are refused past 15 min)")
    elif off is not None and off < -CLOCK_NOTE_S:
        r.notes.append(
            f"the store's clock is {-off:.1f} s behind this host's: `sync` to the store "
            "uploads again, at every run, a file edited within that time before its upload; "
            "set the clocks right (signed requests are refused past 15 min)")
    if r.tcp_rtt_s is not None and r.rtt_s > 4 * max(r.tcp_rtt_s, r.connect_s, 1e-4):
        r.notes.append(
            f"request RTT {r.rtt_s * 1e3:.1f} ms >> TCP RTT {r.tcp_rtt_s * 1e3:.2f} ms: a "
            "proxy, a load balancer or server latency sits between the TCP hops")
    if r.sweep and r.saturating_streams == r.sweep[-1][0]:
        r.notes.append("goodput still grew at the largest step: the ceiling may be higher "
                       "(raise --max-streams or --duration)")
    if r.object_size < 8 * r.recommended_part_size and not r.wrote_object:
        r.notes.append(f"the object read is only {r.object_size / MiB:.0f} MiB: throughput "
                       "figures are less certain; --write uploads a larger one")
    return r


# ------------------------------------------------------------------ measurement


class _Streams:
    """n threads, each a keep-alive connection doing ranged GETs of one object."""

    def __init__(self, prober: Prober, n: int, range_size: int) -> None:
        self.p, self.range_size = prober, range_size
        self.stop = threading.Event()
        self.counts = [0] * n
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def total(self) -> int:
        return sum(self.counts)

    def _run(self, i: int) -> None:
        p = self.p
        conn = None
        buf = memoryview(bytearray(MiB))
        rng = int.from_bytes(os.urandom(4), "little")
        span = max(1, p.size - self.range_size)
        try:
            conn = p.connect()
            while not self.stop.is_set():
                rng = (rng * 1103515245 + 12345) & 0x7FFFFFFF
                off = (rng % span) if p.size > self.range_size else 0
                n = p.request(conn, "GET", off, min(self.range_size, p.size))
                got = 0
                while got < n and not self.stop.is_set():
                    k = conn.recv_into(buf[: min(len(buf), n - got)])
                    if k == 0:
                        raise ConnectionClosed("connection closed mid-body")
                    got += k
                    self.counts[i] += k
                if got < n:
                    return
        except (OSError, TrunklineError) as e:
            self.errors.append(str(e))
        finally:
            if conn is not None:
                conn.close()

    def __enter__(self) -> _Streams:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


class Prober:
    """Measures one bucket/prefix through one endpoint, within ``duration`` seconds."""

    def __init__(self, ep: S3Endpoint, bucket: str, key: str, size: int,
                 read_timeout: float = 30.0) -> None:
        self.ep, self.bucket, self.key, self.size = ep, bucket, key, size
        self.read_timeout = read_timeout
        self.clock = ClockSamples()   # the store's Date against this host's clock

    def connect(self) -> Connection:
        c = self.ep.new_connection(read_timeout=self.read_timeout)
        c.connect()
        return c

    def request(self, conn: Connection, method: str, off: int = 0, length: int = 0) -> int:
        """Send a HEAD or a ranged GET and read its head; returns the body length. A
        HEAD's ``Date`` (the store's clock) is kept with this host's time around it."""
        if method == "HEAD":
            before = time.time()
            h = s3_data.head(self.ep, conn, self.bucket, self.key, self.key, checksums=False)
            if h is not None:
                self.clock.add(before, time.time(), h.headers.get("date"))
            return 0
        return s3_data.get(self.ep, conn, self.bucket, self.key, self.key, offset=off,
                           length=length, whole=False).length

    def latency(self, samples: int = 5) -> tuple[float, float | None, list[float], list[float]]:
        """(connect s, TCP_INFO rtt s, HEAD TTFBs, 1-byte GET TTFBs)."""
        connects = []
        for _ in range(3):
            t0 = time.perf_counter()
            c = self.connect()
            connects.append(time.perf_counter() - t0)
            c.close()
        conn = self.connect()
        heads, gets = [], []
        try:
            for _ in range(samples):
                t0 = time.perf_counter()
                self.request(conn, "HEAD")
                heads.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                n = self.request(conn, "GET", 0, 1)
                gets.append(time.perf_counter() - t0)
                conn.read_exact(n)
            info = conn.sample_tcp()
            tcp_rtt = info.rtt_us / 1e6 if info and info.rtt_us else None
        finally:
            conn.close()
        return min(connects), tcp_rtt, heads, gets

    def one_stream(self, seconds: float, range_size: int) -> tuple[float, float]:
        """(body rate, goodput) of ranged GETs on one connection for ``seconds``."""
        conn = self.connect()
        buf = memoryview(bytearray(MiB))
        body_bytes, body_time = 0, 0.0
        t_start = time.perf_counter()
        off = 0
        try:
            while time.perf_counter() - t_start < seconds:
                length = min(range_size, self.size - off)
                n = self.request(conn, "GET", off, length)
                first = time.perf_counter()
                got = 0
                # the first chunk may be in the head's leftovers: time from the head on
                while got < n:
                    k = conn.recv_into(buf[: min(len(buf), n - got)])
                    if k == 0:
                        raise ConnectionClosed("connection closed mid-body")
                    got += k
                body_bytes += got
                body_time += time.perf_counter() - first
                off = (off + length) % self.size
        finally:
            conn.close()
        total = time.perf_counter() - t_start
        return body_bytes / max(body_time, 1e-9), body_bytes / total

    def sweep(self, step_s: float, range_size: int, max_streams: int, deadline: float,
              warm_s: float) -> list[tuple[int, float]]:
        """Aggregate goodput at 1, 2, 4, ... streams until it stops growing (or time)."""
        out: list[tuple[int, float]] = []
        n = 1
        while n <= max_streams and time.monotonic() + step_s <= deadline:
            with _Streams(self, n, range_size) as s:
                time.sleep(warm_s)
                b0, t0 = s.total(), time.perf_counter()
                time.sleep(max(step_s - warm_s, 0.1))
                b1, t1 = s.total(), time.perf_counter()
            if s.errors and b1 == b0:
                raise S3Error(0, "ProbeFailed", s.errors[0], "GET", self.key)
            out.append((n, (b1 - b0) / (t1 - t0)))
            if len(out) >= 2 and saturation(out)[0] != out[-1][0]:
                break
            n *= 2
        return out


CLOCK_NOTE_S = 2.0
"""An offset past this is a note: sync's time rule for uploads compares this host's file
times with the store's LastModified."""


def find_object(ep: S3Endpoint, bucket: str, prefix: str, scan: int = 1000) -> tuple[str, int]:
    """The largest object among the first ``scan`` keys under the prefix, or ('', 0)."""
    best = ("", 0)
    for i, o in enumerate(ep.list(bucket, prefix)):
        if o.size > best[1]:
            best = (o.key, o.size)
        if i + 1 >= scan:
            break
    return best


def put_temp(ep: S3Endpoint, bucket: str, key: str, size: int) -> None:
    """Upload ``size`` random bytes in one PUT on our own connection."""
    block = os.urandom(MiB)

    def send_body(conn: Connection) -> None:
        left = size
        while left:
            k = min(left, MiB)
            conn.send(block[:k])
            left -= k

    conn = ep.new_connection(read_timeout=60)
    try:
        conn.connect()
        s3_data.put(ep, conn, bucket, key, key, length=size, send_body=send_body)
    finally:
        conn.close()
