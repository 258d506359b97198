"""The driver of a cluster copy: list, shard, dispatch, retry lost shards, aggregate.

Flow: a lister thread streams the source through ``plan_shards`` into a bounded queue
(the ledger's done shards are dropped there, so a rerun resumes). The dispatch loop keeps
``inflight`` shards on each worker actor, waits on their results with ``ray.wait``, and
polls the workers' counters for the progress display (total and per-node rate). A worker
that dies (its process or its node) takes its in-flight shards with it: they go back to
the queue and run on another worker, at most ``shard_attempts`` tries in all, under the
one retry policy (``cluster/retries.py``; what is retryable and the backoff are
``engine/retry.py``'s). For a per-node local destination the shards a lost *node* had
finished go back too (their files lived on that node). Split objects: the driver creates the multipart upload, the workers send the
part ranges, the driver completes it with their ETags.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..engine.jobs import EndpointCache, _sources
from ..engine.journal import default_state_dir
from ..engine.retry import RetryPolicy
from ..errors import ClusterUnavailable, UsageError
from ..options import TransferOptions
from ..results import Failure, Skips, TransferResult, Unverified
from ..storage import capabilities
from ..telemetry.snapshot import Snapshot
from ..units import GiB, parse_size
from ..url import Location, LocationError, parse_location
from .ledger import Ledger
from .retries import ShardFailed, ShardRetries, WorkerLost
from .shard import Shard, SplitPlan, plan_shards
from .worker import ShardWorker, WorkerSpec, node_tag

log = logging.getLogger("trunkline.cluster")

# what a driver forwards to the workers' environment (forward_env=True): endpoint config
_FORWARD_PREFIXES = ("AWS_", "TRUNKLINE_")


@dataclass
class NodeProgress:
    node: str              # Ray node id (tag = first 12 hex digits)
    pid: int
    done_bytes: int
    gbps: float            # over the last few seconds
    objects: int
    active: int
    shards: int
    alive: bool = True


@dataclass
class ClusterSnapshot(Snapshot):
    nodes: list[NodeProgress] = field(default_factory=list)
    shards_done: int = 0   # shards whose result came back (in the ledger: a rerun skips them)


@dataclass
class ClusterResult(TransferResult):
    cluster: str = ""
    nodes: list[dict] = field(default_factory=list)
    shards: int = 0
    shards_skipped: int = 0
    shard_retries: int = 0
    lost_workers: int = 0
    dry_run: bool = False
    planned_bytes: int = 0
    planned_parts: int = 0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(
            "multi-node copies need Ray, which is not installed: pip install 'trunkline[ray]'"
        ) from None
    return ray


def _connect(ray, cluster: str) -> bool:
    """ray.init for ``cluster``; True when this call started the connection (we shut down)."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING,
                              configure_logging=False)
    try:
        if cluster == "local":
            # a private one-node Ray for this copy: loopback only (as Ray does on macOS)
            from ray._private import ray_constants

            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            ray_constants.ENABLE_RAY_CLUSTER = False
            ray.init(include_dashboard=False, **kw)
        elif cluster == "auto":
            ray.init(address="auto", **kw)
        else:
            ray.init(address=cluster, **kw)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError...: one clear line
        raise ClusterUnavailable(f"cannot reach the Ray cluster {cluster!r}: {e}") from None
    return True


def _select_nodes(ray, node_resource: str | None) -> list[dict]:
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if node_resource:
        sel = [n for n in alive if n["Resources"].get(node_resource, 0) > 0
               or node_resource in (n.get("Labels") or {})]
        if not sel:
            raise ClusterUnavailable(f"no alive Ray node has resource or label {node_resource!r}")
        return sel
    # one worker per node with CPUs (a head started with --num-cpus=0 only coordinates)
    return [n for n in alive if n["Resources"].get("CPU", 0) > 0] or alive


