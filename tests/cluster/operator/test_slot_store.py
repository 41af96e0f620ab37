"""The Redis slot script on a real ``redis-server``: every limit that applies (the lane's, the
queue's total cap, the namespace's cap) is checked and taken in one step, so racing
acquisitions never pass any of them; a repeated grant is idempotent; a release frees all
three; after a flush the script asks for a rebuild, and the rebuild counts every cap.

A database of its own (15), so the session operator's slots in database 0 are untouched.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from kubetasks.devcluster.services import RedisServer
from kubetasks_operator.adapters.slots import Grant, SlotId, SlotLimits, SlotStore

pytestmark = pytest.mark.cluster

DB = 15


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[SlotStore]:
    redis = Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{DB}")
    await redis.flushdb()
    slots = SlotStore(redis)
    await slots.rebuild({})
    try:
        yield slots
    finally:
        await redis.flushdb()
        await redis.aclose()


async def sizes(store: SlotStore, slot: SlotId) -> tuple[int, int, int]:
    lane, queue, namespace = [int(await store.redis.scard(name)) for name in slot.sets()]
    return lane, queue, namespace


async def test_racing_acquisitions_never_pass_any_limit(store: SlotStore) -> None:
    rng = random.Random(7)
    # Two queues of one namespace, five keys each plus keyless runs: lane limit 2, queue
    # "a" capped at 6, the namespace at 9. 400 acquisitions race from 40 coroutines.
    slots = [SlotId("ns", queue, key) for queue in ("a", "b")
             for key in (None, "k1", "k2", "k3", "k4", "k5")]
    caps = {"a": 6, "b": None}
    granted: dict[str, SlotId] = {}

    async def worker(index: int) -> None:
        for i in range(10):
            slot = rng.choice(slots)
            run = f"run-{index}-{i}"
            grant = await store.acquire(run, slot, SlotLimits(2, caps[slot.queue], 9))
            if grant is Grant.GRANTED:
                granted[run] = slot

    await asyncio.gather(*(worker(i) for i in range(40)))
    assert len(granted) == 9  # the namespace cap binds first here
    for slot in slots:
        lane, queue, namespace = await sizes(store, slot)
        assert lane <= 2 and namespace == 9
        if slot.queue == "a":
            assert queue <= 6
    assert sum(1 for s in granted.values() if s.queue == "a") <= 6


async def test_a_repeated_grant_takes_nothing_more_and_release_frees_every_set(
    store: SlotStore,
) -> None:
    slot = SlotId("ns", "q", "user-1")
    limits = SlotLimits(lane=1, queue=1, namespace=1)
    assert await store.acquire("r1", slot, limits) is Grant.GRANTED
    assert await store.acquire("r1", slot, limits) is Grant.GRANTED  # a retried write
    assert await sizes(store, slot) == (1, 1, 1)
    # Each limit alone refuses a second run.
    other_key = SlotId("ns", "q", "user-2")
    assert await store.acquire("r2", other_key, SlotLimits(1, 1, None)) is Grant.FULL
    other_queue = SlotId("ns", "p", None)
    assert await store.acquire("r3", other_queue, SlotLimits(5, None, 1)) is Grant.FULL
    assert await store.acquire("r4", slot, SlotLimits(1, None, None)) is Grant.FULL
    # Without the caps a new key of the same queue gets its own lane.
    assert await store.acquire("r2", other_key, SlotLimits(1, None, None)) is Grant.GRANTED
    await store.release("r1", slot)
    await store.release("r1", slot)  # idempotent
    assert await sizes(store, slot) == (0, 1, 1)  # r2 remains, in queue and namespace
    assert await store.acquire("r3", other_queue, SlotLimits(5, None, 2)) is Grant.GRANTED


async def test_after_a_flush_it_asks_for_a_rebuild_that_counts_every_cap(
    store: SlotStore,
) -> None:
    slot = SlotId("ns", "q", None)
    assert await store.acquire("r1", slot, SlotLimits(None, None, 2)) is Grant.GRANTED
    await store.redis.flushdb()
    assert not await store.healthy()
    assert await store.acquire("r2", slot, SlotLimits(None, None, 2)) is Grant.NEEDS_REBUILD
    # What really runs, from the API: two runs in two queues of the namespace.
    await store.rebuild({"r1": slot, "r9": SlotId("ns", "other", "k")})
    assert await store.healthy()
    assert await store.acquire("r2", slot, SlotLimits(None, None, 2)) is Grant.FULL
    assert await store.acquire("r2", slot, SlotLimits(None, None, 3)) is Grant.GRANTED
    assert await sizes(store, SlotId("ns", "other", "k")) == (1, 1, 3)
