"""Queue slots in Redis: one set of run ids per queue and per (queue, concurrency key).

Taking a slot is one Lua script that checks both limits and adds the run to both sets, so no
limit is exceeded even if two decisions race. Releasing is an idempotent removal. A marker key
tells the script whether the sets are trustworthy: after a FLUSHALL or a Redis restart it is
gone, the script refuses with ``NEEDS_REBUILD``, and the operator rebuilds the sets from what
really runs (Jobs and Pods) before it starts anything else.
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

# KEYS[1] epoch marker, KEYS[2] queue set, KEYS[3] key set ("" when the run has no key)
# ARGV[1] run id, ARGV[2] queue limit (-1: none), ARGV[3] key limit (-1: none)
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local run = ARGV[1]
local has_key = KEYS[3] ~= ''
if redis.call('SISMEMBER', KEYS[2], run) == 1 then
  if has_key then redis.call('SADD', KEYS[3], run) end
  return 1
end
local limit = tonumber(ARGV[2])
if limit >= 0 and redis.call('SCARD', KEYS[2]) >= limit then return 0 end
if has_key then
  local key_limit = tonumber(ARGV[3])
  if key_limit >= 0 and redis.call('SCARD', KEYS[3]) >= key_limit then return 0 end
end
redis.call('SADD', KEYS[2], run)
if has_key then redis.call('SADD', KEYS[3], run) end
return 1
"""

_RELEASE = """
redis.call('SREM', KEYS[1], ARGV[1])
if KEYS[2] ~= '' then redis.call('SREM', KEYS[2], ARGV[1]) end
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

    def key_set(self) -> str:
        if self.concurrency_key is None:
            return ""
        digest = hashlib.sha256(self.concurrency_key.encode()).hexdigest()[:32]
        return f"{PREFIX}:k:{self.namespace}/{self.queue}/{digest}"


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class SlotStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    async def acquire(
        self, run_id: str, slot: SlotId, limit: int | None, key_limit: int | None
    ) -> Grant:
        result = await self._acquire(
            keys=[EPOCH_KEY, slot.queue_set(), slot.key_set()],
            args=[run_id, _limit(limit), _limit(key_limit)],
        )
        return Grant(int(result))

    async def release(self, run_id: str, slot: SlotId) -> None:
        await self._release(keys=[slot.queue_set(), slot.key_set()], args=[run_id])

    async def rebuild(self, holders: Mapping[str, SlotId]) -> None:
        """Make the sets say exactly who holds a slot, from the API's truth."""
        stale: list[Any] = [key async for key in self.redis.scan_iter(f"{PREFIX}:[qk]:*")]
        async with self.redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.delete(*stale)
            for run_id, slot in holders.items():
                pipe.sadd(slot.queue_set(), run_id)
                if slot.concurrency_key is not None:
                    pipe.sadd(slot.key_set(), run_id)
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