def _probed(dst_ep, d: Location, opts: TransferOptions) -> dict | None:
    """The destination store's capabilities, probed once here (or read from the probe's
    cache) for every worker, which applies them to its endpoint as a one-process copy
    does (``capabilities.apply``); None for a local destination, checksums off, or the
    probe off."""
    if dst_ep is None or not opts.checksums or not capabilities.enabled():
        return None
    return capabilities.for_endpoint(dst_ep, d.bucket).to_dict()


def _forward_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES)}


class _Rate:
    def __init__(self, span: float = 3.0) -> None:
        self.span = span
        self.pts: deque[tuple[float, int]] = deque()

    def add(self, t: float, v: int) -> float:
        self.pts.append((t, v))
        while len(self.pts) > 2 and t - self.pts[0][0] > self.span:
            self.pts.popleft()
        t0, v0 = self.pts[0]
        return (v - v0) / (t - t0) if t > t0 else 0.0


@dataclass
class _Worker:
    actor: Any
    node: str
    pid: int
    inflight: dict = field(default_factory=dict)   # ObjectRef -> Shard
    done: list = field(default_factory=list)       # shards finished here (per-node dest)
    alive: bool = True
    last: dict = field(default_factory=dict)
    rate: _Rate = field(default_factory=_Rate)


def copy_on_ray(
    src: str | Location,
    dst: str | Location,
    *,
    cluster: str | None = "auto",
    per_node_dest: bool = False,
    recursive: bool = False,
    options: TransferOptions | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    flows_to: str | None = None,
    flows_store: str | None = None,
    node_resource: str | None = None,
    workers_per_node: int = 1,
    inflight: int = 2,
    shard_size: int | str = GiB,
    shard_objects: int = 1000,
    shard_attempts: int = 3,
    forward_env: bool = True,
    dry_run: bool = False,
    tick: float = 0.5,
    **overrides: Any,
) -> ClusterResult:
    """Copy ``src`` (s3) to ``dst`` (s3, or with ``per_node_dest`` a local path on each
    node, where ``{node}`` expands to the node's id tag) with every node of a Ray cluster.

    ``cluster``: 'auto' (the running cluster), 'local' (start one on this host),
    'ray://HOST:PORT' (Ray Client) or 'HOST:PORT' (GCS). ``options`` (and keywords named
    like its fields, as for ``copy``) apply per node;
    ``bwlimit`` is the total, split evenly across workers. ``dry_run`` lists, shards and
    dispatches (workers build the jobs) but moves nothing: the driver's scheduling rate.
    """
    ray = _import_ray()
    s = parse_location(src) if isinstance(src, str) else src
    d = parse_location(dst) if isinstance(dst, str) else dst
    if s.is_local:
        raise LocationError("a cluster copy needs an s3:// source (every node reads it directly)")
    if d.is_local and not per_node_dest:
        raise LocationError("a local destination with --ray needs --per-node-dest "
                            "(each node writes its share under that path on its own disk)")
    if per_node_dest and not d.is_local:
        raise LocationError("--per-node-dest needs a local destination path")
    name = cluster or "auto"
    return _copy_on_workers(
        ray, name, lambda: _connect(ray, name), lambda: _select_nodes(ray, node_resource),
        lambda spec, nodes, per_node: _ray_actors(ray, spec, nodes, per_node, inflight),
        s, d, per_node_dest=per_node_dest, recursive=recursive, options=options,
        on_progress=on_progress, flows_to=flows_to, flows_store=flows_store,
        workers_per_node=workers_per_node, inflight=inflight, shard_size=shard_size,
        shard_objects=shard_objects, shard_attempts=shard_attempts,
        forward_env=forward_env, dry_run=dry_run, tick=tick, **overrides)


