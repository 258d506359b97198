"""Locations: ``s3://bucket/key``, ``NAME:bucket/key`` (a named endpoint) and local paths.

Parsing is pure; resolving a named endpoint to a URL and credentials is ``config``'s job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import UsageError

GLOB_CHARS = re.compile(r"[*?\[]")
_NAMED = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*):(?P<rest>.*)$")


class LocationError(UsageError):
    """A source or destination that cannot be understood (a usage error)."""


@dataclass(frozen=True)
class Location:
    """Where bytes live. ``endpoint`` is None for local paths, "s3" for the default endpoint."""

    endpoint: str | None
    bucket: str = ""
    key: str = ""          # s3 key or key prefix (may contain a glob)
    path: str = ""         # local path

    @property
    def is_local(self) -> bool:
        return self.endpoint is None

    @property
    def is_dir_like(self) -> bool:
        """Ends with a separator: names a folder/prefix rather than one object."""
        if self.is_local:
            return self.path.endswith(os.sep) or os.path.isdir(self.path)
        return self.key == "" or self.key.endswith("/")

    @property
    def has_glob(self) -> bool:
        return bool(GLOB_CHARS.search(self.key if not self.is_local else self.path))

    def child(self, rel: str) -> Location:
        """The location of ``rel`` (a '/'-separated relative name) under this one."""
        if self.is_local:
            return Location(None, path=os.path.join(self.path, *rel.split("/")))
        base = self.key if (self.key == "" or self.key.endswith("/")) else self.key + "/"
        return Location(self.endpoint, self.bucket, base + rel)

    def __str__(self) -> str:
        if self.is_local:
            return self.path
        scheme = "s3://" if self.endpoint == "s3" else f"{self.endpoint}:"
        return f"{scheme}{self.bucket}/{self.key}"


def parse_location(text: str) -> Location:
    """Parse a CLI argument. Windows-style drive letters are not a concern (POSIX only)."""
    if text.startswith("s3://"):
        rest = text[5:]
        endpoint = "s3"
    else:
        m = _NAMED.match(text)
        if m and not os.path.exists(text) and m.group("name") not in ("file",):
            endpoint, rest = m.group("name"), m.group("rest")
        elif text.startswith("file://"):
            return Location(None, path=text[7:])
        else:
            return Location(None, path=text)
    rest = rest.lstrip("/")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise LocationError(f"missing bucket in {text!r}")
    return Location(endpoint, bucket, key)


def glob_base(key: str) -> str:
    """The literal prefix of a glob pattern up to the last '/' before its first wildcard."""
    m = GLOB_CHARS.search(key)
    if not m:
        return key
    head = key[: m.start()]
    return head[: head.rfind("/") + 1]


def safe_relpath(rel: str) -> str:
    """Validate an object-derived relative path; refuse anything that could escape a folder.

    Object keys are attacker-controlled when copying from someone else's bucket: '../x',
    absolute names, NUL bytes and empty components must never reach the filesystem.
    """
    if not rel or "\x00" in rel:
        raise LocationError(f"refusing unsafe object key {rel!r}")
    if rel.startswith("/") or rel.startswith("\\"):
        raise LocationError(f"refusing object key {rel!r}: absolute path would escape destination")
    if rel.endswith("/"):
        raise LocationError(f"refusing object key {rel!r}: names a folder, not a file")
    parts = rel.split("/")
    for p in parts:
        # '.' and empty components are refused too: they would alias another key's file
        if p in ("..", ".", "") or "\\" in p:
            raise LocationError(f"refusing object key {rel!r}: would escape destination")
    return "/".join(parts)
