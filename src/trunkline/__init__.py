"""trunkline: a line-rate mover between object stores and local flash, and a flow lens.

The public Python API: ``copy``/``copy_async`` returning a ``TransferResult``; the flow
lens lives under ``trunkline.flows``. Imports are lazy so that ``import trunkline.flows``
does not pay for botocore, nor the mover for pyarrow.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {"TransferResult", "copy", "copy_async", "sync", "verify", "probe", "plan"}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name in ("sync", "verify", "gc"):  # issue 3: sync/verify/gc live in api_sync
        return getattr(__import__("trunkline.api_sync", fromlist=["gc"]), name)
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'trunkline' has no attribute {name!r}")
