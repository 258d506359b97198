"""The Python API of the mover: ``copy`` and ``copy_async``, returning a ``TransferResult``.

Usable from a training script::

    import trunkline
    r = trunkline.copy("s3://datasets/shards/", "/mnt/nvme/shards/", recursive=True)
    print(r.gbps, r.ok)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .engine.jobs import EndpointCache, ObjectJob, plan_jobs
from .engine.journal import Journal, default_state_dir, journal_id
from .engine.retry import RetryPolicy
from .engine.run import Failure, Runner, RunOutcome, Snapshot, TransferOptions, Unverified
from .errors import UsageError
from .units import MiB, parse_size, parse_transfer_rate
from .url import Location, parse_location


@dataclass
class TransferResult:
    """What a transfer did. ``ok`` is False when any object failed."""

    src: str
    dst: str
    bytes: int
    seconds: float
    objects: int
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0
    slowdowns: int = 0
    requests: int = 0
    wire_bytes: int = 0
    peak_buffer_bytes: int = 0
    decisions: list[dict] = field(default_factory=list)
    resumed_bytes: int = 0      # parts a resume found already done
    skipped_objects: int = 0    # objects a resume found already done
    skipped_bytes: int = 0
    connections: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    verified: dict[str, int] = field(default_factory=dict)   # finished objects per check
    unverified: list[Unverified] = field(default_factory=list)   # and the ones none fit

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def gbps(self) -> float:
        return self.bytes * 8 / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["failures"] = [str(f) for f in self.failures]
        d["unverified"] = [{"name": u.name, "reason": u.reason} for u in self.unverified]
        d["ok"] = self.ok
        d["gbps"] = round(self.gbps, 4)
        d["seconds"] = round(self.seconds, 4)
        return d


def _options(
    max_connections: int | None,
    part_size: int | str | None,
    max_memory: int | str | None,
    retries: int | None,
    read_timeout: float | None,
    connections: int | None = None,
    tune: bool = True,
    bwlimit: float | str | None = None,
    bwlimit_endpoint: dict[str, float | str] | None = None,
    direct_io: bool = True,
) -> TransferOptions:
    o = TransferOptions()
    o.direct_io = direct_io
    if max_connections is not None:
        if max_connections < 1:
            raise UsageError("max_connections must be >= 1")
        o.max_connections = max_connections
    if connections is not None:
        if connections < 1:
            raise UsageError("connections must be >= 1")
        o.connections = connections
        o.max_connections = max(connections, o.max_connections if max_connections else 0)
        o.max_connections = connections if max_connections is None else o.max_connections
    o.tune = tune
    o.bwlimit = parse_transfer_rate(bwlimit)
    if bwlimit_endpoint:
        o.bwlimit_endpoint = {k: parse_transfer_rate(v) for k, v in bwlimit_endpoint.items()}  # type: ignore[misc]
    if part_size is not None:
        o.part_size = parse_size(part_size)
        o.part_size_fixed = True
        if o.part_size < 5 * MiB:
            raise UsageError("part_size must be at least 5 MiB (the S3 minimum)")
    if max_memory is not None:
        o.max_memory = parse_size(max_memory)
    if retries is not None:
        o.retry = RetryPolicy(attempts=max(1, retries + 1))
    if read_timeout is not None:
        o.read_timeout = read_timeout
    # a stream needs at least one part buffer per connection to keep them all busy
    o.max_memory = max(o.max_memory, o.part_size)
    return o


def copy(
    src: str | Location,
    dst: str | Location,
    *,
    recursive: bool = False,
    max_connections: int | None = None,
    connections: int | None = None,
    part_size: int | str | None = None,
    max_memory: int | str | None = None,
    retries: int | None = None,
    read_timeout: float | None = None,
    tune: bool = True,
    bwlimit: float | str | None = None,
    bwlimit_endpoint: dict[str, float | str] | None = None,
    direct_io: bool = True,
    server_side: bool = True,
    resume: bool = True,
    state_dir: str | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    flows_to: str | None = None,
    flows_store: str | None = None,
    cluster: str | None = None,
    per_node_dest: bool = False,
    require_verified: bool = False,
) -> TransferResult:
    """Copy ``src`` to ``dst`` (local path, ``s3://bucket/key``, or ``NAME:bucket/key``).

    Connections and part size are tuned closed-loop unless pinned (``connections``,
    ``part_size``) or ``tune=False``; ``max_connections`` and ``max_memory`` bound the tuner.
    ``bwlimit`` caps the rate (bytes/s, or text such as '500M' bytes/s or '4Gbit').
    ``direct_io`` (default) writes downloads of 4 MiB and more around the page cache
    (O_DIRECT where the filesystem has it): each byte is written once, copied once.
    With ``resume`` (default) a journal in ``state_dir`` records every finished part, so
    rerunning the same copy after a crash continues where it stopped; ``resume=False``
    starts fresh. The journal is removed when the copy completes.
    After the run, each connection is exported as flow records (one per direction) into the
    flow store ``flows_store`` and/or as IPFIX to ``flows_to`` (``udp://HOST:PORT``).

    Raises ``LocationError``/``ValueError`` for usage errors and ``S3Error`` when the source
    cannot be listed; per-object failures are reported in the result, never half-written.

    Every finished object is reported ``verified`` (by the check that passed: the store's
    CRC32C/CRC32/CRC64NVME/SHA/MD5 ETag, see docs/resume-integrity.md) or ``unverified``
    (with the reason); ``require_verified`` makes an unverified object fail instead.
    ``cluster`` ('auto', 'local', 'ray://HOST:PORT') moves it with every node of a Ray
    cluster (``per_node_dest``: ``dst`` is a local path on each node); see docs/cluster.md.
    """
    if cluster is not None or per_node_dest:
        kw = dict(locals())  # exactly the parameters above
        if kw.pop("require_verified"):
            raise UsageError("require_verified is not available with a Ray cluster yet")
        from .cluster import copy_on_ray
        return copy_on_ray(**kw)
    s = parse_location(src) if isinstance(src, str) else src
    d = parse_location(dst) if isinstance(dst, str) else dst
    opts = _options(max_connections, part_size, max_memory, retries, read_timeout,
                    connections, tune, bwlimit, bwlimit_endpoint, direct_io)
    opts.require_verified = require_verified
    eps = EndpointCache()
    jopts = {"op": "cp", "recursive": recursive, "server_side": server_side}
    result = run_journaled(
        s, d, opts, jopts, resume=resume, state_dir=state_dir, on_progress=on_progress,
        plan=lambda part_size_for: plan_jobs(s, d, recursive=recursive, part_size=part_size_for,
                                             eps=eps, server_side=server_side),
    )
    if flows_to or flows_store:
        from .telemetry.flows_export import export_flows

        export_flows(result.connections, flows_to=flows_to, flows_store=flows_store)
    return result


def run_journaled(
    s: Location,
    d: Location,
    opts: TransferOptions,
    jopts: dict,
    *,
    resume: bool,
    state_dir: str | None,
    on_progress: Callable[[Snapshot], None] | None,
    plan: Callable[[Callable[[str], int]], Iterator[ObjectJob]],
) -> TransferResult:
    """Run the jobs ``plan(part_size_for)`` yields under a resume journal (cp and sync).

    The journal is removed when everything succeeded, kept for a rerun otherwise (or while
    it still lists multipart uploads to clean up)."""
    sdir = Path(state_dir or default_state_dir())
    resumed = resume and (sdir / f"{journal_id(str(s), str(d), jopts)}.sqlite").exists()
    journal = (Journal.open if resume else Journal.fresh)(sdir, str(s), str(d), jopts)
    runner = Runner(opts, on_tick=on_progress, journal=journal, resumed=resumed)

    def part_size_for(name: str) -> int:
        # a resumed object keeps the part size it was started with, so parts line up
        return journal.recorded_part_size(name) or runner.part_size

    try:
        jobs = plan(part_size_for)
        # plan up to the first job before starting threads: usage errors (a missing source,
        # an unknown endpoint) surface here, and an unchanged tree costs only its listing
        first = next(jobs, None)
    except BaseException:
        journal.close()
        if not resumed:
            journal.remove()
        raise
    if first is None:
        leftovers = journal.pending_uploads() or journal.discarded_uploads()
        journal.close()
        if not leftovers:   # else keep it: gc lists and aborts those uploads
            journal.remove()
        return _result(s, d, None, runner)

    def all_jobs():
        yield first
        yield from jobs

    try:
        out = runner.run(all_jobs())
    finally:
        journal.close()
    if not out.failures:
        journal.remove()
    return _result(s, d, out, runner)


def _result(s: Location, d: Location, out: RunOutcome | None, runner: Runner) -> TransferResult:
    opts = runner.opts
    options = {
        "max_connections": opts.max_connections,
        "connections": opts.connections,
        "tune": runner.tuner is not None,
        "part_size": opts.part_size,
        "max_memory": opts.max_memory,
        "bwlimit": opts.bwlimit,
        "direct_io": opts.direct_io,
        "require_verified": opts.require_verified,
    }
    if out is None:
        return TransferResult(src=str(s), dst=str(d), bytes=0, seconds=0.0, objects=0,
                              options=options)
    return TransferResult(
        src=str(s),
        dst=str(d),
        bytes=out.done_bytes,
        seconds=out.seconds,
        objects=out.objects,
        failures=out.failures,
        retries=out.retries,
        slowdowns=out.slowdowns,
        requests=out.requests,
        wire_bytes=out.wire_bytes,
        peak_buffer_bytes=out.peak_buffer_bytes,
        decisions=out.decisions,
        resumed_bytes=out.resumed_bytes,
        skipped_objects=out.skipped_objects,
        skipped_bytes=out.skipped_bytes,
        connections=[c.to_dict() for c in out.connections],
        options=options,
        verified=out.verified,
        unverified=out.unverified,
    )


async def copy_async(src: str | Location, dst: str | Location, **kw) -> TransferResult:
    """``copy`` for asyncio programs: runs the transfer in a thread, awaits its result."""
    import asyncio  # lazily: asyncio costs ~0.1 s of start-up that the CLI does not need

    return await asyncio.to_thread(copy, src, dst, **kw)
