"""A loopback S3 front that refuses checksum headers, as stores without them do.

Why: none of the embedded stores refuses ``x-amz-checksum-*``, but real ones do (older
Ceph, some S3-compatible services answer 400 to headers they do not implement), and the
mover must then send none rather than fail or retry blindly. This front relays requests
to a real S3 server, except that any request carrying a checksum value or algorithm
header (or a checksum trailer: ``x-amz-trailer``) gets ``400 InvalidArgument`` without
reaching the store. One request per
connection (``Connection: close``), which every S3 client handles, keeps it small.

``refuse`` picks the store it plays:
- ``"checksums"``: as above;
- ``"trailers"``: a store that takes checksum headers but sums an aws-chunked body with
  its frame, so it refuses every checksum trailer, the right one too, as
  ``400 BadDigest``; other requests pass;
- ``"nothing"``: every request passes; what is left is the front's one answer per
  connection, as nginx closes a connection at ``keepalive_requests``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Literal

from .loopback import LoopbackServer

_REFUSAL = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code>"
            b"<Message>checksum headers are not supported</Message></Error>")
_BAD_DIGEST = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>BadDigest</Code>"
               b"<Message>The CRC32C you specified did not match the calculated checksum."
               b"</Message></Error>")


def _refused_header(name: str) -> bool:
    n = name.lower()
    return (n.startswith("x-amz-checksum-") and n != "x-amz-checksum-mode") or \
        n in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")


@dataclass
class RefusingProxy(LoopbackServer):
    """Relay to ``upstream`` (host, port); count what was refused and what passed."""

    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    refused: list[str] = field(default_factory=list)    # "METHOD path" of each refusal
    passed: int = 0
    refuse: Literal["checksums", "trailers", "nothing"] = "checksums"

    thread_name = "refusing-proxy"

    def __post_init__(self) -> None:
        self._loopback_init()

    def _serve(self, c: socket.socket) -> None:
        with c.makefile("rb") as rf:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = rf.readline(65537)
                if not line or len(head) > 65536:
                    return
                head += line
            lines = head.decode("latin-1").split("\r\n")
            names = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
                     for ln in lines[1:] if ":" in ln}
            expect = names.get("expect", "").lower() == "100-continue"
            refuse = (any(_refused_header(n) for n in names) if self.refuse == "checksums"
                      else "x-amz-trailer" in names if self.refuse == "trailers" else False)
            if expect and not refuse:
                c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                head = b"\r\n".join(ln for ln in head.split(b"\r\n")
                                     if not ln.lower().startswith(b"expect:"))
            body = b"" if expect and refuse else \
                rf.read(int(names.get("content-length", "0") or 0))
            if refuse:
                self.refused.append(" ".join(lines[0].split(" ")[:2]))
                why = _BAD_DIGEST if self.refuse == "trailers" else _REFUSAL
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\n"
                          b"Connection: close\r\nContent-Length: "
                          + str(len(why)).encode() + b"\r\n\r\n" + why)
                return
            self.passed += 1
            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(head[:-2] + b"Connection: close\r\n\r\n" + body)
                self._relay(up, c)

    @staticmethod
    def _relay(up: socket.socket, c: socket.socket) -> None:
        """The answer, its head told that the connection closes after it."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = up.recv(65536)
            if not d:
                c.sendall(buf)
                return
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        kept = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        c.sendall(b"\r\n".join(kept) + b"\r\nConnection: close\r\n\r\n" + rest)
        while d := up.recv(1 << 20):
            c.sendall(d)
