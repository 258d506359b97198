"""The TLS client context: one per CA file, for the whole process.

Why shared: building one loads the system's (or a private) CA store, ~10-20 ms of CPU,
and every endpoint of a run, and the CLI's early connection (``preconnect``), verify
alike: the default context (certificate and host name checked) over those CAs. A context
is safe to share between threads.
"""

from __future__ import annotations

import functools
import ssl

__all__ = ["client_context"]


@functools.cache
def client_context(cafile: str | None) -> ssl.SSLContext:
    """The context verifying servers against ``cafile`` (None: the system's CAs)."""
    return ssl.create_default_context(cafile=cafile)
