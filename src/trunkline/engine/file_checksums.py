"""A local file's digests in whichever algorithms the store keeps, per part, in one pass.

Why: ``verify`` compares a local file with what the store keeps (CRC32C, CRC32,
CRC64NVME, SHA-1, SHA-256, an MD5 ETag, a COMPOSITE value or a multipart ETag over the
uploader's parts). The digests are ``checksums.PartDigest``'s, the same ones a download
computes on the wire, so ``cp`` and ``verify`` cannot disagree on what a value means;
this module only reads the file (positional reads, one reused buffer) and keeps what it
computed, per part size, so a second question about the same file reads nothing again.
"""

from __future__ import annotations

import os

from ..storage.local import open_source
from ..units import MiB
from .checksums import PartDigest, crc_combine

_CHUNK = 8 * MiB

Parts = list[tuple[int | bytes, int]]
"""``[(part digest, part length), ...]`` in order: what ``checksums.verdict`` takes."""


def part_lengths(size: int, part_size: int) -> list[int]:
    """The lengths of the ``part_size`` parts of ``size`` bytes (one empty part for 0)."""
    if size == 0:
        return [0]
    return [min(part_size, size - off) for off in range(0, size, part_size)]


class FileChecksums:
    """Per-part digests of one local file, computed on demand and kept."""

    def __init__(self, path: str | os.PathLike[str], size: int) -> None:
        self.path = path
        self.size = size
        self._got: dict[tuple[int, str], Parts] = {}

    def parts(self, part_size: int, algo: str, *also: str) -> Parts:
        """The digests of ``algo`` over every ``part_size`` part (``also``: algorithms to
        compute in the same pass, for a later question)."""
        part_size = max(1, part_size)
        todo = [a for a in dict.fromkeys((algo, *also)) if (part_size, a) not in self._got]
        if todo:
            self._read(part_size, todo)
        return self._got[(part_size, algo)]

    def whole_crc32c(self) -> int:
        """The whole file's CRC32C, folded from any part size already read."""
        for (_ps, a), parts in self._got.items():
            if a == "crc32c":
                return _fold(parts)
        return _fold(self.parts(max(self.size, 1), "crc32c"))

    def _read(self, part_size: int, algos: list[str]) -> None:
        lengths = part_lengths(self.size, part_size)
        out: dict[str, Parts] = {a: [] for a in algos}
        buf = memoryview(bytearray(min(_CHUNK, max(part_size, 1))))
        fd = open_source(self.path)
        try:
            off = 0
            for length in lengths:
                ds = [PartDigest(a) for a in algos]
                left = length
                while left > 0:
                    n = os.preadv(fd, [buf[: min(len(buf), left)]], off)
                    if n == 0:
                        raise OSError(f"{self.path}: file shrank while reading at offset {off}")
                    for d in ds:
                        d.update(buf[:n])
                    off += n
                    left -= n
                for a, d in zip(algos, ds, strict=True):
                    out[a].append((d.value(), length))
        finally:
            os.close(fd)
        for a in algos:
            self._got[(part_size, a)] = out[a]


def _fold(parts: Parts) -> int:
    acc = 0
    for crc, length in parts:
        acc = crc_combine("crc32c", acc, int(crc), length)  # type: ignore[arg-type]
    return acc
