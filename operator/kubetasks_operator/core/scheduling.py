"""Which queued runs may start now: priority order inside a lane, round-robin between lanes
so that no concurrency key starves another, and every limit respected.

A *lane* is one concurrency key of one queue (the runs without a key share one lane of their
own). Three limits apply, each only when set:

- the queue's ``concurrencyLimit``, to each lane on its own (Trigger.dev: a concurrency key
  makes one queue per key value, each with the queue's limit);
- the TaskQueue's ``totalConcurrencyLimit``, to all lanes of the queue together;
- the operator's namespace limit, to every queue of the namespace together.

Pure: the caller passes in who is running and who waits; the Redis slot script still has the
last word (it checks and takes all three atomically).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kubetasks_operator.core.model import QueueConfig

QueueId = tuple[str, str]  # (namespace, queue name)
KeyId = tuple[QueueId, str | None]  # a lane: (queue, concurrency key or None)


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

    @property
    def lane(self) -> KeyId:
        return (self.queue_id, self.concurrency_key)


@dataclass(frozen=True, slots=True)
class Usage:
    """Slots held now: per queue, per lane (queue and key; None for the keyless runs) and per
    namespace."""

    per_queue: Mapping[QueueId, int]
    per_key: Mapping[KeyId, int]
    per_namespace: Mapping[str, int] = field(default_factory=dict)


def _limit(value: int | None) -> float:
    return float("inf") if value is None else float(value)


def plan_starts(
    candidates: Iterable[Candidate],
    usage: Usage,
    queues: Mapping[QueueId, QueueConfig],
    last_served: Mapping[KeyId, int] | None = None,
    namespace_limits: Mapping[str, int] | None = None,
) -> list[Candidate]:
    """The runs to start, in the order to try them.

    Lanes take turns across a namespace: each round gives one slot to every lane that still
    has a waiting run and room under all its limits. Lanes served least recently go first
    (``last_served`` holds a counter of when each lane last got a slot), so when a queue's
    or the namespace's cap binds, a key with one waiting run is not stuck behind a key with a
    thousand, even when slots free up one at a time.
    """
    served = last_served or {}
    ns_limits = namespace_limits or {}
    by_namespace: dict[str, dict[KeyId, list[Candidate]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for candidate in candidates:
        by_namespace[candidate.namespace][candidate.lane].append(candidate)

    plan: list[Candidate] = []
    for namespace, lanes in by_namespace.items():
        ns_free = _limit(ns_limits.get(namespace)) - usage.per_namespace.get(namespace, 0)
        plan += _plan_namespace(lanes, ns_free, usage, queues, served)
    return plan


def _plan_namespace(
    lanes: Mapping[KeyId, list[Candidate]],
    ns_free: float,
    usage: Usage,
    queues: Mapping[QueueId, QueueConfig],
    served: Mapping[KeyId, int],
) -> list[Candidate]:
    """Round-robin over one namespace's lanes, least recently served first."""
    if ns_free <= 0:
        return []
    queue_free: dict[QueueId, float] = {}
    lane_free: dict[KeyId, float] = {}
    waiting: dict[KeyId, list[Candidate]] = {}
    for lane, runs in lanes.items():
        queue_id = lane[0]
        config = queues.get(queue_id) or QueueConfig(name=queue_id[1])
        if config.paused:
            continue
        if queue_id not in queue_free:
            queue_free[queue_id] = (_limit(config.total_limit)
                                    - usage.per_queue.get(queue_id, 0))
        free = _limit(config.concurrency_limit) - usage.per_key.get(lane, 0)
        if free <= 0 or queue_free[queue_id] <= 0:
            continue  # full: its runs need not even be sorted (most lanes, most passes)
        lane_free[lane] = free
        waiting[lane] = sorted(runs, key=lambda c: (c.score, c.name))
    heads = dict.fromkeys(waiting, 0)

    def open_lane(lane: KeyId) -> bool:
        return (heads[lane] < len(waiting[lane]) and lane_free[lane] > 0
                and queue_free[lane[0]] > 0)

    plan: list[Candidate] = []
    active = [lane for lane in waiting if open_lane(lane)]
    while ns_free > 0 and active:
        active.sort(
            key=lambda lane: (
                served.get(lane, -1),
                waiting[lane][heads[lane]].score,
                waiting[lane][heads[lane]].name,
            )
        )
        for lane in active:
            if ns_free <= 0:
                break
            if queue_free[lane[0]] <= 0:
                continue  # an earlier lane of this round filled the queue's cap
            plan.append(waiting[lane][heads[lane]])
            heads[lane] += 1
            lane_free[lane] -= 1
            queue_free[lane[0]] -= 1
            ns_free -= 1
        active = [lane for lane in active if open_lane(lane)]
    return plan
