"""Latency that rises while goodput rises must not stop slow start (sans-I/O).

Seen through the emulated WAN on a busy host: TTFB doubled as connections went 16 -> 32
while goodput still grew, and shedding then cost a quarter of the rate of a 5 s transfer.
"""

from __future__ import annotations

from trunkline.engine.tune import Tuner

MiB = 2**20


def test_inflation_during_paying_growth_is_not_shed():
    per_conn, link, base_ttfb = 20e6, 1.2e9, 0.040   # needs ~60 connections
    t = Tuner(max_connections=64, max_memory=8192 * MiB, part_size=16 * MiB,
              initial_connections=8, interval=0.5)
    now, total = 0.0, 0.0
    t.observe(now, 0, ttfb_s=base_ttfb)
    for _ in range(24):
        c = t.connections
        g = min(link, c * per_conn)
        now += 0.5
        total += g * 0.5
        # the server queues a little more with every connection: x3 TTFB at 64
        t.observe(now, int(total), ttfb_s=base_ttfb * (1 + c / 32))
    assert not any("latency" in d.reason for d in t.decisions[:3]), t.decisions
    assert t.connections >= 56, t.decisions


def test_inflation_without_gain_is_still_shed_after_slow_start():
    # flat goodput past 8 connections, TTFB growing with each: shed once growth stopped
    t = Tuner(max_connections=64, max_memory=8192 * MiB, part_size=64 * MiB,
              initial_connections=32, interval=0.5)
    now, total = 0.0, 0.0
    t.observe(now, 0, ttfb_s=0.020)
    for _ in range(40):
        c = t.connections
        now += 0.5
        total += 400e6 * 0.5
        t.observe(now, int(total), ttfb_s=0.020 * max(1.0, c / 8))
    assert any("latency" in d.reason for d in t.decisions), t.decisions
    assert t.connections <= 20


def test_the_tail_of_a_transfer_is_not_measured():
    # 32 connections x 16 MiB parts; the last 0.5 GiB drains at a falling rate: that
    # drop is work running out, and must not be read as "32 connections do not pay"
    t = Tuner(max_connections=64, max_memory=8192 * MiB, part_size=16 * MiB,
              initial_connections=32, interval=0.5)
    total_size = 1200 * MiB
    now, done = 0.0, 0.0
    t.observe(now, 0, ttfb_s=0.02)
    rate = 400e6
    while done < total_size:
        left = total_size - done
        tail = left < 2 * t.connections * t.part_size
        r = rate * (left / (2 * t.connections * t.part_size)) if tail else rate
        now += 0.5
        done = min(total_size, done + max(r, 20e6) * 0.5)
        t.observe(now, int(done), ttfb_s=0.02, remaining_bytes=int(total_size - done))
    assert not any("hold at" in d.reason or "back to" in d.reason for d in t.decisions), \
        t.decisions


def _run(total_size: int, rate_of, initial: int = 16) -> Tuner:
    """A transfer of ``total_size`` bytes whose goodput is ``rate_of(connections)``, with
    the bytes left known from the start (a complete listing), to its end."""
    t = Tuner(max_connections=64, max_memory=8192 * MiB, part_size=16 * MiB,
              initial_connections=initial, interval=0.5)
    now, done = 0.0, 0.0
    t.observe(now, 0, ttfb_s=0.02, remaining_bytes=total_size)
    while done < total_size:
        now += 0.5
        done = min(total_size, done + rate_of(t.connections) * 0.5)
        t.observe(now, int(done), ttfb_s=0.02, remaining_bytes=int(total_size - done))
    return t


def test_no_step_that_the_work_left_cannot_measure():
    """1 GiB at 150 MB/s whatever the setting (a store on shared cores): once the first
    level is measured, a step to 32 would leave fewer than two parts per connection
    before it could be judged, so it could never be undone. It is not taken."""
    t = _run(1024 * MiB, lambda c: 150e6)
    assert t.connections == 16, t.decisions
    assert not any("grow" in d.reason for d in t.decisions), t.decisions
    assert any("too little work left" in d.reason for d in t.decisions), t.decisions


def test_a_long_transfer_still_grows_while_growth_pays():
    """The same start with 100 GiB left and goodput in proportion to connections up to
    2.4 GB/s: slow start doubles while each step pays, as before."""
    t = _run(100 * 1024 * MiB, lambda c: min(2.4e9, c * 50e6))
    assert any("grow" in d.reason for d in t.decisions), t.decisions
    assert t.connections >= 48, t.decisions
