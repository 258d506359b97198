"""When an object is done: its last part checks, finalizes and journals it; a failure is
listed once and its leftovers cleaned up (or kept for a resume).

Why apart from the scheduler: this is the step that decides whether bytes count as a
finished object at its final name, so it is kept small and in one place; the scheduler
only reports "a part of this job ended".
"""

from __future__ import annotations

import threading

from ..errors import IntegrityError, NotVerified, SourceChanged
from ..results import Failure, Unverified
from . import resume
from .jobs import ObjectJob
from .ops import KINDS, RunContext, WorkerStats, cleanup
from .ops.checks import unverified_reason
from .retry import is_retryable
from .storage_names import job_dst

__all__ = ["Completion"]


class Completion:
    """The failures of a run, and the completion of each object after its last part."""

    def __init__(self, run: RunContext):
        self.run = run
        self.failures: list[Failure] = []
        self.verified: dict[str, int] = {}          # finished objects per check kind
        self.unverified: list[Unverified] = []      # finished objects nothing could check
        self._done_batch: list[tuple] = []
        self._lock = threading.Lock()

    def reject(self, job: ObjectJob) -> None:
        """A job refused while planning (e.g. a key that would escape the destination)."""
        with self._lock:
            self.failures.append(Failure(job.plan.name, job.failed or "rejected"))

    def fail(self, job: ObjectJob, e: BaseException, attempts: int | None) -> None:
        """Mark ``job`` failed (once) and list it; its other parts then stop."""
        with job.lock:
            if job.failed is not None:
                return
            msg = str(e) or type(e).__name__
            if attempts is not None and is_retryable(e):
                msg += f" (gave up after {attempts} tries)"
            job.failed = msg
            job.stale = isinstance(e, SourceChanged)
        with self._lock:
            self.failures.append(Failure(job.plan.name, msg))

    def part_finished(self, job: ObjectJob, st: WorkerStats) -> None:
        """A part of ``job`` ended (done, failed or skipped); the last one completes it."""
        with job.lock:
            job.parts_left -= 1
            last = job.parts_left == 0
        if not last:
            return
        run = self.run
        keep = run.journal is not None
        try:
            if job.failed is None and not run.stop.is_set():
                kind = KINDS[job.plan.kind]
                if kind.verify is not None:
                    kind.verify(run, job, st)
                if job.plan.finalize:  # False: a part range completed elsewhere
                    kind.finalize(run, job)
                else:
                    cleanup(job, keep=True)   # close; the file is finished elsewhere
                st.objects += 1
                self._record_verification(job)
                self._journal_done(job)
            else:
                # parts of a source that changed are of a version that is gone
                cleanup(job, keep=keep and not self._forget(job, job.stale))
        except Exception as e:  # noqa: BLE001
            self.fail(job, e, None)
            # the bytes kept (partial file, uploaded parts) failed the object's check
            bad = isinstance(e, IntegrityError) and not isinstance(e, NotVerified)
            cleanup(job, keep=keep and not self._forget(job, bad or job.stale))

    def _forget(self, job: ObjectJob, useless: bool) -> bool:
        """Where what ``job`` kept is ``useless`` to a rerun, the journal forgets it (the
        caller then removes it); -> ``useless``."""
        journal = self.run.journal
        if useless and journal is not None and job.obj_id is not None:
            journal.forget_parts(job.obj_id)
            journal.set_upload_id(job.obj_id, None)
        return useless

    def _record_verification(self, job: ObjectJob) -> None:
        """Count each finished object as verified(kind) or list it as unverified(reason)."""
        if not job.plan.finalize:
            return   # a range of an object: the driver completes and reports it
        with self._lock:
            if job.verified is not None:
                self.verified[job.verified] = self.verified.get(job.verified, 0) + 1
            else:
                self.unverified.append(Unverified(job.plan.name, unverified_reason(job)))

    def _journal_done(self, job: ObjectJob) -> None:
        journal = self.run.journal
        if journal is None:
            return
        if job.obj_id is not None:
            journal.object_done(job.obj_id, None)
        else:   # single-part: recorded in the next batch (half the commits)
            with self._lock:
                self._done_batch.append((job.plan.name, job_dst(job), job.plan.size, job.plan.etag,
                                         resume.journal_mtime(job), job.plan.part_size))

    def flush(self) -> None:
        """Make the batch's renames durable (one fsync per folder), then write the batch of
        finished single-part objects to the journal: "done" only once the name is."""
        with self._lock:
            batch, self._done_batch = self._done_batch, []
        if self.run.dir_sync is not None:
            self.run.dir_sync.sync()
        if self.run.journal is not None and batch:
            self.run.journal.done_many(batch)
