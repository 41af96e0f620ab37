"""The dashboard's store: watch events in order, stale versions ignored, a relist deletes
what it no longer holds, subscribers get what changed since their last sequence."""

from __future__ import annotations

import time
from typing import Any

from kubetasks.dashboard.cache import Store


def run(name: str, rv: int, phase: str = "Queued", ns: str = "jobs") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(rv),
                         "managedFields": [{"manager": "x"}]},
            "status": {"phase": phase}}


def test_events_are_applied_in_order_and_stale_ones_ignored() -> None:
    store = Store()
    assert store.apply("taskruns", "ADDED", run("a", 1)) is not None
    assert store.apply("taskruns", "MODIFIED", run("a", 3, "Executing")) is not None
    assert store.apply("taskruns", "MODIFIED", run("a", 2, "Queued")) is None
    got = store.get("taskruns", "jobs", "a")
    assert got is not None and got["status"]["phase"] == "Executing"
    assert "managedFields" not in got["metadata"]
    assert store.apply("taskruns", "DELETED", run("a", 4)) is not None
    assert store.get("taskruns", "jobs", "a") is None
    assert store.apply("taskruns", "DELETED", run("a", 5)) is None


def test_a_relist_deletes_what_it_no_longer_holds_in_its_namespace_only() -> None:
    store = Store()
    for name, rv in (("a", 1), ("b", 2)):
        store.apply("taskruns", "ADDED", run(name, rv))
    store.apply("taskruns", "ADDED", run("c", 3, ns="other"))
    changes = store.replace("taskruns", "jobs", [run("b", 4, "Completed")])
    assert {(c.kind, c.key[2]) for c in changes} == {("MODIFIED", "b"), ("DELETED", "a")}
    assert [o["metadata"]["name"] for o in store.of_kind("taskruns")] == ["b", "c"]


def test_subscribers_get_the_changes_after_their_sequence() -> None:
    store = Store(keep_changes=3)
    store.apply("taskruns", "ADDED", run("a", 1))
    seq, changes = store.changed_since(0, timeout=0)
    assert seq == 1 and [c.key[2] for c in changes] == ["a"]
    store.apply("taskruns", "ADDED", run("b", 2))
    seq2, changes = store.changed_since(seq, timeout=0)
    assert seq2 == 2 and [c.key[2] for c in changes] == ["b"]
    assert store.changed_since(seq2, timeout=0.01) == (2, [])
    for i in range(5):
        store.apply("taskruns", "ADDED", run(f"x{i}", 10 + i))
    # Too far behind: every object again.
    _, changes = store.changed_since(seq2, timeout=0)
    assert {c.key[2] for c in changes} == {"a", "b", "x0", "x1", "x2", "x3", "x4"}


def test_an_async_subscriber_is_woken_by_a_watch_thread_and_holds_no_thread() -> None:
    import asyncio
    import threading

    store = Store()

    async def scenario() -> None:
        began = time.monotonic()
        assert await store.next_changes(0, timeout=0.05) == (0, [])  # nothing: times out
        assert time.monotonic() - began >= 0.05 and store._waiters == []
        threads = threading.active_count()
        later = threading.Timer(0.3, store.apply, ("taskruns", "ADDED", run("a", 1)))
        later.start()
        waiting = [asyncio.create_task(store.next_changes(0, timeout=10)) for _ in range(50)]
        await asyncio.sleep(0.1)
        # Fifty pages wait, and no thread more than the Timer's does.
        assert len(store._waiters) == 50 and threading.active_count() == threads + 1
        results = await asyncio.gather(*waiting)
        assert all(seq == 1 and [c.key[2] for c in changes] == ["a"]
                   for seq, changes in results)
        assert time.monotonic() - began < 5 and store._waiters == []
        # Behind already: answered at once.
        assert (await store.next_changes(0, timeout=10))[0] == 1

    asyncio.run(scenario())
