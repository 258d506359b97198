"""The one retry policy, and the one loop that applies it: every retry in trunkline.

Policy: per part (or per request of the control plane), exponential backoff with full
jitter, ``attempts`` tries in all. What is worth another try is the failure's own say
(``errors.py``: ``retryable``): 5xx, 429/503 SlowDown, RequestTimeout, resets, refused
connections, timeouts, truncated bodies, framing errors and checksum mismatches (the bytes
were damaged in flight). Not retried: 4xx answers that will not change (403, 404, 400),
a source that changed, local filesystem errors.

Why one helper: the scheduler's part loop, the store's control requests, the full-object
checksum HEAD and ``verify``'s reads each had their own loop, plus botocore's own retries
(up to 6 attempts) stacked under ours. botocore's are now off (``storage/s3.py``), and
every loop is ``retrying`` with this policy, so the budget a user sets with
``--retries`` is the budget spent. A loop that cannot block (the cluster driver re-queues
a failed shard to another worker) asks the same policy: ``RetryPolicy.after``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import IntegrityError, NotVerified, SourceChanged, is_retryable, is_slowdown

if TYPE_CHECKING:
    import random

__all__ = ["IntegrityError", "NotVerified", "RetryPolicy", "SourceChanged", "is_retryable", "is_slowdown",
           "retrying"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries a part gets and how long to wait between them (capped, jittered)."""

    attempts: int = 8          # total tries per part
    base: float = 0.1          # seconds
    cap: float = 10.0

    @classmethod
    def for_retries(cls, retries: int) -> RetryPolicy:
        """The policy allowing ``retries`` retries after the first try."""
        return cls(attempts=max(1, retries + 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff before try ``attempt`` (1 = first retry)."""
        if rng is None:
            import random as rng  # on the first retry: a run that needs none loads none
        return rng.uniform(0, min(self.cap, self.base * (2 ** attempt)))

    def after(self, exc: BaseException, tries: int,
              rng: random.Random | None = None) -> float | None:
        """The wait before another try once ``tries`` tries failed, the last with ``exc``;
        None: give up (not retryable, or the tries are spent). The one decision of every
        retry, whether the loop blocks (``retrying``) or re-queues (the cluster's shards)."""
        if not is_retryable(exc) or tries >= self.attempts:
            return None
        return self.delay(tries, rng)


def retrying(
    attempt_once: Callable[[], T],
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
    on_error: Callable[[BaseException, int, bool], None] | None = None,
) -> T:
    """Call ``attempt_once`` until it returns, the failure is not retryable, or the
    policy's tries are spent (then the last failure is raised).

    ``on_error(exc, tries_so_far, will_retry)`` sees every failure (for counters and to
    drop a suspect connection). With ``stop``, the wait between tries ends early when it is
    set, and the last failure is raised."""
    attempt = 0
    while True:
        try:
            return attempt_once()
        except Exception as e:
            attempt += 1
            wait = policy.after(e, attempt, rng)
            if on_error is not None:
                on_error(e, attempt, wait is not None)
            if wait is None:
                raise
            if stop is None:
                time.sleep(wait)
            elif stop.wait(wait):
                raise
