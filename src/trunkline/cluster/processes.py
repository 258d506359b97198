"""Worker processes on this host for the cluster driver: several engines, no Ray.

Why: one engine process moves small objects only as fast as its interpreter lock lets its
threads prepare each request and finish each file; the way past that on one machine is
more processes. The cluster driver (``driver.py``) already lists once, cuts the listing
into shards, keeps every worker busy, retries a lost worker's shards, keeps the resume
ledger and merges the results. This module gives it workers that are child processes of
this one (``python -c`` calling ``_serve``), behind the few calls of Ray's API
the driver makes (``actor.NAME.remote``, ``wait``, ``get``, ``kill``, ``nodes``), so the
driver has one code path for both.

How a child starts: where this process has no thread but the caller's (the CLI, where
the collector's start-up timer is gone by then), it loads the engine once and forks each
child from itself, so a child is ready in milliseconds and shares those pages, instead of
starting an interpreter and importing the engine again (~0.15 CPU s each, measured: with
``-P 8`` a one-object copy took 0.37 s instead of 0.15). With other threads running
(a program using the API) a fork could copy a lock some thread holds, so each child is a
fresh ``python -c`` instead, as before.

A child is a plain process: it gets its ``WorkerSpec`` and its calls over a socket pair,
runs each call on a thread of its own (a shard and the driver's progress polls run at
once, as on a Ray actor with ``max_concurrency``) and answers in any order. It ignores
SIGINT (the parent decides) and exits at once when the parent's end closes, so a killed
parent leaves no engine behind. A child that dies fails its pending calls with
``ProcessLost``, which the driver treats as a lost worker.
"""

from __future__ import annotations

import gc
import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from ..errors import TransferError
from ..threads import sole_thread

__all__ = ["LocalProcesses", "ProcessLost", "TaskFailed"]

# The child imports this package from where the parent did (a source tree too), but never
# puts a site-packages folder ahead of the standard library (it finds those itself).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CHILD = ("import site, sys\n"
          "if sys.argv[2] not in site.getsitepackages(): sys.path.insert(0, sys.argv[2])\n"
          "from trunkline.cluster.processes import _serve\n"
          "_serve(int(sys.argv[1]))\n")


class ProcessError(TransferError):
    """Base of what a call on a worker process can raise (Ray's ``RayError``)."""


class ProcessLost(ProcessError):
    """The worker process died or could not start (Ray's ``RayActorError``)."""


