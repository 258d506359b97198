"""``copy`` and ``copy_async``: move an object, a prefix or a folder, returning a TransferResult.

Usable from a training script::

    import trunkline
    r = trunkline.copy("s3://datasets/shards/", "/mnt/nvme/shards/", recursive=True)
    print(r.gbps, r.ok)

    opts = trunkline.TransferOptions(connections=16, part_size="64MiB")
    trunkline.copy("s3://datasets/shards/", "/mnt/nvme/shards/", recursive=True, options=opts)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ..engine.jobs import EndpointCache, peek_sources, plan_jobs
from ..errors import UsageError
from ..options import TransferOptions
from ..results import Skips, TransferResult
from ..telemetry.snapshot import Snapshot
from ..url import Location, parse_location
from .transfer import run_journaled


def copy(
    src: str | Location,
    dst: str | Location,
    *,
    recursive: bool = False,
    options: TransferOptions | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    flows_to: str | None = None,
    flows_store: str | None = None,
    cluster: str | None = None,
    per_node_dest: bool = False,
    workers_per_node: int = 1,
    processes: int | Literal["auto"] = 1,
    **overrides: Any,
) -> TransferResult:
    """Copy ``src`` to ``dst`` (local path, ``s3://bucket/key``, or ``NAME:bucket/key``).

    ``options`` holds every knob (``TransferOptions``: connections, part size, memory,
    retries, rate caps, direct I/O, server-side copy, resume); keywords named like its
    fields (``part_size='64MiB'``, ``connections=8``) override it. Connections and part
    size are tuned closed-loop unless pinned. With ``resume`` (default) a journal records
    every finished part, so rerunning the same copy after a crash continues where it
    stopped. After the run, each connection is exported as flow records (one per
    direction) into the flow store ``flows_store`` and/or as IPFIX to ``flows_to``
    (``udp://HOST:PORT``).

    Raises ``UsageError`` (a ``LocationError`` for a bad source or destination) and
    ``StoreError`` when the source cannot be listed; per-object failures are reported in
    the result, never half-written.

    ``cluster`` ('auto', 'local', 'ray://HOST:PORT') moves it with every node of a Ray
    cluster (``per_node_dest``: ``dst`` is a local path on each node), with
    ``workers_per_node`` engine processes on each; see docs/cluster.md. ``processes``
    above 1 moves an s3 source with that many engine processes on this host (many small
    objects, where one process is bound by its interpreter lock), no Ray needed;
    ``'auto'`` (the CLI's default) decides from the first page of the listing: several
    processes for a long listing of small objects, else one (``cluster/auto.py``).
    """
    opts = TransferOptions.build(options, **overrides)
    s = parse_location(src) if isinstance(src, str) else src
    d = parse_location(dst) if isinstance(dst, str) else dst
    eps = EndpointCache()
    skips = Skips()   # a local source's names that are not files: listed in the result
    sources = None
    if processes == "auto":
        if cluster is not None or per_node_dest:
            processes = 1
        else:
            processes, sources, opts = _auto_processes(s, d, recursive, eps, opts, skips)
    if processes != 1:
        if cluster is not None or per_node_dest or workers_per_node != 1:
            raise UsageError("processes is for one host; on Ray use workers_per_node")
        from ..cluster import copy_on_processes

        return copy_on_processes(s, d, processes=processes, recursive=recursive,
                                 options=opts, on_progress=on_progress, flows_to=flows_to,
                                 flows_store=flows_store,
                                 listed=(eps, sources) if sources is not None else None,
                                 skips=skips)
    if cluster is not None or per_node_dest:
        from ..cluster import copy_on_ray

        return copy_on_ray(src, dst, recursive=recursive, options=opts,
                           on_progress=on_progress, flows_to=flows_to, flows_store=flows_store,
                           cluster=cluster, per_node_dest=per_node_dest,
                           workers_per_node=workers_per_node)
    if workers_per_node != 1:
        raise UsageError("workers_per_node needs a cluster (a Ray address, or 'local')")
    jopts = {"op": "cp", "recursive": recursive, "server_side": opts.server_side}
    result = run_journaled(
        s, d, opts, jopts, on_progress=on_progress,
        plan=lambda part_size_for: plan_jobs(s, d, recursive=recursive, part_size=part_size_for,
                                             eps=eps, server_side=opts.server_side,
                                             sources=sources, on_skip=skips),
    )
    result.skipped = skips.entries
    if flows_to or flows_store:
        from ..telemetry.flows_export import export_flows

        export_flows(result.connections, flows_to=flows_to, flows_store=flows_store)
    return result


def _auto_processes(
    s: Location, d: Location, recursive: bool, eps: EndpointCache, opts: TransferOptions,
    skips: Skips,
) -> tuple[int, Iterator[tuple[str, object]] | None, TransferOptions]:
    """``processes='auto'``: the count for this copy, the listing begun to decide it (None
    where nothing was listed: one object, or local to local) and each process's options."""
    many = recursive or s.has_glob or (s.is_local and os.path.isdir(s.path))
    if not many or (s.is_local and d.is_local):
        return 1, None, opts
    from ..cluster.auto import AUTO_PAGE, choose

    head, listing = peek_sources(s, eps, recursive, AUTO_PAGE, skips)
    n, opts = choose([info.size for _, info in head], opts)  # type: ignore[attr-defined]
    return n, listing, opts


async def copy_async(src: str | Location, dst: str | Location, **kw: Any) -> TransferResult:
    """``copy`` for asyncio programs: runs the transfer in a thread, awaits its result."""
    import asyncio  # lazily: asyncio costs ~0.1 s of start-up that the CLI does not need

    return await asyncio.to_thread(copy, src, dst, **kw)
