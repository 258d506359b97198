"""What to copy: turn (SRC, DST, --recursive/glob) into a stream of object jobs.

Listing streams (a generator over pages), so millions of keys never sit in memory. The
copy semantics follow s5cmd / the AWS CLI: a trailing '/' or an existing folder means
"into", ``--recursive`` copies a prefix, a glob matches whole keys (``*`` crosses '/').
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from ..storage import local
from ..storage.partial import PartialFile
from ..storage.s3 import S3Endpoint, S3Error
from ..url import Location, LocationError, glob_base
from .checksums import Expectation
from .direct_io import DirectWriter
from .plan import Part, is_multipart, plan_parts
from .retry import RetryPolicy, retrying

T = TypeVar("T")

SKIP_KEY_AS_FOLDER = "a key ending in '/' that holds bytes: no file can have this name"


def is_folder_key(key: str, size: int, rel: str,
                  on_skip: Callable[[str, str], None] | None) -> bool:
    """A key ending in '/' names a folder, not a file. An empty one is a folder marker, left
    without a word as every S3 tool does; one that holds bytes is data that would otherwise
    vanish unseen, so it goes to ``on_skip`` (listed, and guarded from ``sync --delete``)."""
    if not key.endswith("/"):
        return False
    if size and on_skip is not None:
        on_skip(rel, SKIP_KEY_AS_FOLDER)
    return True


@dataclass(frozen=True)
class ObjectPlan:
    """What to move for one object: decided by the planner, never changed while it moves."""

    kind: str                      # download | upload | copy | stream | reject
    name: str                      # for messages: the source
    size: int
    parts: tuple[Part, ...]
    multipart: bool
    src_ep: S3Endpoint | None = None
    src_bucket: str = ""
    src_key: str = ""
    src_path: str = ""
    dst_ep: S3Endpoint | None = None
    dst_bucket: str = ""
    dst_key: str = ""
    dst_path: str = ""
    etag: str | None = None
    mtime: float | None = None
    part_size: int = 0
    finalize: bool = True       # False: a part range of an object completed elsewhere (Ray)


@dataclass(eq=False)
class ObjectJob:
    """One object on the move: its frozen ``plan`` and the runtime state its workers share
    (open file, writer, multipart upload id, per-part results, failure, resume facts)."""

    plan: ObjectPlan
    lock: threading.Lock = field(default_factory=threading.Lock)
    parts_left: int = 0
    done_bytes: int = 0                          # of parts finished (the live view's bar)
    fd: int | None = None
    src_stamp: tuple[int, int] | None = None     # uploads: the source's (size, mtime ns) at open
    writer: DirectWriter | None = None   # downloads: page-cache bypass (direct_io.py)
    tmp_path: str = ""
    upload_id: str | None = None
    part_etags: dict[int, str] = field(default_factory=dict)
    part_crcs: dict[int, int] = field(default_factory=dict)
    failed: str | None = None
    stale: bool = False                         # failed as SourceChanged: nothing kept is of use
    obj_id: int | None = None                   # journal record, when resuming is on
    skip_parts: set[int] = field(default_factory=set)       # already at the destination
    resume_crcs: dict[int, int] = field(default_factory=dict)  # on disk, to re-check
    partial: PartialFile | None = None        # downloads: the file until it is whole
    seen_etag: str | None = None              # the first answer's ETag when none was listed
    expect: Expectation | None = None         # what the store keeps (engine/checksums.py)
    part_digests: dict[int, int | bytes] = field(default_factory=dict)   # in that algorithm
    verified: str | None = None               # the check that passed, None: unverified

    def __post_init__(self) -> None:
        self.parts_left = len(self.plan.parts)


def _leaf(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


def _control_retry(fn: Callable[[], T]) -> T:
    """How an endpoint retries its own requests: the one policy, default budget."""
    return retrying(fn, RetryPolicy())


class EndpointCache:
    """One S3Endpoint per endpoint name for a transfer (botocore clients are costly)."""

    def __init__(self, answers: dict[str, dict[str, float]] | None = None) -> None:
        self._eps: dict[str, S3Endpoint] = {}
        self._answers = dict(answers or {})

    def get(self, name: str) -> S3Endpoint:
        from ..config import resolve_endpoint

        if name not in self._eps:
            # control requests are retried by our policy (botocore's retries are off)
            ep = S3Endpoint(resolve_endpoint(name), retry=_control_retry)
            ep.answers.update(self._answers.get(name, {}))
            self._eps[name] = ep
        return self._eps[name]

    def all(self) -> list[S3Endpoint]:
        return list(self._eps.values())

    def answers(self) -> dict[str, dict[str, float]]:
        """Endpoint name -> its ``S3Endpoint.answers``: what a cluster's workers start
        from (their shards come listed: they make no control request of their own)."""
        return {n: dict(ep.answers) for n, ep in self._eps.items() if ep.answers}


def _sources(src: Location, eps: EndpointCache, recursive: bool,
             on_skip: Callable[[str, str], None] | None = None) -> Iterator[tuple[str, object]]:
    """(relative name, ObjectInfo | LocalFile) for each source object; names that are not
    files go to ``on_skip``: a local folder's (``local.walk``), keys ending in '/' that hold
    bytes (``is_folder_key``)."""
    if src.is_local:
        if os.path.isdir(src.path):
            if not recursive:
                raise LocationError(f"{src.path} is a directory (use --recursive)")
            for f in local.walk(src.path, on_skip):
                yield f.rel, f
            return
        if src.has_glob:
            import glob as _glob

            base = src.path[: src.path.rfind(os.sep, 0, src.path.find("*")) + 1] or "."
            for p in sorted(_glob.glob(src.path, recursive=True)):
                if os.path.isfile(p):
                    st = os.stat(p)
                    rel = os.path.relpath(p, base).replace(os.sep, "/")
                    yield rel, local.LocalFile(rel, p, st.st_size, st.st_mtime)
            return
        try:
            st = os.stat(src.path)
        except FileNotFoundError:
            raise LocationError(f"no such file: {src.path}") from None
        if not stat.S_ISREG(st.st_mode):   # a FIFO would wait for a writer, a device not end
            raise LocationError(f"{src.path} is not a regular file")
        name = os.path.basename(src.path)
        yield name, local.LocalFile(name, src.path, st.st_size, st.st_mtime)
        return
    ep = eps.get(src.endpoint or "s3")
    if src.has_glob:
        base = glob_base(src.key)
        for o in ep.list(src.bucket, base):
            if fnmatch.fnmatchcase(o.key, src.key) and not is_folder_key(
                    o.key, o.size, o.key[len(base):], on_skip):
                yield o.key[len(base):], o
        return
    if recursive or src.key == "" or src.key.endswith("/"):
        prefix = src.key if (src.key == "" or src.key.endswith("/")) else src.key + "/"
        for o in ep.list(src.bucket, prefix):
            if not is_folder_key(o.key, o.size, o.key[len(prefix):], on_skip):
                yield o.key[len(prefix):], o
        return
    info = ep.head(src.bucket, src.key)
    if info is None:
        raise S3Error(404, "NoSuchKey", "the source object does not exist", "HEAD", str(src))
    yield _leaf(src.key), info


def peek_sources(
    src: Location, eps: EndpointCache, recursive: bool, n: int,
    on_skip: Callable[[str, str], None] | None = None,
) -> tuple[list[tuple[str, object]], Iterator[tuple[str, object]]]:
    """The first ``n`` (name, info) of the source's listing, and the whole listing (those
    first, then the rest, listed on demand): to decide on a listing's head without listing
    it twice."""
    listing = _sources(src, eps, recursive, on_skip)
    head = list(itertools.islice(listing, n))
    return head, itertools.chain(head, listing)


def plan_jobs(
    src: Location,
    dst: Location,
    *,
    recursive: bool,
    part_size: int | Callable[[str], int],
    eps: EndpointCache,
    server_side: bool = True,
    sources: Iterator[tuple[str, object]] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[ObjectJob]:
    """Stream the jobs of a copy. Raises LocationError for usage errors. ``sources``: the
    source's listing already begun (``peek_sources``), instead of a new one; ``on_skip``:
    as ``local.walk``'s."""
    if src.is_local and dst.is_local:
        raise LocationError("both source and destination are local; use cp(1)")
    many = recursive or src.has_glob or (src.is_local and os.path.isdir(src.path))
    into = many or dst.is_dir_like
    dst_ep = None if dst.is_local else eps.get(dst.endpoint or "s3")
    src_ep = None if src.is_local else eps.get(src.endpoint or "s3")
    # the destination root resolved once, not per object (local.dest_path)
    dst_base = os.path.realpath(dst.path) if dst.is_local and into else None
    for rel, info in sources if sources is not None else _sources(src, eps, recursive, on_skip):
        ps = part_size(str(src.child(rel)) if many else str(src)) if callable(part_size) \
            else part_size
        yield job_for(src, dst, rel, info, many=many, into=into, src_ep=src_ep, dst_ep=dst_ep,
                      part_size=ps, server_side=server_side, dst_base=dst_base)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rejected(name: str, why: str) -> ObjectJob:
    """A job that fails alone with ``why``: the others still copy."""
    return ObjectJob(ObjectPlan(kind="reject", name=name, size=0, parts=(), multipart=False),
                     failed=why)


