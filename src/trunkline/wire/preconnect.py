"""A store's connection begun while the command is still loading.

Why: a command's start-up is ~0.1 s of imports (the interpreter, click, the engine), and
a store in another region or cloud is a 20-80 ms round trip away: one for TCP's
handshake, one more for TLS 1.3's. The CLI names the store's address as soon as it has
parsed its arguments (``begin``); a thread connects, and shakes hands over TLS with the
context every endpoint uses (``tls.client_context``: the same CAs, certificate and host
name checked), while the main thread imports. The first connection the command opens to
that address takes the socket (``take``) instead of paying those round trips then.

Nothing depends on it: an address never taken, a refused, slow or failed connect or
handshake, leave the command as it was (it connects as usual, and meets any error then).
The thread is a daemon and ends with its connect, within the connect timeout.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["begin", "socket_host", "take"]

_lock = threading.Lock()
_early: dict[tuple[str, int], _Early] = {}


def socket_host(host: str) -> bytes | str:
    """``host`` as ``socket.create_connection`` should get it: an ASCII name as bytes (a
    str is first run through the "idna" codec, whose import, with stringprep and
    unicodedata, costs a short copy ~1.5 ms)."""
    return host.encode("ascii") if host.isascii() else host


class _Early:
    """One connect (and TLS handshake) in progress on its own thread."""

    def __init__(self, host: str, port: int, cafile: str | None, tls: bool,
                 timeout: float) -> None:
        self.sock: socket.socket | None = None
        self.context: Any = None          # the SSLContext it shook hands with
        self.thread = threading.Thread(target=self._run, args=(host, port, cafile, tls, timeout),
                                       name="tl-preconnect", daemon=True)
        self.thread.start()

    def _run(self, host: str, port: int, cafile: str | None, tls: bool,
             timeout: float) -> None:
        try:
            raw = socket.create_connection((socket_host(host), port), timeout=timeout)
        except OSError:
            return
        if not tls:
            self.sock = raw
            return
        try:
            from .tls import client_context

            ctx = client_context(cafile)
            self.sock, self.context = ctx.wrap_socket(raw, server_hostname=host), ctx
        except Exception:  # noqa: BLE001 - the command's own handshake meets it
            raw.close()


def begin(host: str, port: int, *, tls: bool = False, cafile: str | None = None,
          timeout: float = 10.0) -> None:
    """Start connecting to ``host:port`` (once per address); ``tls``: and shaking hands,
    trusting ``cafile`` (None: the system's CAs)."""
    with _lock:
        if (host, port) not in _early:
            _early[(host, port)] = _Early(host, port, cafile, tls, timeout)


def take(host: str, port: int, timeout: float, tls: Any = None,
         server_hostname: str | None = None) -> socket.socket | None:
    """The socket begun for ``host:port``, once: waited for up to ``timeout`` (it began
    before any other could). ``tls``: the caller's SSLContext; the socket is handed out
    only where its handshake was made with that very context and checked the very name
    the caller would (``server_hostname``, default ``host``; else None, and the caller
    connects as usual), or, for plain TCP, where it made none."""
    with _lock:
        early = _early.pop((host, port), None)
    if early is None:
        return None
    early.thread.join(timeout)
    if early.thread.is_alive():
        return None   # still connecting: left to finish on its own, closed when it does
    sock = early.sock
    if sock is not None and (early.context is not tls
                             or (tls is not None and (server_hostname or host) != host)):
        sock.close()
        return None
    return sock
