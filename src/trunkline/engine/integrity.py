"""Checksums and ETags: CRC32C per part, combined per object; S3 ETag arithmetic.

Why: a transfer hashes each part once, while the bytes are hot, on whichever worker
thread moved them. ``crc32c_combine`` then folds the per-part CRCs into the whole-object
CRC32C without rereading a byte, and the ETag helpers recompute what an S3 store reports
(single-part MD5, multipart ``md5-of-md5s-N``, COMPOSITE ``crc32c-of-crcs-N``) so a copy can
be checked against the store. Everything here is sans-I/O except ``file_digests`` and
``expected_etag_for_file``, which read a local file with large positional reads.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Literal

import google_crc32c

from ..native.crc import crc32c  # one implementation for the engine and the hot loop
from ..storage.local import open_source
from ..storage.s3_data import b64_to_crc32c, crc32c_to_b64  # the header form (re-exported)
from ..units import MiB
from .crc_combine import CRC32C, combine  # the GF(2) arithmetic, shared with checksums

__all__ = [
    "COMMON_PART_SIZES",
    "FileDigest",
    "b64_to_crc32c",
    "bare_etag",
    "candidate_part_sizes",
    "composite_checksum",
    "crc32c",
    "crc32c_combine",
    "crc32c_to_b64",
    "etag_kind",
    "expected_etag_for_file",
    "file_digests",
    "multipart_etag",
    "part_count",
    "parts_in_etag",
    "single_etag",
]

# --------------------------------------------------------------------------- CRC32C


# crc32c() lives with the compiled hot path (trunkline.native.crc), which shares the
# library with it; re-exported here for the engine's callers. The combine is zlib's
# crc32_combine in GF(2), in crc_combine for all three CRCs (checksums uses it too).


def crc32c_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC32C of A||B from CRC32C(A), CRC32C(B) and len(B); O(log len_b), no data."""
    return combine(CRC32C, crc_a, crc_b, len_b)


def crc32c_combine_all(parts: list[tuple[int, int]]) -> int:
    """Fold ``[(crc, length), ...]`` in order into the CRC32C of the concatenation.

    The first part needs no combining (an empty prefix changes nothing): a one-part object,
    the common small one, costs no polynomial arithmetic."""
    if not parts:
        return 0
    acc = parts[0][0]
    for crc, length in parts[1:]:
        acc = crc32c_combine(acc, crc, length)
    return acc


def composite_checksum(part_crcs: list[int]) -> str:
    """What S3 reports as ChecksumCRC32C of a COMPOSITE multipart object: ``b64-N``.

    It is a checksum of the part checksums (not of the object bytes), so comparing it
    needs the same part boundaries; ``crc32c_combine`` gives the full-object value.
    """
    if not part_crcs:
        raise ValueError("no parts")
    cat = b"".join((c & 0xFFFFFFFF).to_bytes(4, "big") for c in part_crcs)
    return f"{crc32c_to_b64(google_crc32c.value(cat))}-{len(part_crcs)}"


# --------------------------------------------------------------------------- ETags

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_MULTI_RE = re.compile(r"^[0-9a-f]{32}-(\d+)$")


def bare_etag(etag: str) -> str:
    """An ETag without quotes and a weak ``W/`` prefix, hex in lower case."""
    e = etag.strip()
    if e.startswith("W/"):
        e = e[2:]
    return e.strip('"').lower()


def single_etag(md5: bytes) -> str:
    """ETag of a single-PUT object (unencrypted or SSE-S3): the quoted hex MD5."""
    return f'"{md5.hex()}"'


def multipart_etag(part_md5s: list[bytes]) -> str:
    """ETag of a multipart upload: quoted hex MD5 of the concatenated part digests, ``-N``."""
    if not part_md5s:
        raise ValueError("no parts")
    return (
        f'"{hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"'
    )


def etag_kind(etag: str) -> Literal["md5", "multipart", "opaque"]:
    """Classify an ETag by shape; "md5" can still be opaque under SSE-KMS/SSE-C (the
    store's checksum headers, when present, are then the only content check)."""
    e = bare_etag(etag)
    if _MD5_RE.match(e):
        return "md5"
    if _MULTI_RE.match(e):
        return "multipart"
    return "opaque"


def parts_in_etag(etag: str) -> int | None:
    """N of a multipart ``...-N`` ETag, else None."""
    m = _MULTI_RE.match(bare_etag(etag))
    return int(m.group(1)) if m else None


def etags_equal(a: str, b: str) -> bool:
    """Compare ETags ignoring quotes, a weak ``W/`` prefix and hex case."""
    return bare_etag(a) == bare_etag(b)


