"""The scheduler: a bounded queue of part tasks, worker threads with persistent connections,
per-part retries, and atomic completion of each object.

Why threads: the hot loop is ``recv_into``/``pwrite``/``sendfile``, which release the GIL
for whole MiBs at a time, so a few dozen threads keep many connections busy while Python
does only bookkeeping. Parts of every object share one queue, so small objects are batched
across connections and a large object is spread over all of them.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..storage.partial import PartialFile, finished_stamp
from ..storage.s3 import S3Endpoint, S3Error
from ..units import human_bytes
from ..wire.connection import Connection, ConnectionClosed, ConnectionStats
from ..wire.http1 import ProtocolError, ResponseHead
from . import resume
from .checksums import Expectation, PartDigest, expectation, needs_digest, verdict
from .direct_io import DirectWriter, aligned_buffer, open_direct
from .integrity import crc32c, crc32c_combine_all, crc32c_to_b64, etags_equal
from .jobs import ObjectJob
from .journal import Journal
from .plan import MiB, Part
from .ratelimit import RateLimiter
from .response import check_get
from .retry import (
    IntegrityError,
    NotVerified,
    RetryPolicy,
    SourceChanged,
    is_retryable,
    is_slowdown,
)
from .storage_names import job_dst
from .tune import Tuner

CHUNK = 1 * MiB
log = logging.getLogger("trunkline.tune")
INITIAL_CONNECTIONS = 16
"""Where the tuner starts: enough to fill a 40 ms path with 4 MiB windows to 4 Gbit/s from
the first second (a slow start from 1 would spend ~6 s getting there, longer than many
copies last); the tuner grows from here while more connections pay, and backs off on
SlowDown."""


@dataclass
class TransferOptions:
    """Knobs of one transfer. ``tune`` lets the closed-loop tuner move connections (up to
    ``max_connections``) and the part size; ``connections``/``part_size_fixed`` pin them."""

    max_connections: int = 64
    connections: int | None = None       # static: pin the number of active connections
    part_size: int = 16 * MiB
    part_size_fixed: bool = False
    max_memory: int = 512 * MiB
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    read_timeout: float = 60.0
    checksums: bool = True
    direct_io: bool = True   # downloads bypass the page cache (engine/direct_io.py)
    require_verified: bool = False   # an object nothing could check fails
    tune: bool = True
    bwlimit: float | None = None                      # bytes/s overall
    bwlimit_endpoint: dict[str, float] | None = None  # bytes/s per endpoint name


@dataclass
class WorkerStats:
    """Per-worker counters: each written by one thread only, summed by the monitor."""

    wire_bytes: int = 0       # payload bytes moved on the wire (includes retried bytes)
    done_bytes: int = 0       # payload bytes of completed work (net of failed attempts)
    objects: int = 0
    requests: int = 0
    retries: int = 0
    slowdowns: int = 0
    errors: int = 0
    ttfb_total: float = 0.0
    resumed_bytes: int = 0    # parts found done (on disk or at the store) by a resume
    busy: bool = False


@dataclass
class Snapshot:
    """What the progress display and the tuner see, every tick."""

    t: float
    elapsed: float
    done_bytes: int
    wire_bytes: int
    total_bytes: int
    objects: int
    total_objects: int
    listing_done: bool
    active: int
    retries: int
    slowdowns: int
    errors: int
    requests: int
    ttfb_total: float
    failed: int


@dataclass
class Failure:
    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.name}: {self.error}"


@dataclass
class Unverified:
    """A finished object that nothing comparable was found for, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: unverified ({self.reason})"


def _unverified_reason(job: ObjectJob) -> str:
    if job.kind == "copy":
        return "server-side copy: the store moved the bytes"
    if job.kind in ("upload", "stream"):
        return "the destination store did not accept a checksum"
    return "nothing to compare"


@dataclass
class RunOutcome:
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


class _Gate:
    """A resizable limit on concurrently active workers (set by the tuner)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0
        self.cv = threading.Condition()

    def acquire(self) -> None:
        with self.cv:
            while self.active >= self.limit:
                self.cv.wait()
            self.active += 1

    def release(self) -> None:
        with self.cv:
            self.active -= 1
            self.cv.notify()

    def resize(self, limit: int) -> None:
        with self.cv:
            self.limit = max(1, limit)
            self.cv.notify_all()


class _MemoryBudget:
    """Bounds the bytes held in part buffers (cross-endpoint streaming)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.cv = threading.Condition()
        self.free: dict[int, list[bytearray]] = {}
        self.peak = 0

    def get(self, n: int) -> bytearray:
        with self.cv:
            while self.used + n > self.limit and self.used > 0:
                self.cv.wait()
            self.used += n
            self.peak = max(self.peak, self.used)
            pool = self.free.get(n)
            if pool:
                buf = pool.pop()
                if not pool:
                    del self.free[n]
                return buf
        return bytearray(n)

    def put(self, buf: bytearray) -> None:
        with self.cv:
            self.used -= len(buf)
            pooled = sum(len(b) for bs in self.free.values() for b in bs)
            # keep pooled + used within the budget: drop the buffer instead of pooling it
            if pooled + len(buf) + self.used <= self.limit:
                self.free.setdefault(len(buf), []).append(buf)
            self.cv.notify_all()


