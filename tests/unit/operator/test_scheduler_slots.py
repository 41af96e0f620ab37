"""The scheduler's slot bookkeeping when a write fails, with fake Kubernetes and Redis."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubetasks_operator.adapters.slots import Grant, SlotId, SlotLimits
from kubetasks_operator.scheduler import Scheduler
from kubetasks_operator.settings import OperatorSettings
from kubetasks_operator.world import World
from tests.unit.fakes import FakeSlots

T0 = 1_800_000_000.0


class FakeKube:
    def __init__(self, create_error: Exception | None = None,
                 status_error: Exception | None = None) -> None:
        self.create_error = create_error
        self.status_error = status_error
        self.jobs: list[str] = []

    async def create_job(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if self.create_error is not None:
            raise self.create_error
        self.jobs.append(job["metadata"]["name"])
        return {**job, "metadata": {**job["metadata"], "resourceVersion": "2"}}, True

    async def patch_run_status(self, namespace: str, name: str, status: dict[str, Any]
                               ) -> dict[str, Any] | None:
        if self.status_error is not None:
            raise self.status_error
        return None

    async def post_event(self, *args: Any) -> None:
        pass


def one_queued_run() -> World:
    world = World()
    world.put_task({"metadata": {"namespace": "ns", "name": "echo"},
                    "spec": {"image": "img", "entrypoint": "app:run"}})
    world.put_queue({"metadata": {"namespace": "ns", "name": "one"},
                     "spec": {"concurrencyLimit": 1}})
    world.put_run({
        "metadata": {"namespace": "ns", "name": "r1", "uid": "u1", "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"task": "echo", "queue": {"name": "one"}},
    })
    return world


async def start_one(kube: FakeKube) -> tuple[Scheduler, FakeSlots]:
    slots = FakeSlots()
    scheduler = Scheduler(one_queued_run(), kube, slots,  # type: ignore[arg-type]
                          OperatorSettings(), clock=lambda: T0)
    await scheduler.start()
    await scheduler.pass_once()
    await scheduler.drain()
    return scheduler, slots


@pytest.mark.parametrize("error", [
    pytest.param(TimeoutError("read timed out"), id="timeout"),
    pytest.param(ApiException(status=504), id="gateway-timeout"),
])
async def test_a_failed_status_write_after_the_job_was_created_keeps_the_slot(
    error: Exception,
) -> None:
    kube = FakeKube(status_error=error)
    scheduler, slots = await start_one(kube)
    assert kube.jobs == ["r1-1"]  # the attempt runs: its slot must stay taken
    assert "u1" in slots.held
    assert ("ns", "r1") in scheduler.holders


async def test_a_create_that_may_have_happened_keeps_the_slot() -> None:
    _, slots = await start_one(FakeKube(create_error=TimeoutError("timed out")))
    assert "u1" in slots.held


async def test_a_refused_create_gives_the_slot_back() -> None:
    scheduler, slots = await start_one(FakeKube(create_error=ApiException(status=422)))
    assert slots.held == {}
    assert scheduler.holders == {}


class FlakyRedis(FakeSlots):
    """Grants the first slot, then loses the connection (Redis restarting)."""

    async def acquire(self, run_id: str, slot: SlotId, limits: SlotLimits) -> Grant:
        if self.held:
            raise ConnectionError("Connection closed by server.")
        return await super().acquire(run_id, slot, limits)


async def test_a_slot_granted_before_redis_fails_mid_plan_still_starts_its_run() -> None:
    world = World()
    world.put_task({"metadata": {"namespace": "ns", "name": "echo"},
                    "spec": {"image": "img", "entrypoint": "app:run"}})
    for i in (1, 2):
        world.put_run({
            "metadata": {"namespace": "ns", "name": f"r{i}", "uid": f"u{i}", "generation": 1,
                         "resourceVersion": "1",
                         "creationTimestamp": f"2027-01-15T08:00:0{i}Z"},
            "spec": {"task": "echo"},
        })
    kube, slots = FakeKube(), FlakyRedis()
    scheduler = Scheduler(world, kube, slots,  # type: ignore[arg-type]
                          OperatorSettings(), clock=lambda: T0)
    await scheduler.start()
    with pytest.raises(ConnectionError):
        await scheduler.pass_once()
    await scheduler.drain()
    # r1 got its slot before Redis went away: its Job exists, nothing is left half-done;
    # r2 is still waiting for the next pass.
    assert kube.jobs == ["r1-1"]
    assert ("ns", "r2") in scheduler.waiting


async def test_a_finished_run_is_decided_once_not_over_and_over() -> None:
    # A finished run holding no slot: the core's "give the slot back" changes nothing, so
    # it is not carried out, and nothing brings the run back to the next pass.
    world = World()
    world.put_task({"metadata": {"namespace": "ns", "name": "echo"},
                    "spec": {"image": "img", "entrypoint": "app:run"}})
    world.put_run({
        "metadata": {"namespace": "ns", "name": "done", "uid": "u9", "generation": 1,
                     "resourceVersion": "3", "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"task": "echo"},
        "status": {"phase": "Completed", "attempt": 1, "observedGeneration": 1,
                   "attempts": [{"number": 1, "job": "done-1", "exitCode": 0,
                                 "reason": "Succeeded"}]},
    })
    scheduler = Scheduler(world, FakeKube(), FakeSlots(),  # type: ignore[arg-type]
                          OperatorSettings(), clock=lambda: T0)
    await scheduler.start()
    for _ in range(3):
        await scheduler.pass_once()
        await scheduler.drain()
    assert scheduler.decisions == 1
    assert not scheduler.dirty


class QueueStatusKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.queue_status: dict[tuple[str, str], dict[str, Any]] = {}

    async def patch_queue_status(self, namespace: str, name: str, status: dict[str, Any]
                                 ) -> None:
        self.queue_status[(namespace, name)] = status


async def test_queue_status_shows_keys_the_namespace_cap_and_a_retired_field() -> None:
    world = one_queued_run()
    world.put_queue({"metadata": {"namespace": "ns", "name": "legacy"},
                     "spec": {"concurrencyLimit": 10, "concurrencyKeyLimit": 1}})
    kube = QueueStatusKube()
    settings = OperatorSettings.from_env(
        {"KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT": "n*=4"})
    scheduler = Scheduler(world, kube, FakeSlots(), settings,  # type: ignore[arg-type]
                          clock=lambda: T0)
    scheduler.holders = {("ns", "a"): ("ua", SlotId("ns", "one", "user-1")),
                         ("ns", "b"): ("ub", SlotId("ns", "one", "user-2")),
                         ("ns", "c"): ("uc", SlotId("ns", "one", "user-2")),
                         ("ns", "d"): ("ud", SlotId("ns", "legacy", None))}
    await scheduler._write_queue_status()
    one = kube.queue_status[("ns", "one")]
    assert (one["running"], one["activeKeys"]) == (3, 2)
    assert (one["namespaceConcurrencyLimit"], one["namespaceRunning"]) == (4, 4)
    assert one["conditions"] is None
    legacy = kube.queue_status[("ns", "legacy")]
    (deprecated,) = legacy["conditions"]
    assert deprecated["type"] == "Deprecated" and deprecated["reason"] == "ConcurrencyKeyLimit"
    assert "{concurrencyLimit: 1, totalConcurrencyLimit: 10}" in deprecated["message"]
