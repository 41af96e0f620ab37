"""``kubetasks.schedules`` against the real API server (no operator needed: these check what
the SDK writes and reads, and what the API server refuses; the ticks themselves are proved
in tests/cluster/operator/test_schedules.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client as k8s

from kubetasks import (
    InvalidScheduleError,
    ScheduleConflictError,
    ScheduleNotFoundError,
    runs,
    schedules,
)
from kubetasks._internal.client import Client
from kubetasks.protocol.deduplication import schedule_name
from tests.cluster.helpers import GROUP, VERSION, create, custom

pytestmark = pytest.mark.cluster


def raw_schedule(kube_api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = custom(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskschedules", name)
    return found


def test_create_retrieve_list_update_activate_and_delete(
        sdk: Client, namespace: str, kube_api: k8s.ApiClient) -> None:
    made = schedules.create("tick", "*/5 9-17 * * mon-fri", timezone="Europe/Paris",
                            external_id="user-1", concurrency_policy="Forbid",
                            starting_deadline="2m", ttl="1h", max_attempts=2,
                            tags=["reports"], metadata={"plan": "pro"})
    assert made.namespace == namespace and made.name.startswith("tick-")
    assert (made.type, made.active, made.description) == (
        "IMPERATIVE", True, "Every 5 minutes, between 09:00 and 17:59, Monday through Friday")
    assert made.next_run is not None and len(made.upcoming) == 5
    stored = raw_schedule(kube_api, namespace, made.name)
    assert stored["metadata"]["labels"] == {"kubetasks.dev/schedule-type": "imperative"}
    assert stored["spec"] == {
        "task": "tick", "cron": "*/5 9-17 * * mon-fri", "timezone": "Europe/Paris",
        "externalID": "user-1", "active": True, "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 120, "ttlSeconds": 3600, "maxAttempts": 2,
        "tags": ["reports"], "metadata": {"plan": "pro"}}
    # Equal but for what the operator writes to the status meanwhile: its conditions, and
    # the next ticks, which move on if a tick passed in between.
    retrieved = schedules.retrieve(made.id)
    assert made.conditions == []
    assert all((c.type, c.status, c.reason) == ("Ready", "True", "Scheduled")
               for c in retrieved.conditions), retrieved.conditions
    assert replace(retrieved, next_run=None, upcoming=[], conditions=[]) == replace(
        made, next_run=None, upcoming=[])
    assert schedules.retrieve(made.name).id == made.id

    other = schedules.create("behave", "0 0 1 * *", active=False)
    assert {s.id for s in schedules.list()} == {made.id, other.id}
    assert [s.id for s in schedules.list(task="tick")] == [made.id]
    assert [s.id for s in schedules.list(active=False)] == [other.id]
    assert [s.id for s in schedules.list(type="declarative")] == []
    assert len(list(schedules.list(type="imperative", limit=1))) == 1

    updated = schedules.update(made.id, cron="0 8 * * *", external_id=None, tags=None,
                               metadata={"plan": "team"})
    assert (updated.cron, updated.external_id, updated.tags) == ("0 8 * * *", None, [])
    spec = raw_schedule(kube_api, namespace, made.name)["spec"]
    assert "externalID" not in spec and "tags" not in spec
    assert (spec["metadata"], spec["timezone"]) == ({"plan": "team"}, "Europe/Paris")

    assert not schedules.deactivate(made.id).active
    assert raw_schedule(kube_api, namespace, made.name)["spec"]["active"] is False
    assert schedules.retrieve(made.id).next_run is None
    assert schedules.activate(made.id).next_run is not None

    # The runs a schedule's ticks made carry its label; runs.list selects them by it.
    for name, labels in ((f"{made.name}-203001010800", {"kubetasks.dev/schedule": made.name}),
                         ("by-hand", {})):
        create(kube_api, namespace, "taskruns", {
            "kind": "TaskRun", "metadata": {"name": name, "labels": labels},
            "spec": {"task": "tick", "payload": None}})
    assert [r.name for r in runs.list(schedule=made.id)] == [f"{made.name}-203001010800"]
    assert [r.name for r in runs.list(schedule=other)] == []

    schedules.delete(made.id)
    with pytest.raises(ScheduleNotFoundError, match=f"TaskSchedule '{made.name}' not found"):
        schedules.retrieve(made.id)
    with pytest.raises(ScheduleNotFoundError):
        schedules.delete(made.id)
    assert [r.name for r in runs.list(schedule=made.name)] == [f"{made.name}-203001010800"]


def test_a_deduplication_key_keeps_one_schedule_also_under_concurrent_creates(
        sdk: Client, namespace: str, kube_api: k8s.ApiClient) -> None:
    first = schedules.create("tick", "0 9 * * *", deduplication_key="user-42 / report",
                             external_id="user-42", tags=["a"])
    assert first.name == schedule_name("user-42 / report")
    second = schedules.create("tick", "0 10 * * *", deduplication_key="user-42 / report",
                              timezone="Asia/Tokyo")
    assert second.id == first.id
    assert (second.cron, second.timezone, second.external_id, second.tags) == (
        "0 10 * * *", "Asia/Tokyo", None, [])

    def make(minute: int) -> str:
        return schedules.create("tick", f"{minute} 3 * * *", deduplication_key="race").id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(make, range(16)))
    assert ids == {f"{namespace}/{schedule_name('race')}"}
    raced = [s for s in schedules.list() if s.deduplication_key == "race"]
    assert len(raced) == 1 and raced[0].cron in {f"{m} 3 * * *" for m in range(16)}
    assert len(list(schedules.list())) == 2

    # The key cannot change under the schedule it names (the API server's rule).
    with pytest.raises(k8s.ApiException) as caught:
        custom(kube_api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskschedules", first.name,
            {"spec": {"deduplicationKey": "other"}})
    assert caught.value.status == 422 and "spec.deduplicationKey is immutable" in (
        caught.value.body or "")
    # A name taken by a schedule of no (or another) key is not silently taken over.
    create(kube_api, namespace, "taskschedules", {
        "kind": "TaskSchedule", "metadata": {"name": schedule_name("squatted")},
        "spec": {"task": "tick", "cron": "0 1 * * *"}})
    with pytest.raises(ScheduleConflictError, match="was not created for deduplication key"):
        schedules.create("tick", "0 9 * * *", deduplication_key="squatted")


@pytest.mark.parametrize(("field", "value", "sdk_message", "api_message"), [
    ("cron", "0 2 * * * *", r"has 6 field\(s\)", "spec.cron must be five fields"),
    ("cron", "*/100 * * * *", "the minute field", "spec.cron must be five fields"),
    ("timezone", "Mars/Olympus_Mons", "is not an IANA time zone name",
     "spec.timezone must be an IANA time zone name"),
])
def test_a_bad_cron_or_timezone_is_refused_by_the_sdk_and_by_the_api_server(
        sdk: Client, namespace: str, kube_api: k8s.ApiClient, field: str, value: str,
        sdk_message: str, api_message: str) -> None:
    spec = {"task": "tick", "cron": "0 2 * * *", field: value}
    with pytest.raises(InvalidScheduleError, match=sdk_message):
        schedules.create(spec.pop("task"), spec.pop("cron"), **spec)  # type: ignore[arg-type]
    assert list(schedules.list()) == []
    # The same value sent raw, past the SDK: the CRD's CEL rule names the field.
    with pytest.raises(k8s.ApiException) as caught:
        create(kube_api, namespace, "taskschedules", {
            "kind": "TaskSchedule", "metadata": {"name": "raw"},
            "spec": {"task": "tick", "cron": "0 2 * * *", field: value}})
    assert caught.value.status == 422
    message = json.loads(caught.value.body or "{}")["message"]
    assert f"spec.{field}" in message and api_message in message, message
