"""Human-readable units for output (no heavy imports: the CLI loads it at start)."""

from __future__ import annotations


def human_bytes(n: float, digits: int = 1) -> str:
    """``1.5 GiB`` style (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.{digits}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
