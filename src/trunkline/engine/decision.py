"""A tuner's decision: the setting it chose, why, and the goodput it saw before.

Apart from the tuner so that its phases (``tune_phases.py``) and its loop (``tune.py``)
both name it without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Decision:
    """A change of setting, with why. ``goodput_bps`` is bits/s measured before it."""

    connections: int
    part_size: int
    reason: str
    goodput_bps: float
    at: float

    def to_dict(self) -> dict:
        return asdict(self)


def pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.0f}%" if old > 0 else "n/a"
