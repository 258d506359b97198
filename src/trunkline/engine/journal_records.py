"""What the resume journal records: parts, objects, multipart uploads left pending.

Apart from ``journal.py`` because the engine's resume logic reads these facts without
needing the SQLite machinery that stores them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartRecord:
    """A finished part as the journal keeps it: where it lies, its CRC32C, its ETag."""

    part_number: int  # 1-based, as in S3
    offset: int
    length: int
    crc32c: int
    etag: str | None


@dataclass(frozen=True)
class ObjectRecord:
    """One object of the transfer as the journal knows it.

    ``restarted`` is True when a record existed but the source changed (size, ETag,
    mtime or part size), so its parts were dropped; ``discarded_upload_id`` is then the
    old multipart upload, which the engine should abort (it is also kept in
    ``discarded_uploads()`` until ``forget_upload``).
    """

    id: int
    key: str
    dst: str
    size: int
    etag: str | None
    mtime: float | None
    part_size: int
    upload_id: str | None
    done: bool
    crc32c: int | None
    restarted: bool = False
    discarded_upload_id: str | None = None


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload the journal started and has not completed (gc aborts it)."""

    obj_id: int
    key: str
    dst: str
    upload_id: str
