"""Pure scheduling: limits, priority order, fairness between concurrency keys."""

from __future__ import annotations

from kubetasks_operator.core.model import QueueConfig
from kubetasks_operator.core.scheduling import Candidate, Usage, plan_starts

NS = "ns"
Q = (NS, "q")


def cand(name: str, score: float, key: str | None = None, queue: str = "q") -> Candidate:
    return Candidate(NS, name, queue, key, score)


def no_usage() -> Usage:
    return Usage({}, {})


def test_queue_limit_caps_starts_and_counts_running() -> None:
    runs = [cand(f"r{i}", i) for i in range(10)]
    plan = plan_starts(runs, Usage({Q: 2}, {}), {Q: QueueConfig("q", concurrency_limit=5)})
    assert [c.name for c in plan] == ["r0", "r1", "r2"]


def test_unlimited_queue_starts_everything_in_score_order() -> None:
    runs = [cand("late", 5), cand("early", 1), cand("mid", 3)]
    assert [c.name for c in plan_starts(runs, no_usage(), {})] == ["early", "mid", "late"]


def test_priority_lowers_the_score() -> None:
    # enqueued at 100 with priority 30 (score 70) beats one enqueued at 80 (score 80)
    runs = [cand("old", 80), cand("prioritized", 100 - 30)]
    plan = plan_starts(runs, no_usage(), {Q: QueueConfig("q", concurrency_limit=1)})
    assert [c.name for c in plan] == ["prioritized"]


def test_paused_queue_starts_nothing() -> None:
    plan = plan_starts([cand("a", 1)], no_usage(), {Q: QueueConfig("q", 5, paused=True)})
    assert plan == []


def test_key_limit_caps_each_key_inside_the_queue() -> None:
    runs = [cand(f"a{i}", i, "A") for i in range(5)]
    runs += [cand(f"b{i}", 10 + i, "B") for i in range(5)]
    usage = Usage({Q: 1}, {(Q, "A"): 1})
    plan = plan_starts(runs, usage, {Q: QueueConfig("q", 10, concurrency_key_limit=2)})
    names = [c.name for c in plan]
    assert sorted(n for n in names if n.startswith("a")) == ["a0"]
    assert sorted(n for n in names if n.startswith("b")) == ["b0", "b1"]


def test_key_limit_defaults_to_the_queue_limit() -> None:
    runs = [cand(f"a{i}", i, "A") for i in range(5)]
    plan = plan_starts(runs, no_usage(), {Q: QueueConfig("q", 3)})
    assert len(plan) == 3


def test_a_key_with_one_run_is_not_starved_by_a_key_with_a_thousand() -> None:
    big = [cand(f"big{i}", i, "big") for i in range(1000)]
    small = [cand("small0", 500.5, "small")]
    queues = {Q: QueueConfig("q", concurrency_limit=1)}
    # Slots free one at a time; the caller records which key it served.
    last_served: dict[tuple[tuple[str, str], str | None], int] = {}
    waiting = big + small
    started: list[str] = []
    for turn in range(3):
        plan = plan_starts(waiting, no_usage(), queues, last_served)
        assert len(plan) == 1
        chosen = plan[0]
        started.append(chosen.name)
        last_served[(Q, chosen.concurrency_key)] = turn
        waiting = [c for c in waiting if c is not chosen]
    assert "small0" in started[:2]


def test_queues_are_independent() -> None:
    runs = [cand("x", 1, queue="one"), cand("y", 2, queue="two")]
    queues = {(NS, "one"): QueueConfig("one", 1), (NS, "two"): QueueConfig("two", 1)}
    usage = Usage({(NS, "one"): 1}, {})
    assert [c.name for c in plan_starts(runs, usage, queues)] == ["y"]
