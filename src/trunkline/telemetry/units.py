"""Kept as a re-export: the formatting of units lives in ``trunkline.units``."""

from __future__ import annotations

from ..units import human_bytes

__all__ = ["human_bytes"]
