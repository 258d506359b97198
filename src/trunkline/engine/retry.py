"""The one retry policy: per part, exponential backoff with full jitter.

Retried: 5xx, 429/503 SlowDown, RequestTimeout, resets, refused connections, timeouts,
truncated bodies and checksum mismatches (the bytes were damaged in flight). Not retried:
4xx answers that will not change (403, 404, 400) and local filesystem errors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import IntegrityError, NotVerified, SourceChanged, is_retryable, is_slowdown

__all__ = ["IntegrityError", "NotVerified", "RetryPolicy", "SourceChanged", "is_retryable",
           "is_slowdown"]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8          # total tries per part
    base: float = 0.1          # seconds
    cap: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff before try ``attempt`` (1 = first retry)."""
        r = rng or random
        return r.uniform(0, min(self.cap, self.base * (2 ** attempt)))
