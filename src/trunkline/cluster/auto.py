"""How many engine processes a copy gets when its caller does not say (``cp`` without
``-P``): more than one only for a long listing of small objects.

Why: one engine process moves small objects only as fast as its interpreter lock lets its
threads prepare each request and finish each file (1,000-1,600 objects/s measured, on 2
cores and on 16), while each object costs the store and the wire little. More processes
on the same host multiply that: ``-P 2`` moved 26 % more objects per second than one
process on the 2-core VM that also ran the server, ``-P 8`` 6.2x on 16 cores
(bench/RESULTS.md, issue 18). Large objects gain nothing: their compiled loops run without
the lock, on several cores already. A short listing cannot pay for the processes' start,
the shards' hand-outs and a second listing of its first page.

The rule reads the sizes of the listing's first page (one ListObjectsV2 page); it is pure,
so the same listing on the same machine always gets the same answer, and a rerun resumes
the state its first run left (the shard ledger of several processes, or one engine's
journal).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from ..engine.tune import SMALL_OBJECT_BYTES
from ..options import TransferOptions

__all__ = ["AUTO_LOOK", "AUTO_MAX_PROCESSES", "AUTO_PAGE", "available_cpus", "choose",
           "memory_shared", "processes_for"]

AUTO_PAGE = 1000
"""Objects looked at before deciding: one ListObjectsV2 page. A listing shorter than this
is moved by one process."""
AUTO_LOOK = 10 * AUTO_PAGE
"""``sync``: the listed objects among which its first ``AUTO_PAGE`` copies are looked for
before deciding (copies start only then; ~0.3 s of listing on loopback): changes sparser
than that are moved by one process."""
AUTO_MAX_PROCESSES = 8
"""The most processes chosen: on 16 cores 8 processes moved 6.2x one process's objects per
second and 12 only 6.6x, against one nginx worker (bench/RESULTS.md); each process is one
more interpreter's memory (~40 MiB) and its share of the connections."""
SMALL_SHARE = 0.9
"""The share of small objects in the first page above which the listing counts as small."""


def processes_for(sizes: Sequence[int], *, cpus: int) -> int:
    """Engine processes for a listing whose first page has objects of ``sizes``, on a host
    whose process may run on ``cpus`` CPUs: one, unless the page is full and at least 90 %
    of it are objects of at most ``SMALL_OBJECT_BYTES``, then one per CPU up to
    ``AUTO_MAX_PROCESSES``."""
    if len(sizes) < AUTO_PAGE or cpus < 2:
        return 1
    small = sum(1 for s in sizes if s <= SMALL_OBJECT_BYTES)
    if small < SMALL_SHARE * len(sizes):
        return 1
    return min(cpus, AUTO_MAX_PROCESSES)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as ``taskset`` or a container's
    cpuset sets it), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_shared(opts: TransferOptions, processes: int) -> TransferOptions:
    """``opts`` for each of ``processes`` engines chosen by the rule: ``max_memory`` stays
    the command's total, split evenly (at least one part each).

    Why: the caller asked for one copy, not for processes, so the bound it set (or the
    default's) holds for the whole copy. A listing whose first page is small may hold large
    objects further on; streamed s3 -> s3, 8 processes with the whole bound each would
    buffer 8 times it. ``-P N`` given by the caller keeps it per process, as documented.
    """
    if processes <= 1:
        return opts
    return replace(opts, max_memory=max(int(opts.max_memory) // processes,
                                        opts.initial_part_size))


def choose(sizes: Sequence[int], opts: TransferOptions) -> tuple[int, TransferOptions]:
    """What ``'auto'`` gives a copy whose first objects have ``sizes``: the count of
    processes on the CPUs this process may use, and each one's options (the memory bound
    split among them)."""
    n = processes_for(sizes, cpus=available_cpus())
    return n, memory_shared(opts, n)