def job_for(
    src: Location,
    dst: Location,
    rel: str,
    info: object,
    *,
    many: bool,
    into: bool,
    src_ep: S3Endpoint | None,
    dst_ep: S3Endpoint | None,
    part_size: int,
    server_side: bool = True,
    dst_base: str | None = None,
) -> ObjectJob:
    """The job moving one listed source object (``rel`` under ``src``) to ``dst``.

    Shared by ``plan_jobs`` (cp) and the sync planner. A key that would escape a local
    destination becomes a "reject" job: it fails alone, the others still copy.
    """
    size = info.size  # type: ignore[attr-defined]
    name = str(src.child(rel)) if many else str(src)
    dst_path = None
    if into and dst.is_local:
        try:
            dst_path = local.dest_path(dst.path, rel, dst_base)
        except LocationError as e:
            return _rejected(name, str(e))
    if src.is_local:
        kind = "upload"
    elif dst.is_local:
        kind = "download"
    elif server_side and src_ep is not None and dst_ep is not None and (
        src_ep is dst_ep or src_ep.identity == dst_ep.identity
    ):
        kind = "copy"
    else:
        kind = "stream"
    ps = part_size
    where: dict[str, object] = {}
    if src.is_local:
        where["src_path"] = info.path  # type: ignore[attr-defined]
    else:
        where.update(src_ep=src_ep, src_bucket=src.bucket, src_key=info.key)  # type: ignore[attr-defined]
    if dst.is_local:
        if into:
            where["dst_path"] = dst_path
        else:   # the folder resolved now; below it nothing is followed (storage/partial)
            full = os.path.abspath(dst.path)
            where["dst_path"] = os.path.join(os.path.realpath(os.path.dirname(full)),
                                             os.path.basename(full))
    else:
        target = dst.child(rel) if into else dst
        key = target.key
        if not key or key.endswith("/"):
            key += _leaf(rel)
        if not _is_utf8(key):
            # a local file name is any bytes; an S3 key is UTF-8: say which file, not the
            # codec (a name given in full, ``cp ./caf\xe9 s3://b/cafe``, is a key like any)
            return _rejected(name, f"the file name {os.fsencode(rel)!r} is not UTF-8, and an "
                                   "S3 key must be: rename it, or name the key in full")
        where.update(dst_ep=dst_ep, dst_bucket=target.bucket, dst_key=key)
    return ObjectJob(ObjectPlan(
        kind=kind,
        name=name,
        size=size,
        parts=tuple(plan_parts(size, ps)),
        multipart=is_multipart(size, ps),
        part_size=ps,
        etag=getattr(info, "etag", None),
        mtime=getattr(info, "mtime", None),
        **where,  # type: ignore[arg-type]
    ))
