"""``flows collect --workers N``: N collector processes on the same ports, one status.

Python decodes on one core per process, so scaling past a core means processes. The
parent binds every listen address once per worker with ``SO_REUSEPORT`` (the kernel
spreads datagrams by a hash of the source address and port, so an exporter's templates
stay in the worker that decodes its data), forks the workers (each inherits its own
sockets), and each worker runs an ordinary ``Collector`` with its own decoder, template
cache and store writer (Parquet files have unique names, so writers never collide).
The parent only supervises: it merges the workers' status files into the store's
status (and the metrics), forwards SIGTERM/SIGINT, and exits non-zero if a worker died.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from ..store import FlowStore
from .collector import (
    STATUS_FILE,
    Collector,
    CollectorConfig,
    open_sockets,
    read_status,
    write_status,
)


def worker_status_name(k: int) -> str:
    return f"_collector_status.w{k}.json"


def _worker_main(k: int, config: CollectorConfig, store_root: str, store_opts: dict,
                 socks, ready) -> None:
    col = Collector(config, FlowStore(store_root, **store_opts), worker_status_name(k))
    col.use_sockets(socks)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: col.stop())
    ready.set()
    ok = col.run()
    os._exit(0 if ok and not col.write_errors else 3 if not ok else 1)


def merge_status(snaps: list[dict]) -> dict:
    """One status out of the workers' own: counters summed, per exporter and in total."""
    out: dict = {"exporters": {}, "totals": {}, "collector": {}}
    for sn in snaps:
        for e, c in sn.get("exporters", {}).items():
            _add(out["exporters"].setdefault(e, {}), c)
        _add(out["totals"], sn.get("totals", {}))
        col = sn.get("collector", {})
        _add(out["collector"], {k: v for k, v in col.items()
                                if isinstance(v, (int, float, dict)) and not isinstance(v, bool)
                                and k not in ("pid", "uptime_s")})
    return out


def _add(into: dict, c: dict) -> None:
    for k, v in c.items():
        if isinstance(v, dict):
            _add(into.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v


class WorkerPool:
    """Supervise N collector workers; ``run()`` returns the exit status to use."""

    def __init__(self, config: CollectorConfig, store: FlowStore, workers: int):
        self.config, self.store, self.n = config, store, workers
        self.socks = open_sockets(config.listen, config.rcvbuf_bytes, workers)
        self.bound = [s.getsockname()[:2] for s in self.socks[0]]
        self.stop_event = threading.Event()
        self.procs: list[multiprocessing.Process] = []
        self.snapshot: dict = {}
        self.started = time.time()
        self.failed: list[str] = []

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")  # sockets are inherited, not pickled
        opts = {"time_window_s": self.store.time_window_ms / 1000,
                "max_partitions_per_write": self.store.max_partitions,
                "rollups": self.store.rollups}  # forked, not pickled
        for k in range(self.n):
            ready = ctx.Event()
            p = ctx.Process(target=_worker_main, name=f"flow-worker-{k}", daemon=False,
                            args=(k, self.config, self.store.location, opts, self.socks[k],
                                  ready))
            p.start()
            self.procs.append(p)
            ready.wait(30)
        for lst in self.socks:  # the workers hold them now
            for s in lst:
                s.close()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> int:
        if not self.procs:
            self.start()
        while not self.stop_event.is_set():
            self._publish()
            dead = [p for p in self.procs if p.exitcode is not None]
            if dead:  # a worker died on its own: stop the others, report it
                self.failed = [f"{p.name} exited with {p.exitcode}" for p in dead]
                break
            self.stop_event.wait(self.config.status_interval_s)
        for p in self.procs:
            if p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.join()
        codes = [p.exitcode for p in self.procs]
        if any(c != 0 for c in codes) and not self.failed:
            self.failed = [f"{p.name} exited with {p.exitcode}" for p in self.procs
                           if p.exitcode != 0]
        self._publish(final=True)
        if self.failed:
            return 3 if any(c not in (0, 1) for c in codes) else 1
        return 0

    def status(self, final: bool = False) -> dict:
        snaps = [read_status(self.store.status_dir, worker_status_name(k)) or {}
                 for k in range(self.n)]
        merged = merge_status(snaps)
        running = not final and not self.stop_event.is_set()
        merged["collector"].update({
            "listen": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.bound],
            "workers": self.n, "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 3),
            "running": running,
            "state": "failed" if self.failed else "running" if running else "stopped",
            "failure": "; ".join(self.failed) or None,
            "per_worker": [sn.get("collector", {}) for sn in snaps],
        })
        return merged

    def _publish(self, final: bool = False) -> None:
        try:
            snap = self.status(final)
        except (OSError, ValueError):  # a worker's file being replaced; next tick
            return
        self.snapshot = snap
        try:
            write_status(self.store.status_dir, snap, STATUS_FILE)
        except OSError:   # a full disk: the metrics have the snapshot; next tick again
            pass

