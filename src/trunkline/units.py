"""The only home of sizes, rates and durations: parsing, formatting, and KiB/MiB/GiB.

Why one module: the same text ("64M", "4Gbit", "30ms", "2d") is typed into cp, sync, gc,
plan and probe, and must mean the same thing everywhere. Before, the mover and ``plan``
had two duration grammars and two byte formatters. Conventions:

- sizes follow GNU coreutils (and rclone): ``K, M, G`` and ``KiB, MiB, GiB`` are powers of
  1024, ``KB, MB, GB`` powers of 1000;
- network rates are decimal bits (``100G`` = 100e9 bit/s), a capital ``B`` names bytes;
- a transfer cap (``--bwlimit``) is bytes/s for a size-like text (``500M`` = 500 MiB/s,
  rclone's convention) and bits/s for a network-like one (``4Gbit``);
- a duration needs a unit, because a bare ``30`` is ambiguous between ms and s, unless
  the caller says what a bare number means (``bare=1.0``: seconds).

No heavy imports: the CLI loads this at start-up.
"""

from __future__ import annotations

import math
import re

from .errors import UsageError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15, "e": 10**18}
_BIN = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}

_NUM = r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_SIZE_RE = re.compile(_NUM + r"\s*(?P<pre>[kmgtpe]?)(?P<i>i?)(?P<b>b?)(?:ytes?)?", re.I)
_RATE_RE = re.compile(_NUM + r"\s*(?P<pre>[kmgtpe]?)(?P<unit>bits/s|bit/s|bits|bit|bps|b/s|b)?", re.I)
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
               "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TIME_RE = re.compile(_NUM + r"\s*(?P<unit>ns|us|µs|ms|s|min|m|h|d|w)", re.I)
_BARE_RE = re.compile(_NUM)


MAX_SIZE = (1 << 63) - 1
"""The largest size (a file offset, a SQLite integer): 1e400 was an OverflowError."""
MAX_RATE_BPS = 1e18
"""The largest rate taken (1 Ebit/s): past it a figure is a typo, and its streams
and times stop being numbers."""
MAX_DURATION_S = 1e9
"""The largest duration taken (~31 years)."""


def _bounded(value: float, top: float, what: str, text: object) -> float:
    if not math.isfinite(value) or value > top:
        raise UsageError(f"not a {what}: {text!r} (beyond {top:g})")
    return value


def parse_size(text: str | int | float) -> int:
    """Bytes from ``"2PB"`` (decimal), ``"64MiB"``/``"64M"`` (binary) or a number."""
    if isinstance(text, int | float):
        return int(_bounded(float(text), MAX_SIZE, "size", text))
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise UsageError(f"not a size: {text!r} (try 2PB, 64MiB, 64M)")
    pre = m["pre"].lower()
    decimal = bool(m["b"]) and not m["i"] and m["pre"] != ""
    mult = _SI[pre] if decimal else _BIN[pre]
    return int(round(_bounded(float(m["num"]) * mult, MAX_SIZE, "size", text)))


def parse_rate_bps(text: str | int | float) -> float:
    """Bits/s from ``"100G"``, ``"100Gbps"``, ``"10Gbit/s"``, ``"1.25GB/s"`` (bytes -> x8).

    Network rates are always decimal (100G = 100e9 bit/s). A capital ``B`` names bytes.
    """
    if isinstance(text, int | float):
        return _bounded(float(text), MAX_RATE_BPS, "rate", text)
    m = _RATE_RE.fullmatch(text.strip())
    if not m:
        raise UsageError(f"not a rate: {text!r} (try 100G, 10Gbit/s, 1.25GB/s)")
    mult = _SI[m["pre"].lower()]
    unit = m["unit"] or ""
    per_byte = unit[:1] == "B" and not unit.lower().startswith("bit")
    return _bounded(float(m["num"]) * mult * (8 if per_byte else 1), MAX_RATE_BPS, "rate", text)


def parse_transfer_rate(value: float | str | None) -> float | None:
    """A transfer cap in bytes/s: a number is bytes/s, ``'500M'`` 500 MiB/s (rclone's
    convention), network text ``'4Gbit'``, ``'4Gbps'``, ``'10Gbit/s'`` decimal bits/s,
    ``'1.25GB/s'`` bytes. None or 0: no cap."""
    if value is None or isinstance(value, (int, float)):
        return float(value) if value else None
    low = value.strip().lower()
    if "bit" in low or low.endswith("bps") or low.endswith("b/s"):
        return parse_rate_bps(value) / 8
    return float(parse_size(value))


def parse_duration(text: str | int | float, *, bare: float | None = None) -> float:
    """Seconds from ``"30ms"``, ``"250us"``, ``"1.5s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"2w"``.

    A unit is required, except for a plain number type (seconds), ``"0"``, or when the
    caller names what a bare number means (``bare=1.0``: a bare ``"90"`` is 90 s)."""
    if isinstance(text, int | float):
        return _bounded(float(text), MAX_DURATION_S, "duration", text)
    s = text.strip()
    if s in ("0", "0.0"):
        return 0.0
    m = _TIME_RE.fullmatch(s)
    if m:
        return _bounded(float(m["num"]) * _TIME_UNITS[m["unit"].lower()], MAX_DURATION_S,
                        "duration", text)
    if bare is not None and _BARE_RE.fullmatch(s):
        return _bounded(float(s) * bare, MAX_DURATION_S, "duration", text)
    raise UsageError(f"not a duration: {text!r} (give a unit: 30ms, 250us, 1.5s, 30m, 12h, 1d)")


def parse_loss(text: str | int | float) -> float:
    """Packet-loss probability from ``"1e-6"``, ``"0.0001"`` or ``"0.01%"``; in [0, 1)."""
    try:
        if isinstance(text, int | float):
            p = float(text)
        else:
            s = text.strip()
            p = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"not a loss probability: {text!r} (try 1e-6, 0.01%)") from None
    if not 0 <= p < 1:
        raise UsageError(f"loss must be in [0, 1): {text!r}")
    return p


def human_bytes(n: float, digits: int = 1) -> str:
    """``1.5 GiB`` style (binary units), for sizes and memory."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.{digits}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_bps(bps: float) -> str:
    """``9.41 Gbit/s`` style (decimal), for rates."""
    if math.isinf(bps):
        return "unbounded"
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s"):
        if abs(bps) < 1000 or unit == "Pbit/s":
            return f"{bps:.3g} {unit}"
        bps /= 1000
    raise AssertionError("unreachable")


def human_duration(s: float) -> str:
    """``3d 04h 12m`` / ``12.3 s`` / ``45 ms`` style."""
    if math.isinf(s):
        return "never"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"
