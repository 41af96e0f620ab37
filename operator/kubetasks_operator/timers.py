"""Due times by key, in a heap with lazy deletion: the wake-ups of the scheduler's runs and
of the schedule keeper's TaskSchedules. Pure data; no I/O."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DueTimes(Generic[K]):
    """One due time per key; setting a key again supersedes its earlier time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, K]] = []
        self._at: dict[K, float] = {}

    def at(self, key: K) -> float | None:
        return self._at.get(key)

    def put(self, key: K, at: float) -> None:
        if self._at.get(key) == at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))

    def clear(self, key: K) -> None:
        self._at.pop(key, None)

    def next(self) -> float | None:
        """The earliest due time, superseded entries dropped on the way."""
        while self._heap and self._at.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> set[K]:
        """The keys due at ``now``, removed."""
        due: set[K] = set()
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self._at.get(key) == at:
                del self._at[key]
                due.add(key)
        return due
