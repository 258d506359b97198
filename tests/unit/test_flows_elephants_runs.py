"""The elephant detector's pre-filter (``elephants._hot_runs``): keys that cannot start an
episode are dropped before the per-key loop, and the episodes are exactly those of the
loop over every key (random interval series, compared with the loop run alone)."""

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
            out += E._episodes(int(k[lo]), first, dense, np.minimum(cover, th.interval_s), rate, th)
    return out


def test_hot_runs():
    key = np.array([1, 1, 1, 1, 2, 2, 3])
    iv = np.array([0, 1, 3, 4, 5, 6, 0])
    hot = np.array([True, True, True, True, True, False, True])
    assert E._hot_runs(key, iv, hot).tolist() == [1, 2, 1, 2, 1, 0, 1]  # 1 -> 3 is a gap


def test_prefilter_keeps_every_episode():
    rng = np.random.default_rng(1)
    found = 0
    for on in (1, 2, 3):
        th = E.Thresholds(on_intervals=on)
        for _ in range(150):
            n = int(rng.integers(1, 300))
            pairs = {(int(a), int(c)): float(rng.choice([0, 2e9, 4e9, 7e9, 2e10]))
                     for a, c in zip(rng.integers(0, 20, n), rng.integers(0, 30, n), strict=True)}
            k = np.array([p[0] for p in pairs])
            i = np.array([p[1] for p in pairs])
            b = np.array(list(pairs.values()))
            busy = rng.uniform(1, 60, len(k))
            got = E.detect(k, i, b, th, busy)
            want = _loop_over_every_key(k, i, b, busy, th)
            assert [(e.key, e.start_interval, e.end_interval, e.bits, e.busy_s) for e in got] == \
                [(e.key, e.start_interval, e.end_interval, e.bits, e.busy_s) for e in want]
            found += len(want)
    assert found > 100  # the series do make episodes
