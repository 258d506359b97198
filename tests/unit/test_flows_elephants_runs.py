"""The elephant detector (``elephants.detect``: hot runs and breaks found with array
operations, a walk over events) finds exactly the episodes of the plain hysteresis loop
over every key's dense interval series (the detector as it was first written, kept here
as the reference), on random series with gaps, duplicates and every on/off setting."""

import numpy as np

from trunkline.flows import elephants as E


def _loop_over_every_key(k, i, b, busy, th):
    order = np.lexsort((i, k))
    k, i, b, busy = k[order], i[order], b[order], busy[order]
    out = []
    bounds = np.flatnonzero(np.diff(k)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(k)], strict=True):
        first = int(i[lo])
        dense = np.zeros(int(i[hi - 1]) - first + 1)
        cover = np.zeros_like(dense)
        np.add.at(dense, i[lo:hi] - first, b[lo:hi])
        np.add.at(cover, i[lo:hi] - first, busy[lo:hi])
        rate = dense / th.interval_s
        if rate.max() >= th.rate_on_bps:
            out += _episodes(int(k[lo]), first, dense, np.minimum(cover, th.interval_s), rate, th)
    return out


def _episodes(k: int, first: int, dense, cover, rate, th):
    on, run_on, run_off, start = False, 0, 0, 0
    eps = []

    def close(end: int):
        seg = slice(start, end + 1)
        e = E.Episode(k, first + start, first + end, float(dense[seg].sum()),
                      float(rate[seg].max()), float(cover[seg].sum()))
        if e.bits >= th.min_bytes * 8 and e.busy_s >= th.min_duration_s:
            eps.append(e)

    for i, r in enumerate(rate):
        if not on:
            run_on = run_on + 1 if r >= th.rate_on_bps else 0
            if run_on >= th.on_intervals:
                on, start, run_off = True, i - th.on_intervals + 1, 0
        else:
            run_off = run_off + 1 if r < th.rate_off_bps else 0
            if run_off >= th.off_intervals:
                close(i - th.off_intervals)
                on, run_on = False, 0
    if on:  # still an elephant at the end of the data: close at the last busy interval
        busy = np.flatnonzero(rate[start:] >= th.rate_off_bps)
        close(start + int(busy[-1]))
    return eps


def _same(got, want):
    assert [(e.key, e.start_interval, e.end_interval) for e in got] == \
        [(e.key, e.start_interval, e.end_interval) for e in want]
    for a, b in zip(got, want, strict=True):  # sums in another order: equal to the last bits
        assert np.isclose(a.bits, b.bits, rtol=1e-12) and np.isclose(a.busy_s, b.busy_s, rtol=1e-12)
        assert a.peak_bps == b.peak_bps


def test_hot_runs():
    key = np.array([1, 1, 1, 1, 2, 2, 3])
    iv = np.array([0, 1, 3, 4, 5, 6, 0])
    hot = np.array([True, True, True, True, True, False, True])
    assert E._hot_runs(key, iv, hot).tolist() == [1, 2, 1, 2, 1, 0, 1]  # 1 -> 3 is a gap


def test_the_detector_finds_the_episodes_of_the_plain_loop():
    rng = np.random.default_rng(1)
    found = 0
    for on, off in ((1, 1), (2, 2), (3, 1), (1, 3), (2, 4)):
        th = E.Thresholds(on_intervals=on, off_intervals=off, min_bytes=float(rng.choice([0, 1e9, 5e9])),
                          min_duration_s=float(rng.choice([0, 120])))
        for _ in range(150):
            n = int(rng.integers(1, 300))
            k = rng.integers(-5, 20, n) * 1_000_003  # any int64 keys
            i = rng.integers(0, int(rng.choice([10, 30, 200])), n) + 28_000_000
            b = rng.choice([0, 2e9, 3e9, 4e9, 7e9, 2e10], n)  # around the off (3e9) and on (6e9) bits
            busy = rng.uniform(1, 60, n)  # duplicated (key, interval) pairs add up
            got = E.detect(k, i, b, th, busy)
            _same(got, _loop_over_every_key(k, i, b, busy, th))
            found += len(got)
    assert found > 500  # the series do make episodes
