"""Local files: streaming tree walk, safe destination paths, partial-file naming.

A download lands in ``.NAME.tlpart`` beside its destination and is renamed into place only
when whole and verified, so nothing that looks complete exists before it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..url import LocationError, safe_relpath

PARTIAL_SUFFIX = ".tlpart"


@dataclass(frozen=True, slots=True)
class LocalFile:
    rel: str      # '/'-separated path relative to the walked root
    path: str
    size: int
    mtime: float


def walk(root: str) -> Iterator[LocalFile]:
    """Regular files under ``root`` in sorted order, one directory in memory at a time."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        d = os.path.join(root, rel_dir) if rel_dir else root
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name, reverse=True)
        except FileNotFoundError:
            raise LocationError(f"no such directory: {d}") from None
        files = []
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif e.is_file() and not e.name.endswith(PARTIAL_SUFFIX):
                st = e.stat()
                files.append(LocalFile(rel, e.path, st.st_size, st.st_mtime))
        yield from reversed(files)


def dest_path(root: str, rel: str) -> str:
    """``root``/``rel`` after refusing any key that would land outside ``root``."""
    rel = safe_relpath(rel)
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, *rel.split("/")))
    if full != base and not full.startswith(base + os.sep):
        raise LocationError(f"refusing object key {rel!r}: would escape destination {root}")
    return full


def partial_path(path: str) -> str:
    d, name = os.path.split(path)
    return os.path.join(d, f".{name}{PARTIAL_SUFFIX}")
