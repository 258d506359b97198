"""Failed shards waiting for another try, under the project's one retry policy (sans-I/O).

Why here and not in the driver's loop: the driver cannot block on a failed shard (other
shards are in flight), so it re-queues it for another worker. Whether that is worth it,
how many tries a shard gets and how long it waits first are ``engine/retry.py``'s
``RetryPolicy.after``, the same decision every blocking loop makes through ``retrying``:
a failure that says it is not retryable (a ``UsageError``, a ``SourceChanged``) ends the
shard at once; a lost worker or a shard that raised anything else (its worker's disk, a
killed process) is tried again elsewhere, after the policy's jittered backoff, until the
shard's tries (``shard_attempts``) are spent.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable

from ..engine.retry import RetryPolicy
from ..errors import NetworkError, TransferError, TrunklineError
from .shard import Shard


class WorkerLost(NetworkError):
    """The worker running a shard died (its process or its node): try it elsewhere."""


class ShardFailed(TransferError):
    """A shard raised on its worker; ``cause`` (when trunkline's) says whether a retry helps."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause

    @property  # type: ignore[override]
    def retryable(self) -> bool:
        c = self.cause
        return bool(c.retryable) if isinstance(c, TrunklineError) else True


class ShardRetries:
    """Shards waiting for their next try, each due after the policy's backoff."""

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self._due: list[tuple[float, int, Shard]] = []
        self._seq = itertools.count()   # ties keep their order; shards are not comparable

    def failed(self, sh: Shard, exc: BaseException) -> bool:
        """Count a failed try of ``sh``; True: queued for another, False: give up."""
        sh.attempts += 1
        wait = self.policy.after(exc, sh.attempts, self.rng)
        if wait is None:
            return False
        heapq.heappush(self._due, (self.clock() + wait, next(self._seq), sh))
        return True

    def due(self) -> Shard | None:
        """The next shard whose wait is over, if any."""
        if self._due and self._due[0][0] <= self.clock():
            return heapq.heappop(self._due)[2]
        return None

    def next_due_in(self) -> float | None:
        """Seconds until the next shard is due (0 when one is), None when none waits."""
        return max(0.0, self._due[0][0] - self.clock()) if self._due else None

    def __len__(self) -> int:
        return len(self._due)

    def __bool__(self) -> bool:
        return bool(self._due)
