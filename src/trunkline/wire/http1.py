"""Sans-I/O HTTP/1.1 framing for the data path: serialise a request head, parse a response head.

Owned rather than borrowed because it sits on the per-request hot path and we need the
exact bytes boundary between head and body to receive the body straight into our
buffers; the grammar we need (status line, header fields, Content-Length or chunked) is
small. Bodies are never buffered here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConnectionClosed, ProtocolError

MAX_HEAD = 64 * 1024
_HEX = b"0123456789abcdefABCDEF"


def decimal_count(text: str) -> int | None:
    """``text`` as a count if it is decimal digits only and fits an int64, else None:
    ``int()`` would also take "+5", " 5", "1_0" and other digits than ASCII, and a count
    past 2**63 - 1 fits no file offset or SQLite integer."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    n = int(text)
    return n if n < 1 << 63 else None


@dataclass(slots=True)
class ResponseHead:
    """A parsed response head: status, reason and the headers by lower-cased name."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        if v is None:
            return None
        n = decimal_count(v)   # digits only (RFC 9110 8.6)
        if n is None:
            raise ProtocolError(f"bad Content-Length {v[:40]!r}")
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
    # three ASCII digits (RFC 9112 4): int() would also read "+200", " 200" or "2_00"
    if len(parts[1]) != 3 or decimal_count(parts[1]) is None:
        raise ProtocolError(f"bad status line {status_line[:80]!r}")
    status = int(parts[1])
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


# --------------------------------------------------------------------------- bodies
#
# How a response body ends is decided once, from the head and the request's method
# (RFC 9112 section 6.3), by ``response_framing``; the readers below then turn received
# bytes into payload without doing any I/O themselves, so the connection only moves bytes
# and these rules can be tested on their own.


@dataclass(frozen=True, slots=True)
class Framing:
    """``none`` (no body), ``length`` (Content-Length bytes), ``chunked``, or ``close``
    (the body runs until the server closes: the connection cannot be reused)."""

    kind: str
    length: int = 0


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP date header (``Last-Modified``), None if it is not one.

    The IMF-fixdate every store sends ("Sun, 06 Nov 1994 08:49:37 GMT") is parsed here;
    anything else goes to ``email.utils`` (~15 ms to import, so only then). A header is
    input: a malformed one is "no date", never an exception."""
    if not value:
        return None
    v = value.strip()
    if (len(v) == 29 and v[3:5] == ", " and v[25:] == " GMT" and v[7] == v[11] == v[16] == " "
            and v[19] == v[22] == ":"):
        mon = _MONTHS.get(v[8:11])
        digits = v[5:7] + v[12:16] + v[17:19] + v[20:22] + v[23:25]
        if mon is not None and digits.isascii() and digits.isdigit():
            day, year = int(v[5:7]), int(v[12:16])
            hh, mm, ss = int(v[17:19]), int(v[20:22]), int(v[23:25])
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            mdays = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[mon - 1]
            if year >= 1 and 1 <= day <= mdays and hh < 24 and mm < 60 and ss < 60:
                return float(_days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60
                             + ss)
        return None   # the fixdate's shape with impossible values: not a date
    from datetime import UTC
    from email.utils import parsedate_to_datetime

    try:
        dt = parsedate_to_datetime(v)
        if dt.tzinfo is None:   # "-0000": UTC by RFC 5322, never the process's zone
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def response_framing(head: ResponseHead, method: str) -> Framing:
    """How the body of ``head`` (answering ``method``) is delimited."""
    if method == "HEAD" or 100 <= head.status < 200 or head.status in (204, 304):
        return Framing("none")
    if head.chunked:
        return Framing("chunked")
    n = head.content_length
    if n is not None:
        return Framing("length", n)
    return Framing("close")


class LengthReader:
    """A body of a known length."""

    reusable = True

    def __init__(self, length: int):
        self.remaining = length
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def feed(self, data: bytes) -> bytes:
        take = data[: self.remaining]
        self.remaining -= len(take)
        self.leftover += data[len(take):]
        return take

    def eof(self) -> None:
        if self.remaining:
            raise ConnectionClosed(f"body truncated: {self.remaining} bytes missing")


class CloseReader:
    """A body that ends when the server closes the connection."""

    reusable = False
    leftover = b""

    def __init__(self) -> None:
        self.done = False

    def feed(self, data: bytes) -> bytes:
        return data

    def eof(self) -> None:
        self.done = True


class ChunkedReader:
    """A chunked body: size lines, data, CRLF, ..., a zero-size chunk and trailers."""

    reusable = True
    MAX_LINE = 1024

    def __init__(self) -> None:
        self._line = bytearray()
        self._left = 0              # data bytes left in the current chunk
        self._state = "size"        # size -> data -> crlf -> size ... -> trailer -> done
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        i = 0
        while i < len(data) and self._state != "done":
            if self._state == "data":
                take = data[i: i + self._left]
                out += take
                self._left -= len(take)
                i += len(take)
                if self._left == 0:
                    self._state = "crlf"
                continue
            j = data.find(b"\n", i)
            end = len(data) if j < 0 else j + 1
            self._line += data[i:end]
            i = end
            if len(self._line) > self.MAX_LINE:
                raise ProtocolError("chunk size line too long")
            if j < 0:
                break
            line, self._line = bytes(self._line).rstrip(b"\r\n"), bytearray()
            self._on_line(line)
        self.leftover += data[i:]
        return bytes(out)

    def _on_line(self, line: bytes) -> None:
        if self._state == "crlf":
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = "size"
        elif self._state == "size":
            # hex digits only (RFC 9112 7.1): int(x, 16) would also take "0x1a", "+a" and
            # "1_0", and an empty line is no size (it used to end the body as a last chunk)
            digits = line.split(b";")[0].strip()
            if not digits or len(digits) > 16 or digits.strip(_HEX):
                raise ProtocolError(f"bad chunk size line {line[:40]!r}")
            size = int(digits, 16)
            self._left = size
            self._state = "data" if size else "trailer"
        elif self._state == "trailer" and not line:
            self._state = "done"

    def eof(self) -> None:
        if self._state == "trailer":   # a server that closes instead of ending its trailers
            self._state = "done"
            return
        if self._state != "done":
            raise ConnectionClosed("chunked body truncated")


BodyReader = LengthReader | CloseReader | ChunkedReader


def body_reader(framing: Framing) -> BodyReader:
    """The reader that turns received bytes into this body's payload."""
    if framing.kind == "chunked":
        return ChunkedReader()
    if framing.kind == "close":
        return CloseReader()
    return LengthReader(framing.length)
