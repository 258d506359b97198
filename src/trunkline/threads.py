"""Whether this process runs one thread only: the rule behind forking and the fast exit.

Counted by the kernel where it says (``/proc/self/task``), so a library's native threads
count too (a C thread pool that ``threading`` never sees), else by ``threading``.
"""

from __future__ import annotations

import os
import threading

__all__ = ["sole_thread"]


def sole_thread() -> bool:
    """True when no thread runs in this process but the caller's."""
    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return True
