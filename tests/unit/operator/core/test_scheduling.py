"""Pure scheduling: limits, priority order, fairness between concurrency keys."""

from __future__ import annotations

from collections import Counter

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
    plan = plan_starts(runs, Usage({Q: 2}, {(Q, None): 2}),
                       {Q: QueueConfig("q", concurrency_limit=5)})
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


def test_the_limit_applies_to_each_key_on_its_own() -> None:
    # The spec's example: limit 1 with concurrencyKey = user id: one run per user at once.
    runs = [cand(f"{user}{i}", i, user) for user in ("alice", "bob", "carol") for i in (0, 1)]
    plan = plan_starts(runs, no_usage(), {Q: QueueConfig("q", concurrency_limit=1)})
    assert sorted(c.name for c in plan) == ["alice0", "bob0", "carol0"]


def test_keys_count_their_own_running_runs() -> None:
    runs = [cand(f"a{i}", i, "A") for i in range(5)] + [cand(f"b{i}", 10 + i, "B")
                                                       for i in range(5)]
    usage = Usage({Q: 1}, {(Q, "A"): 1})
    plan = plan_starts(runs, usage, {Q: QueueConfig("q", concurrency_limit=2)})
    names = [c.name for c in plan]
    assert sorted(n for n in names if n.startswith("a")) == ["a0"]
    assert sorted(n for n in names if n.startswith("b")) == ["b0", "b1"]


def test_runs_without_a_key_share_one_lane_of_the_limit() -> None:
    runs = [cand(f"n{i}", i) for i in range(4)] + [cand("k0", 0.5, "K")]
    usage = Usage({Q: 3}, {(Q, None): 1, (Q, "K"): 2})
    plan = plan_starts(runs, usage, {Q: QueueConfig("q", concurrency_limit=2)})
    # The keyless lane has 1 of 2 taken; key K is full; keyed runs do not use keyless room.
    assert [c.name for c in plan] == ["n0"]


def test_the_total_cap_binds_over_all_keys_of_the_queue() -> None:
    runs = [cand(f"{k}{i}", i, k) for k in "ABCDE" for i in range(3)]
    config = QueueConfig("q", concurrency_limit=2, total_limit=4)
    usage = Usage({Q: 1}, {(Q, "A"): 1})
    plan = plan_starts(runs, usage, {Q: config})
    assert len(plan) == 3
    # Keys take turns under the cap: each key gets one before any gets a second.
    assert len({c.concurrency_key for c in plan}) == 3


def test_the_namespace_cap_binds_over_every_queue() -> None:
    runs = [cand(f"x{i}", i, queue="one") for i in range(5)]
    runs += [cand(f"y{i}", i + 0.5, queue="two") for i in range(5)]
    runs += [Candidate("other", "z0", "one", None, 0)]  # another namespace: its own cap
    usage = Usage({(NS, "one"): 1}, {((NS, "one"), None): 1}, {NS: 1})
    plan = plan_starts(runs, usage, {}, namespace_limits={NS: 4})
    mine = [c.name for c in plan if c.namespace == NS]
    assert len(mine) == 3
    # Lanes take turns across queues: both queues get a start.
    assert {n[0] for n in mine} == {"x", "y"}
    assert [c.name for c in plan if c.namespace == "other"] == ["z0"]


def test_a_full_namespace_starts_nothing() -> None:
    runs = [cand("a", 1)]
    assert plan_starts(runs, Usage({}, {}, {NS: 3}), {}, namespace_limits={NS: 3}) == []


def test_every_limit_together_the_tightest_binds() -> None:
    runs = [cand(f"{k}{i}", i, k, queue=q) for q in ("p", "r") for k in "AB" for i in range(5)]
    queues = {(NS, "p"): QueueConfig("p", concurrency_limit=3, total_limit=4),
              (NS, "r"): QueueConfig("r", concurrency_limit=1)}
    plan = plan_starts(runs, no_usage(), queues, namespace_limits={NS: 5})
    per_queue = Counter(c.queue for c in plan)
    per_lane = Counter((c.queue, c.concurrency_key) for c in plan)
    assert sum(per_queue.values()) == 5  # the namespace cap
    assert per_queue["p"] <= 4 and all(n <= 3 for (q, _), n in per_lane.items() if q == "p")
    assert all(n <= 1 for (q, _), n in per_lane.items() if q == "r")
    assert per_queue["r"] == 2  # r's two keys were not starved by p's wider limits


def test_under_a_cap_a_late_key_starts_at_the_next_free_slot() -> None:
    queues = {Q: QueueConfig("q", concurrency_limit=10, total_limit=2)}
    last_served: dict[tuple[tuple[str, str], str | None], int] = {}
    waiting = [cand(f"big{i}", i, "big") for i in range(50)]
    turn = 0

    def serve(plan: list[Candidate]) -> None:
        nonlocal turn, waiting
        for chosen in plan:
            turn += 1
            last_served[chosen.lane] = turn
        waiting = [c for c in waiting if c not in plan]

    serve(plan_starts(waiting, no_usage(), queues, last_served))  # both slots to "big"
    waiting.append(cand("late0", 100, "late"))  # enqueued last, one run
    plan = plan_starts(waiting, Usage({Q: 1}, {(Q, "big"): 1}), queues, last_served)
    assert [c.name for c in plan] == ["late0"]


def test_a_limit_without_a_key_behaves_as_before() -> None:
    runs = [cand(f"a{i}", i) for i in range(5)]
    plan = plan_starts(runs, no_usage(), {Q: QueueConfig("q", 3)})
    assert [c.name for c in plan] == ["a0", "a1", "a2"]


def test_a_key_with_one_run_is_not_starved_by_a_key_with_a_thousand() -> None:
    big = [cand(f"big{i}", i, "big") for i in range(1000)]
    small = [cand("small0", 500.5, "small")]
    queues = {Q: QueueConfig("q", total_limit=1)}
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
    usage = Usage({(NS, "one"): 1}, {((NS, "one"), None): 1})
    assert [c.name for c in plan_starts(runs, usage, queues)] == ["y"]
