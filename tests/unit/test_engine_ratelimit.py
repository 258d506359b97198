"""Token bucket and RateLimiter: virtual-time exactness and a real multi-thread binding test."""

from __future__ import annotations

import threading
import time

import pytest

from trunkline.engine.ratelimit import RateLimiter, TokenBucket


class VirtualTime:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_bucket_virtual_time_exact():
    vt = VirtualTime()
    b = TokenBucket(1000, 100, clock=vt.clock, sleep=vt.sleep)
    b.acquire(100)  # starts full: no wait
    assert vt.t == 0
    b.acquire(50)  # 50 bytes of debt at 1000 B/s -> 0.05 s
    assert vt.t == pytest.approx(0.05)
    b.acquire(10_000)  # split into 100-byte pieces; 10 s in total
    assert vt.t == pytest.approx(10.05)


def test_bucket_caps_accumulation_at_burst():
    vt = VirtualTime()
    b = TokenBucket(1000, 100, clock=vt.clock, sleep=vt.sleep)
    vt.t = 100.0  # idle for 100 s: still only 100 tokens
    assert b.tokens == pytest.approx(100)
    b.acquire(300)
    assert vt.t == pytest.approx(100.2)


def test_rejects_bad_rates():
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(10, 0)


def test_limiter_takes_longer_wait_not_sum():
    vt = VirtualTime()
    rl = RateLimiter(1000, {"a": 500}, burst_s=0.1, clock=vt.clock, sleep=vt.sleep)
    # burst clamps to MIN_BURST (256 KiB) at these tiny rates: drain it first
    rl.acquire("a", 256 * 1024)
    t0 = vt.t
    rl.acquire("a", 5000)  # endpoint 500 B/s binds: 10 s (not 10 + 5)
    assert vt.t - t0 == pytest.approx(10.0, rel=0.01)
    rl.acquire("b", 1000)  # b has no own cap; overall is in debt from a's bytes
    assert rl.endpoint("b") is None


def test_bytes_the_overall_cap_counted_are_charged_to_an_endpoint_alone():
    """A stream's send leg (``overall=False``) waits on the destination's cap only: the
    overall cap counted those bytes when they came in."""
    vt = VirtualTime()
    rl = RateLimiter(1000, {"dst": 4000}, burst_s=0.1, clock=vt.clock, sleep=vt.sleep)
    for name in ("src", "dst"):     # drain both buckets' start-up burst (256 KiB)
        rl.acquire(name, 256 * 1024)
    t0 = vt.t
    rl.acquire("src", 1000)                   # in: the overall 1000 B/s binds
    rl.acquire("dst", 1000, overall=False)    # out: dst's 4000 B/s alone
    assert vt.t - t0 == pytest.approx(1.0, rel=0.01)   # charged twice it would be 2 s
    t0 = vt.t
    rl.acquire("src", 4000, overall=False)    # src has no cap of its own: free
    assert vt.t == t0


def test_unlimited_is_free():
    rl = RateLimiter()
    assert not rl.enabled
    t = time.perf_counter()
    for _ in range(10_000):
        rl.acquire("x", 1 << 20)
    assert time.perf_counter() - t < 0.5


def _push(acquire, threads: int, chunk: int, seconds: float) -> float:
    """Threads push chunks through ``acquire`` for ``seconds``; return the measured B/s."""
    done = [0] * threads
    t0 = time.monotonic()
    stop = t0 + seconds

    def work(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            acquire(chunk)
            n += chunk
        done[i] = n

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=seconds + 10)
    return sum(done) / (time.monotonic() - t0)


@pytest.mark.parametrize("threads,chunk", [(4, 1 << 20), (16, 256 << 10)])
def test_bucket_binds_within_5_percent(threads, chunk):
    cap = 400e6  # 400 MB/s
    b = TokenBucket(cap)
    rate = _push(b.acquire, threads, chunk, 2.0)
    print(f"bucket 400 MB/s, {threads} threads x {chunk >> 10} KiB: ratio {rate / cap:.4f}")
    assert abs(rate / cap - 1) < 0.05, rate / cap


def test_limiter_per_endpoint_binds():
    rl = RateLimiter(None, 100e6)
    ra, rb = [], []
    ta = threading.Thread(target=lambda: ra.append(_push(lambda n: rl.acquire("a", n), 4,
                                                         512 << 10, 2.0)))
    tb = threading.Thread(target=lambda: rb.append(_push(lambda n: rl.acquire("b", n), 4,
                                                         512 << 10, 2.0)))
    ta.start()
    tb.start()
    ta.join(15)
    tb.join(15)
    print(f"per-endpoint 100 MB/s, 2 x 4 threads: ratios {ra[0] / 100e6:.4f} {rb[0] / 100e6:.4f}")
    assert abs(ra[0] / 100e6 - 1) < 0.05, ra
    assert abs(rb[0] / 100e6 - 1) < 0.05, rb


def test_limiter_overall_binds_across_endpoints():
    rl = RateLimiter(150e6, 1e12)
    out = []

    def run(ep):
        out.append(_push(lambda n: rl.acquire(ep, n), 4, 1 << 20, 2.0))

    ts = [threading.Thread(target=run, args=(ep,)) for ep in ("a", "b")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    print(f"overall 150 MB/s over 2 endpoints x 4 threads: ratio {sum(out) / 150e6:.4f}")
    assert abs(sum(out) / 150e6 - 1) < 0.05, out