class Runner:
    def __init__(
        self,
        opts: TransferOptions,
        on_tick: Callable[[Snapshot], None] | None = None,
        tick: float = 0.25,
        journal: Journal | None = None,
        resumed: bool = False,
    ):
        self.opts = opts
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
                part_size=opts.part_size,
                initial_connections=min(INITIAL_CONNECTIONS, opts.max_connections),
                interval=0.5,
            )
            start = self.tuner.connections
        self.gate = _Gate(start)
        self.part_size = opts.part_size   # read by the planner for objects planned later
        self.limiter = (
            RateLimiter(opts.bwlimit, opts.bwlimit_endpoint)
            if (opts.bwlimit or opts.bwlimit_endpoint) else None
        )
        self.mem = _MemoryBudget(opts.max_memory)
        self.stats = [WorkerStats() for _ in range(opts.max_connections)]
        self.failures: list[Failure] = []
        self.closed_conns: list[ConnectionStats] = []
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.total_objects = 0
        self.listing_done = False
        self.fatal: BaseException | None = None
        self._stop = threading.Event()
        self.started = 0.0
        self._made_dirs: set[str] = set()
        self._worker_conns: list[dict[int, Connection]] = []
        self._workers: list[threading.Thread] = []
        self._done_batch: list[tuple] = []
        self.verified: dict[str, int] = {}          # finished objects per check kind
        self.unverified: list[Unverified] = []      # finished objects nothing could check

    # -- the public entry ----------------------------------------------------------------

    def run(self, jobs: Iterable[ObjectJob]) -> RunOutcome:
        self.started = time.monotonic()
        jobs = iter(jobs)
        first = next(jobs, None)
        if first is not None:
            self._memory_per_connection(first.kind)
            jobs = itertools.chain([first], jobs)
        workers = self._workers
        self._spawn(self.gate.limit)
        producer = threading.Thread(target=self._produce, args=(jobs,), name="tl-list", daemon=True)
        producer.start()
        try:
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=self.tick)
                    if w.is_alive():
                        break
                snap = self.snapshot()
                self._flush_done()
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
            raise
        producer.join()
        self._flush_done()
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
            failures=list(self.failures),
            retries=s.retries,
            slowdowns=s.slowdowns,
            requests=s.requests,
            connections=list(self.closed_conns),
            peak_buffer_bytes=self.mem.peak,
            decisions=[d.to_dict() for d in self.tuner.decisions] if self.tuner else [],
            resumed_bytes=sum(w.resumed_bytes for w in self.stats),
            skipped_objects=self.skipped_objects,
            skipped_bytes=self.skipped_bytes,
            verified=dict(self.verified),
            unverified=list(self.unverified),
        )

    def _memory_per_connection(self, kind: str) -> None:
        """Only streams between stores hold whole parts in memory; a download holds one
        1 MiB buffer per connection and an upload none (``sendfile``), so for those the
        memory bound must not cap connections x part size."""
        if self.tuner is not None and kind in ("download", "upload", "copy"):
            t = self.tuner
            t.rebound(max(t.max_memory, self.opts.max_connections * t.max_part_size),
                      min(INITIAL_CONNECTIONS, self.opts.max_connections))
            self.gate.resize(t.connections)

    def _flush_done(self) -> None:
        if self.journal is None or not self._done_batch:
            return
        with self._lock:
            batch, self._done_batch = self._done_batch, []
        self.journal.done_many(batch)

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
        tcp = [c.stats.tcp for c in self._live_conns() if c.stats.tcp]
        d = self.tuner.observe(
            s.t, s.done_bytes, requests_done=s.requests, errors=s.errors,
            slowdowns=s.slowdowns, ttfb_total_s=s.ttfb_total,
            rtt_us=(sum(t.rtt_us for t in tcp) / len(tcp)) if tcp else None,
            retransmits=sum(t.total_retrans for t in tcp),
            remaining_bytes=(s.total_bytes - s.done_bytes) if s.listing_done else None,
        )
        if d is not None:
            log.info("%d connections, %s parts: %s (goodput %.2f Gbit/s at %.1f s)",
                     d.connections, human_bytes(d.part_size), d.reason, d.goodput_bps / 1e9,
                     s.elapsed)
            self._spawn(d.connections)
            self.gate.resize(d.connections)
            if not self.opts.part_size_fixed:
                self.part_size = d.part_size

    def _live_conns(self) -> list[Connection]:
        return [c for conns in self._worker_conns for c in list(conns.values())]

    def snapshot(self) -> Snapshot:
        st = self.stats
        now = time.monotonic()
        return Snapshot(
            t=now,
            elapsed=now - self.started,
            done_bytes=sum(s.done_bytes for s in st),
            wire_bytes=sum(s.wire_bytes for s in st),
            total_bytes=self.total_bytes,
            objects=sum(s.objects for s in st),
            total_objects=self.total_objects,
            listing_done=self.listing_done,
            active=sum(1 for s in st if s.busy),
            retries=sum(s.retries for s in st),
            slowdowns=sum(s.slowdowns for s in st),
            errors=sum(s.errors for s in st),
            requests=sum(s.requests for s in st),
            ttfb_total=sum(s.ttfb_total for s in st),
            failed=len(self.failures),
        )

    # -- producer ------------------------------------------------------------------------

    def _produce(self, jobs: Iterable[ObjectJob]) -> None:
        try:
            for job in jobs:
                if self._stop.is_set():
                    break
                if job.kind == "reject":
                    with self._lock:
                        self.failures.append(Failure(job.name, job.failed or "rejected"))
                    continue
                if self.journal is not None and not resume.attach(self.journal, job):
                    self.skipped_objects += 1
                    self.skipped_bytes += job.size
                    continue
                with self._lock:
                    self.total_bytes += job.size
                    self.total_objects += 1
                for part in job.parts:
                    self._put((job, part))
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
        conns: dict[int, Connection] = {}
        self._worker_conns.append(conns)
        buf: memoryview | None = None   # allocated on first work: idle workers cost no memory
        rng = random.Random()
        try:
            while True:
                # Take the gate before the queue: only as many workers as the tuner allows
                # hold work, the others wait without a task (or a buffer).
                self.gate.acquire()
                item = self.q.get()
                if item is None:
                    self.gate.release()
                    break
                job, part = item
                if self._stop.is_set():
                    self.gate.release()
                    self._part_finished(job, st)
                    continue
                if buf is None:
                    buf = aligned_buffer(CHUNK)   # page-aligned for O_DIRECT writes
                st.busy = True
                try:
                    self._run_part(job, part, conns, buf, st, rng)
                finally:
                    st.busy = False
                    self.gate.release()
                    self._part_finished(job, st)
        finally:
            for c in conns.values():
                self._close(c)

    def _conn(self, conns: dict[int, Connection], ep: S3Endpoint) -> Connection:
        c = conns.get(id(ep))
        if c is None or not c.usable or c.sock is None:
            if c is not None:
                self._close(c)
            c = ep.new_connection(read_timeout=self.opts.read_timeout)
            c.connect()
            conns[id(ep)] = c
        return c

    def _close(self, c: Connection) -> None:
        if c.stats.started:
            c.close()
            with self._lock:
                self.closed_conns.append(c.stats)
        else:
            c.close()

    def _run_part(self, job: ObjectJob, part: Part, conns, buf, st: WorkerStats, rng) -> None:
        attempt = 0
        while True:
            if job.failed is not None or self._stop.is_set():
                return
            counted = [0]
            if part.number in job.skip_parts:
                st.resumed_bytes += part.length
                return
            try:
                op = _OPS[job.kind]
                if op(self, job, part, conns, buf, st, counted) is _RESUMED:
                    st.resumed_bytes += part.length
                    return
                # single-part objects are journaled once, when done: half the commits
                if self.journal is not None and job.obj_id is not None and job.multipart:
                    self.journal.part_done(job.obj_id, part.number, part.offset, part.length,
                                           job.part_crcs.get(part.number, 0),
                                           job.part_etags.get(part.number))
                return
            except Exception as e:  # noqa: BLE001 - classified below
                st.done_bytes -= counted[0]
                broken = isinstance(e, (ConnectionError, TimeoutError, IntegrityError,
                                        ProtocolError))
                for key, c in list(conns.items()):
                    if broken or not c.usable:
                        self._close(c)
                        del conns[key]
                st.errors += 1
                if is_slowdown(e):
                    st.slowdowns += 1
                attempt += 1
                if not is_retryable(e) or attempt >= self.opts.retry.attempts:
                    self._fail(job, e, attempt)
                    return
                st.retries += 1
                self._stop.wait(self.opts.retry.delay(attempt, rng))

    def _fail(self, job: ObjectJob, e: BaseException, attempts: int | None) -> None:
        with job.lock:
            if job.failed is not None:
                return
            msg = str(e) or type(e).__name__
            if attempts is not None and is_retryable(e):
                msg += f" (gave up after {attempts} tries)"
            job.failed = msg
        with self._lock:
            self.failures.append(Failure(job.name, msg))

    def _part_finished(self, job: ObjectJob, st: WorkerStats) -> None:
        with job.lock:
            job.parts_left -= 1
            last = job.parts_left == 0
        if not last:
            return
        try:
            if job.failed is None and not self._stop.is_set():
                if job.kind in ("download", "stream") and job.multipart:
                    _verify_ranged(self, job, st)
                if job.finalize:  # False: a part range completed elsewhere
                    _FINALIZE[job.kind](self, job)
                else:
                    _cleanup(job, keep=True)   # close; the file is finished elsewhere
                st.objects += 1
                self._record_verification(job)
                if self.journal is not None:
                    if job.obj_id is not None:
                        self.journal.object_done(job.obj_id, None)
                    else:   # single-part: recorded in the next batch
                        with self._lock:
                            self._done_batch.append(
                                (job.name, job_dst(job), job.size, job.etag,
                                 resume.journal_mtime(job), job.part_size))
            else:
                _cleanup(job, keep=self.journal is not None)
        except Exception as e:  # noqa: BLE001
            self._fail(job, e, None)
            keep = self.journal is not None
            if isinstance(e, IntegrityError) and not isinstance(e, NotVerified):
                # the bytes kept (partial file, uploaded parts) failed the object's check:
                # a rerun must not resume from them
                keep = False
                if self.journal is not None and job.obj_id is not None:
                    self.journal.forget_parts(job.obj_id)
                    self.journal.set_upload_id(job.obj_id, None)
            _cleanup(job, keep=keep)

    def _record_verification(self, job: ObjectJob) -> None:
        """Count each finished object as verified(kind) or list it as unverified(reason)."""
        with self._lock:
            if job.verified is not None:
                self.verified[job.verified] = self.verified.get(job.verified, 0) + 1
            else:
                why = job.expect.reason if job.expect is not None and job.expect.reason \
                    else _unverified_reason(job)
                self.unverified.append(Unverified(job.name, why))

    def limit_for(self, ep: S3Endpoint | None) -> Callable[[int], None] | None:
        """A callable charging n bytes to the rate caps of ``ep``, or None if uncapped."""
        if self.limiter is None or ep is None:
            return None
        lim, name = self.limiter, ep.cfg.name
        return lambda n: lim.acquire(name, n)

    def ensure_dir(self, path: str) -> None:
        d = os.path.dirname(path)
        if d not in self._made_dirs:
            os.makedirs(d, exist_ok=True)
            self._made_dirs.add(d)


