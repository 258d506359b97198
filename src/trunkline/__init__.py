"""trunkline: a line-rate mover between object stores and local flash, and a flow lens.

The public Python API lives here: ``copy``/``copy_async`` (and later ``sync``, ``verify``,
``probe``, ``plan``); the flow lens is under ``trunkline.flows``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
