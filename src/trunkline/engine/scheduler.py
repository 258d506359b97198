"""The scheduler: a bounded queue of part tasks (small objects in batches), worker threads
sharing pooled connections, per-part retries, and atomic completion of each object.

What a part *is* (download, upload, copy, stream) is ``ops/``'s: this module only decides
when and on which worker a part runs, how often it is retried (``retry.retrying``), and when
an object is complete; the kinds see a small typed context and never this module.

Why threads: the hot loop is ``recv_into``/``pwrite``/``sendfile``, which release the GIL
for whole MiBs at a time, so a few dozen threads keep many connections busy while Python
does only bookkeeping. Parts of every object share one queue, so small objects are spread
across connections and a large object over all of them; small objects travel in batches
(``batch_full``), as each queue hand-over and gate hold costs the interpreter lock.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import ProtocolError, SourceChanged
from ..options import TransferOptions
from ..results import Failure, Unverified
from ..storage.partial import DirSync, FolderCache
from ..storage.s3 import S3Endpoint
from ..telemetry.snapshot import Snapshot
from ..units import MiB, human_bytes
from ..wire.connection import ConnectionStats
from . import resume
from .affinity import OneCore
from .budget import Gate, MemoryBudget
from .completion import Completion
from .connections import RunConnections
from .direct_io import aligned_buffer
from .jobs import ObjectJob, ObjectPlan
from .journal import Journal
from .ops import KINDS, RESUMED, PartContext, RunContext, WorkerStats
from .ops.common import passes_through
from .plan import Part
from .progress import take_snapshot
from .ratelimit import RateLimiter
from .retry import IntegrityError, RetryPolicy, is_slowdown, retrying
from .tune import SMALL_OBJECT_BYTES, Tuner, start_level

__all__ = ["Failure", "RunOutcome", "Runner", "Snapshot", "TransferOptions"]

CHUNK = 1 * MiB
BATCH = 8
"""The most small objects one queue item carries (``Runner._produce``): one queue hand-over
and one gate hold per batch instead of per object. Measured on 3,000 x 256 KiB from nginx
(bench/RESULTS.md): +4 to +14 % objects/s and 6-12 % less CPU per object over four runs;
32 gained no more."""
INITIAL_CONNECTIONS = 16
"""Where the tuner starts: enough to fill a 40 ms path with 4 MiB windows to 4 Gbit/s from
the first second (a slow start from 1 would spend ~6 s getting there, longer than many
copies last); the tuner grows from here while more connections pay, and backs off on
SlowDown."""


@dataclass
class RunOutcome:
    """What a run did, counted by the engine: the API turns it into a result."""

    done_bytes: int
    wire_bytes: int
    seconds: float
    objects: int
    failures: list[Failure]
    retries: int
    slowdowns: int
    requests: int
    connections: list[ConnectionStats]
    peak_buffer_bytes: int
    decisions: list[dict]
    resumed_bytes: int
    skipped_objects: int
    skipped_bytes: int
    verified: dict[str, int] = field(default_factory=dict)
    unverified: list[Unverified] = field(default_factory=list)


def small(plan: ObjectPlan) -> bool:
    """One request of at most ``SMALL_OBJECT_BYTES``: an object whose cost is per object,
    not per byte (the tuner's start, the queue's batches, one core)."""
    return len(plan.parts) == 1 and plan.size <= SMALL_OBJECT_BYTES


def batch_full(n: int, queued: int, active: int) -> bool:
    """Whether a batch of ``n`` small objects goes to the queue now: once it is as large as
    the queue's backlog per ``active`` connection, at most ``BATCH``. So the first objects,
    a short listing and a far store's few objects spread one per connection, and batches
    grow only where every worker has work queued anyway (a worker does its batch's objects
    one after another, as it would the same objects queued one by one)."""
    return n >= min(BATCH, queued // max(1, active))


class Runner:
    def __init__(
        self,
        opts: TransferOptions,
        on_tick: Callable[[Snapshot], None] | None = None,
        tick: float = 0.25,
        journal: Journal | None = None,
        resumed: bool = False,
        conns: RunConnections | None = None,
        limiter: RateLimiter | None = None,
        sharing: int = 1,
    ):
        self.opts = opts
        self.sharing = sharing   # runs of this process at once (tune.start_level)
        self.retry = RetryPolicy.for_retries(opts.retries)
        self.journal = journal
        # resuming an earlier run's journal: a killed run may have left stray uploads
        self.journal_created = float(journal.meta().get("created", "0")) if journal else 0.0
        self.resumed_run = resumed
        self.skipped_objects = 0
        self.skipped_bytes = 0
        self.on_tick = on_tick
        self.tick = tick
        self.q: queue.Queue = queue.Queue(maxsize=max(64, opts.max_connections * 4))
        self.tuner: Tuner | None = None
        start = opts.connections or opts.max_connections
        if opts.tune and opts.connections is None:
            self.tuner = Tuner(
                max_connections=opts.max_connections,
                max_memory=max(opts.max_memory, opts.max_connections * CHUNK),
                part_size=opts.initial_part_size,
                initial_connections=min(INITIAL_CONNECTIONS, opts.max_connections),
                interval=0.5,
                rate_cap=min((r for r in (opts.bwlimit, *(opts.bwlimit_endpoint or {}).values())
                              if r), default=None),
            )
            start = self.tuner.connections
        self.gate = Gate(start)
        self.part_size = opts.initial_part_size   # read by the planner for objects planned later
        # a caller's limiter (a cluster worker's) caps all the runs it is shared by
        self.limiter = limiter if limiter is not None else (
            RateLimiter(opts.bwlimit, opts.bwlimit_endpoint)
            if (opts.bwlimit or opts.bwlimit_endpoint) else None
        )
        self.mem = MemoryBudget(opts.max_memory)
        self.stats = [WorkerStats() for _ in range(opts.max_connections)]
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.total_objects = 0
        self.listing_done = False
        self.fatal: BaseException | None = None
        self._stop = threading.Event()
        self.started = 0.0
        self._made_dirs: set[str] = set()
        self.folders = FolderCache()
        # a caller's connections (a cluster worker's, shared by its shards) outlive this
        # run: the caller closes them and reports what they carried
        self._own_conns = conns is None
        self.conns = conns if conns is not None else RunConnections(
            opts.read_timeout, opts.max_connections, opts.min_rate_pair)
        self.context = RunContext(
            checksums=opts.checksums, direct_io=opts.direct_io, retry=self.retry,
            stop=self._stop, memory=self.mem, journal=journal, resumed_run=resumed,
            journal_created=self.journal_created, pool_for=self.conns.pool_for,
            limit_for=self.limit_for, ensure_dir=self.ensure_dir,
            require_verified=opts.require_verified, dir_sync=DirSync(), folders=self.folders)
        self.completion = Completion(self.context)
        self._workers: list[threading.Thread] = []
        self.core = OneCore()   # a run of small downloads on one CPU (engine/affinity.py)

    # -- the public entry ----------------------------------------------------------------

    def run(self, jobs: Iterable[ObjectJob]) -> RunOutcome:
        self.started = time.monotonic()
        jobs = iter(jobs)
        first = next(jobs, None)
        if first is not None:
            second = next(jobs, None)
            self._first_level(first.plan, alone=second is None)
            if (self.opts.one_core and second is not None and self.sharing == 1
                    and first.plan.kind in ("download", "upload") and small(first.plan)):
                self.core.hold()
            jobs = itertools.chain([first] if second is None else [first, second], jobs)
        workers = self._workers
        try:
            self._spawn(self.gate.limit)
            producer = threading.Thread(target=self._produce, args=(jobs,), name="tl-list",
                                        daemon=True)
            producer.start()
        except BaseException:
            self.core.done()   # (no thread could start): the next run may hold a core
            raise
        try:
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=self.tick)
                    if w.is_alive():
                        break
                snap = self.snapshot()
                self.completion.flush()
                self._tune(snap)
                if self.on_tick:
                    self.on_tick(snap)
        except KeyboardInterrupt:
            # Stop promptly: idle workers get their sentinel at once, busy ones finish the
            # chunk in hand; all of them share one short deadline (daemon threads).
            self._stop.set()
            self._drain_queue()
            self.gate.resize(len(workers) + 1)
            for _ in workers:
                try:
                    self.q.put_nowait(None)
                except queue.Full:
                    break
            deadline = time.monotonic() + 3.0
            for w in workers:
                w.join(timeout=max(0.0, deadline - time.monotonic()))
            if self._own_conns:
                self.conns.close()
            raise
        finally:
            self.core.done()
            if not any(w.is_alive() for w in workers):
                self.folders.close()   # (a worker still running keeps them)
        while producer.is_alive():   # no worker is left to take from the queue (a stopped
            self._drain_queue()      # run's): the lister must not wait on it forever
            producer.join(timeout=0.1)
        if self._own_conns:
            self.conns.close()
        self.completion.flush()
        if self.on_tick:
            self.on_tick(self.snapshot())
        if self.fatal is not None:
            raise self.fatal
        s = self.snapshot()
        return RunOutcome(
            done_bytes=s.done_bytes,
            wire_bytes=s.wire_bytes,
            seconds=time.monotonic() - self.started,
            objects=s.objects,
            failures=list(self.completion.failures),
            retries=s.retries,
            slowdowns=s.slowdowns,
            requests=s.requests,
            connections=self.conns.closed_stats() if self._own_conns else [],
            peak_buffer_bytes=self.mem.peak,
            decisions=[d.to_dict() for d in self.tuner.decisions] if self.tuner else [],
            resumed_bytes=sum(w.resumed_bytes for w in self.stats),
            skipped_objects=self.skipped_objects,
            skipped_bytes=self.skipped_bytes,
            verified=dict(self.completion.verified),
            unverified=list(self.completion.unverified),
        )

    def _first_level(self, plan: ObjectPlan, alone: bool = False) -> None:
        """The tuner's bounds and start, from the first object.

        Only streams between stores that buffer hold whole parts in memory; a download
        holds one 1 MiB buffer per connection, an upload none (``sendfile``) and a stream
        that passes parts through (``ops/stream.py``) one MiB, so for those the memory
        bound must not cap connections x part size. Small objects from a store that
        answers quickly start with fewer connections (``tune.start_level``); ``alone``:
        the first object is the only one: it starts with one connection per part, at most
        the usual start (no timing needed)."""
        if self.tuner is None or (plan.kind not in ("download", "upload", "copy")
                                  and not passes_through(self.opts.checksums, plan)):
            return
        t = self.tuner
        start = self._start_for(plan, min(INITIAL_CONNECTIONS, self.opts.max_connections),
                                alone)
        t.rebound(max(t.max_memory, self.opts.max_connections * t.max_part_size), start)
        self.gate.resize(t.connections)

    def _start_for(self, plan: ObjectPlan, start: int, alone: bool) -> int:
        """``start``, or fewer: a lone object needs no more connections (nor threads) than
        it has parts; a small first object to or from a quick store, what Little's law
        asks (``tune.start_level``)."""
        if alone:
            return min(start, max(1, len(plan.parts)))
        ep, bucket, key = {"download": (plan.src_ep, plan.src_bucket, plan.src_key),
                           "upload": (plan.dst_ep, plan.dst_bucket, plan.dst_key),
                           }.get(plan.kind, (None, "", ""))
        if ep is None or not small(plan):
            return start
        if "HEAD" not in ep.answers and (ep.round_trip_s is None or
                                         start_level(start, True, ep.round_trip_s) < start):
            # nothing timed yet (an upload's store), or only a listing page, which is slower
            # to answer than one object (0.8-2.7 ms against 0.2-0.7 here): time one HEAD of
            # the object (a new key's 404 is an answer too). Not on a store a listing
            # showed far away: it starts with ``start`` anyway.
            ep.time_answer(bucket, key)
        return start_level(start, True, ep.round_trip_s, self.sharing)

    def _spawn(self, n: int) -> None:
        """Start workers up to ``n`` (threads are started only when the gate lets them
        work: 64 idle threads would cost start-up time for nothing)."""
        while len(self._workers) < min(n, self.opts.max_connections):
            i = len(self._workers)
            w = threading.Thread(target=self._worker, args=(i,), name=f"tl-worker-{i}",
                                 daemon=True)
            self._workers.append(w)
            w.start()

    def _tune(self, s: Snapshot) -> None:
        if self.tuner is None:
            return
        tcp = [c.stats.tcp for c in self.conns.live() if c.stats.tcp]
        d = self.tuner.observe(
            s.t, s.done_bytes, requests_done=s.requests, errors=s.errors,
            slowdowns=s.slowdowns, ttfb_total_s=s.ttfb_total,
            rtt_us=(sum(t.rtt_us for t in tcp) / len(tcp)) if tcp else None,
            retransmits=sum(t.total_retrans for t in tcp),
            remaining_bytes=(s.total_bytes - s.done_bytes) if s.listing_done else None,
        )
        if d is not None:
            import logging  # here: a copy the tuner never changes loads no logging

            logging.getLogger("trunkline.tune").info(
                "%d connections, %s parts: %s (goodput %.2f Gbit/s at %.1f s)", d.connections,
                human_bytes(d.part_size), d.reason, d.goodput_bps / 1e9, s.elapsed)
            self._spawn(d.connections)
            self.gate.resize(d.connections)
            if not self.opts.part_size_fixed:
                self.part_size = d.part_size

    def snapshot(self) -> Snapshot:
        return take_snapshot(self)

    # -- producer ------------------------------------------------------------------------

    def _produce(self, jobs: Iterable[ObjectJob]) -> None:
        """List and plan, and queue the work: each part of a large object alone, small
        single-part objects in batches (``batch_full``)."""
        batch: list[tuple[ObjectJob, Part]] = []
        self.core.enter()
        kept = self.core.held
        try:
            for job in jobs:
                if self._stop.is_set():
                    break
                if job.plan.kind == "reject":
                    self.completion.reject(job)
                    continue
                if self.journal is not None and not resume.attach(self.journal, job):
                    self.skipped_objects += 1
                    self.skipped_bytes += job.plan.size
                    continue
                with self._lock:
                    self.total_bytes += job.plan.size
                    self.total_objects += 1
                parts = job.plan.parts
                if small(job.plan):
                    batch.append((job, parts[0]))
                    if batch_full(len(batch), self.q.qsize(), self.gate.limit):
                        self._put(batch)
                        batch = []
                    continue
                if kept:   # a large object: the run's threads may use every core again
                    self.core.let_go()
                    kept = self.core.follow(kept)
                for part in parts:
                    self._put([(job, part)])
            if batch:
                self._put(batch)
        except BaseException as e:  # noqa: BLE001 - surfaced by run()
            self.fatal = e
            self._stop.set()
        finally:
            self.listing_done = True
            for _ in range(self.opts.max_connections):
                self._put(None, force=True)

    def _put(self, item, force: bool = False) -> None:
        while True:
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._stop.is_set() and not force:
                    return

    def _drain_queue(self) -> None:
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass

    # -- workers -------------------------------------------------------------------------

    def _worker(self, i: int) -> None:
        st = self.stats[i]
        buf: memoryview | None = None   # allocated on first work: idle workers cost no memory
        self.core.enter()
        kept = self.core.held
        while True:
            # Take the gate before the queue: only as many workers as the tuner allows
            # hold work, the others wait without a task (or a buffer).
            self.gate.acquire()
            batch = self.q.get()
            if batch is None:
                self.gate.release()
                break
            kept = self.core.follow(kept)
            try:
                for k, (job, part) in enumerate(batch):  # noqa: B007 - k: where a crash left
                    if self._stop.is_set():
                        self.completion.part_finished(job, st)
                        continue
                    if buf is None:
                        buf = aligned_buffer(CHUNK)   # page-aligned for O_DIRECT writes
                    st.busy = True
                    st.job, st.part_start = job, st.done_bytes
                    try:
                        self._run_part(job, part, buf, st)
                    except BaseException as e:
                        # a part's own errors end in _run_part: this one is not (see
                        # below). Its object and the rest of its batch fail (listed, their
                        # leftovers cleaned up), none is left unfinished.
                        for other, _ in batch[k:]:
                            self.completion.fail(other, e, None)
                        raise
                    finally:
                        with job.lock:
                            job.done_bytes += st.done_bytes - st.part_start
                        st.busy, st.job = False, None
                        self.completion.part_finished(job, st)
            except BaseException as e:   # noqa: BLE001 - failed objects, or run() raises it
                # Not a part's error (those end in _run_part). The objects of the batch
                # are failed and listed. The local disk under the journal (full, I/O
                # error) would meet every other part as well: the run stops and raises it
                # once, where the caller sees it. Anything else (a bug) stays with its
                # objects, and this worker goes on: a worker that died used to leave the
                # lister waiting on a queue nobody drained once all of them had.
                for job, _ in batch[k + 1:]:
                    try:
                        self.completion.part_finished(job, st)
                    except BaseException:  # noqa: BLE001 - the first error is the one
                        pass
                if isinstance(e, OSError):
                    if self.fatal is None:
                        self.fatal = e
                    self._stop.set()
                    return
            finally:
                self.gate.release()

    def _run_part(self, job: ObjectJob, part: Part, buf, st: WorkerStats) -> None:
        if part.number in job.skip_parts:
            st.resumed_bytes += part.length
            return

        kind = KINDS[job.plan.kind]
        tried: list[PartContext] = []

        def attempt_once() -> object:
            if job.failed is not None or self._stop.is_set():
                return None
            ctx = PartContext(self.context, self.context.leases(), st, buf)
            tried.append(ctx)
            try:
                out = kind.run_part(ctx, job, part)
            except BaseException as e:
                # a connection that failed mid-exchange, or gave damaged bytes, is dropped
                ctx.conns.release_all(trusted=not isinstance(
                    e, (ConnectionError, TimeoutError, IntegrityError, ProtocolError,
                        SourceChanged)))
                raise
            ctx.conns.release_all(trusted=True)
            return out

        last = {"tries": 0, "again": False}

        def on_error(e: BaseException, tries: int, again: bool) -> None:
            last.update(tries=tries, again=again)
            st.done_bytes -= tried[-1].counted   # the failed try's progress is taken back
            st.errors += 1
            if is_slowdown(e):
                st.slowdowns += 1
            if again:
                st.retries += 1

        try:
            out = retrying(attempt_once, self.retry, stop=self._stop, on_error=on_error)
        except Exception as e:  # noqa: BLE001 - given up: this object failed
            if not (last["again"] and self._stop.is_set()):   # (not just stopping)
                self.completion.fail(job, e, last["tries"])
            return
        if out is RESUMED:
            st.resumed_bytes += part.length
            return
        if job.failed is not None or self._stop.is_set():
            return
        # single-part objects are journaled once, when done: half the commits
        if self.journal is not None and job.obj_id is not None and job.plan.multipart:
            self.journal.part_done(job.obj_id, part.number, part.offset, part.length,
                                   job.part_crcs.get(part.number, 0),
                                   job.part_etags.get(part.number))

    def limit_for(self, ep: S3Endpoint | None, *, overall: bool = True
                  ) -> Callable[[int], None] | None:
        """A callable charging n bytes to the rate caps of ``ep`` (with ``overall=False``,
        to its own cap alone), or None if no cap applies."""
        if self.limiter is None or ep is None:
            return None
        lim, name = self.limiter, ep.cfg.name
        if not overall and lim.endpoint(name) is None:
            return None
        return lambda n: lim.acquire(name, n, overall=overall)

    def ensure_dir(self, path: str) -> None:
        d = os.path.dirname(path)
        if d not in self._made_dirs:
            os.makedirs(d, exist_ok=True)
            self._made_dirs.add(d)
