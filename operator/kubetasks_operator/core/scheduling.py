"""Which queued runs may start now: priority order inside a queue, round-robin between
concurrency keys so that no key starves another, and both limits respected.

Pure: the caller passes in who is running and who waits; the Redis slot script still has the
last word (it checks and takes both slots atomically).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubetasks_operator.core.model import QueueConfig

QueueId = tuple[str, str]  # (namespace, queue name)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run that is ready to take a slot."""

    namespace: str
    name: str
    queue: str
    concurrency_key: str | None
    # Lower goes first: the enqueue time minus the priority in seconds.
    score: float

    @property
    def queue_id(self) -> QueueId:
        return (self.namespace, self.queue)


@dataclass(frozen=True, slots=True)
class Usage:
    """Slots held now: per queue and per (queue, concurrency key)."""

    per_queue: Mapping[QueueId, int]
    per_key: Mapping[tuple[QueueId, str], int]


def _limit(value: int | None) -> float:
    return float("inf") if value is None else float(value)


KeyId = tuple[QueueId, str | None]


def plan_starts(
    candidates: Iterable[Candidate],
    usage: Usage,
    queues: Mapping[QueueId, QueueConfig],
    last_served: Mapping[KeyId, int] | None = None,
) -> list[Candidate]:
    """The runs to start, in the order to try them.

    Inside a queue, keys take turns: each round gives one slot to every key that still has
    a waiting run and a free key slot. Keys served least recently go first (``last_served``
    holds a counter of when each key last got a slot), so a key with one waiting run is not
    stuck behind a key with a thousand, even when slots free up one at a time.
    """
    served = last_served or {}
    by_queue: dict[QueueId, dict[str | None, list[Candidate]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for candidate in candidates:
        by_queue[candidate.queue_id][candidate.concurrency_key].append(candidate)

    plan: list[Candidate] = []
    for queue_id, by_key in by_queue.items():
        config = queues.get(queue_id) or QueueConfig(name=queue_id[1])
        if config.paused:
            continue
        free = _limit(config.concurrency_limit) - usage.per_queue.get(queue_id, 0)
        if free <= 0:
            continue
        key_limit = _limit(
            config.concurrency_key_limit
            if config.concurrency_key_limit is not None
            else config.concurrency_limit
        )
        lanes = {key: sorted(runs, key=lambda c: (c.score, c.name)) for key, runs in by_key.items()}
        key_free = {
            key: (key_limit - usage.per_key.get((queue_id, key), 0)) if key is not None
            else float("inf")
            for key in lanes
        }
        heads = {key: 0 for key in lanes}
        while free > 0:
            ready = [
                key for key in lanes if heads[key] < len(lanes[key]) and key_free[key] > 0
            ]
            if not ready:
                break
            ready.sort(
                key=lambda k: (
                    served.get((queue_id, k), -1),
                    lanes[k][heads[k]].score,
                    lanes[k][heads[k]].name,
                )
            )
            for key in ready:
                if free <= 0:
                    break
                plan.append(lanes[key][heads[key]])
                heads[key] += 1
                key_free[key] -= 1
                free -= 1
    return plan
