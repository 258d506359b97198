"""trunkline: a line-rate mover between object stores and local flash, and a flow lens.

The public Python API of the mover: ``copy``/``copy_async``, ``sync``, ``verify``, ``gc``,
``probe`` and ``plan``, configured by one ``TransferOptions`` and returning plain results
(``TransferResult``, ``SyncResult``, ``VerifyReport``, ...); every failure it raises on
purpose is a ``TrunklineError``. The flow lens lives under ``trunkline.flows``. Imports
are lazy so that ``import trunkline.flows`` does not pay for botocore, nor the mover for
pyarrow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "Failure", "GcReport", "Mismatch", "ProbeResult", "SyncResult", "TransferOptions",
    "TransferResult", "TrunklineError", "UsageError", "VerifyReport", "copy", "copy_async",
    "gc", "plan", "probe", "sync", "verify",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name in _API:   # imported on first use (a string: the flow lens never pulls the mover in)
        api = importlib.import_module(f"{__name__}.api")
        return getattr(api, name)
    raise AttributeError(f"module 'trunkline' has no attribute {name!r}")