# -- operations per kind ---------------------------------------------------------------


def _get(runner: Runner, ep: S3Endpoint, job: ObjectJob, part: Part, conns, st: WorkerStats,
         whole: bool) -> tuple[Connection, int, ResponseHead]:
    """Send a GET for ``part`` (``If-Match`` the listed ETag) and check its head against the
    request (engine/response.py) before a byte of the body is read; returns (conn, body
    length, head). A head that fails the check closes the connection."""
    headers = {}
    if not whole:
        headers["Range"] = f"bytes={part.offset}-{part.offset + part.length - 1}"
    else:
        headers["x-amz-checksum-mode"] = "ENABLED"
    etag = job.etag or job.seen_etag
    if etag:
        headers["If-Match"] = etag
    conn = runner._conn(conns, ep)
    t0 = time.monotonic()
    conn.send(ep.signed_head("GET", job.src_bucket, job.src_key, headers=headers))
    head = conn.read_head()
    st.ttfb_total += time.monotonic() - t0
    st.requests += 1
    conn.stats.requests += 1
    if head.status >= 300 and head.status != 412:
        ep.check_response(conn, head, "GET", job.name)
    try:
        got = check_get(head, first=part.offset, length=part.length, total=job.size,
                        ranged=not whole, etag=etag, name=job.name)
    except Exception:
        conn.close()   # whatever follows this head is not a body we can trust
        raise
    if got and not etag:
        job.seen_etag = got
    n = part.length
    if not head.keep_alive:
        conn.usable = False
    if st.requests % 8 == 1:
        conn.sample_tcp()
    return conn, n, head


