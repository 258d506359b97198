"""What sync, verify and gc return: plain data, printable and JSON-able.

Apart from ``results.py`` (a copy's) so that a copy does not build these classes when it
starts; at the same level of the house, for the same reason (every layer may name them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .results import Failure, Skipped, TransferResult, Unverified

__all__ = ["GcJournal", "GcReport", "Mismatch", "SyncResult", "VerifyReport"]


@dataclass(frozen=True)
class Mismatch:
    """kind: missing (in source only), extra (in destination only), size, content, error."""

    kind: str
    key: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}" + (f": {self.detail}" if self.detail else "")


@dataclass
class SyncResult:
    """What a sync decided and did. ``ok`` is False when any copy or delete failed."""

    src: str
    dst: str
    dry_run: bool
    src_objects: int
    dst_objects: int
    copied: int          # objects copied (or, with dry_run, that would be)
    copied_bytes: int    # their bytes; when copies failed, the bytes that reached DST
    #                      (parts of a failed multipart object included)
    unchanged: int
    deleted: int         # (or, with dry_run, that would be)
    excluded: int
    seconds: float
    transfer: TransferResult | None = None
    failures: list[Failure] = field(default_factory=list)
    failed: int = 0      # objects to copy that were not (each listed in the failures)
    skipped: list[Skipped] = field(default_factory=list)   # source names that are not files

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
    skipped: list[Skipped] = field(default_factory=list)   # source names that are not files

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
