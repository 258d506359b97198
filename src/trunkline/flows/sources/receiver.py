"""A collector's receive process: sockets -> a bounded queue in memory -> a pipe.

Why a process of its own: decoding and, above all, building Arrow tables and writing
Parquet cost microseconds per record and hold the interpreter lock; a receive loop
sharing that lock waits behind them while the kernel's socket buffer (a few MiB, capped
by ``net.core.rmem_max``) overflows in a fraction of a second. Here nothing else runs:
one ``recvmmsg`` per batch of datagrams, framed and queued (up to ``--queue-bytes``),
and written to the collector's pipe as fast as the collector reads it. When the queue is
full the sockets are left unread, so what is lost is lost in the kernel and counted
there (``/proc/net/udp`` drops), never silently here.

Frames on the pipe: a 4-byte big-endian length, ``META`` (receive time in ms, datagrams
received so far, bytes queued, the queue's peak), then the datagrams as ``recv_frame``
packs them (a 28-byte head + payload each; ``udp.parse_frame`` reads them back): no
Python object per datagram on this side. SIGTERM: stop reading
new datagrams after draining what the kernel already holds (at most ``DRAIN_S``), write
out the queue, close the pipe (the collector sees EOF) and exit 0.

Run as ``python -m trunkline.flows.sources.receiver --fds 3,4 --out 5 --queue-bytes N``
(the collector's ``start_receiver`` does, with the descriptors passed on).
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import select
import signal
import socket
import struct
import time

from .udp import BatchReceiver

DRAIN_S = 0.3  # on stop: what the kernel already holds was received, keep it
# After a short batch, let datagrams gather for this long before the next recvmmsg: at
# tens of thousands of datagrams a second a busy loop wakes for 2-3 datagrams each time,
# and every wake-up (poll, recvmmsg, a frame, a pipe write, and the decoder's read of
# it) costs more than the datagrams. The kernel's buffer holds far more than 1 ms.
GATHER_S = 0.001
SHORT_BATCH = 64
F_SETPIPE_SZ = 1031
FRAME = struct.Struct(">I")
META = struct.Struct("=QQQQ")


def frame(recv_ms: int, records: bytes, received: int, queued: int, peak: int) -> bytes:
    return b"".join((FRAME.pack(META.size + len(records)),
                     META.pack(recv_ms, received, queued, peak), records))


def serve(socks: list[socket.socket], out_fd: int, queue_bytes: int,
          stopping: list[bool], wake_fd: int = -1) -> None:
    """Receive until ``stopping[0]``; then drain, write out the queue and return.
    ``wake_fd``: readable when ``stopping`` was set (a signal's wake-up pipe)."""
    rx = BatchReceiver(max_msgs=256)  # when behind, fewer wake-ups per datagram
    queue: collections.deque[list] = collections.deque()  # [frame view, payload bytes]
    queued = peak = received = 0
    os.set_blocking(out_fd, False)
    try:
        fcntl.fcntl(out_fd, F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups (pipe-max-size caps)
    except OSError:
        pass
    poll = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    reading = False

    def read_from(sock: socket.socket) -> int:
        nonlocal queued, peak, received
        try:
            n, records = rx.recv_frame(sock)
        except OSError:  # a socket error (not "nothing waiting"): the next poll retries
            return 0
        if n:
            received += n
            size = len(records)
            queued += size
            peak = max(peak, queued)
            f = frame(int(time.time() * 1000), records, received, queued, peak)
            queue.append([memoryview(f), size])
        return n

    def write_some() -> None:
        nonlocal queued
        while queue:
            head = queue[0]
            try:
                n = os.write(out_fd, head[0])
            except BlockingIOError:
                return
            if n == len(head[0]):
                queue.popleft()
                queued -= head[1]
            else:
                head[0] = head[0][n:]

    queue.append([memoryview(frame(0, b"", 0, 0, 0)), 0])  # "ready": the sockets are read
    poll.register(out_fd, 0)  # POLLERR/POLLHUP always: the collector is gone
    if wake_fd >= 0:
        poll.register(wake_fd, select.POLLIN)
    deadline = None
    writing = False
    while True:
        if stopping[0] and deadline is None:
            deadline = time.monotonic() + DRAIN_S
        want_read = queued < queue_bytes and (deadline is None or time.monotonic() < deadline)
        if want_read != reading:
            for fd in by_fd:
                if want_read:
                    poll.register(fd, select.POLLIN)
                else:
                    poll.unregister(fd)
            reading = want_read
        if deadline is not None and not reading:
            break
        if bool(queue) != writing:
            writing = bool(queue)
            poll.modify(out_fd, select.POLLOUT if writing else 0)
        events = poll.poll(200 if deadline is None else 20)
        got = 0
        if not events and deadline is not None:
            break  # nothing more in the kernel
        for fd, ev in events:
            if fd == wake_fd:
                while True:
                    try:
                        if not os.read(wake_fd, 512):
                            break
                    except BlockingIOError:
                        break
            elif fd == out_fd:
                if ev & (select.POLLERR | select.POLLHUP):
                    os.close(out_fd)
                    return  # no reader any more: nobody to deliver to
                write_some()
            elif ev & select.POLLIN:
                got += read_from(by_fd[fd])
        if 0 < got < SHORT_BATCH and deadline is None:
            time.sleep(GATHER_S)
    os.set_blocking(out_fd, True)
    for view, _ in queue:  # the rest, blocking: the collector reads until EOF
        while len(view):
            view = view[os.write(out_fd, view):]
    os.close(out_fd)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="trunkline.flows.sources.receiver")
    ap.add_argument("--fds", required=True, help="socket descriptors, comma-separated")
    ap.add_argument("--out", type=int, required=True, help="the pipe to the collector")
    ap.add_argument("--queue-bytes", type=int, default=64 << 20)
    args = ap.parse_args(argv)
    stopping = [False]

    def stop(*_):
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)  # from the collector, which drains us then
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the collector's
    wake_r, wake_w = os.pipe()  # the signal wakes the poll at once (not at its timeout)
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    socks = [socket.socket(fileno=int(fd)) for fd in args.fds.split(",")]
    serve(socks, args.out, args.queue_bytes, stopping, wake_r)


if __name__ == "__main__":
    main()
