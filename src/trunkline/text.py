"""Terminal-safe text: keys and server messages are printed escaped, never raw.

Why: an object key or an error message comes from whoever filled the bucket or runs the
server; printed raw, its control characters (ESC sequences, carriage returns, bidi
overrides) can rewrite the user's terminal, hide lines or forge output. Everything the CLI
prints from a peer goes through ``safe``: printable text is unchanged, anything else is
shown as a Python-style escape (``\\x1b``, ``\\u202e``).
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def safe(text: object) -> str:
    """``text`` with control, format (bidi), surrogate and unassigned characters escaped."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in s)
