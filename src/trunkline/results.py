"""What the mover's copies return: plain data, printable and JSON-able.

Why a module of its own, at the bottom of the house: the engine reports ``Failure``s and
``Unverified`` objects, the API wraps them in results, the cluster extends
``TransferResult`` and the CLI prints them. When the results lived in ``api.py`` the
cluster had to import the API layer above it (an import cycle); here every layer can name
them. What sync, verify and gc return is ``reports.py``'s: a copy does not build those
classes at start-up (issue 18: each dataclass costs its start ~1 ms).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Failure", "Skipped", "Skips", "TransferResult", "Unverified"]


@dataclass
class Failure:
    """An object that could not be moved, and why (one stderr line each)."""

    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.name}: {self.error}"


@dataclass
class Skipped:
    """A name in a local source folder that is not a file to copy (a symlink to a folder,
    to nothing or to itself; a FIFO, socket or device), and why: listed, never silent."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class Skips:
    """Collects the ``Skipped`` entries of a walk (``local.walk``'s ``on_skip``), in walk
    order; ``covers(rel)``: ``rel`` is one of them or under one (a sync then deletes
    nothing there: the source has something by that name, only not a file)."""

    def __init__(self) -> None:
        self.entries: list[Skipped] = []
        self._names: set[str] = set()

    def __call__(self, name: str, reason: str) -> None:
        self.entries.append(Skipped(name, reason))
        self._names.add(name)

    def covers(self, rel: str) -> bool:
        if not self._names:
            return False
        parts = rel.split("/")
        return any("/".join(parts[:i]) in self._names for i in range(1, len(parts) + 1))


@dataclass
class Unverified:
    """A finished object that nothing comparable was found for, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: unverified ({self.reason})"


@dataclass
class TransferResult:
    """What a transfer did. ``ok`` is False when any object failed."""

    src: str
    dst: str
    bytes: int
    seconds: float
    objects: int
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0
    slowdowns: int = 0
    requests: int = 0
    wire_bytes: int = 0
    peak_buffer_bytes: int = 0
    decisions: list[dict] = field(default_factory=list)
    resumed_bytes: int = 0      # parts a resume found already done
    skipped_objects: int = 0    # objects a resume found already done
    skipped_bytes: int = 0
    connections: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    # the destination store's measured capabilities and what the engine used of them
    capabilities: dict = field(default_factory=dict)
    verified: dict[str, int] = field(default_factory=dict)   # finished objects per check
    unverified: list[Unverified] = field(default_factory=list)   # and the ones none fit
    skipped: list[Skipped] = field(default_factory=list)   # local names that are not files

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def gbps(self) -> float:
        return self.bytes * 8 / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["failures"] = [str(f) for f in self.failures]
        d["unverified"] = [{"name": u.name, "reason": u.reason} for u in self.unverified]
        d["ok"] = self.ok
        d["gbps"] = round(self.gbps, 4)
        d["seconds"] = round(self.seconds, 4)
        return d
