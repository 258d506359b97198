"""The per-node worker: a plain class that Ray runs as an actor (one per node by default).

Each shard runs the ordinary single-node engine: a ``Runner`` with its own tuner and a
per-shard resume journal in the node's state dir. Part ranges of a split object go into
the driver's multipart upload and are not completed here (``plan.finalize = False``): their
part ETags go back to the driver, which completes the object once every range is in.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from ..engine.connections import RunConnections
from ..engine.jobs import EndpointCache, ObjectJob, job_for
from ..engine.journal import Journal, default_state_dir
from ..engine.ratelimit import RateLimiter
from ..engine.scheduler import Runner
from ..options import TransferOptions
from ..storage import capabilities
from ..storage.local import LocalFile
from ..storage.s3 import ObjectInfo
from ..telemetry.snapshot import Snapshot
from ..url import parse_location
from .shard import Item, Shard


@dataclass
class WorkerSpec:
    """What every shard of one cluster copy shares (sent once, at actor creation)."""

    src: str
    dst: str                      # '{node}' in a per-node destination is this node's tag
    many: bool
    into: bool
    server_side: bool
    options: TransferOptions
    resume: bool = True
    state_dir: str | None = None
    jopts: dict[str, Any] | None = None
    env: dict[str, str] | None = None   # the driver's endpoint settings, set in the worker
    inflight: int = 2                   # shards the driver keeps on a worker at once
    answers: dict[str, dict[str, float]] | None = None   # the driver's (EndpointCache.answers)
    caps: dict | None = None   # the destination store's, as the driver's probe found them


def node_tag(node_id: str) -> str:
    return node_id[:12]


class _LockedEndpoints(EndpointCache):
    def __init__(self, answers: dict[str, dict[str, float]] | None = None) -> None:
        super().__init__(answers)
        self._lock = threading.Lock()

    def get(self, name: str):
        with self._lock:
            return super().get(name)


class ShardWorker:
    def __init__(self, spec: WorkerSpec, node_id: str = "") -> None:
        if spec.env:
            # an actor has its own process: its environment is this copy's alone
            os.environ.update(spec.env)
            spec.env = None
        if not node_id:
            try:
                import ray

                node_id = ray.get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - outside Ray (unit use): the host name
                node_id = socket.gethostname()
        self.spec = spec
        self.node_id = node_id
        self.tag = node_tag(node_id)
        self.src = parse_location(spec.src)
        self.dst = parse_location(spec.dst.replace("{node}", self.tag))
        self.eps = _LockedEndpoints(spec.answers)
        self._lock = threading.Lock()
        if spec.caps and not self.dst.is_local:
            # what the driver's probe found of the destination store: the engine then
            # sends what it accepts, passes streams through where trailers are checked,
            # and reports an object checked by the store only where it was seen to check
            capabilities.apply(self.eps.get(self.dst.endpoint or "s3"),
                               capabilities.from_dict(spec.caps))
        # one set of connections for every shard this worker runs: a shard does not pay
        # for new handshakes (and, on a long path, TCP's slow start) when it begins; and
        # one rate limiter: the worker's share of --bwlimit caps its shards together
        o = spec.options
        # idle connections kept: as many as the shards in flight at once may use
        self._conns = RunConnections(o.read_timeout, o.max_connections * spec.inflight,
                                     o.min_rate_pair)
        self._limiter = (RateLimiter(o.bwlimit, o.bwlimit_endpoint)
                         if (o.bwlimit or o.bwlimit_endpoint) else None)
        self._live: dict[str, Snapshot] = {}
        self._finished_bytes = 0
        self._objects = 0
        self._retries = 0
        self._failed = 0

    def info(self) -> dict:
        return {"node": self.node_id, "tag": self.tag, "pid": os.getpid(),
                "host": socket.gethostname(), "dst": str(self.dst)}

    def progress(self) -> dict:
        with self._lock:
            live = list(self._live.values())
            inflight_objects = sum(s.objects for s in live)
            return {
                "node": self.node_id,
                "finished_bytes": self._finished_bytes,
                "inflight_bytes": sum(s.done_bytes for s in live),
                "objects": self._objects + inflight_objects,
                "inflight_objects": inflight_objects,
                "active": sum(s.active for s in live),
                "retries": self._retries + sum(s.retries for s in live),
                "requests": sum(s.requests for s in live),
                "failed": self._failed + sum(s.failed for s in live),
                "shards": len(live),
                "t": time.time(),
            }

    # ------------------------------------------------------------------------------
    def _job(self, it: Item) -> ObjectJob:
        s, d = self.src, self.dst
        src_ep = self.eps.get(s.endpoint or "s3")
        dst_ep = None if d.is_local else self.eps.get(d.endpoint or "s3")
        info = (LocalFile(it.rel, it.key, it.size, it.mtime or 0.0) if s.is_local
                else ObjectInfo(it.key, it.size, it.etag, it.mtime))
        job = job_for(s, d, it.rel, info,
                      many=self.spec.many, into=self.spec.into, src_ep=src_ep, dst_ep=dst_ep,
                      part_size=it.part_size, server_side=self.spec.server_side)
        if it.first:
            # a range of a split object: parts into the driver's upload, completed there
            plan = replace(job.plan, parts=tuple(p for p in job.plan.parts
                                                 if it.first <= p.number <= it.last),
                           finalize=False,  # read by the engine's completion step
                           name=f"{job.plan.name} (parts {it.first}-{it.last})")
            job = ObjectJob(plan, upload_id=it.upload_id)
        return job

    def close_connections(self) -> list[dict]:
        """Close this worker's connections (the copy is over) and return what each one
        carried, as flow records' raw material: the shards' results hold none, since the
        connections outlive them."""
        self._conns.close()
        return [c.to_dict() for c in self._conns.closed_stats()]

    def plan_shard(self, shard: Shard) -> dict:
        """Dry run: build the shard's jobs (what a real run would queue), move nothing."""
        jobs = [self._job(it) for it in shard.items]
        return {"shard": shard.id, "node": self.node_id, "objects": shard.objects,
                "parts": sum(len(j.plan.parts) for j in jobs), "planned_bytes": shard.bytes}

    def run_shard(self, shard: Shard) -> dict:
        spec = self.spec
        jobs = [self._job(it) for it in shard.items]
        state_dir = spec.state_dir or default_state_dir()
        # a range of a split object starts its parts over (its ETags must reach the driver)
        opener = Journal.open if spec.resume and not shard.split else Journal.fresh
        journal = opener(state_dir, f"ray-shard:{shard.id}", str(self.dst), spec.jopts or {})

        def tick(snap: Snapshot) -> None:
            with self._lock:
                self._live[shard.id] = snap

        runner = Runner(spec.options, on_tick=tick, journal=journal, conns=self._conns,
                        limiter=self._limiter, sharing=spec.inflight)
        try:
            out = runner.run(jobs)
        finally:
            journal.close()
            with self._lock:
                self._live.pop(shard.id, None)
        if not out.failures:
            journal.remove()
        objects = 0 if shard.split else out.objects
        with self._lock:
            self._finished_bytes += out.done_bytes
            self._objects += objects
            self._retries += out.retries
            self._failed += len(out.failures)
        etags: dict[int, str] = {}
        if shard.split and not out.failures:
            etags = dict(jobs[0].part_etags)
        return {
            "shard": shard.id,
            "node": self.node_id,
            "bytes": out.done_bytes,
            "wire_bytes": out.wire_bytes,
            "seconds": out.seconds,
            "objects": objects,
            "failures": [(f.name, f.error) for f in out.failures],
            "verified": dict(out.verified),
            "unverified": [(u.name, u.reason) for u in out.unverified],
            "etags": etags,
            "retries": out.retries,
            "slowdowns": out.slowdowns,
            "requests": out.requests,
            "peak_buffer_bytes": out.peak_buffer_bytes,
            "resumed_bytes": out.resumed_bytes,
            "skipped_objects": out.skipped_objects,
            "skipped_bytes": out.skipped_bytes,
            "connections": [c.to_dict() for c in out.connections],
            "tuned": out.decisions[-1] if out.decisions else None,
        }
