"""One listen/accept/serve loop for the small servers tests put on loopback.

Why: the hostile S3 server (``hostile_s3``) and the checksum-refusing front
(``refusing_proxy``) each had their own listener, accept thread, thread per connection
and ``stop``; they differ only in what they answer. Here the loop is written once, with a
``stop`` that shuts every open connection (a server stuck mid-answer, such as a trickle,
ends with it) and joins every thread it started.
"""

from __future__ import annotations

import socket
import threading


class LoopbackServer:
    """Subclasses implement ``_serve(conn)`` (one connection, in its own thread)."""

    host = "127.0.0.1"
    thread_name = "loopback-server"
    conn_timeout = 30.0

    def _loopback_init(self) -> None:
        self.port = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        s = socket.create_server((self.host, 0), backlog=64)
        s.settimeout(0.2)
        self._sock, self.port = s, s.getsockname()[1]
        t = threading.Thread(target=self._accept, name=self.thread_name, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopped.is_set():
            try:
                c, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            c.settimeout(self.conn_timeout)
            with self._lock:
                self._conns.add(c)
            t = threading.Thread(target=self._serve_and_close, args=(c,), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve_and_close(self, c: socket.socket) -> None:
        try:
            self._serve(c)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(c)
            c.close()

    def _serve(self, c: socket.socket) -> None:
        raise NotImplementedError
