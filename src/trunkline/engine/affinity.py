"""One core for a run of small objects: the run's threads kept on the CPU it started on.

Why: the threads of one engine process take turns on one interpreter lock, and a small
object is mostly such turns (a request, a file created, a body, a commit: each system
call hands the lock to another thread). Left free, the kernel wakes the thread that gets
the lock on another, idle core; the one that gave it up then sleeps until the lock comes
back across cores. Measured on the 2-core VM (bench/RESULTS.md), 9 of 10 thread switches
of a small-object download were such hand-overs, and keeping the process's threads on one
core cut them from 5.2 to 2.1 per object, the CPU per object by 23 % and the wall time
by 14 % (small uploads to SeaweedFS: 14 % less CPU, the store setting the pace). A large
object is the opposite case: its compiled loops (receive, CRC32C, write) run without the
lock, in parallel on several cores (one core: 34 % slower). So a run is
kept on one core only while it moves small objects: the first object that is not small
lets every thread of the run go again.

Only one run per process does this (a second run at the same time, or a run sharing its
process with others, such as a cluster worker's, stays free), and only where the process
may use more than one CPU. ``TransferOptions.one_core`` (``--no-one-core``) turns it off,
e.g. on a host whose other work keeps the start CPU busy.
"""

from __future__ import annotations

import os
import threading

__all__ = ["OneCore"]

_lock = threading.Lock()
_active = 0   # runs of this process kept on one core now (at most one)


def current_cpu() -> int | None:
    """The CPU the calling thread runs on now (``/proc/thread-self/stat``), or None."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            stat = f.read()
        # after the command name (which may hold spaces and parentheses): field 39
        return int(stat[stat.rindex(b")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


class OneCore:
    """The CPU a run's threads are kept on, and whether they still are.

    ``hold()`` decides (once, from the thread that starts the run); each of the run's
    threads calls ``enter()`` when it starts and ``follow()`` between tasks; ``let_go()``
    (the first large object) frees them all, each at its next ``follow()``."""

    def __init__(self) -> None:
        self.cpu: int | None = None
        self._all: set[int] | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> bool:
        """Keep this run on the CPU the caller runs on, if the process may use more than
        one and no other run of it is held: -> whether it is."""
        global _active
        if not hasattr(os, "sched_setaffinity"):
            return False
        try:
            allowed = os.sched_getaffinity(0)
        except OSError:
            return False
        cpu = current_cpu()
        if len(allowed) < 2 or cpu is None or cpu not in allowed:
            return False
        with _lock:
            if _active:
                return False
            _active += 1
        self.cpu, self._all, self._held = cpu, set(allowed), True
        return True

    def enter(self) -> None:
        """Called by each of the run's threads as it starts: kept on the CPU if held."""
        if self._held and self.cpu is not None:
            _set(self.cpu)

    def follow(self, kept: bool) -> bool:
        """Between tasks: a thread ``kept`` on the CPU that sees the run let go frees
        itself; -> whether it is still kept."""
        if kept and not self._held:
            _free(self._all)
            return False
        return kept

    def let_go(self) -> None:
        """The run no longer keeps its threads on one core (they free themselves at their
        next ``follow``; the caller, one of them, now)."""
        global _active
        if not self._held:
            return
        self._held = False
        with _lock:
            _active -= 1

    def done(self) -> None:
        """The run ended: the next one may hold a core."""
        self.let_go()


def _set(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass   # (a CPU taken offline meanwhile): the thread stays free


def _free(cpus: set[int] | None) -> None:
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass
