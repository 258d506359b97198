"""flows classify | simulate | report | elephants."""

from __future__ import annotations

from .flows import flows  # noqa: F401
