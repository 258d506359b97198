"""The CLI process's start and end: the collector while a command loads, and the exit.

**Start.** The cyclic garbage collector is off, then frozen and back on.

Why: a short command is mostly imports. Importing the few hundred modules of a one-key
``cp`` allocates enough container objects to run the collector many times, each pass
scanning what is all long-lived (modules, classes, functions): about a tenth of such a
copy's start-up on the 2-core VM (bench/RESULTS.md). So from the entry point on the
collector is off until the command's work begins (``exits.guarded``, the door every
command's work goes through); then what was imported is frozen (``gc.freeze``: never
scanned again) and collection resumes. A command that does not pass the door gets the
collector back after ``NET_S`` seconds all the same. Only the CLI does this: a program
that imports trunkline keeps its own collector settings.

**End** (``leave``). When the command is done and no other thread runs, the exit handlers
run, the standard streams are flushed, and the process ends there (``os._exit``), without
the interpreter's teardown: freeing the objects of a few hundred modules one by one, ~15 %
of a one-key ``cp`` on the 2-core VM (bench/RESULTS.md), memory the kernel frees at once.
Only where the process's main module is the CLI (``python -m trunkline.cli.main``, the
``trunkline`` script): a program that runs the CLI inside itself (``runpy``) gets its
``SystemExit`` back.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn

from ..threads import sole_thread

__all__ = ["begin", "leave", "work_begins"]

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


def leave(code: object) -> NoReturn:
    """End the command with exit status ``code`` (``SystemExit.code``). At the entry point
    with no other thread: exit handlers, flushed streams, ``os._exit``; else ``sys.exit``
    (a thread may still write, a caller may catch it)."""
    status = 0 if code is None else code
    if not (isinstance(status, int) and _main_is_the_cli() and sole_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except (OSError, ValueError):   # a closed pipe: let the interpreter report it as usual
        sys.exit(code)
    os._exit(status & 0xFF)


def _main_is_the_cli() -> bool:
    """The process runs the CLI as its main module: ``python -m`` or the script."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "trunkline.cli.main":
        return True
    path = getattr(main, "__file__", None)
    return isinstance(path, str) and os.path.basename(path) == "trunkline"
