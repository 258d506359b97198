"""Elephant flows: sustained, large transfers, found with hysteresis.

A flow (5-tuple) is cut into fixed intervals and its rate computed per interval (record
bytes spread evenly over the intervals a record spans, renormalised by sampling rate).
It becomes an elephant after ``on_intervals`` consecutive intervals at or above
``rate_on_bps`` and stays one until ``off_intervals`` consecutive intervals fall below
``rate_off_bps`` (lower than the entry rate: hysteresis, so a transfer hovering around
the line is one episode, not a flapping series). An episode counts when it also moved at
least ``min_bytes`` and lasted at least ``min_duration_s``.

Defaults and why:
- interval 60 s: the usual active timeout of NetFlow/IPFIX exporters, so one record is
  about one interval and no interval is empty merely because of export timing;
- enter at 100 Mb/s for 2 intervals: far above interactive/web traffic (a 4K stream is
  ~25 Mb/s) yet well below one data-mover connection (a single TCP stream on a 10-100 G
  path runs at 1-10 Gb/s), and two minutes rule out bursts;
- leave below 50 Mb/s for 2 intervals: half the entry rate, the classic hysteresis band;
- at least 1 GB and 120 s of records: the smallest object-storage checkpoint shard or dataset part
  worth tracking; smaller transfers are mice whatever their peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError, UsageError


@dataclass(frozen=True)
class Thresholds:
    interval_s: int = 60
    rate_on_bps: float = 100e6
    rate_off_bps: float = 50e6
    on_intervals: int = 2
    off_intervals: int = 2
    min_bytes: float = 1e9
    min_duration_s: float = 120

    def __post_init__(self):
        if self.rate_off_bps > self.rate_on_bps:
            raise UsageError("elephant rate_off_bps must not exceed rate_on_bps (hysteresis)")
        if self.interval_s <= 0 or self.on_intervals < 1 or self.off_intervals < 1:
            raise UsageError("elephant interval_s, on_intervals and off_intervals must be positive")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Episode:
    key: int  # index of the flow key given to ``detect``
    start_interval: int
    end_interval: int  # inclusive
    bits: float
    peak_bps: float
    busy_s: float  # seconds actually covered by the flow's records within the episode

    def span_s(self, interval_s: int) -> int:
        return (self.end_interval - self.start_interval + 1) * interval_s


def detect(key: np.ndarray, interval: np.ndarray, bits: np.ndarray, th: Thresholds,
           busy: np.ndarray | None = None) -> list[Episode]:
    """Episodes from per-(key, interval) bit counts (any order; missing intervals are 0).
    ``busy`` is the seconds of each interval the flow's records cover (default: all of
    it); the duration threshold applies to it, so one short record straddling an interval
    boundary is not mistaken for two minutes of transfer. Sans-I/O: arrays in, episodes out.

    The hysteresis walks events, not intervals: an episode starts where a run of hot
    intervals (rate >= ``rate_on_bps``) reaches ``on_intervals`` and ends before the first
    *break* after it, a run of at least ``off_intervals`` cold intervals (rate below
    ``rate_off_bps``; a missing interval is cold), or at the last interval that is not cold.
    Runs and breaks are found for all keys at once with array operations; the Python loop
    runs over episodes and breaks only (a per-key loop over dense intervals took 13 s of a
    110 M-record report, ``bench/RESULTS.md``)."""
    if len(key) == 0:
        return []
    if busy is None:
        busy = np.full(len(key), float(th.interval_s))
    key, interval = np.asarray(key, np.int64), np.asarray(interval, np.int64)
    order = np.lexsort((interval, key))
    key, interval = key[order], interval[order]
    bits, busy = np.asarray(bits, np.float64)[order], np.asarray(busy, np.float64)[order]
    new = np.ones(len(key), bool)  # one row per (key, interval): duplicates summed
    new[1:] = (key[1:] != key[:-1]) | (interval[1:] != interval[:-1])
    if not new.all():
        at = np.flatnonzero(new)
        key, interval = key[at], interval[at]
        bits, busy = np.add.reduceat(bits, at), np.add.reduceat(busy, at)
    rate = bits / th.interval_s
    # only a key with ``on_intervals`` consecutive hot intervals can start an episode
    runs = _hot_runs(key, interval, rate >= th.rate_on_bps)
    keep = np.isin(key, key[runs >= th.on_intervals])  # = hot_keys(...), runs reused below
    if not keep.any():
        return []
    key, interval, bits, rate, runs = key[keep], interval[keep], bits[keep], rate[keep], runs[keep]
    cover = np.minimum(busy[keep], th.interval_s)
    first = np.ones(len(key), bool)  # a key's first row
    first[1:] = key[1:] != key[:-1]
    rank = np.cumsum(first) - 1  # the key's number, 0..
    last = np.r_[first[1:], True]
    cold = rate < th.rate_off_bps
    gap = np.where(first, 0, interval - np.r_[interval[:1], interval[:-1]] - 1)  # missing before
    # the length of the cold run that ends at each cold row (its gaps included): a sum over
    # segments that start at each warm row and at each key's first row
    inc = np.where(cold, gap + 1, 0)
    csum = np.cumsum(inc)
    seg_start = np.flatnonzero(~cold | first)[np.cumsum(~cold | first) - 1]
    cold_len = np.where(cold, csum - csum[seg_start] + inc[seg_start], 0)
    before = np.where(cold | first, 0, np.r_[0, cold_len[:-1]] + gap)  # cold run before a warm row
    # breaks, in (key, interval) order: (row, first interval of the cold run)
    b_row = np.flatnonzero((before >= th.off_intervals) | (last & (cold_len >= th.off_intervals)))
    b_from = np.where(cold[b_row], interval[b_row] - cold_len[b_row] + 1, interval[b_row] - before[b_row])
    entries = np.flatnonzero(runs == th.on_intervals)
    last_warm = np.full(rank[-1] + 1, -1)
    np.maximum.at(last_warm, rank[~cold], np.flatnonzero(~cold))
    eps: list[tuple[int, int, int]] = []  # (key rank, first interval, last interval)
    bi = ei = 0
    while ei < len(entries):
        e = entries[ei]
        r, at = rank[e], interval[e]
        while bi < len(b_row) and (rank[b_row[bi]] < r or (rank[b_row[bi]] == r and b_from[bi] <= at)):
            bi += 1
        if bi < len(b_row) and rank[b_row[bi]] == r:  # ends before the first break after it
            end = b_from[bi] - 1
        else:  # still an elephant at the end of the key's data: its last busy interval
            end = interval[last_warm[r]]
        eps.append((int(r), int(at - th.on_intervals + 1), int(end)))
        while ei < len(entries) and rank[entries[ei]] == r and interval[entries[ei]] <= end:
            ei += 1  # hot runs within the episode
    ep = np.array(eps, np.int64)
    # (key, interval) as one sorted number; exact only while it fits in 63 bits, which
    # sane record times always do (a quarter is 132 k minutes): else fail, not mix keys
    base, width = int(interval.min()), int(interval.max() - interval.min()) + 1
    if (int(rank[-1]) + 1) * width >= 1 << 63:
        raise DataError(f"elephant intervals span {width} x {int(rank[-1]) + 1} keys: too wide to index")
    pos = rank * width + (interval - base)
    lo = np.searchsorted(pos, ep[:, 0] * width + (ep[:, 1] - base), "left")
    hi = np.searchsorted(pos, ep[:, 0] * width + (ep[:, 2] - base), "right")
    # sums and peaks over each episode's rows [lo, hi): the episodes are disjoint and in
    # row order, so one reduceat over lo, hi, lo, hi... gives them at the even places
    at = np.column_stack([lo, hi]).ravel()
    e_bits = np.add.reduceat(np.r_[bits, 0.0], at)[0::2]
    e_cover = np.add.reduceat(np.r_[cover, 0.0], at)[0::2]
    e_peak = np.maximum.reduceat(np.r_[rate, 0.0], at)[0::2]
    ok = (e_bits >= th.min_bytes * 8) & (e_cover >= th.min_duration_s)
    key_of = key[np.flatnonzero(first)]
    return [Episode(int(key_of[ep[j, 0]]), int(ep[j, 1]), int(ep[j, 2]), float(e_bits[j]),
                    float(e_peak[j]), float(e_cover[j])) for j in np.flatnonzero(ok)]


def hot_keys(key: np.ndarray, interval: np.ndarray, bits: np.ndarray, th: Thresholds,
             slack: float = 0.0) -> np.ndarray:
    """The keys with a run of ``on_intervals`` consecutive intervals at ``rate_on_bps``
    (bits per (key, interval), any order, no duplicates): the only ones that can start an
    episode. ``slack``: the entry rate lowered by that fraction (a superset, for sums made
    in another order)."""
    order = np.lexsort((interval, key))
    key, interval = np.asarray(key)[order], np.asarray(interval)[order]
    hot = np.asarray(bits, np.float64)[order] / th.interval_s >= th.rate_on_bps * (1 - slack)
    return np.unique(key[_hot_runs(key, interval, hot) >= th.on_intervals])


def _hot_runs(key: np.ndarray, interval: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """For rows sorted by (key, interval): the length of the run of consecutive hot
    intervals of the same key that ends at each row (0 where the row is not hot; a
    missing interval breaks a run, as its rate is 0)."""
    n = len(key)
    if n == 0:
        return np.zeros(0, np.int64)
    cont = np.zeros(n, bool)
    cont[1:] = (key[1:] == key[:-1]) & (interval[1:] == interval[:-1] + 1) & hot[:-1]
    cont &= hot
    idx = np.arange(n)
    start = np.maximum.accumulate(np.where(hot & ~cont, idx, 0))
    return np.where(hot, idx - start + 1, 0)


def find(con, th: Thresholds, where: str = "true", limit: int | None = None) -> list[dict]:
    """Elephant episodes over the enriched flows table ``ef`` (see ``stats.prepare``)."""
    from .stats import elephant_intervals, elephant_keys  # the SQL lives with the report's

    I = th.interval_s  # noqa: E741
    t = elephant_intervals(con, I, th.min_bytes * 8, where)
    eps = detect(t["k"].astype(np.int64), t["i"].astype(np.int64), t["bits"], th, t["busy"])
    if not eps:
        return []
    eps.sort(key=lambda e: -e.bits)
    eps = eps[:limit]
    cols, rows = elephant_keys(con, np.unique([e.key for e in eps]))
    keys = {r[cols.index("k")]: r for r in rows}
    out = []
    for e in eps:
        row = dict(zip(cols, keys[e.key], strict=True))
        row.pop("k")
        dur = e.span_s(I)
        out.append({**row, "start": int(e.start_interval * I), "duration_s": dur, "busy_s": e.busy_s,
                    "bytes": e.bits / 8, "avg_bps": e.bits / dur, "peak_bps": e.peak_bps})
    return out