def copy_on_processes(
    src: str | Location,
    dst: str | Location,
    *,
    processes: int,
    recursive: bool = False,
    options: TransferOptions | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    flows_to: str | None = None,
    flows_store: str | None = None,
    inflight: int = 2,
    shard_size: int | str = GiB,
    shard_objects: int = 250,
    shard_attempts: int = 3,
    dry_run: bool = False,
    tick: float = 0.5,
    listed: tuple[EndpointCache, Iterator[tuple[str, object]]] | None = None,
    op: str = "cp",
    skips: Skips | None = None,
    **overrides: Any,
) -> ClusterResult:
    """Copy ``src`` to ``dst`` (s3 -> local, local -> s3, s3 -> s3) with ``processes``
    engine processes on this host (``cp --processes N``), no Ray needed. ``listed``: the
    source's listing already begun (``engine.jobs.peek_sources``), or the objects a sync
    copies, and their endpoints; ``op`` names the command in the resume ledger's key.

    The same driver as ``copy_on_ray``: one listing cut into shards, each process running
    the ordinary engine on the shards it takes, a lost process's shards run again by
    another, the resume ledger, one merged result. For many small objects, where one
    process is bound by its interpreter lock. Shards are smaller than on Ray (250
    objects) so the processes finish together. ``bwlimit`` is the total.
    """
    if processes < 1:
        raise UsageError("processes must be >= 1")
    s = parse_location(src) if isinstance(src, str) else src
    d = parse_location(dst) if isinstance(dst, str) else dst
    if s.is_local and d.is_local:
        raise LocationError("--processes moves to or from a store: one side must be s3://")
    from .processes import LocalProcesses

    opts = connections_shared(TransferOptions.build(options, **overrides), processes)
    pool = LocalProcesses(processes)
    try:
        return _copy_on_workers(
            pool, "processes", lambda: False, pool.nodes, pool.start_workers, s, d,
            per_node_dest=False,
            recursive=recursive, options=opts, on_progress=on_progress,
            flows_to=flows_to, flows_store=flows_store, workers_per_node=processes,
            inflight=inflight, shard_size=shard_size, shard_objects=shard_objects,
            shard_attempts=shard_attempts, forward_env=False, dry_run=dry_run, tick=tick,
            listed=listed, op=op, on_skip=skips)
    finally:
        pool.shutdown()


