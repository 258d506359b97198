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