def _recv_body(conn: Connection, n: int, sink: Callable[[memoryview, int], None],
               buf: memoryview, st: WorkerStats, counted: list[int],
               limit: Callable[[int], None] | None = None,
               digest: PartDigest | None = None) -> int:
    """Receive n bytes through ``buf``; sink(chunk, offset_in_body). Returns the CRC32C
    (and feeds ``digest``, the store's own algorithm when it is not CRC32C)."""
    crc = 0
    got = 0
    while got < n:
        if limit is not None:
            limit(min(len(buf), n - got))
        k = conn.recv_into(buf[: min(len(buf), n - got)])
        if k == 0:
            conn.usable = False
            raise ConnectionClosed(f"body truncated at {got} of {n} bytes")
        chunk = buf[:k]
        crc = crc32c(chunk, crc)
        if digest is not None:
            digest.update(chunk)
        sink(chunk, got)
        got += k
        st.wire_bytes += k
        st.done_bytes += k
        counted[0] += k
    return crc


def _expect_whole(job: ObjectJob, head: ResponseHead) -> PartDigest | None:
    """A one-GET object: what the store keeps comes with the answer."""
    exp = expectation(head.headers, head.headers.get("etag") or job.etag, size=job.size,
                      part_lengths=[job.size], whole=True)
    job.expect = exp
    algo = needs_digest(exp)
    return PartDigest(algo) if algo else None


