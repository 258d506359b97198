"""What the mover's operations return: plain data, printable and JSON-able.

Why a module of its own, at the bottom of the house: the engine reports ``Failure``s and
``Mismatch``es, the API wraps them in results, the cluster extends ``TransferResult``
and the CLI prints them. When the results lived in ``api.py`` the cluster had to import
the API layer above it (an import cycle); here every layer can name them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Failure", "GcJournal", "GcReport", "Mismatch", "SyncResult", "TransferResult",
           "Unverified", "VerifyReport"]


@dataclass
class Failure:
    """An object that could not be moved, and why (one stderr line each)."""

    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.name}: {self.error}"


@dataclass
class Unverified:
    """A finished object that nothing comparable was found for, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: unverified ({self.reason})"


@dataclass(frozen=True)
class Mismatch:
    """kind: missing (in source only), extra (in destination only), size, content, error."""

    kind: str
    key: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}" + (f": {self.detail}" if self.detail else "")


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


@dataclass
class SyncResult:
    """What a sync decided and did. ``ok`` is False when any copy or delete failed."""

    src: str
    dst: str
    dry_run: bool
    src_objects: int
    dst_objects: int
    copied: int          # objects copied (or, with dry_run, that would be)
    copied_bytes: int
    unchanged: int
    deleted: int         # (or, with dry_run, that would be)
    excluded: int
    seconds: float
    transfer: TransferResult | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and (self.transfer is None or self.transfer.ok)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["transfer"] = self.transfer.to_dict() if self.transfer else None
        d["failures"] = [str(f) for f in self.failures]
        d["ok"] = self.ok
        d["seconds"] = round(self.seconds, 4)
        return d


@dataclass
class VerifyReport:
    """Every mismatch found; ``ok`` when there is none. ``methods`` counts how each
    compared pair was proven equal or different (md5, crc32c, sha256, composite-crc32c,
    stream-crc32c, ...); ``unverified`` lists the pairs nothing proved (objects not read
    back, ``read=False``), a failure with ``require_verified``."""

    src: str
    dst: str
    src_objects: int
    dst_objects: int
    compared: int
    mismatches: list[Mismatch]
    methods: dict[str, int]
    seconds: float
    unverified: list[Unverified] = field(default_factory=list)
    require_verified: bool = False

    @property
    def ok(self) -> bool:
        """No mismatch, and (with ``require_verified``) no pair left unproven."""
        return not self.mismatches and not (self.require_verified and self.unverified)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mismatches"] = [asdict(m) for m in self.mismatches]
        d["unverified"] = [{"name": u.name, "reason": u.reason} for u in self.unverified]
        d["ok"] = self.ok
        d["seconds"] = round(self.seconds, 4)
        return d


@dataclass
class GcJournal:
    """A journal ``trunkline gc`` found: whose transfer, how old, how far it got."""

    id: str
    path: str
    src: str
    dst: str
    age_s: float
    objects: int
    done: int
    bytes_done: int
    uploads: list[dict]            # {key, dst, upload_id, discarded, aborted}
    partial_files: list[str]       # .tlpart files of unfinished downloads
    removed: bool = False


@dataclass
class GcReport:
    """What ``trunkline gc`` found and did: journals, uploads aborted, files removed."""

    state_dir: str
    journals: list[GcJournal]
    aborted: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    spared: list[str] = field(default_factory=list)    # journals younger than --older-than
    running: list[str] = field(default_factory=list)   # journals whose copy holds the lock

    def to_dict(self) -> dict:
        return asdict(self)
