"""The cluster's shard tries under the one retry policy (sans-I/O: no Ray needed)."""

from __future__ import annotations

import random

from trunkline.cluster.retries import ShardFailed, ShardRetries, WorkerLost
from trunkline.cluster.shard import Shard
from trunkline.engine.retry import RetryPolicy
from trunkline.errors import SourceChanged, UsageError


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _shard() -> Shard:
    return Shard("s1", [], 10)


def test_a_shard_that_fails_twice_then_succeeds_waits_the_policys_backoff():
    clock = Clock()
    policy = RetryPolicy(attempts=3, base=1.0, cap=10.0)
    r = ShardRetries(policy, clock=clock, rng=random.Random(1))
    sh = _shard()
    ran = 0
    for failure in (WorkerLost("node gone"), ShardFailed("disk", OSError("EIO"))):
        ran += 1
        assert r.failed(sh, failure)          # queued for another try
        wait = r.next_due_in()
        # the policy's own full-jitter bound for this try (RetryPolicy.delay)
        assert wait is not None and 0 <= wait <= min(policy.cap, policy.base * 2 ** sh.attempts)
        if wait > 0:
            assert r.due() is None            # not before its backoff is over
        clock.t += wait
        assert r.due() is sh and not r
    ran += 1                                  # the third try succeeds: nothing to record
    assert ran == 3 and sh.attempts == 2


def test_a_shard_that_always_fails_gives_up_after_its_tries():
    clock = Clock()
    r = ShardRetries(RetryPolicy(attempts=3), clock=clock, rng=random.Random(2))
    sh = _shard()
    outcomes = []
    for _ in range(3):
        outcomes.append(r.failed(sh, ShardFailed("boom", RuntimeError("boom"))))
        clock.t += 60
        r.due()
    assert outcomes == [True, True, False] and sh.attempts == 3 and not r


def test_a_failure_that_says_it_is_final_is_not_tried_again():
    r = ShardRetries(RetryPolicy(attempts=5), clock=Clock())
    for cause in (UsageError("no such bucket"), SourceChanged("etag changed")):
        sh = _shard()
        assert not r.failed(sh, ShardFailed(str(cause), cause))
        assert sh.attempts == 1
    assert not r


def test_due_shards_leave_in_the_order_they_fell_due():
    clock = Clock()
    r = ShardRetries(RetryPolicy(attempts=5, base=0.0), clock=clock)
    a, b = Shard("a", [], 1), Shard("b", [], 1)
    r.failed(a, WorkerLost("x"))
    r.failed(b, WorkerLost("x"))
    assert [r.due(), r.due(), r.due()] == [a, b, None]
