"""The cyclic garbage collector while a command starts: off, then frozen and back on.

Why: a short command is mostly imports. Importing the few hundred modules of a one-key
``cp`` allocates enough container objects to run the collector many times, each pass
scanning what is all long-lived (modules, classes, functions): about a tenth of such a
copy's start-up on the 2-core VM (bench/RESULTS.md). So from the entry point on the
collector is off until the command's work begins (``exits.guarded``, the door every
command's work goes through); then what was imported is frozen (``gc.freeze``: never
scanned again) and collection resumes. A command that does not pass the door gets the
collector back after ``NET_S`` seconds all the same. Only the CLI does this: a program
that imports trunkline keeps its own collector settings.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["begin", "work_begins"]

NET_S = 1.0
"""The latest the collector comes back on, whatever the command does."""

_state: dict = {"off": False, "net": None}


def begin() -> None:
    """At the entry point: collector off, and the safety net armed."""
    if gc.isenabled():
        _state["off"] = True
        gc.disable()
        net = threading.Timer(NET_S, work_begins)
        net.daemon = True
        _state["net"] = net
        net.start()


def work_begins() -> None:
    """The imports are done: freeze them, collector on (once; a no-op without ``begin``).
    The net's thread is stopped and gone when this returns on any other thread, so the
    command's work starts with no thread of ours (``cluster/processes`` forks only then)."""
    if _state["off"]:
        _state["off"] = False
        gc.freeze()
        gc.enable()
    net = _state["net"]
    if net is not None and net is not threading.current_thread():
        _state["net"] = None
        net.cancel()
        net.join()
