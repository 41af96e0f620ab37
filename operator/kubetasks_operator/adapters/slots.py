"""Queue slots in Redis: one set of run ids per lane (a queue's concurrency key, or its runs
without a key), per queue and per namespace.

Taking a slot is one Lua script that checks every limit that applies (the lane's, the
queue's total cap, the namespace's cap) and adds the run to all three sets, so no limit is
exceeded even if two decisions race. Releasing is an idempotent removal. A marker key tells
the script whether the sets are trustworthy: after a FLUSHALL or a Redis restart it is gone,
the script refuses with ``NEEDS_REBUILD``, and the operator rebuilds the sets from what really
runs (Jobs and Pods) before it starts anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from redis.asyncio import Redis

PREFIX = "kubetasks:slots"
EPOCH_KEY = f"{PREFIX}:epoch"

# KEYS[1] epoch marker, KEYS[2] lane set, KEYS[3] queue set, KEYS[4] namespace set
# ARGV[1] run id, ARGV[2..4] the limits of those three sets, in that order (-1: none)
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local run = ARGV[1]
local held = redis.call('SISMEMBER', KEYS[2], run) == 1
  or redis.call('SISMEMBER', KEYS[3], run) == 1
if not held then
  for i = 2, 4 do
    local limit = tonumber(ARGV[i])
    if limit >= 0 and redis.call('SCARD', KEYS[i]) >= limit then return 0 end
  end
end
for i = 2, 4 do redis.call('SADD', KEYS[i], run) end
return 1
"""

_RELEASE = """
for i = 1, 3 do redis.call('SREM', KEYS[i], ARGV[1]) end
return 1
"""


class Grant(Enum):
    GRANTED = 1
    FULL = 0
    NEEDS_REBUILD = -1


@dataclass(frozen=True)
class SlotId:
    """Where one run's slot lives."""

    namespace: str
    queue: str
    concurrency_key: str | None

    def queue_set(self) -> str:
        return f"{PREFIX}:q:{self.namespace}/{self.queue}"

    def lane_set(self) -> str:
        # A digest: keys are any text. "-" (no hex digit) is the lane of the keyless runs.
        lane = "-" if self.concurrency_key is None else hashlib.sha256(
            self.concurrency_key.encode()).hexdigest()[:32]
        return f"{PREFIX}:k:{self.namespace}/{self.queue}/{lane}"

    def namespace_set(self) -> str:
        return f"{PREFIX}:n:{self.namespace}"

    def sets(self) -> list[str]:
        return [self.lane_set(), self.queue_set(), self.namespace_set()]


@dataclass(frozen=True)
class SlotLimits:
    """The limits a slot is taken under (None: no limit)."""

    lane: int | None = None  # the queue's concurrencyLimit, for this key (or keyless lane)
    queue: int | None = None  # the TaskQueue's totalConcurrencyLimit
    namespace: int | None = None  # the operator's namespace limit


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class SlotStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, run_id: str, slot: SlotId, limits: SlotLimits) -> Grant:
        result = await self._acquire(
            keys=[EPOCH_KEY, *slot.sets()],
            args=[run_id, _limit(limits.lane), _limit(limits.queue),
                  _limit(limits.namespace)],
        )
        return Grant(int(result))

    async def release(self, run_id: str, slot: SlotId) -> None:
        await self._release(keys=slot.sets(), args=[run_id])

    async def rebuild(self, holders: Mapping[str, SlotId]) -> None:
        """Make the sets say exactly who holds a slot, from the API's truth."""
        stale: list[Any] = [key async for key in self.redis.scan_iter(f"{PREFIX}:[qkn]:*")]
        async with self.redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.delete(*stale)
            for run_id, slot in holders.items():
                for name in slot.sets():
                    pipe.sadd(name, run_id)
            pipe.set(EPOCH_KEY, "1")
            await pipe.execute()

    async def members(self, slots: Iterable[SlotId]) -> dict[str, set[str]]:
        """The run ids in each queue set (for repair and tests)."""
        out: dict[str, set[str]] = {}
        for slot in slots:
            raw = await self.redis.smembers(slot.queue_set())
            out[slot.queue_set()] = {m.decode() if isinstance(m, bytes) else m for m in raw}
        return out

    async def healthy(self) -> bool:
        return bool(await self.redis.exists(EPOCH_KEY))