def _check_whole(job: ObjectJob, crc: int, digest: PartDigest | None) -> None:
    """Compare a one-GET object with the store's checksum; a mismatch is retried."""
    exp = job.expect
    if exp is None or exp.algo is None:
        return
    value = digest.value() if digest is not None else crc
    if not verdict(exp, [(value, job.size)]):
        raise IntegrityError(f"{exp.kind} mismatch on {job.name}: bytes damaged in flight")
    job.verified = exp.kind


def _expect_ranged(runner: Runner, job: ObjectJob, st: WorkerStats) -> None:
    """A ranged object: one HEAD (checksum mode) before its first part says what the store
    keeps, so each part hashes with the store's algorithm as it arrives."""
    with job.lock:
        if job.expect is not None:
            return
        head = _store_head(runner, job.src_ep, job, st)
        etag = head.headers.get("etag")
        if job.etag and etag and not etags_equal(job.etag, etag):
            raise SourceChanged(f"source changed during transfer: {job.name} has ETag {etag}, "
                                f"listed {job.etag}")
        if etag and not job.etag:
            job.seen_etag = job.seen_etag or etag
        job.expect = expectation(head.headers, etag or job.etag, size=job.size,
                                 part_lengths=[p.length for p in job.parts], whole=False)


def _op_download(runner: Runner, job: ObjectJob, part: Part, conns, buf, st, counted):
    with job.lock:
        if job.partial is None:
            # dirs opened without following symlinks, the partial created O_EXCL|O_NOFOLLOW
            # and its space reserved: a full disk fails here, before a byte moves
            job.partial = PartialFile(job.dst_path, job.size, resume=bool(job.resume_crcs))
            job.fd = job.partial.fd
            job.tmp_path = job.partial.path
            dfd = open_direct(job.partial.name, job.size, dir_fd=job.partial.dir_fd,
                              same_as=job.fd) if runner.opts.direct_io else None
            job.writer = DirectWriter(job.fd, dfd)
    if job.size == 0:
        job.verified = job.verified or "empty"
        return None
    assert job.src_ep is not None
    if job.multipart:
        _expect_ranged(runner, job, st)
    want = job.resume_crcs.get(part.number)
    if want is not None:
        algo = needs_digest(job.expect) if job.expect is not None else None
        digest = PartDigest(algo) if algo else None
        if _crc_on_disk(job.fd, part, buf, digest) == want:
            job.part_crcs[part.number] = want
            if digest is not None:
                job.part_digests[part.number] = digest.value()
            return _RESUMED
    conn, n, head = _get(runner, job.src_ep, job, part, conns, st, whole=not job.multipart)
    if job.multipart:
        algo = needs_digest(job.expect) if job.expect is not None else None
        digest = PartDigest(algo) if algo else None
    else:
        digest = _expect_whole(job, head)
    assert job.writer is not None   # opened with job.fd above
    write = job.writer.pwrite
    base = part.offset

    def sink(chunk: memoryview, off: int) -> None:
        write(chunk, base + off)

    crc = _recv_body(conn, n, sink, buf, st, counted, runner.limit_for(job.src_ep), digest)
    if not job.multipart:
        _check_whole(job, crc, digest)
    job.part_crcs[part.number] = crc
    if digest is not None:
        job.part_digests[part.number] = digest.value()
    return None


_RESUMED = object()


def _ranged_matches(job: ObjectJob) -> bool:
    exp = job.expect
    assert exp is not None and exp.algo is not None
    digests = job.part_crcs if needs_digest(exp) is None else job.part_digests
    return verdict(exp, [(digests[p.number], p.length) for p in job.parts])


