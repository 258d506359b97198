"""The Python API of the mover: one module per operation, each returning a result value.

``copy``/``copy_async`` (copy.py), ``sync`` (sync.py), ``verify`` (verify.py), ``gc``
(gc.py), ``probe``/``plan`` (probe.py); ``transfer.py`` runs planned jobs under a resume
journal for copy and sync alike. The knobs are one ``TransferOptions`` (``options.py``),
the results plain data (``results.py``), the failures one tree (``errors.py``).

The operations are imported on first use (PEP 562): ``from trunkline.api import verify``
does not pay for the copy engine, nor ``cp`` for verify's. Most operations share their
module's name, and importing a submodule binds its name on the package; ``_Api`` keeps
the name bound to the operation, as the eager imports did.

Layering: this package calls the engine and the cluster; nothing below it imports it.
"""

from __future__ import annotations

import importlib
import sys
import types

from ..errors import TrunklineError, UsageError
from ..options import TransferOptions
from ..results import Failure, TransferResult

_LAZY = {"copy": "copy", "copy_async": "copy", "gc": "gc", "ProbeResult": "probe",
         "plan": "probe", "probe": "probe", "sync": "sync", "verify": "verify"}

__all__ = [
    "Failure", "GcReport", "Mismatch", "ProbeResult", "SyncResult", "TransferOptions",
    "TransferResult", "TrunklineError", "UsageError", "VerifyReport", "copy", "copy_async",
    "gc", "plan", "probe", "sync", "verify",
]


_REPORTS = {"GcReport", "Mismatch", "SyncResult", "VerifyReport"}
"""What sync, verify and gc return (``reports.py``): a copy does not build them."""


def __getattr__(name: str):
    if name in _REPORTS:
        value = getattr(importlib.import_module("trunkline.reports"), name)
        globals()[name] = value
        return value
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


class _Api(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # the import system binding submodule ``copy`` on the package: keep the operation
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Api
