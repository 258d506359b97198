"""The raw scan of ``flows.scan`` spread over a Ray cluster: one task per group of day
partitions, each computing the rollup tables of its days (DuckDB over Arrow, the same code
as one process), the driver concatenating them (and merging the peers by month). Days are
disjoint and every rollup row belongs to one day, so the tables are the very rows one
process makes: the same report.

Each task opens the store by its location (an absolute path, or the ``s3://`` lake) and
rebuilds the enrichment from ``Enricher.from_dir``'s arguments, so every node must see the
store (a shared file system, or the lake with the same endpoint and credentials) and the
enrichment data at the same paths. ``local`` starts a private
Ray on this machine (loopback only), as ``cp --ray local`` does.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import pyarrow as pa

TASKS_PER_CPU = 2  # a few tasks per CPU: a slow node does not hold the last group alone


def _task(root: str, days: list[str], enrich_args: dict[str, Any]) -> dict[str, dict[str, pa.Table]]:
    """{day: rollup tables of the day} for a group of days (one enrichment per task)."""
    from .enrich import Enricher
    from .scan import Files, day_tables
    from .store import FlowStore

    store, enricher = FlowStore(root), Enricher.from_dir(**enrich_args)
    files = Files(store)  # one listing per task
    return {d: day_tables(store, enricher, d, files) for d in days}


def _report_task(root: str, days: list[str], enrich_args: dict[str, Any]) -> dict[str, pa.Table]:
    """The report's tables of a group of days (``scan.raw_by_day``: peers by month, so a
    task hands back months of peers, not days)."""
    from .enrich import Enricher
    from .scan import raw_by_day
    from .store import FlowStore

    return raw_by_day(FlowStore(root), Enricher.from_dir(**enrich_args), days)


def _location(store) -> str:
    """Where a task opens the store: the absolute directory, or the lake's location."""
    return str(store.root.resolve()) if store.is_local else store.location


def _groups(ray, days: list[str]) -> list[list[str]]:
    cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    n = max(min(len(days), cpus * TASKS_PER_CPU), 1)
    return [g for g in (days[i::n] for i in range(n)) if g]


def connect(address: str) -> bool:
    """ray.init for ``address`` (``local``: a private Ray on loopback; ``auto``; or an
    address); True when this call connected (the caller shuts down)."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(log_to_driver=False, configure_logging=False)
    try:
        if address == "local":
            from ray._private import ray_constants

            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            ray_constants.ENABLE_RAY_CLUSTER = False
            ray.init(include_dashboard=False, **kw)
        else:
            ray.init(address=address, **kw)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError...: one clear line
        raise OSError(f"cannot reach the Ray cluster {address!r}: {e}") from None
    return True


def rollups_on_ray(store, start: datetime, end: datetime, address: str,
                   enrich_args: dict[str, Any]) -> dict[str, pa.Table]:
    """The report's tables (``scan.raw_by_day``) of the raw flows of [start, end), computed
    by Ray tasks."""
    try:
        import ray
    except ImportError:
        raise OSError("--ray needs Ray, which is not installed: pip install 'trunkline[ray]'") from None
    from . import rollup
    from .scan import raw_days

    days = raw_days(store, start, end)  # whole days: [start, end) are day boundaries
    started = connect(address)
    parts: dict[str, list[pa.Table]] = {"5m": [], "mover": []}
    peers = rollup.empty(rollup.MONTHLY)
    try:
        task = ray.remote(num_cpus=1, max_retries=2)(_report_task)
        pending = [task.remote(_location(store), g, enrich_args) for g in _groups(ray, days)]
        while pending:  # merged as they come: the driver holds months of peers, not days
            done, pending = ray.wait(pending, num_returns=1)
            out = ray.get(done[0])
            for lv in parts:
                parts[lv].append(out[lv])
            peers = rollup.merge(rollup.MONTHLY, [peers, out["peers"]])
    finally:
        if started:
            ray.shutdown()
    tables = {lv: pa.concat_tables([rollup.empty(lv), *ts], promote_options="default") for lv, ts in parts.items()}
    tables["peers"] = peers
    return tables


def backfill_on_ray(store, days: list[str], address: str, enrich_args: dict[str, Any]) -> dict[str, int]:
    """``flows rollup --ray``: tasks compute each day's rollups; the driver writes them."""
    import ray

    from .scan import Files, replace_day

    files = Files(store)  # the files the rebuilt days replace: those there now
    started = connect(address)
    rows: dict[str, int] = {}
    try:
        task = ray.remote(num_cpus=1, max_retries=2)(_task)
        pending = [task.remote(_location(store), g, enrich_args) for g in _groups(ray, days)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for day, t in ray.get(done[0]).items():
                replace_day(store, day, t, files)
                for lv, x in t.items():
                    rows[lv] = rows.get(lv, 0) + x.num_rows
    finally:
        if started:
            ray.shutdown()
    from .elephant_table import LEVEL, derive_quarters
    from .maintain import derive_months

    rows["peers_1mo"] = derive_months(store, days)["rows"]  # the driver reads the days' files
    rows[LEVEL] = derive_quarters(store, days)["records"]
    return rows