def _verify_ranged(runner: Runner, job: ObjectJob, st: WorkerStats) -> None:
    """A download (or stream) made of ranged GETs is checked against what the store keeps
    (engine/checksums.py): the part digests are combined and compared. On a mismatch every
    part is fetched again and the ones whose digest changed are rewritten (each counts as a
    retry); if the object still does not match, it fails. Nothing comparable: the object
    is reported unverified, with the reason."""
    if job.size == 0 or len(job.part_crcs) != len(job.parts) or job.src_ep is None \
            or not job.finalize:   # a range of an object: the driver sees the whole
        return
    exp = job.expect
    if exp is None or exp.algo is None:
        return
    if needs_digest(exp) is not None and len(job.part_digests) != len(job.parts):
        # parts a resume found at the destination store were not read again here
        job.expect = Expectation(None, reason=f"{exp.kind}: parts resumed at the store were "
                                              "not read again")
        return
    if _ranged_matches(job):
        job.verified = exp.kind
        return
    if job.kind != "download":
        raise IntegrityError(f"{exp.kind} mismatch on {job.name}: the bytes differ from the "
                             "store's checksum")
    ep = job.src_ep
    conns: dict[int, Connection] = {}
    try:
        buf = memoryview(bytearray(CHUNK))
        scratch = WorkerStats()   # the re-fetch is wire traffic, not more done bytes
        assert job.partial is not None
        algo = needs_digest(exp)
        for part in job.parts:
            c, n, _ = _get(runner, ep, job, part, conns, scratch, whole=False)
            digest = PartDigest(algo) if algo else None
            crc = _recv_body(c, n, _pwriter(job.partial, part.offset), buf, scratch, [0],
                             digest=digest)
            if crc != job.part_crcs[part.number]:
                st.retries += 1
                job.part_crcs[part.number] = crc
            if digest is not None:
                job.part_digests[part.number] = digest.value()
        st.wire_bytes += scratch.wire_bytes
        st.requests += scratch.requests
        if not _ranged_matches(job):
            raise IntegrityError(f"{exp.kind} mismatch on {job.name}: the object differs "
                                 "from the store's checksum even after fetching it again")
        job.verified = exp.kind
    finally:
        for c in conns.values():
            c.close()


def _store_head(runner: Runner, ep: S3Endpoint | None, job: ObjectJob,
                st: WorkerStats) -> ResponseHead:
    """HEAD with checksum mode (the store's checksums and ETag). Retried like a part: a
    reset on this one request must not fail a whole object."""
    assert ep is not None
    attempt = 0
    rng = random.Random()
    while True:
        conn = ep.new_connection(read_timeout=runner.opts.read_timeout)
        try:
            conn.connect()
            conn.send(ep.signed_head("HEAD", job.src_bucket, job.src_key,
                                     headers={"x-amz-checksum-mode": "ENABLED"}))
            head = conn.read_head()
            ep.check_response(conn, head, "HEAD", job.name)
            return head
        except Exception as e:  # noqa: BLE001 - classified below
            attempt += 1
            if not is_retryable(e) or attempt >= runner.opts.retry.attempts:
                raise
            st.retries += 1
            runner._stop.wait(runner.opts.retry.delay(attempt, rng))
        finally:
            conn.close()


def _pwriter(partial: PartialFile, base: int) -> Callable[[memoryview, int], None]:
    return lambda chunk, off: partial.pwrite(chunk, base + off)


def _crc_on_disk(fd: int, part: Part, buf: memoryview, digest: PartDigest | None = None) -> int:
    """CRC32C of a part already in the partial file (a resume re-checks before trusting)."""
    crc = 0
    off = 0
    while off < part.length:
        k = os.preadv(fd, [buf[: min(len(buf), part.length - off)]], part.offset + off)
        if k == 0:
            break
        crc = crc32c(buf[:k], crc)
        if digest is not None:
            digest.update(buf[:k])
        off += k
    return crc


def _require_verified(runner: Runner, job: ObjectJob) -> None:
    if job.verified is None and runner.opts.require_verified:
        why = job.expect.reason if job.expect is not None else "nothing to compare"
        raise NotVerified(f"unverified ({why}) and --require-verified is set")


def _finalize_download(runner: Runner, job: ObjectJob) -> None:
    assert job.partial is not None
    _require_verified(runner, job)
    if job.writer is not None:
        job.writer.close()
        job.writer = None
    size = os.fstat(job.partial.fd).st_size
    if size != job.size:
        raise IntegrityError(f"local file has {size} bytes, expected {job.size}")
    job.partial.commit(job.mtime, stamp=_stamp(job))   # fsync, then renameat by dir fd
    job.partial = None
    job.fd = None


def _stamp(job: ObjectJob) -> bytes:
    """What the finished file carries (xattr): the source ETag, size and CRC32C, so resume
    and sync can tell a file trunkline finished from one it did not."""
    crc = crc32c_combine_all([(job.part_crcs[p.number], p.length) for p in job.parts]) \
        if len(job.part_crcs) == len(job.parts) else None
    return finished_stamp(job.etag or job.seen_etag, job.size, crc)


