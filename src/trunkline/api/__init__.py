"""The Python API of the mover: one module per operation, each returning a result value.

``copy``/``copy_async`` (copy.py), ``sync`` (sync.py), ``verify`` (verify.py), ``gc``
(gc.py), ``probe``/``plan`` (probe.py); ``transfer.py`` runs planned jobs under a resume
journal for copy and sync alike. The knobs are one ``TransferOptions`` (``options.py``),
the results plain data (``results.py``), the failures one tree (``errors.py``).

Layering: this package calls the engine and the cluster; nothing below it imports it.
"""

from __future__ import annotations

from ..errors import TrunklineError, UsageError
from ..options import TransferOptions
from ..results import Failure, GcReport, Mismatch, SyncResult, TransferResult, VerifyReport
from .copy import copy, copy_async
from .gc import gc
from .probe import ProbeResult, plan, probe
from .sync import sync
from .verify import verify

__all__ = [
    "Failure", "GcReport", "Mismatch", "ProbeResult", "SyncResult", "TransferOptions",
    "TransferResult", "TrunklineError", "UsageError", "VerifyReport", "copy", "copy_async",
    "gc", "plan", "probe", "sync", "verify",
]
