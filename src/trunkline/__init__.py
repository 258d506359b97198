"""trunkline: a line-rate mover between object stores and local flash, and a flow lens.

The public Python API: ``copy``/``copy_async`` returning a ``TransferResult``; the flow
lens lives under ``trunkline.flows``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import TransferResult, copy, copy_async  # noqa: E402

__all__ = ["TransferResult", "__version__", "copy", "copy_async"]
