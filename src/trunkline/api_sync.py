"""The Python API of ``sync``, ``verify`` and ``gc``.

``sync`` streams its plan (``engine.sync``) straight into the same Runner as ``copy``, so
listing and transfer overlap and only changed objects cost a request. Deletions wait in a
spool file until every copy has succeeded (rclone's --delete-after: a failed run never
leaves the destination with less than it had). ``verify`` compares without copying;
``gc`` lists resume journals and cleans what interrupted transfers left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .api import TransferResult, _options, run_journaled
from .engine.jobs import EndpointCache
from .engine.journal import Journal, _connect, default_state_dir, list_journals, try_lock
from .engine.run import Failure, Snapshot
from .engine.sync import Action, Entry, Filters, SyncPlanner, prefix_of
from .engine.verify import Mismatch, Verifier, compare_entries
from .storage.local import partial_path
from .units import parse_duration
from .url import Location, LocationError, parse_location

__all__ = ["GcReport", "SyncResult", "VerifyReport", "gc", "sync", "verify"]


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


def _loc(x: str | Location) -> Location:
    return parse_location(x) if isinstance(x, str) else x


def _filters(include: Iterable[str], exclude: Iterable[str],
             filters: Iterable[tuple[bool, str]] | None) -> Filters:
    return Filters.of(include, exclude, list(filters) if filters is not None else None)


def sync(
    src: str | Location,
    dst: str | Location,
    *,
    delete: bool = False,
    dry_run: bool = False,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    filters: Iterable[tuple[bool, str]] | None = None,
    checksum: bool = False,
    checkers: int = 16,
    server_side: bool = True,
    resume: bool = True,
    state_dir: str | None = None,
    on_action: Callable[[Action], None] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    **engine: object,
) -> SyncResult:
    """Make the folder/prefix ``dst`` hold what ``src`` holds, copying only what changed.

    New keys and keys whose size differs are copied; so are changed ones: local -> s3 when
    the file is newer than the object's LastModified, s3 -> local when the times differ by
    more than a second (downloads keep the object's time), s3 -> s3 when ETags differ and
    the source is newer; ``checksum=True`` compares content instead of times (CRC32C or
    ETags, as ``verify`` does). ``delete`` removes destination keys absent from the source,
    after all copies succeeded. ``filters`` is an ordered list of (include?, glob) rules;
    ``include``/``exclude`` are a shorthand (excludes tried first). ``dry_run`` changes
    nothing: ``on_action`` sees each copy and delete that would happen. Other keywords
    (connections, part_size, bwlimit, ...) are ``copy``'s.
    """
    t0 = time.monotonic()
    s, d = _loc(src), _loc(dst)
    eps = EndpointCache()
    same = None
    if checksum:
        def same(a: Entry, b: Entry) -> bool | None:
            try:
                return compare_entries(s, d, a, b, eps, allow_stream=False).same
            except Exception:  # noqa: BLE001 - cannot compare: copy, which is always safe
                return None
    planner = SyncPlanner(s, d, eps, delete=delete, filters=_filters(include, exclude, filters),
                          same_content=same, workers=checkers)

    spool = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="trunkline-sync-")
    try:
        def acted() -> Iterable[Action]:
            for a in planner.actions():
                if a.op == "skip":
                    continue
                if on_action is not None:
                    on_action(a)
                if a.op == "delete":
                    spool.write(json.dumps(a.rel) + "\n")
                    continue
                yield a

        transfer = None
        failures: list[Failure] = []
        deleted = 0
        if dry_run:
            for _ in acted():
                pass
            deleted = planner.to_delete
        else:
            transfer = _run(s, d, planner, acted(), server_side, resume, state_dir,
                            on_progress, engine)
            if transfer.ok and planner.to_delete and not planner.src_objects:
                # an empty source (a mistyped prefix?) would otherwise empty the destination
                failures = [Failure(str(s), f"the source is empty; refusing to delete "
                                            f"{planner.to_delete} destination objects")]
            elif transfer.ok:
                spool.seek(0)
                failures = _delete(d, eps, (json.loads(line) for line in spool))
                deleted = planner.to_delete - len(failures)
            elif not transfer.ok and planner.to_delete:
                failures = [Failure(str(d), f"{planner.to_delete} deletions skipped because "
                                            f"copies failed")]
    finally:
        spool.close()
    return SyncResult(
        src=str(s), dst=str(d), dry_run=dry_run, src_objects=planner.src_objects,
        dst_objects=planner.dst_objects, copied=planner.to_copy,
        copied_bytes=planner.copy_bytes, unchanged=planner.unchanged,
        deleted=deleted, excluded=planner.excluded,
        seconds=time.monotonic() - t0, transfer=transfer, failures=failures,
    )


def _run(s: Location, d: Location, planner: SyncPlanner, actions: Iterable[Action],
         server_side: bool, resume: bool, state_dir: str | None,
         on_progress: Callable[[Snapshot], None] | None, engine: dict) -> TransferResult:
    """Copy the planned objects through the copy engine, with its resume journal."""
    opts = _options(engine.pop("max_connections", None), engine.pop("part_size", None),
                    engine.pop("max_memory", None), engine.pop("retries", None),
                    engine.pop("read_timeout", None), engine.pop("connections", None),
                    engine.pop("tune", True), engine.pop("bwlimit", None),
                    engine.pop("bwlimit_endpoint", None), bool(engine.pop("direct_io", True)))
    opts.require_verified = bool(engine.pop("require_verified", False))
    if engine:
        raise TypeError(f"sync() got unexpected keyword arguments {sorted(engine)}")
    jopts = {"op": "sync", "server_side": server_side}
    return run_journaled(
        s, d, opts, jopts, resume=resume, state_dir=state_dir, on_progress=on_progress,
        plan=lambda part_size_for: planner.jobs(actions, part_size_for, server_side),
    )


def _delete(d: Location, eps: EndpointCache, rels: Iterable[str]) -> list[Failure]:
    """Remove destination keys; S3 in DeleteObjects batches of 1000."""
    failures: list[Failure] = []
    if d.is_local:
        for rel in rels:
            path = os.path.join(d.path, *rel.split("/"))
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                failures.append(Failure(path, f"delete: {e}"))
        return failures
    ep = eps.get(d.endpoint or "s3")
    prefix = prefix_of(d)
    batch: list[str] = []

    def flush() -> None:
        if not batch:
            return
        try:
            r = ep.client.delete_objects(
                Bucket=d.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            for err in r.get("Errors", ()):
                failures.append(Failure(f"{d.bucket}/{err.get('Key')}",
                                        f"delete: {err.get('Code')}: {err.get('Message')}"))
        except Exception as e:  # noqa: BLE001 - reported per batch, the rest goes on
            failures.append(Failure(f"{d.bucket}/{batch[0]}..", f"delete: {e}"))
        batch.clear()

    for rel in rels:
        batch.append(prefix + rel)
        if len(batch) >= 1000:
            flush()
    flush()
    return failures


# --------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """Every mismatch found; ``ok`` when there is none. ``methods`` counts how each
    compared pair was proven equal or different (md5, crc32c, composite-crc32c, ...)."""

    src: str
    dst: str
    src_objects: int
    dst_objects: int
    compared: int
    mismatches: list[Mismatch]
    methods: dict[str, int]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mismatches"] = [asdict(m) for m in self.mismatches]
        d["ok"] = self.ok
        d["seconds"] = round(self.seconds, 4)
        return d


def verify(
    src: str | Location,
    dst: str | Location,
    *,
    extra: bool = True,
    size_only: bool = False,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    filters: Iterable[tuple[bool, str]] | None = None,
    checkers: int = 16,
    on_mismatch: Callable[[Mismatch], None] | None = None,
) -> VerifyReport:
    """Compare the folder/prefix ``src`` with ``dst`` without copying; report every
    mismatch: missing, extra (unless ``extra=False``), size, content, error."""
    from .engine.sync import check_locations

    s, d = _loc(src), _loc(dst)
    if s.is_local and d.is_local:
        if not os.path.isdir(s.path):
            raise LocationError(f"no such directory: {s.path}")
    else:
        check_locations(s, d)
    v = Verifier(s, d, EndpointCache(), extra=extra, size_only=size_only,
                 filters=_filters(include, exclude, filters), workers=checkers,
                 on_mismatch=on_mismatch).run()
    return VerifyReport(str(s), str(d), v.src_objects, v.dst_objects, v.compared,
                        v.mismatches, dict(v.methods), v.seconds)


# --------------------------------------------------------------------------- gc


@dataclass
class GcJournal:
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
    state_dir: str
    journals: list[GcJournal]
    aborted: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    spared: list[str] = field(default_factory=list)    # journals younger than --older-than
    running: list[str] = field(default_factory=list)   # journals whose copy holds the lock

    def to_dict(self) -> dict:
        return asdict(self)


ABORT_MIN_AGE = "1h"
"""``gc --abort-uploads`` spares journals updated more recently than this by default."""


def _upload_target(dst: str) -> tuple[str, str, str]:
    """(endpoint name, bucket, key) of a journal's upload destination 'NAME:bucket/key'."""
    loc = parse_location(dst if not dst.startswith("s3:") or dst.startswith("s3://")
                         else "s3://" + dst[3:])
    if loc.is_local:
        raise LocationError(f"not an object destination: {dst}")
    return loc.endpoint or "s3", loc.bucket, loc.key


def gc(state_dir: str | Path | None = None, *, abort_uploads: bool = False,
       older_than: str | float | None = None) -> GcReport:
    """List resume journals with their open multipart uploads and partial downloads.

    With ``abort_uploads``: abort those uploads, delete the partial files, and remove the
    journals (their transfers then start over). ``older_than`` ('1d', seconds) keeps
    journals updated more recently than that; with ``abort_uploads`` it defaults to
    ``ABORT_MIN_AGE`` (a copy that is merely slow keeps its uploads; pass 0 to force).
    A journal whose copy is running (it holds the journal's lock) is never touched.
    """
    sd = Path(state_dir) if state_dir is not None else default_state_dir()
    if older_than is None and abort_uploads:
        older_than = ABORT_MIN_AGE
    min_age = parse_duration(older_than, bare=1.0) if older_than is not None else 0.0
    now = time.time()
    eps = EndpointCache()
    report = GcReport(str(sd), [])
    for info in list_journals(sd):
        age = now - info.updated
        lock_fd = try_lock(Path(info.path))
        if lock_fd is None:   # its copy is running right now: never touch its uploads
            report.running.append(info.id)
            continue
        if age < min_age:
            os.close(lock_fd)
            report.spared.append(info.id)
            continue
        j = Journal(info.path, _connect(info.path), info.id, lock_fd)
        try:
            ups = [(u, False) for u in j.pending_uploads()] + \
                  [(u, True) for u in j.discarded_uploads()]
            with j._read() as con:
                rows = con.execute("SELECT dst FROM objects WHERE done = 0 AND upload_id IS NULL"
                                   ).fetchall()
            partials = [p for (dst,) in rows if os.path.isabs(dst)
                        for p in (partial_path(dst),) if os.path.exists(p)]
            entry = GcJournal(info.id, str(info.path), info.src, info.dst, round(age, 1),
                              info.objects, info.done, info.bytes_done,
                              [{"key": u.key, "dst": u.dst, "upload_id": u.upload_id,
                                "discarded": disc, "aborted": False} for u, disc in ups],
                              partials)
            if abort_uploads:
                ok = True
                for up in entry.uploads:
                    try:
                        name, bucket, key = _upload_target(up["dst"])
                        eps.get(name).client.abort_multipart_upload(
                            Bucket=bucket, Key=key, UploadId=up["upload_id"])
                        up["aborted"] = True
                        report.aborted += 1
                    except Exception as e:  # noqa: BLE001 - keep going; keep this journal
                        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
                        if code == "NoSuchUpload":
                            up["aborted"] = True  # already gone: nothing left to pay for
                            continue
                        ok = False
                        report.errors.append(f"{up['dst']} ({up['upload_id']}): {e}")
                for p in partials:
                    try:
                        os.unlink(p)
                    except OSError as e:
                        ok = False
                        report.errors.append(f"{p}: {e}")
                if ok:
                    j.remove()
                    entry.removed = True
                    report.removed += 1
            report.journals.append(entry)
        finally:
            j.close()
    return report