def _cleanup(job: ObjectJob, keep: bool = False) -> None:
    """After a failure: close; without a journal also remove the partial file and abort the
    multipart upload. With one, both stay for the rerun to resume (``gc`` cleans up)."""
    if job.writer is not None:
        job.writer.close()
        job.writer = None
    if job.partial is not None:
        if keep:
            job.partial.close()
        else:
            job.partial.discard()
        job.partial = None
        job.fd = None
    if job.fd is not None:
        try:
            os.close(job.fd)
        except OSError:
            pass
        job.fd = None
    if keep:
        return
    if job.upload_id and job.dst_ep is not None:
        job.dst_ep.abort_multipart(job.dst_bucket, job.dst_key, job.upload_id)


def _ensure_upload(runner: Runner, job: ObjectJob) -> str:
    with job.lock:
        if job.upload_id is None:
            assert job.dst_ep is not None
            job.upload_id = job.dst_ep.create_multipart(
                job.dst_bucket, job.dst_key, crc32c=_wants_object_crc(runner, job))
            if runner.journal is not None and job.obj_id is not None:
                runner.journal.set_upload_id(job.obj_id, job.upload_id)
        return job.upload_id


def _put_request(runner: Runner, job: ObjectJob, part: Part, conns, st, send_body,
                 crc: int | None) -> str:
    """PUT an object or a part whose body ``send_body(conn)`` writes; returns the ETag."""
    ep = job.dst_ep
    assert ep is not None
    query = None
    if job.multipart:
        query = {"partNumber": str(part.number), "uploadId": _ensure_upload(runner, job)}
    headers = {"Content-Length": str(part.length)}
    if crc is not None and ep.supports_crc32c is not False:
        headers["x-amz-checksum-crc32c"] = crc32c_to_b64(crc)
    conn = runner._conn(conns, ep)
    conn.send(ep.signed_head("PUT", job.dst_bucket, job.dst_key, query=query, headers=headers))
    send_body(conn)
    t0 = time.monotonic()
    head = conn.read_head()
    st.ttfb_total += time.monotonic() - t0
    st.requests += 1
    conn.stats.requests += 1
    try:
        ep.check_response(conn, head, "PUT", job.name, ok=(200,))
    except S3Error as e:
        if (
            "x-amz-checksum-crc32c" in headers
            and ep.supports_crc32c is None
            and e.code in ("InvalidArgument", "NotImplemented", "InvalidRequest", "XAmzContentChecksumMismatch")
        ):
            ep.supports_crc32c = False  # this store rejects the header: go on without it
            raise IntegrityError("endpoint rejects x-amz-checksum-crc32c; retrying without") from e
        raise
    body = conn.read_body(head, limit=64 * 1024)
    del body
    if not head.keep_alive:
        conn.usable = False
    if "x-amz-checksum-crc32c" in headers:
        ep.supports_crc32c = True
    return head.headers.get("etag", "")


def _op_upload(runner: Runner, job: ObjectJob, part: Part, conns, buf, st, counted) -> None:
    with job.lock:
        if job.fd is None:
            job.fd = os.open(job.src_path, os.O_RDONLY)
    fd = job.fd
    n = part.length
    crc = 0
    small = n <= len(buf)
    # Checksum pass: the header must precede the body. Small bodies are read once into the
    # buffer and sent from it; large ones are summed from the page cache, then sendfile'd.
    off = 0
    while off < n:
        k = os.preadv(fd, [buf[: min(len(buf), n - off)]], part.offset + off)
        if k == 0:
            raise IntegrityError(f"{job.src_path} shrank during upload")
        crc = crc32c(buf[:k], crc)
        off += k
    limit = runner.limit_for(job.dst_ep)

    def sent(k: int) -> None:
        # progress per MiB sent, not per part, so a slow store shows motion at once
        st.wire_bytes += k
        st.done_bytes += k
        counted[0] += k

    if small:
        def send_body(conn: Connection) -> None:
            if limit is not None:
                limit(n)
            conn.send(buf[:n])
            sent(n)
    else:
        def send_body(conn: Connection) -> None:
            for off in range(0, n, CHUNK):
                k = min(CHUNK, n - off)
                if limit is not None:
                    limit(k)
                conn.send_file(fd, part.offset + off, k, buf)
                sent(k)
    etag = _put_request(runner, job, part, conns, st, send_body, crc if runner.opts.checksums else None)
    job.part_etags[part.number] = etag
    job.part_crcs[part.number] = crc


def _store_checked(runner: Runner, job: ObjectJob) -> None:
    """The destination store compared every part (and, multipart, the whole object) with
    the CRC32C we sent: verified by the store, unless the source's own check came first."""
    if job.verified is None and runner.opts.checksums and job.dst_ep is not None \
            and job.dst_ep.supports_crc32c:
        job.verified = "crc32c-by-store"