class TaskFailed(ProcessError):
    """The call raised in the worker; ``cause`` is its exception where it could travel
    (the driver's retry policy reads it: ``retries.ShardFailed``)."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


class _Exceptions:
    """The names the driver catches, as ``ray.exceptions`` spells them."""

    RayError = ProcessError
    RayActorError = ProcessLost
    ActorUnavailableError = ProcessLost


class _Ref:
    """The future of one call (Ray's ``ObjectRef``)."""

    __slots__ = ("id", "done", "value", "error")

    def __init__(self, id_: int) -> None:
        self.id = id_
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def hex(self) -> str:
        return f"{self.id:x}"


class _Method:
    __slots__ = ("actor", "name")

    def __init__(self, actor: _ProcessActor, name: str) -> None:
        self.actor, self.name = actor, name

    def remote(self, *args: Any) -> _Ref:
        return self.actor.call(self.name, args)


class _Forked:
    """A forked child, with the part of ``subprocess.Popen`` the actor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:   # reaped elsewhere
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode


def can_fork() -> bool:
    """True where a child can be forked from this process: POSIX, and no thread but this
    one (a fork copies every lock, but only the forking thread; ``threads.sole_thread``
    counts a library's native threads too)."""
    return hasattr(os, "fork") and sole_thread()


class _ProcessActor:
    """One worker process running a ``ShardWorker``; ``actor.NAME.remote(...)`` calls it."""

    def __init__(self, pool: LocalProcesses, fork: bool) -> None:
        self.pool = pool
        parent, child = socket.socketpair()
        self.proc: subprocess.Popen | _Forked
        if fork:
            for stream in (sys.stdout, sys.stderr):   # nothing buffered is written twice
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            pid = os.fork()
            if pid == 0:   # the child: never returns into the parent's frames
                code = 0
                try:
                    parent.close()
                    _serve_forked(child.detach(), pool.parent_fds())
                except BaseException:  # noqa: BLE001 - a child's failure is its exit status
                    code = 1
                os._exit(code)
            self.proc = _Forked(pid)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(child.fileno()), _ROOT],
                pass_fds=(child.fileno(),),
                # this process's stdout may carry --json: the engines write nothing
                # there (stderr is shared)
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        child.close()
        self.conn = Connection(parent.detach())
        self.pending: dict[int, _Ref] = {}
        self.lock = threading.Lock()
        self.alive = True
        self.reader: threading.Thread | None = None

    def start(self, spec: Any, node_id: str) -> None:
        """Hand the started process its worker's spec; calls may follow."""
        try:
            self.conn.send((spec, node_id))
        except OSError:
            pass   # gone already: the reader fails every call with ProcessLost
        self.reader = threading.Thread(target=self._read, name=f"tl-proc-{self.proc.pid}",
                                       daemon=True)
        self.reader.start()

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def call(self, name: str, args: tuple) -> _Ref:
        ref = self.pool.new_ref()
        with self.lock:
            if self.alive:
                self.pending[ref.id] = ref
                try:
                    self.conn.send((ref.id, name, args))
                    return ref
                except OSError:
                    self.pending.pop(ref.id, None)
        self.pool.resolve(ref, error=ProcessLost(f"worker process {self.proc.pid} is gone"))
        return ref

    def _read(self) -> None:
        while True:
            try:
                id_, ok, payload = self.conn.recv()
            except Exception:  # noqa: BLE001 - EOF, a reset, a message that cannot be read:
                break          # the channel is done, and every pending call fails with it
            with self.lock:
                ref = self.pending.pop(id_, None)
            if ref is None:
                continue
            if ok:
                self.pool.resolve(ref, value=payload)
            else:
                self.pool.resolve(ref, error=_task_failed(payload))
        with self.lock:
            self.alive = False
            lost, self.pending = list(self.pending.values()), {}
        code = self.proc.poll()
        why = f"worker process {self.proc.pid} exited" + (f" ({code})" if code else "")
        for ref in lost:
            self.pool.resolve(ref, error=ProcessLost(why))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()

    def fileno(self) -> int:
        return self.conn.fileno()


def _task_failed(payload: tuple[str, bytes | None]) -> TaskFailed:
    msg, blob = payload
    cause = None
    if blob is not None:
        try:
            cause = pickle.loads(blob)
        except Exception:  # noqa: BLE001 - an exception class that does not unpickle
            cause = None
    return TaskFailed(msg, cause)


class LocalProcesses:
    """``processes`` engine processes on this host, as the driver's ``ray``."""

    exceptions = _Exceptions

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.node_id = f"local-{socket.gethostname()}"
        self.actors: list[_ProcessActor] = []
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        fork = can_fork()
        if fork:   # loaded once, before the forks (the caller's collector untouched)
            from .worker import ShardWorker  # noqa: F401
        self._idle: list[_ProcessActor] = []
        # started now (spawned: their imports overlap the driver's first listing request)
        for _ in range(processes):
            self._idle.append(_ProcessActor(self, fork))

    def start_workers(self, spec: Any, nodes: list[dict], per_node: int) -> list[_ProcessActor]:
        """``per_node`` workers (the started processes, more if needed), each given
        ``spec``: the driver's actors."""
        for n in nodes:
            for _ in range(per_node):
                actor = self._idle.pop(0) if self._idle else _ProcessActor(self, can_fork())
                actor.start(spec, n["NodeID"])
                self.actors.append(actor)
        return list(self.actors)

    def parent_fds(self) -> list[int]:
        """This process's ends of every child's channel (a forked child closes its copies,
        so that each child sees EOF when this process goes)."""
        out = []
        for a in self.actors + self._idle:
            try:
                out.append(a.fileno())
            except OSError:
                pass   # closed already
        return out

    def nodes(self) -> list[dict]:
        return [{"NodeID": self.node_id, "Alive": True,
                 "Resources": {"CPU": float(os.cpu_count() or 1)}}]

    def new_ref(self) -> _Ref:
        return _Ref(next(self._ids))

    def resolve(self, ref: _Ref, *, value: Any = None, error: BaseException | None = None
                ) -> None:
        with self._cond:
            ref.value, ref.error, ref.done = value, error, True
            self._cond.notify_all()

    def wait(self, refs: list[_Ref], num_returns: int = 1, timeout: float | None = None
             ) -> tuple[list[_Ref], list[_Ref]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                ready = [r for r in refs if r.done]
                left = None if deadline is None else deadline - time.monotonic()
                if len(ready) >= num_returns or (left is not None and left <= 0):
                    break
                self._cond.wait(left)
        return ready, [r for r in refs if not r.done]

    def get(self, ref: _Ref, timeout: float | None = None) -> Any:
        ready, _ = self.wait([ref], 1, timeout)
        if not ready:
            raise ProcessError(f"no answer in {timeout} s")
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor: _ProcessActor) -> None:
        actor.kill()

    def shutdown(self) -> None:
        for a in self.actors + self._idle:
            a.kill()
        self._idle = []


# -- the child ----------------------------------------------------------------------------


def _serve_forked(fd: int, parent_fds: list[int]) -> None:
    """A forked child: drop what it inherited of the parent's that it must not hold, then
    serve. Its stdin and stdout become /dev/null, as a spawned child's are."""
    for other in parent_fds:
        try:
            os.close(other)
        except OSError:
            pass
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    _serve(fd)


def _serve(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    conn = Connection(fd)
    # the collector off while the engine's modules load, then those frozen (as the CLI's
    # entry point does, cli/startup.py: passes over long-lived objects only cost time);
    # a forked child has them loaded and frozen already
    gc.disable()
    from .worker import ShardWorker

    gc.freeze()
    gc.enable()

    try:
        spec, node_id = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    send_lock = threading.Lock()
    worker: Any = None
    start_error: BaseException | None = None
    try:
        worker = ShardWorker(spec, node_id)
    except BaseException as e:  # noqa: BLE001 - every call answers with it
        start_error = e

    def answer(id_: int, name: str, args: tuple) -> None:
        try:
            if start_error is not None:
                raise start_error
            out = (id_, True, getattr(worker, name)(*args))
        except BaseException as e:  # noqa: BLE001 - travels back to the driver
            try:
                blob: bytes | None = pickle.dumps(e)
            except Exception:  # noqa: BLE001 - not picklable: the message alone
                blob = None
            out = (id_, False, (f"{type(e).__name__}: {e}", blob))
        with send_lock:
            try:
                conn.send(out)
            except OSError:
                os._exit(0)   # the parent is gone

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        threading.Thread(target=answer, args=msg, daemon=True).start()
    os._exit(0)   # the parent closed its end (done, or gone): in-flight shards are dropped
