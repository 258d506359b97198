"""The one retry policy: per part, exponential backoff with full jitter.

Retried: 5xx, 429/503 SlowDown, RequestTimeout, resets, refused connections, timeouts,
truncated bodies and checksum mismatches (the bytes were damaged in flight). Not retried:
4xx answers that will not change (403, 404, 400) and local filesystem errors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..storage.s3 import S3Error
from ..wire.http1 import ProtocolError


class IntegrityError(Exception):
    """Bytes received do not match their checksum or length."""


class SourceChanged(Exception):
    """The source object changed under us (size differs from the listing): not retried."""


class NotVerified(Exception):
    """Nothing comparable to check the object against, and verification is required."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8          # total tries per part
    base: float = 0.1          # seconds
    cap: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff before try ``attempt`` (1 = first retry)."""
        r = rng or random
        return r.uniform(0, min(self.cap, self.base * (2 ** attempt)))


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, S3Error):
        return exc.retryable
    if isinstance(exc, (IntegrityError, ProtocolError)):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return False


def is_slowdown(exc: BaseException) -> bool:
    return isinstance(exc, S3Error) and exc.slowdown
