"""Retry backoff: exponential, capped, optionally randomized (Trigger.dev's scheme)."""

from __future__ import annotations

import random

from kubetasks_operator.core.model import RetryPolicy


def retry_delay(policy: RetryPolicy, failed_attempt: int, rng: random.Random) -> float:
    """Seconds to wait after attempt ``failed_attempt`` (1-based) failed.

    ``min_timeout * factor ** (n - 1)``, times a random factor in [1, 2) when randomized,
    never above ``max_timeout``.
    """
    base = policy.min_timeout * policy.factor ** max(failed_attempt - 1, 0)
    if policy.randomize:
        base *= 1.0 + rng.random()
    return float(min(max(base, 0.0), policy.max_timeout))
