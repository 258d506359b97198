"""flows collect | ingest | sql | status."""

from __future__ import annotations

from .flows import flows  # noqa: F401