def _finalize_upload(runner: Runner, job: ObjectJob) -> None:
    if job.fd is not None:
        os.close(job.fd)
        job.fd = None
    if job.size == 0:
        job.verified = "empty"
    _store_checked(runner, job)
    _require_verified(runner, job)
    if job.multipart:
        _complete(job, runner)


def _wants_object_crc(runner: Runner, job: ObjectJob) -> bool:
    """Multipart uploads whose bytes pass through us carry a whole-object CRC32C."""
    return (runner.opts.checksums and job.kind in ("upload", "stream")
            and job.dst_ep is not None and job.dst_ep.supports_crc32c is not False)


def _complete(job: ObjectJob, runner: Runner | None = None) -> None:
    assert job.dst_ep is not None and job.upload_id is not None
    parts = sorted(job.part_etags.items())
    upload_id = job.upload_id
    full = None
    if runner is not None and _wants_object_crc(runner, job) and \
            len(job.part_crcs) == len(job.parts):
        full = crc32c_combine_all([(job.part_crcs[p.number], p.length) for p in job.parts])
    job.dst_ep.complete_multipart(job.dst_bucket, job.dst_key, upload_id, parts,
                                  part_crcs=job.part_crcs if full is not None else None,
                                  full_crc=full)
    job.upload_id = None
    if runner is not None and runner.resumed_run:
        resume.abort_strays(runner.journal_created, job, upload_id)


def _op_copy(runner: Runner, job: ObjectJob, part: Part, conns, buf, st, counted) -> None:
    ep = job.dst_ep
    assert ep is not None
    if job.multipart:
        etag = ep.upload_part_copy(job.src_bucket, job.src_key, job.dst_bucket, job.dst_key,
                                   _ensure_upload(runner, job), part.number, part.offset, part.length)
        job.part_etags[part.number] = etag
    else:
        ep.copy_object(job.src_bucket, job.src_key, job.dst_bucket, job.dst_key)
    st.requests += 1
    st.done_bytes += part.length
    counted[0] += part.length


def _finalize_copy(runner: Runner, job: ObjectJob) -> None:
    if job.kind == "stream":
        if job.size == 0:
            job.verified = "empty"
        _store_checked(runner, job)
    # a single-part upload is in place already: --require-verified can only report it
    if job.multipart:
        _require_verified(runner, job)
        _complete(job, runner)


def _op_stream(runner: Runner, job: ObjectJob, part: Part, conns, buf, st, counted) -> None:
    """Cross-endpoint: GET the part into a budgeted buffer, then PUT it. Never via disk."""
    assert job.src_ep is not None
    pbuf = runner.mem.get(part.length) if part.length else bytearray()
    try:
        mv = memoryview(pbuf)
        crc = 0
        digest = None
        if part.length:
            if job.multipart:
                _expect_ranged(runner, job, st)
            conn, n, head = _get(runner, job.src_ep, job, part, conns, st,
                                 whole=not job.multipart)
            if job.multipart:
                algo = needs_digest(job.expect) if job.expect is not None else None
                digest = PartDigest(algo) if algo else None
            else:
                digest = _expect_whole(job, head)
            got = 0
            rlimit = runner.limit_for(job.src_ep)
            while got < n:
                if rlimit is not None:
                    rlimit(min(CHUNK, n - got))
                k = conn.recv_into(mv[got:min(n, got + CHUNK)])
                if k == 0:
                    conn.usable = False
                    raise ConnectionClosed(f"body truncated at {got} of {n} bytes")
                crc = crc32c(mv[got:got + k], crc)
                if digest is not None:
                    digest.update(mv[got:got + k])
                got += k
                st.wire_bytes += k
            if not job.multipart:
                _check_whole(job, crc, digest)

        limit = runner.limit_for(job.dst_ep)

        def send_body(conn: Connection) -> None:
            for off in range(0, part.length, CHUNK):
                k = min(CHUNK, part.length - off)
                if limit is not None:
                    limit(k)
                conn.send(mv[off:off + k])
                st.wire_bytes += k
                st.done_bytes += k
                counted[0] += k

        etag = _put_request(runner, job, part, conns, st, send_body, crc if runner.opts.checksums else None)
        job.part_etags[part.number] = etag
        job.part_crcs[part.number] = crc
        if digest is not None:
            job.part_digests[part.number] = digest.value()
    finally:
        if part.length:
            runner.mem.put(pbuf)


_OPS = {
    "download": _op_download,
    "upload": _op_upload,
    "copy": _op_copy,
    "stream": _op_stream,
}
_FINALIZE = {
    "download": _finalize_download,
    "upload": _finalize_upload,
    "copy": _finalize_copy,
    "stream": _finalize_copy,
}