def connections_shared(opts: TransferOptions, processes: int) -> TransferOptions:
    """``opts`` for each of ``processes`` engines on one host: ``max_connections`` is the
    total, split evenly (at least one each), unless ``connections`` pins each engine's.

    Why: the processes share one host's cores and one store. Each with the whole bound
    (64 by default) would let 16 processes open up to 1,024 sockets on the store, and with
    many processes fewer connections each move more: on 16 cores, 20,000 x 256 KiB with
    ``-P 16`` moved 9,731 objects/s at 4 connections per process against 8,845 at 16, with
    7 % less CPU per object (bench/RESULTS.md)."""
    if opts.connections is not None or processes <= 1:
        return opts
    return replace(opts, max_connections=max(1, opts.max_connections // processes))


def _copy_on_workers(
    ray: Any,
    cluster: str,
    connect: Callable[[], bool],
    select_nodes: Callable[[], list[dict]],
    start_workers: Callable[[WorkerSpec, list[dict], int], list],
    s: Location,
    d: Location,
    *,
    per_node_dest: bool,
    recursive: bool,
    options: TransferOptions | None,
    on_progress: Callable[[Snapshot], None] | None,
    flows_to: str | None,
    flows_store: str | None,
    workers_per_node: int,
    inflight: int,
    shard_size: int | str,
    shard_objects: int,
    shard_attempts: int,
    forward_env: bool,
    dry_run: bool,
    tick: float,
    listed: tuple[EndpointCache, Iterator[tuple[str, object]]] | None = None,
    op: str = "cp",
    on_skip: Skips | None = None,
    **overrides: Any,
) -> ClusterResult:
    """The run shared by Ray and local processes: ``ray`` is Ray or ``LocalProcesses``;
    ``connect`` returns True when it started what ``ray.shutdown`` must stop;
    ``start_workers(spec, nodes, per_node)`` returns the worker actors."""
    if workers_per_node < 1 or inflight < 1 or shard_attempts < 1:
        raise UsageError("workers_per_node, inflight and shard_attempts must be >= 1")
    shard_bytes = parse_size(shard_size)
    opts = TransferOptions.build(options, **overrides)
    ps = opts.initial_part_size
    many = recursive or s.has_glob
    into = many or d.is_dir_like
    eps, listing = listed if listed is not None else (EndpointCache(), None)
    dst_ep = None if d.is_local else eps.get(d.endpoint or "s3")
    listing = listing if listing is not None else _sources(s, eps, recursive, on_skip)
    first = next(listing, None)   # usage errors (no such key/bucket) before starting workers

    owned = connect()
    try:
        nodes = select_nodes()
        n_workers = len(nodes) * workers_per_node
        # the caps are totals: each worker gets its share
        opts = replace(opts, bwlimit=opts.bwlimit / n_workers if opts.bwlimit else None,
                       bwlimit_endpoint={k: v / n_workers
                                         for k, v in (opts.bwlimit_endpoint or {}).items()})
        server_side, resume, state_dir = opts.server_side, opts.resume, opts.state_dir
        jopts = {"op": f"{op}-ray-shard", "recursive": recursive, "server_side": server_side}
        spec = WorkerSpec(str(s), str(d), many, into, server_side, opts, resume,
                          state_dir, jopts, _forward_env() if forward_env else None, inflight,
                          eps.answers(),
                          _probed(dst_ep, d, opts) if first is not None and not dry_run
                          else None)
        lopts = {"op": f"{op}-ray", "recursive": recursive, "server_side": server_side,
                 "per_node_dest": per_node_dest, "part_size": ps, "shard_bytes": shard_bytes,
                 "shard_objects": shard_objects}
        ledger = None if dry_run else Ledger(state_dir or default_state_dir(), str(s), str(d),
                                             lopts, fresh=not resume)
        drv = _Driver(ray, start_workers(spec, nodes, workers_per_node), inflight,
                      shard_attempts, dry_run, tick, on_progress, ledger, per_node_dest,
                      dst_ep, d, into)

        def all_sources():
            if first is not None:
                yield first
                yield from listing

        # s3 -> s3: an object larger than a shard is moved by every worker at once (a
        # local file travels whole: one process reads it)
        split = drv.split if (dst_ep is not None and not s.is_local and not dry_run) else None
        shards = plan_shards(all_sources(), part_size=ps, shard_bytes=shard_bytes,
                             shard_objects=shard_objects, split=split)
        try:
            res = drv.run(shards)
        except BaseException:
            if ledger is not None:
                ledger.close()   # kept: a rerun resumes
            raise
        finally:
            drv.stop()
        if ledger is not None:
            if res.failures:
                ledger.close()
            else:
                ledger.remove()
    finally:
        if owned:
            ray.shutdown()
    res.src, res.dst, res.cluster = str(s), str(d), cluster
    if on_skip is not None:
        res.skipped = on_skip.entries
    res.options = {"max_connections": opts.max_connections, "connections": opts.connections,
                   "tune": opts.tune, "part_size": ps, "max_memory": opts.max_memory,
                   "bwlimit_per_worker": opts.bwlimit, "shard_bytes": shard_bytes,
                   "shard_objects": shard_objects, "inflight": inflight,
                   "workers": n_workers}
    if flows_to or flows_store:
        from ..telemetry.flows_export import export_flows

        export_flows(res.connections, flows_to=flows_to, flows_store=flows_store)
    return res


def _ray_actors(ray, spec: WorkerSpec, nodes: list[dict], per_node: int,
               inflight: int) -> list:
    """``per_node`` worker actors pinned to each node (``ray.remote(ShardWorker)``)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(ShardWorker)
    # no runtime_env: its env_vars are shown by Ray's dashboard and state API, and the
    # forwarded environment may hold credentials; it travels in the actor's arguments
    opts: dict[str, Any] = dict(num_cpus=0, max_concurrency=inflight + 2, max_restarts=0)
    actors = []
    for n in nodes:
        for _ in range(per_node):
            strat = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            actors.append(remote.options(scheduling_strategy=strat, **opts)
                          .remote(spec, n["NodeID"]))
    return actors


class _Driver:
    def __init__(self, ray, actors: list, inflight: int, attempts: int, dry_run: bool,
                 tick: float, on_progress, ledger: Ledger | None, per_node_dest: bool, dst_ep,
                 dst, into: bool):
        self.ray = ray
        self.inflight = inflight
        self.attempts = attempts
        self.dry_run = dry_run
        self.tick = tick
        self.on_progress = on_progress
        self.ledger = ledger
        self.per_node_dest = per_node_dest
        self.dst_ep = dst_ep
        self.dst = dst
        self.into = into
        self.splits: dict[str, SplitPlan] = {}
        self.split_lock = threading.Lock()
        self.res = ClusterResult(src="", dst="", bytes=0, seconds=0.0, objects=0,
                                 dry_run=dry_run)
        # a node Ray still lists may be dying (its health checks have not failed yet):
        # go on with the workers that start
        refs = [a.info.remote() for a in actors]
        ray.wait(refs, num_returns=len(refs), timeout=300)
        self.workers = []
        errors = []
        for a, r in zip(actors, refs, strict=True):
            try:
                i = ray.get(r, timeout=1)
            except Exception as e:  # noqa: BLE001 - RayError, GetTimeoutError
                errors.append(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
                ray.kill(a)
                continue
            self.workers.append(_Worker(a, i["node"], i["pid"]))
        if not self.workers:
            raise ClusterUnavailable(f"no trunkline worker could start: {errors[0]}")
        for e in errors:
            log.warning("a worker did not start: %s", e)
        self.alive_nodes = {w.node for w in self.workers}

    def stop(self) -> None:
        for w in self.workers:
            try:
                self.ray.kill(w.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass

    # -- split objects (called from the lister thread) ---------------------------------
    def _target(self, rel: str) -> tuple[str, str]:
        """(bucket, key) of ``rel`` at the destination, as ``job_for`` names it."""
        target = self.dst.child(rel) if self.into else self.dst
        key = target.key
        if not key or key.endswith("/"):
            key += rel.rstrip("/").rsplit("/", 1)[-1]
        return target.bucket, key

    def split(self, rel, info, ps, ranges):
        led, ep = self.ledger, self.dst_ep
        bucket, key = self._target(rel)
        size, etag = info.size, getattr(info, "etag", None)
        rec = led.split(rel) if led is not None else None
        done_ranges: set[tuple[int, int]] = set()
        etags: dict[int, str] = {}
        uid = None
        if rec is not None and rec[:3] == (size, etag, ps):
            if rec[4]:
                self.res.skipped_objects += 1
                self.res.skipped_bytes += size
                return None
            uid = rec[3]
            try:
                held = ep.list_parts(bucket, key, uid)
            except Exception:  # noqa: BLE001 - upload gone: start over
                uid = None
            else:
                recorded = led.split_parts(rel)
                etags = {n: e for n, e in recorded.items()
                         if n in held and held[n][0].strip('"') == e.strip('"')}
                for a, b in ranges:
                    if all(n in etags for n in range(a, b + 1)):
                        done_ranges.add((a, b))
        if uid is None:
            uid = ep.create_multipart(bucket, key)
            if led is not None:
                led.split_start(rel, size, etag, ps, uid)
        with self.split_lock:
            self.splits[rel] = SplitPlan(rel, bucket, key, size, uid,
                                         len(ranges) - len(done_ranges), etags)
        return uid, done_ranges

    # -- the loop --------------------------------------------------------------------
    def run(self, shards) -> ClusterResult:
        ray, res = self.ray, self.res
        t0 = time.monotonic()
        q: queue.Queue = queue.Queue(maxsize=max(16, 4 * len(self.workers) * self.inflight))
        stop = threading.Event()
        err: list[BaseException] = []
        listed = {"objects": 0, "bytes": 0, "done": False}

        def lister():
            try:
                for sh in shards:
                    if stop.is_set():
                        return
                    if self._skip_done(sh):
                        continue
                    listed["objects"] += sh.objects
                    listed["bytes"] += sh.bytes
                    while not stop.is_set():
                        try:
                            q.put(sh, timeout=0.5)
                            break
                        except queue.Full:
                            pass
            except BaseException as e:  # noqa: BLE001 - surfaced by run()
                err.append(e)
            finally:
                listed["done"] = True

        th = threading.Thread(target=lister, name="tl-ray-list", daemon=True)
        th.start()
        retry = ShardRetries(RetryPolicy(attempts=self.attempts))
        last_poll = 0.0
        try:
            while True:
                live = [w for w in self.workers if w.alive]
                if not live:
                    left = len(retry) + q.qsize()
                    res.failures.append(Failure(
                        "cluster", f"all {len(self.workers)} workers were lost; {left}+ shards "
                        "not moved (rerun to resume)"))
                    break
                # dispatch: retries first, then fresh shards, up to `inflight` per worker
                for w in sorted(live, key=lambda w: len(w.inflight)):
                    while len(w.inflight) < self.inflight:
                        sh = retry.due()
                        if sh is None:
                            try:
                                sh = q.get_nowait()
                            except queue.Empty:
                                break
                        fn = w.actor.plan_shard if self.dry_run else w.actor.run_shard
                        w.inflight[fn.remote(sh)] = sh
                        res.shards += 1
                refs = [r for w in live for r in w.inflight]
                if not refs:
                    if listed["done"] and q.empty() and not retry:
                        if self._confirm_holders(retry):
                            break
                        continue
                    time.sleep(0.01)
                else:
                    ready, _ = ray.wait(refs, num_returns=1, timeout=self.tick)
                    if ready:
                        more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                        ready = list({r.hex(): r for r in ready + more}.values())
                    for ref in ready:
                        self._collect(ref, retry)
                now = time.monotonic()
                if now - last_poll >= self.tick:
                    last_poll = now
                    self._poll(t0, listed)
        finally:
            stop.set()
            th.join(timeout=5)
        if err:
            raise err[0]
        self._finish_splits()
        self._close_connections()
        res.seconds = time.monotonic() - t0
        res.lost_workers = sum(1 for w in self.workers if not w.alive)
        if self.dry_run:
            res.objects = listed["objects"]
            res.planned_bytes = listed["bytes"]
        self._poll(t0, listed)
        res.nodes = [
            {"node": w.node, "tag": node_tag(w.node), "pid": w.pid, "alive": w.alive,
             "bytes": w.last.get("finished_bytes", 0), "objects": w.last.get("objects", 0),
             "shards": len(w.done),
             "gbps": round(w.last.get("finished_bytes", 0) * 8 / res.seconds / 1e9, 4)
             if res.seconds > 0 else 0.0}
            for w in self.workers
        ]
        return res

    def _close_connections(self) -> None:
        """Each live worker closes its connections (they outlive its shards) and sends
        what they carried: the run's flow records. A lost worker's are lost with it."""
        ray = self.ray
        refs = {w.actor.close_connections.remote(): w for w in self.workers if w.alive}
        if not refs:
            return
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.confirm_s)
        for r in ready:
            try:
                self.res.connections.extend(ray.get(r))
            except ray.exceptions.RayError as e:
                log.warning("no connection records from worker %s: %s", refs[r].pid, e)

    def _skip_done(self, sh: Shard) -> bool:
        if self.ledger is None or sh.split:
            return False
        node = self.ledger.shard_node(sh.id)
        if node is None:
            return False
        if self.per_node_dest and node not in self.alive_nodes:
            return False  # its files are on a node that is not in this cluster now
        self.res.skipped_objects += sh.objects
        self.res.skipped_bytes += sh.bytes
        self.res.shards_skipped += 1
        return True

    def _owner(self, ref) -> _Worker | None:
        for w in self.workers:
            if ref in w.inflight:
                return w
        return None   # its worker was lost and its shards already went back to the queue

    def _collect(self, ref, retry: ShardRetries) -> None:
        ray, res = self.ray, self.res
        w = self._owner(ref)
        if w is None:
            return
        sh = w.inflight.pop(ref)
        try:
            out = ray.get(ref)
        except (ray.exceptions.RayActorError,
                getattr(ray.exceptions, "ActorUnavailableError", ray.exceptions.RayActorError)
                ) as e:
            self._lost(w, sh, retry, e)
            return
        except ray.exceptions.RayError as e:  # the shard raised: retry it elsewhere
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            if retry.failed(sh, ShardFailed(msg, getattr(e, "cause", None))):
                res.shard_retries += 1
            else:
                self._give_up(sh, f"shard failed {sh.attempts}x: {msg}")
            return
        if self.dry_run:
            res.planned_parts += out["parts"]
            w.done.append((sh, 0, 0))
            return
        res.bytes += out["bytes"]
        res.wire_bytes += out["wire_bytes"]
        res.objects += out["objects"]
        res.retries += out["retries"]
        res.slowdowns += out["slowdowns"]
        res.requests += out["requests"]
        res.resumed_bytes += out["resumed_bytes"]
        res.skipped_objects += out["skipped_objects"]
        res.skipped_bytes += out["skipped_bytes"]
        res.peak_buffer_bytes = max(res.peak_buffer_bytes, out["peak_buffer_bytes"])
        res.connections.extend(out["connections"])
        if out["tuned"]:
            res.decisions.append({"node": out["node"], **out["tuned"]})
        for name, msg in out["failures"]:
            res.failures.append(Failure(name, msg))
        for kind, n in out.get("verified", {}).items():
            res.verified[kind] = res.verified.get(kind, 0) + n
        res.unverified.extend(Unverified(name, why) for name, why in out.get("unverified", ()))
        w.done.append((sh, out["bytes"], out["objects"]))
        if sh.split:
            self._range_done(sh, out)
        elif not out["failures"] and self.ledger is not None:
            self.ledger.shard_done(sh.id, out["node"], sh.bytes, sh.objects)

    confirm_s = 15.0
    """How long a worker holding per-node files may take to answer the final check."""

    def _confirm_holders(self, retry: ShardRetries) -> bool:
        """Per-node destinations: a finished shard's files exist only on its node. A node
        lost while it had nothing in flight shows on no shard's result, so before the end
        every worker holding finished shards must answer a call; one that fails or stays
        silent for ``confirm_s`` counts as lost and its shards run again. True: all
        answered (or nothing to confirm), the run may end."""
        if not self.per_node_dest or self.dry_run:
            return True
        ray = self.ray
        holders = [w for w in self.workers if w.alive and w.done]
        if not holders:
            return True
        refs = {w.actor.progress.remote(): w for w in holders}
        ready, silent = ray.wait(list(refs), num_returns=len(refs), timeout=self.confirm_s)
        ok = True
        for r in ready:
            try:
                refs[r].last = ray.get(r)
            except ray.exceptions.RayError as e:
                self._lost(refs[r], None, retry, e)
                ok = False
        for r in silent:
            self._lost(refs[r], None, retry, TimeoutError(f"no answer in {self.confirm_s} s"))
            ok = False
        return ok

    def _lost(self, w: _Worker, sh: Shard | None, retry: ShardRetries, e: BaseException) -> None:
        """A worker died: its in-flight shards run again elsewhere. With per-node local
        destinations its finished shards do too: whether its node (and the files on it)
        survived is not known in time (Ray notices a dead node only after its health
        checks fail), and a share moved twice beats a share lost."""
        res = self.res
        if w.alive:
            w.alive = False
            log.warning("worker on node %s lost (%s); its shards go to other workers",
                        node_tag(w.node), type(e).__name__)
            lost = [*([sh] if sh is not None else []), *w.inflight.values()]
            w.inflight.clear()
            if self.per_node_dest:
                self.alive_nodes.discard(w.node)
                for done, nbytes, nobj in w.done:
                    if self.ledger is not None:
                        self.ledger.shard_undone(done.id)
                    res.objects -= nobj
                    res.bytes -= nbytes
                    lost.append(done)
                w.done = []
        else:
            lost = [sh] if sh is not None else []
        for x in lost:
            if not retry.failed(x, WorkerLost(f"{type(e).__name__}: {e}")):
                self._give_up(x, f"lost with {x.attempts} workers")
                continue
            res.shard_retries += 1
            self._abort_orphans(x)

    def _give_up(self, sh: Shard, why: str) -> None:
        if sh.split:
            with self.split_lock:
                self.splits[sh.split].failed = True
            self.res.failures.append(Failure(sh.items[0].rel, f"{why} (a part range)"))
            return
        for it in sh.items:
            self.res.failures.append(Failure(it.rel, why))

    def _abort_orphans(self, sh: Shard) -> None:
        """Multipart uploads a lost worker started for whole objects of ``sh`` (split
        objects keep the driver's upload: their ranges continue it)."""
        if self.dst_ep is None or sh.split:
            return
        from ..engine.plan import is_multipart

        for it in sh.items:
            if not is_multipart(it.size, it.part_size):
                continue
            bucket, key = self._target(it.rel)
            try:
                for k, uid in self.dst_ep.list_multipart_uploads(bucket, key):
                    if k == key:
                        self.dst_ep.abort_multipart(bucket, key, uid)
            except Exception as e:  # noqa: BLE001 - best effort; `trunkline gc` reports leftovers
                log.warning("could not abort orphan uploads of %s: %s", it.rel, e)

    def _range_done(self, sh: Shard, out: dict) -> None:
        with self.split_lock:
            plan = self.splits[sh.split]
        if out["failures"]:
            plan.failed = True
            return
        plan.etags.update(out["etags"])
        plan.ranges -= 1
        if self.ledger is not None:
            self.ledger.split_range_done(sh.split, out["etags"])
        if plan.ranges == 0 and not plan.failed:
            self._complete(plan)

    def _complete(self, plan: SplitPlan) -> None:
        res = self.res
        try:
            parts = sorted(plan.etags.items())
            n = len(parts)
            if [p[0] for p in parts] != list(range(1, n + 1)):
                raise RuntimeError(f"part ETags missing ({n} parts in)")
            self.dst_ep.complete_multipart(plan.bucket, plan.key, plan.upload_id, parts)
        except Exception as e:  # noqa: BLE001 - reported; the ledger keeps it resumable
            res.failures.append(Failure(plan.rel, f"completing the multipart upload: {e}"))
            return
        plan.ranges = -1
        res.objects += 1
        if self.ledger is not None:
            self.ledger.split_done(plan.rel)

    def _finish_splits(self) -> None:
        with self.split_lock:
            plans = list(self.splits.values())
        for p in plans:
            if p.ranges == 0 and not p.failed:
                self._complete(p)

    def _poll(self, t0: float, listed: dict) -> None:
        ray, res = self.ray, self.res
        live = [w for w in self.workers if w.alive]
        refs = {w.actor.progress.remote(): w for w in live}
        if refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=2.0)
            for r in ready:
                try:
                    refs[r].last = ray.get(r)
                except ray.exceptions.RayError:
                    pass  # a dead worker shows up on its shard's result
        if self.on_progress is None:
            return
        now = time.monotonic()
        nodes = []
        inflight = inflight_objects = 0
        for w in self.workers:
            p = w.last
            total = p.get("finished_bytes", 0) + p.get("inflight_bytes", 0)
            if w.alive:   # what its shards in flight moved so far, counted as the bytes are
                inflight += p.get("inflight_bytes", 0)
                inflight_objects += p.get("inflight_objects", 0)
            nodes.append(NodeProgress(w.node, w.pid, total, w.rate.add(now, total) * 8 / 1e9,
                                      p.get("objects", 0), p.get("active", 0),
                                      p.get("shards", 0), w.alive))
        snap = ClusterSnapshot(
            t=now, elapsed=now - t0, done_bytes=res.bytes + inflight,
            wire_bytes=res.wire_bytes, total_bytes=listed["bytes"],
            # (a shard just returned may still be in its worker's last report: never more
            # than were listed)
            objects=min(res.objects + inflight_objects, listed["objects"]),
            total_objects=listed["objects"],
            listing_done=listed["done"], active=sum(n.active for n in nodes),
            retries=res.retries, slowdowns=res.slowdowns, errors=0, requests=res.requests,
            ttfb_total=0.0, failed=len(res.failures), nodes=nodes,
            shards_done=sum(len(w.done) for w in self.workers))
        self.on_progress(snap)
