"""Retry backoff follows Trigger.dev's defaults."""

from __future__ import annotations

import random

from kubetasks_operator.core.backoff import retry_delay
from kubetasks_operator.core.model import RetryPolicy


def test_exponential_without_randomness() -> None:
    policy = RetryPolicy(max_attempts=10, factor=2, min_timeout=1, max_timeout=10,
                         randomize=False)
    rng = random.Random(1)
    assert [retry_delay(policy, n, rng) for n in range(1, 6)] == [1, 2, 4, 8, 10]


def test_randomized_stays_within_one_to_two_times_and_the_cap() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for attempt in range(1, 8):
        base = min(policy.min_timeout * policy.factor ** (attempt - 1), policy.max_timeout)
        for _ in range(50):
            delay = retry_delay(policy, attempt, rng)
            assert base <= delay <= policy.max_timeout or delay == policy.max_timeout
            assert delay <= policy.max_timeout


def test_defaults_match_trigger_dev() -> None:
    assert RetryPolicy() == RetryPolicy(3, 2.0, 1.0, 10.0, True)
