"""Sans-I/O HTTP/1.1 framing for the data path: serialise a request head, parse a response head.

Owned rather than borrowed because it sits on the per-request hot path and we need the
exact bytes boundary between head and body to receive the body straight into our
buffers; the grammar we need (status line, header fields, Content-Length or chunked) is
small. Bodies are never buffered here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ProtocolError

MAX_HEAD = 64 * 1024


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        if v is None:
            return None
        try:
            n = int(v)
        except ValueError:
            raise ProtocolError(f"bad Content-Length {v!r}") from None
        if n < 0:
            raise ProtocolError(f"bad Content-Length {v!r}")
        return n

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


def build_request(method: str, target: str, headers: dict[str, str]) -> bytes:
    """The request head. ``headers`` must already hold Host, Content-Length and auth."""
    lines = [f"{method} {target} HTTP/1.1"]
    for k, v in headers.items():
        if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
            raise ValueError(f"header {k!r} contains a line break")
        lines.append(f"{k}: {v}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def parse_response_head(buf: bytes | bytearray | memoryview) -> tuple[ResponseHead, int] | None:
    """Parse a complete head at the start of ``buf``; None if more bytes are needed.

    Returns the head and the number of bytes it used (the body starts there).
    """
    data = bytes(buf[:MAX_HEAD + 4]) if not isinstance(buf, bytes) else buf
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD:
            raise ProtocolError("response head larger than 64 KiB")
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProtocolError(f"bad status line {status_line[:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise ProtocolError(f"bad status line {status_line[:80]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise ProtocolError("conflicting Content-Length headers")
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    te = headers.get("transfer-encoding")
    if te is not None:
        # Ambiguous framing is how bodies get smuggled or chunk sizes end up in a file:
        # TE with CL is refused (RFC 9112 6.3 lets a recipient do so), and the only
        # coding we can frame is a lone "chunked".
        if "content-length" in headers:
            raise ProtocolError("response has both Transfer-Encoding and Content-Length")
        if te.strip().lower() != "chunked":
            raise ProtocolError(f"unsupported Transfer-Encoding {te[:40]!r}")
    # 1xx heads (100 Continue, 102, 103 Early Hints) have no body: the caller skips them.
    return ResponseHead(status, parts[2] if len(parts) > 2 else "", headers), end + 4
