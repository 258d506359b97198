"""The UDP collector: several sockets, one decoder, batched writes, clean shutdown.

Receiving: with ``receiver="process"`` (what ``flows collect`` runs) a receive process
of its own (``receiver.py``) reads the sockets with ``recvmmsg`` and queues datagrams
(bounded in bytes) on a pipe to this process, so decoding and writing never make the
socket wait; with ``"inline"`` (an embedded collector, the tests) this thread reads the
sockets itself, in batches. One thread decodes (the per-datagram work is a header parse
and a ``frombuffer``); a writer thread builds Arrow tables and writes Parquet, so a slow
disk shows up as a deeper queue (bounded), not as lost datagrams. ``stop()``
(SIGTERM/SIGINT in the CLI) drains the sockets, flushes what was received and waits for
the writer.
"""

from __future__ import annotations

import json
import os
import queue
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BatchNotStored, DataError
from ..decode import FlowDecoder, TemplateCache
from ..decode.decoder import PendingBatch
from ..store import FlowStore
from .receiver import FRAME, META
from .udp import NATIVE, BatchReceiver, parse_frame

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
    receiver: str = "inline"  # or "process": a receive process ahead of the decoder
    receive_queue_bytes: int = 64 << 20  # datagrams the receive process may hold
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
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes the select at once
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.queue: queue.Queue[PendingBatch | None] = queue.Queue(config.max_queue_batches)
        self.written_records = 0
        self.write_errors = 0      # batches (or parts of them) the store could not keep
        self.lost_records = 0      # ... and their records, counted, never silently gone
        self.last_write_error: str | None = None
        self.status_errors = 0     # status files that could not be written (a full disk)
        self.build_errors: dict[str, int] = {}  # exporter -> records that failed to build
        self.started = time.time()
        self.snapshot: dict = {}
        self.bound: list[tuple[str, int]] = []
        self.failure: str | None = None  # why the receive loop died, if it did
        self.closed = False
        self.last_drops = 0  # socket drops when the sockets were closed
        self.rx = BatchReceiver()
        self.rcvbuf_granted = 0
        self.receiver: subprocess.Popen | None = None
        self.receiver_stats = {"ready": 0, "received": 0, "queued_bytes": 0,
                               "peak_queued_bytes": 0}
        self._pipe = -1
        self._eof = False  # the receive process closed its pipe
        self._inbuf = bytearray()
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
        # what the kernel granted (it doubles the request, capped by net.core.rmem_max)
        self.rcvbuf_granted = sum(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                                  for s in socks)

    # -- main loop ---------------------------------------------------------------------
    def run(self) -> bool:
        """Receive until ``stop()``; then drain, flush and wait for the writer.

        Returns False when the receive loop died (``self.failure`` says why): what was
        decoded before is still flushed and the status says ``failed``, so the caller can
        exit non-zero instead of pretending to run.
        """
        if not self.socks:
            self.bind()
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._wake_r, selectors.EVENT_READ)
            if self.config.receiver == "process":
                self.receiver, self._pipe = start_receiver(self.socks,
                                                           self.config.receive_queue_bytes)
                sel.register(self._pipe, selectors.EVENT_READ)
            else:
                for s in self.socks:
                    sel.register(s, selectors.EVENT_READ)
                self.receiver_stats["ready"] = 1
            self._writer.start()
        except BaseException:
            sel.close()
            raise
        last_flush = last_status = time.monotonic()
        try:
            self._publish()
            while not self.stop_event.is_set():
                for key, _ in sel.select(timeout=0.2):
                    if key.fileobj == self._wake_r:
                        continue
                    if key.fileobj == self._pipe:
                        if not self._read_pipe() and not self.stop_event.is_set():
                            raise RuntimeError(f"the receive process exited "
                                               f"({self.receiver.wait()})")
                    else:
                        self._drain(key.fileobj)
                now = time.monotonic()
                if (self.decoder.pending_records >= self.config.batch_records
                        or now - last_flush >= self.config.flush_interval_s):
                    self._flush()
                    last_flush = now
                if now - last_status >= self.config.status_interval_s:
                    self._publish()
                    last_status = now
            if self.receiver is not None:  # it drains the kernel, then closes the pipe
                self._stop_receiver()
            else:
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
                if self.receiver is not None:  # stopped above, or the loop failed
                    _end(self.receiver)
                    os.close(self._pipe)
                self.last_drops = socket_drops(self.socks)
                self.closed = True
                for s in self.socks:
                    s.close()
                w, self._wake_w = self._wake_w, -1
                os.close(w)
                os.close(self._wake_r)
                self._publish()
        return self.failure is None

    def _drain(self, sock: socket.socket, deadline: float | None = None) -> None:
        for _ in range(64):  # bounded, so other sockets and flushes get their turn
            try:
                batch = self.rx.recv(sock)
            except OSError:
                return
            if not batch:
                return
            self._feed(batch, int(time.time() * 1000))
            if deadline is not None and time.monotonic() > deadline:
                return

    def _feed(self, batch: list, recv_ms: int) -> None:
        feed = self.decoder.feed
        for data, host, _port in batch:
            if data is None:  # longer than a receive slot: never decoded from a part
                self.decoder.counters.get(host).packets += 1
                self.decoder.counters.drop(host, "oversize")
                continue
            try:
                feed(data, host, recv_ms)
            except Exception:  # noqa: BLE001 - one datagram never stops the loop
                self.decoder.counters.drop(host, "internal_error")
            if self.decoder.pending_records >= self.config.batch_records:
                self._flush()

    def _read_pipe(self) -> bool:
        """Decode the whole frames the receive process sent; False at its end (EOF)."""
        try:
            chunk = os.read(self._pipe, 1 << 20)
        except (BlockingIOError, InterruptedError):
            return True
        if not chunk:
            self._eof = True
            return False
        buf = self._inbuf
        buf += chunk
        off = 0
        with memoryview(buf) as view:
            while len(buf) - off >= FRAME.size:
                (n,) = FRAME.unpack_from(buf, off)
                if len(buf) - off - FRAME.size < n:
                    break
                body = off + FRAME.size
                recv_ms, received, queued, peak = META.unpack_from(buf, body)
                batch = parse_frame(view[body + META.size: body + n])
                off = body + n
                first = not self.receiver_stats["ready"]
                self.receiver_stats = {"ready": 1, "received": received,
                                       "queued_bytes": queued, "peak_queued_bytes": peak}
                if first:
                    self._publish()  # the status says when the sockets are being read
                self._feed(batch, recv_ms)
        del buf[:off]
        return True

    def _stop_receiver(self) -> None:
        """SIGTERM the receive process and take in everything it still sends (it drains
        what the kernel holds for at most 0.3 s, writes out its queue, closes the pipe)."""
        if self._eof:
            return
        self.receiver.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._pipe], [], [], 0.2)
            if ready and not self._read_pipe():
                return
        raise RuntimeError("the receive process did not finish within 30 s")

    def _flush(self) -> None:
        if self.decoder.pending_records:
            self.queue.put(self.decoder.detach())

    def _write_loop(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            table = None
            try:
                table, ref = batch.to_table_with_reference()
                self.written_records += self.store.write(table, ref,
                                                         now_ms=int(time.time() * 1000))
            except Exception as e:  # noqa: BLE001 - counted and reported; the collector goes on
                # (a full disk: the next batch is written once there is room again)
                if isinstance(e, BatchNotStored):   # the store says how many it kept
                    lost, cause = e.lost, e.cause
                else:
                    lost, cause = table.num_rows if table is not None else batch.records, e
                self.write_errors += 1
                self.lost_records += lost
                self.last_write_error = f"{type(cause).__name__}: {cause}"
            for e, n in batch.build_errors.items():
                self.build_errors[e] = self.build_errors.get(e, 0) + n

    def stop(self) -> None:
        self.stop_event.set()
        w = self._wake_w
        if w >= 0:
            try:
                os.write(w, b"x")
            except OSError:  # full: already woken
                pass

    # -- counters ----------------------------------------------------------------------
    def status(self) -> dict:
        c = self.decoder.counters.as_dict()
        c["collector"] = {
            "listen": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.bound],
            "uptime_s": round(time.time() - self.started, 3),
            "written_records": self.written_records,
            "write_errors": self.write_errors,
            "lost_records": self.lost_records,
            "last_write_error": self.last_write_error,
            "status_errors": self.status_errors,
            "build_errors": dict(self.build_errors),
            "pending_records": self.decoder.pending_records,
            "queued_batches": self.queue.qsize(),
            "socket_drops": socket_drops(self.socks) if not self.closed else self.last_drops,
            "rcvbuf_granted_bytes": self.rcvbuf_granted,
            "receiver": {"process": int(self.receiver is not None), "recvmmsg": int(NATIVE),
                         **self.receiver_stats},
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
        try:
            write_status(self.store.status_dir, snap, self.status_name)
        except OSError:   # a full disk: the snapshot (metrics) is current; next tick again
            self.status_errors += 1


def start_receiver(socks: list[socket.socket], queue_bytes: int
                   ) -> tuple[subprocess.Popen, int]:
    """Start the receive process on these sockets; -> (the process, the pipe to read).

    A fresh interpreter (fork-safe from a process with threads), importing only the
    receive module; the sockets and the pipe's write end are passed by descriptor.
    """
    r, w = os.pipe()
    fds = [s.fileno() for s in socks]
    src = str(Path(__file__).resolve().parents[3])  # the directory holding trunkline/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        x for x in (src, os.environ.get("PYTHONPATH")) if x)}
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "trunkline.flows.sources.receiver", "--fds",
             ",".join(map(str, fds)), "--out", str(w), "--queue-bytes", str(queue_bytes)],
            pass_fds=[*fds, w], env=env, stdin=subprocess.DEVNULL)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    os.set_blocking(r, False)
    return p, r


