"""The UDP collector: several sockets, one decoder, batched writes, clean shutdown.

One thread receives and decodes (the per-datagram work is a header parse and a
``frombuffer``); a writer thread builds Arrow tables and writes Parquet, so a slow disk
shows up as a deeper queue (bounded), not as lost datagrams. ``stop()`` (SIGTERM/SIGINT
in the CLI) drains the sockets, flushes what was received and waits for the writer.
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..decode import FlowDecoder, TemplateCache
from ..decode.decoder import PendingBatch
from ..store import FlowStore

STATUS_FILE = "_collector_status.json"


def parse_listen(spec: str) -> tuple[str, int]:
    """'0.0.0.0:2055', '[::]:2055' or ':2055' -> (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"bad --listen {spec!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass
class CollectorConfig:
    listen: list[tuple[str, int]]
    batch_records: int = 250_000  # build + write once this many records are pending
    flush_interval_s: float = 5.0  # ... or this often
    rcvbuf_bytes: int = 64 << 20
    max_queue_batches: int = 8  # writer queue bound; beyond it the receiver waits
    status_interval_s: float = 1.0
    template_budget_bytes: int = 256 << 20  # templates + buffered sets, all exporters
    exporter_quota_bytes: int = 16 << 20  # ... and per exporter address
    template_changes_per_s: float = 50.0  # template (re)definitions per exporter
    extra: dict = field(default_factory=dict)


class Collector:
    def __init__(self, config: CollectorConfig, store: FlowStore,
                 status_name: str = STATUS_FILE):
        self.config = config
        self.status_name = status_name
        self.store = store
        self.decoder = FlowDecoder(TemplateCache(
            budget_bytes=config.template_budget_bytes,
            exporter_quota_bytes=config.exporter_quota_bytes,
            template_changes_per_s=config.template_changes_per_s))
        self.socks: list[socket.socket] = []
        self.stop_event = threading.Event()
        self.queue: queue.Queue[PendingBatch | None] = queue.Queue(config.max_queue_batches)
        self.written_records = 0
        self.write_errors = 0
        self.build_errors: dict[str, int] = {}  # exporter -> records that failed to build
        self.started = time.time()
        self.snapshot: dict = {}
        self.bound: list[tuple[str, int]] = []
        self.failure: str | None = None  # why the receive loop died, if it did
        self.closed = False
        self.last_drops = 0  # socket drops when the sockets were closed
        self._writer = threading.Thread(target=self._write_loop, name="flow-writer", daemon=True)

    # -- sockets -----------------------------------------------------------------------
    def bind(self) -> list[tuple[str, int]]:
        """Open every listening socket (port 0 picks a free port); returns bound addresses."""
        self.use_sockets(open_sockets(self.config.listen, self.config.rcvbuf_bytes, 1)[0])
        return self.bound

    def use_sockets(self, socks: list[socket.socket]) -> None:
        """Receive on sockets opened elsewhere (a worker of ``flows collect --workers``)."""
        self.socks = socks
        self.bound = [s.getsockname()[:2] for s in socks]

    # -- main loop ---------------------------------------------------------------------
    def run(self) -> bool:
        """Receive until ``stop()``; then drain, flush and wait for the writer.

        Returns False when the receive loop died (``self.failure`` says why): what was
        decoded before is still flushed and the status says ``failed``, so the caller can
        exit non-zero instead of pretending to run.
        """
        if not self.socks:
            self.bind()
        self._writer.start()
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        last_flush = last_status = time.monotonic()
        try:
            while not self.stop_event.is_set():
                for key, _ in sel.select(timeout=0.2):
                    self._drain(key.fileobj)
                now = time.monotonic()
                if (self.decoder.pending_records >= self.config.batch_records
                        or now - last_flush >= self.config.flush_interval_s):
                    self._flush()
                    last_flush = now
                if now - last_status >= self.config.status_interval_s:
                    self._publish()
                    last_status = now
            for s in self.socks:  # what the kernel already holds was received: keep it
                self._drain(s, deadline=time.monotonic() + 0.3)
        except Exception as e:  # noqa: BLE001 - reported in the status and the exit code
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            self.stop_event.set()
            try:
                self._flush()
            finally:
                self.queue.put(None)
                self._writer.join()
                sel.close()
                self.last_drops = socket_drops(self.socks)
                self.closed = True
                for s in self.socks:
                    s.close()
                self._publish()
        return self.failure is None

    def _drain(self, sock: socket.socket, deadline: float | None = None) -> None:
        recv = sock.recvfrom
        feed = self.decoder.feed
        for _ in range(4096):  # bounded, so other sockets and flushes get their turn
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                feed(data, addr[0], int(time.time() * 1000))
            except Exception:  # noqa: BLE001 - one datagram never stops the loop
                self.decoder.counters.drop(addr[0], "internal_error")
            if self.decoder.pending_records >= self.config.batch_records:
                self._flush()
            if deadline is not None and time.monotonic() > deadline:
                return

    def _flush(self) -> None:
        if self.decoder.pending_records:
            self.queue.put(self.decoder.detach())

    def _write_loop(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            try:
                table, ref = batch.to_table_with_reference()
                self.written_records += self.store.write(table, ref,
                                                         now_ms=int(time.time() * 1000))
            except Exception:  # noqa: BLE001 - counted and reported; the collector goes on
                self.write_errors += 1
            for e, n in batch.build_errors.items():
                self.build_errors[e] = self.build_errors.get(e, 0) + n

    def stop(self) -> None:
        self.stop_event.set()

    # -- counters ----------------------------------------------------------------------
    def status(self) -> dict:
        c = self.decoder.counters.as_dict()
        c["collector"] = {
            "listen": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.bound],
            "uptime_s": round(time.time() - self.started, 3),
            "written_records": self.written_records,
            "write_errors": self.write_errors,
            "build_errors": dict(self.build_errors),
            "pending_records": self.decoder.pending_records,
            "queued_batches": self.queue.qsize(),
            "socket_drops": socket_drops(self.socks) if not self.closed else self.last_drops,
            "templates": self.decoder.cache.template_count(),
            "template_bytes": self.decoder.cache.used,
            "quarantined": dict(self.store.quarantined),
            "pid": os.getpid(),
            "running": not self.stop_event.is_set(),
            "state": "failed" if self.failure else
                     "running" if not self.stop_event.is_set() else "stopped",
            "failure": self.failure,
            "last_internal_error": self.decoder.last_internal_error,
        }
        return c

    def _publish(self) -> None:
        """Snapshot for the metrics thread and ``flows status`` (atomic file replace)."""
        try:
            snap = self.status()
        except RuntimeError:  # a dict changed size under us; next tick
            return
        self.snapshot = snap
        write_status(self.store.status_dir, snap, self.status_name)


def open_sockets(listen: list[tuple[str, int]], rcvbuf: int, workers: int
                 ) -> list[list[socket.socket]]:
    """For each worker, one non-blocking socket per listen address.

    With several workers every address is bound once per worker with ``SO_REUSEPORT``:
    the kernel spreads datagrams over the group by a hash of the source address and port,
    so one exporter always reaches the same worker (its templates stay where its data is
    decoded). Port 0 is resolved by the first worker's socket.
    """
    out: list[list[socket.socket]] = [[] for _ in range(workers)]
    for host, port in listen:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        for w in range(workers):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            if workers > 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
                if opt is None:
                    continue
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                    break
                except OSError:
                    continue
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                for lst in out:
                    for x in lst:
                        x.close()
                raise
            port = s.getsockname()[1]
            s.setblocking(False)
            out[w].append(s)
    return out


def socket_drops(socks: list[socket.socket]) -> int:
    """Datagrams the kernel dropped on these sockets (receive buffer full), from the
    ``drops`` column of /proc/net/udp{,6}; 0 where /proc is not there to ask."""
    inodes = set()
    for s in socks:
        try:
            inodes.add(os.fstat(s.fileno()).st_ino)
        except OSError:
            continue
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) >= 13 and int(f[9]) in inodes:
                total += int(f[12])
    return total


def write_status(root: Path, snap: dict, name: str = STATUS_FILE) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    tmp.write_text(json.dumps(snap, indent=1, sort_keys=True))
    os.replace(tmp, root / name)


def read_status(root: Path, name: str = STATUS_FILE) -> dict | None:
    p = Path(root) / name
    return json.loads(p.read_text()) if p.exists() else None
