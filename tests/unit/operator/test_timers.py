"""Due times by key: a newer time supersedes an older one, cleared keys never come due."""

from __future__ import annotations

from kubetasks_operator.timers import DueTimes


def test_due_times_supersede_clear_and_pop_in_order() -> None:
    timers: DueTimes[str] = DueTimes()
    timers.put("a", 10.0)
    timers.put("b", 5.0)
    timers.put("a", 3.0)  # supersedes 10
    timers.put("c", 7.0)
    timers.clear("c")
    assert timers.next() == 3.0 and timers.at("a") == 3.0
    assert timers.pop_due(5.0) == {"a", "b"}
    assert timers.pop_due(100.0) == set()  # a's old 10 and the cleared c never come due
    assert timers.next() is None and timers.at("a") is None
