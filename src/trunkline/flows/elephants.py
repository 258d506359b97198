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

from ..errors import UsageError


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
    boundary is not mistaken for two minutes of transfer. Sans-I/O: arrays in, episodes out."""
    if len(key) == 0:
        return []
    if busy is None:
        busy = np.full(len(key), float(th.interval_s))
    order = np.lexsort((interval, key))
    key, interval = key[order], interval[order]
    bits, busy = bits[order].astype(np.float64), busy[order].astype(np.float64)
    # only a key with ``on_intervals`` consecutive intervals at the entry rate can start an
    # episode: find those runs for all keys at once, so the per-key loop below (Python)
    # runs for the few that can, not for every candidate tuple (81 k -> 13 k on 15 M flows)
    keep = np.isin(key, key[_hot_runs(key, interval, bits / th.interval_s >= th.rate_on_bps) >= th.on_intervals])
    key, interval, bits, busy = key[keep], interval[keep], bits[keep], busy[keep]
    if len(key) == 0:
        return []
    bounds = np.flatnonzero(np.diff(key)) + 1
    out: list[Episode] = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(key)], strict=True):
        iv = interval[lo:hi]
        first = int(iv[0])
        dense = np.zeros(int(iv[-1]) - first + 1)
        cover = np.zeros_like(dense)
        np.add.at(dense, iv - first, bits[lo:hi])
        np.add.at(cover, iv - first, busy[lo:hi])
        rate = dense / th.interval_s
        if rate.max() < th.rate_on_bps:
            continue
        out.extend(_episodes(int(key[lo]), first, dense, np.minimum(cover, th.interval_s), rate, th))
    return out


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


def _episodes(k: int, first: int, dense, cover, rate, th: Thresholds):
    on, run_on, run_off, start = False, 0, 0, 0
    eps = []

    def close(end: int):
        seg = slice(start, end + 1)
        e = Episode(k, first + start, first + end, float(dense[seg].sum()),
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


def find(con, th: Thresholds, where: str = "true", limit: int | None = None) -> list[dict]:
    """Elephant episodes over the enriched flows table ``ef`` (see ``stats.prepare``)."""
    from .stats import elephant_intervals, elephant_keys  # the SQL lives with the report's

    I = th.interval_s  # noqa: E741
    t = elephant_intervals(con, I, th.min_bytes * 8, where)
    eps = detect(t["k"].astype(np.int64), t["i"].astype(np.int64), t["bits"], th, t["busy"])
    if not eps:
        return []
    cols, keys = elephant_keys(con)
    eps.sort(key=lambda e: -e.bits)
    out = []
    for e in eps[:limit]:
        row = dict(zip(cols, keys[e.key], strict=True))
        row.pop("k")
        dur = e.span_s(I)
        out.append({**row, "start": int(e.start_interval * I), "duration_s": dur, "busy_s": e.busy_s,
                    "bytes": e.bits / 8, "avg_bps": e.bits / dur, "peak_bps": e.peak_bps})
    return out
