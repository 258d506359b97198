"""engine/retry.py: the one retry loop, under the one policy (pure, fast)."""

from __future__ import annotations

import random
import threading

import pytest

from trunkline.engine.retry import RetryPolicy, retrying
from trunkline.errors import ConnectionClosed, SourceChanged, StoreError

FAST = RetryPolicy(attempts=4, base=0.0001, cap=0.001)


def test_retries_what_may_succeed_then_returns():
    tries = []

    def flaky():
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionClosed("reset")
        return "ok"

    seen = []
    assert retrying(flaky, FAST, on_error=lambda e, n, again: seen.append((n, again))) == "ok"
    assert seen == [(1, True), (2, True)]


def test_gives_up_after_the_budget_with_the_last_failure():
    def always():
        raise StoreError(503, "SlowDown", "later")

    seen = []
    with pytest.raises(StoreError):
        retrying(always, FAST, on_error=lambda e, n, again: seen.append((n, again)))
    assert seen[-1] == (4, False) and len(seen) == 4


def test_never_retries_what_cannot_change():
    calls = []

    def changed():
        calls.append(1)
        raise SourceChanged("overwritten")

    with pytest.raises(SourceChanged):
        retrying(changed, FAST)
    assert len(calls) == 1


def test_a_stop_ends_the_wait():
    stop = threading.Event()
    stop.set()
    calls = []

    def failing():
        calls.append(1)
        raise ConnectionClosed("reset")

    with pytest.raises(ConnectionClosed):
        retrying(failing, RetryPolicy(attempts=8, base=5, cap=5), stop=stop)
    assert len(calls) == 1


def test_policy_for_retries_and_full_jitter_bounds():
    assert RetryPolicy.for_retries(0).attempts == 1
    assert RetryPolicy.for_retries(7).attempts == 8
    rng = random.Random(1)
    p = RetryPolicy()
    assert all(0 <= p.delay(a, rng) <= min(p.cap, p.base * 2 ** a) for a in range(1, 12))