def _end(p: subprocess.Popen) -> None:
    """The receive process is gone when the collector is (kill if it lingers)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


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
            except OSError as e:
                s.close()
                for lst in out:
                    for x in lst:
                        x.close()
                # one line naming the address ("Name or service not known" named nothing)
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise OSError(e.errno, f"cannot listen on {where}: "
                                       f"{e.strerror or e}") from None
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
    """Replace the status file at once (a reader sees the old one or the new one); a
    write that fails (a full disk) leaves the old one and no temporary file."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    try:
        tmp.write_text(json.dumps(snap, indent=1, sort_keys=True))
        os.replace(tmp, root / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_status(root: Path, name: str = STATUS_FILE) -> dict | None:
    """The status file in ``root``, or None if there is none. It is input like any other
    (a store directory others can write to; a disk that lost its last write): one that
    is not JSON, or not an object whose sections are objects, is a ``DataError``."""
    p = Path(root) / name
    if not p.exists():
        return None
    try:
        snap = json.loads(p.read_bytes())
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
        raise DataError(f"the collector status {p} is damaged ({e})") from None
    if not isinstance(snap, dict) or not all(
            isinstance(snap.get(k, {}), dict) for k in ("collector", "exporters", "totals")):
        raise DataError(f"the collector status {p} is not a status (an object of objects)")
    return snap