def part_count(size: int, part_size: int) -> int:
    """Number of parts a ``size``-byte object splits into (at least 1: an empty part)."""
    if part_size <= 0:
        raise ValueError("part_size must be > 0")
    return max(1, -(-size // part_size))


# Part sizes that tools commonly use: AWS CLI/boto3 8 MiB, s3 minimum 5 MiB, rclone
# 5 MiB/16 MiB/64 MiB, s5cmd 50 MiB, GCS/others 100 MiB; powers of two after.
COMMON_PART_SIZES: tuple[int, ...] = tuple(
    dict.fromkeys(
        [8 * MiB, 5 * MiB, 16 * MiB, 64 * MiB, 50 * MiB, 15 * MiB, 100 * MiB, 10 * MiB]
        + [(1 << k) for k in range(20, 33)]  # 1 MiB .. 4 GiB
    )
)


def candidate_part_sizes(size: int, n_parts: int, *, limit: int = 64) -> list[int]:
    """Part sizes ``ps`` with ceil(size/ps) == n_parts, likeliest first.

    Common tool choices come first, then every whole-MiB size in the valid range
    (size/N <= ps < size/(N-1)), then the exact smallest size ceil(size/N). Verify
    recomputes the multipart ETag with each until one matches. A cheaper source of
    truth, where the store supports it: HEAD with partNumber=1 returns part 1's length.
    """
    if n_parts < 1 or size < 0:
        return []
    if n_parts == 1:  # any ps >= size gives the same ETag
        return [max(size, 1)]
    lo = -(-size // n_parts)  # smallest ps giving <= N parts
    hi = -(-size // (n_parts - 1)) - 1  # largest ps still giving > N-1 parts
    if lo > hi:
        return []
    out: dict[int, None] = {}
    for ps in COMMON_PART_SIZES:
        if lo <= ps <= hi:
            out[ps] = None
    first_mib = -(-lo // MiB) * MiB
    for ps in range(first_mib, hi + 1, MiB):
        if len(out) >= limit:
            break
        out.setdefault(ps, None)
    if len(out) < limit:
        out.setdefault(lo, None)
    return list(out)[:limit]


# --------------------------------------------------------------------------- files


@dataclass
class FileDigest:
    """Per-part checksums of a local file, in part order."""

    size: int
    part_size: int
    part_crcs: list[int] = field(default_factory=list)
    part_md5s: list[bytes] | None = None
    crc32c: int = 0  # whole file, combined from the parts

    @property
    def parts(self) -> int:
        return len(self.part_crcs)

    def part_range(self, index: int) -> tuple[int, int]:
        """(offset, length) of 0-based part ``index``."""
        off = index * self.part_size
        return off, max(0, min(self.part_size, self.size - off))

    def etag(self, *, multipart: bool | None = None) -> str:
        """The S3 ETag of this file uploaded with ``part_size`` (needs ``want_md5``).

        ``multipart=None`` means: single PUT when it fits in one part.
        """
        if self.part_md5s is None:
            raise ValueError("computed without want_md5=True")
        if multipart is None:
            multipart = self.size > self.part_size
        if not multipart:
            if len(self.part_md5s) != 1:
                raise ValueError("single-part ETag of a multi-part digest")
            return single_etag(self.part_md5s[0])
        return multipart_etag(self.part_md5s)

    def composite(self) -> str:
        """The COMPOSITE ChecksumCRC32C a multipart upload with these parts reports."""
        return composite_checksum(self.part_crcs)


_READ_CHUNK = 8 * MiB


def file_digests(
    path: str | os.PathLike[str],
    part_size: int,
    *,
    want_md5: bool,
    chunk: int = _READ_CHUNK,
) -> FileDigest:
    """CRC32C (and MD5 if asked) of every ``part_size`` part of a local file.

    One reused buffer, ``os.preadv`` at explicit offsets (no shared file position, so a
    caller may run several of these on one file), chunks of ``chunk`` bytes.
    """
    if part_size <= 0:
        raise ValueError("part_size must be > 0")
    chunk = max(1, min(chunk, part_size))
    buf = bytearray(chunk)
    view = memoryview(buf)
    fd = open_source(path)
    try:
        size = os.fstat(fd).st_size
        try:
            os.posix_fadvise(fd, 0, size, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        out = FileDigest(size=size, part_size=part_size, part_md5s=[] if want_md5 else None)
        whole = 0
        for i in range(part_count(size, part_size)):
            off = i * part_size
            remaining = min(part_size, size - off)
            crc = 0
            md5 = hashlib.md5(usedforsecurity=False) if want_md5 else None
            while remaining > 0:
                n = os.preadv(fd, [view[: min(chunk, remaining)]], off)
                if n == 0:
                    raise OSError(f"{path}: file shrank while reading at offset {off}")
                piece = view[:n]
                crc = crc32c(piece, crc)
                if md5 is not None:
                    md5.update(piece)
                off += n
                remaining -= n
            out.part_crcs.append(crc)
            if md5 is not None:
                out.part_md5s.append(md5.digest())  # type: ignore[union-attr]
            whole = crc32c_combine(whole, crc, out.part_range(i)[1])
        out.crc32c = whole
        return out
    finally:
        os.close(fd)


def expected_etag_for_file(
    path: str | os.PathLike[str], part_size: int, *, force_multipart: bool = False
) -> str:
    """The ETag S3 reports for this file uploaded with ``part_size``: single MD5 if it
    fits in one part (and not ``force_multipart``), else the multipart ETag."""
    d = file_digests(path, part_size, want_md5=True)
    return d.etag(multipart=force_multipart or d.size > part_size)
