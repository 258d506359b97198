"""``sync``: make a folder or prefix hold what another holds, copying only what changed.

``sync`` streams its plan (``engine.sync``) straight into the same Runner as ``copy``, so
listing and transfer overlap and only changed objects cost a request. Deletions wait in a
spool file until every copy has succeeded (rclone's --delete-after: a failed run never
leaves the destination with less than it had).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from ..engine.jobs import EndpointCache
from ..engine.listing import Entry, Filters, prefix_of
from ..engine.sync import Action, SyncPlanner
from ..engine.verify import compare_entries
from ..errors import UsageError
from ..options import TransferOptions
from ..reports import SyncResult
from ..results import Failure, TransferResult
from ..storage.partial import FolderCache
from ..telemetry.snapshot import Snapshot
from ..url import Location, parse_location
from .transfer import run_journaled

__all__ = ["sync"]


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
    options: TransferOptions | None = None,
    on_action: Callable[[Action], None] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    processes: int | Literal["auto"] = 1,
    **overrides: Any,
) -> SyncResult:
    """Make the folder/prefix ``dst`` hold what ``src`` holds, copying only what changed.

    New keys and keys whose size differs are copied; so are changed ones: local -> s3 when
    the file is newer than the object's LastModified, s3 -> local when the times differ by
    more than a second (downloads keep the object's time), s3 -> s3 when ETags differ and
    the source is newer; ``checksum=True`` compares content instead of times (CRC32C or
    ETags, as ``verify`` does). ``delete`` removes destination keys absent from the source,
    after all copies succeeded. ``filters`` is an ordered list of (include?, glob) rules;
    ``include``/``exclude`` are a shorthand (excludes tried first). ``dry_run`` changes
    nothing: ``on_action`` sees each copy and delete that would happen. ``options`` and
    keywords named like its fields (connections, part_size, bwlimit, server_side, resume,
    ...) are ``copy``'s. ``processes`` is ``copy``'s too, counted on what is to be copied:
    N engine processes on this host, or ``'auto'`` (the CLI's default), several when the
    first 1,000 objects to copy are small (``cluster/auto.py``).
    """
    if processes != "auto" and (not isinstance(processes, int) or processes < 1):
        raise UsageError("processes must be >= 1 or 'auto'")
    opts = TransferOptions.build(options, **overrides)
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
        def acted() -> Iterator[Action]:
            for a in planner.actions():
                if a.op != "skip":
                    if on_action is not None:
                        on_action(a)
                    if a.op == "delete":
                        spool.write(json.dumps(a.rel) + "\n")
                        continue
                yield a   # copies, and skips: the count of processes reads how dense copies are

        transfer = None
        failures: list[Failure] = []
        deleted = 0
        if dry_run:
            for _ in acted():
                pass
            deleted = planner.to_delete
        else:
            transfer = _transfer(s, d, planner, acted(), opts, on_progress, processes, eps)
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
    copied, copied_bytes, failed = planner.to_copy, planner.copy_bytes, 0
    if transfer is not None and not transfer.ok:
        # the plan's count is not what happened: the objects finished (by this run or
        # found finished by a resume of it) and the bytes that reached the destination
        copied = min(planner.to_copy, transfer.objects + transfer.skipped_objects)
        copied_bytes = transfer.bytes + transfer.skipped_bytes
        failed = planner.to_copy - copied
    return SyncResult(
        src=str(s), dst=str(d), dry_run=dry_run, src_objects=planner.src_objects,
        dst_objects=planner.dst_objects, copied=copied, failed=failed,
        copied_bytes=copied_bytes, unchanged=planner.unchanged,
        deleted=deleted, excluded=planner.excluded,
        seconds=time.monotonic() - t0, transfer=transfer, failures=failures,
        skipped=planner.skipped.entries,
    )


def _transfer(s: Location, d: Location, planner: SyncPlanner, actions: Iterator[Action],
              opts: TransferOptions, on_progress: Callable[[Snapshot], None] | None,
              processes: int | Literal["auto"], eps: EndpointCache) -> TransferResult:
    """The copies: one engine under its journal, or engine processes taking shards of them
    (``processes``: a count, or ``'auto'``: the rule read on the first 1,000 copies)."""
    if processes == "auto":
        from ..cluster.auto import AUTO_LOOK, AUTO_PAGE, choose

        # the first 1,000 copies, looked for among the first AUTO_LOOK listed objects (a
        # few changes spread over a large tree must not wait for its whole listing)
        head: list[Action] = []
        sizes: list[int] = []
        for a in actions:
            head.append(a)
            if a.op == "copy" and a.src is not None:
                sizes.append(a.src.size)
            if len(sizes) >= AUTO_PAGE or len(head) >= AUTO_LOOK:
                break
        actions = itertools.chain(head, actions)
        processes, opts = choose(sizes, opts)
    if processes == 1:
        return _run(s, d, planner, actions, opts, on_progress)
    from ..cluster import copy_on_processes

    # what the driver shards: (name, what was listed) of each copy, as cp's listing gives
    copies = ((a.rel, a.src.info) for a in actions if a.op == "copy" and a.src is not None)
    return copy_on_processes(s, d, processes=processes, recursive=True, options=opts,
                             on_progress=on_progress, listed=(eps, copies), op="sync")


def _run(s: Location, d: Location, planner: SyncPlanner, actions: Iterable[Action],
         opts: TransferOptions, on_progress: Callable[[Snapshot], None] | None
         ) -> TransferResult:
    """Copy the planned objects through the copy engine, with its resume journal."""
    jopts = {"op": "sync", "server_side": opts.server_side}
    return run_journaled(
        s, d, opts, jopts, on_progress=on_progress,
        plan=lambda part_size_for: planner.jobs(actions, part_size_for, opts.server_side),
    )


def _delete(d: Location, eps: EndpointCache, rels: Iterable[str]) -> list[Failure]:
    """Remove destination keys; S3 in DeleteObjects batches of 1000, several at once."""
    failures: list[Failure] = []
    if d.is_local:
        base = os.path.realpath(d.path)
        with FolderCache() as folders:
            for rel in rels:
                path = os.path.join(base, *rel.split("/"))
                try:
                    folders.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    failures.append(Failure(path, f"delete: {e}"))
        return failures
    ep = eps.get(d.endpoint or "s3")
    prefix = prefix_of(d)
    for _, _, errors in ep.delete_batches(d.bucket, (prefix + rel for rel in rels), str):
        failures.extend(Failure(f"{d.bucket}/{key}", f"delete: {error}")
                        for key, error in errors)
    return failures
