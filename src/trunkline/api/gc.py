"""``gc``: list what interrupted transfers left behind, and clean it up.

Resume journals remember open multipart uploads (which a store bills for until they are
aborted) and partial downloads; ``gc`` lists them and, asked to, aborts and deletes them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..engine.jobs import EndpointCache
from ..engine.journal import Journal, try_lock
from ..engine.journal_index import connect, default_state_dir, list_journals
from ..reports import GcJournal, GcReport
from ..storage.local import partial_path
from ..storage.partial import FolderCache
from ..units import parse_duration
from ..url import LocationError, parse_location

__all__ = ["gc"]


def _upload_target(dst: str) -> tuple[str, str, str]:
    """(endpoint name, bucket, key) of a journal's upload destination 'NAME:bucket/key'."""
    loc = parse_location(dst if not dst.startswith("s3:") or dst.startswith("s3://")
                         else "s3://" + dst[3:])
    if loc.is_local:
        raise LocationError(f"not an object destination: {dst}")
    return loc.endpoint or "s3", loc.bucket, loc.key


ABORT_MIN_AGE = "1h"
"""``gc --abort-uploads`` spares journals updated more recently than this by default."""


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
        j = Journal(info.path, connect(info.path), info.id, lock_fd)
        try:
            ups = [(u, False) for u in j.pending_uploads()] + \
                  [(u, True) for u in j.discarded_uploads()]
            partials = [p for dst in j.unfinished_dsts() if os.path.isabs(dst)
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
                        # already gone (NoSuchUpload): nothing left to pay for, not counted
                        if eps.get(name).abort_multipart(bucket, key, up["upload_id"],
                                                         strict=True):
                            report.aborted += 1
                        up["aborted"] = True
                    except Exception as e:  # noqa: BLE001 - keep going; keep this journal
                        ok = False
                        report.errors.append(f"{up['dst']} ({up['upload_id']}): {e}")
                with FolderCache() as folders:   # a folder swapped for a symlink: refused
                    for p in partials:
                        try:
                            folders.unlink(p)
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
