"""TaskSchedules on the real control plane, with every-minute crons (these tests wait for
real minute boundaries, so each one sets several schedules going at once).

Judged from the API: the TaskRuns each tick created (by their names and the
``kubetasks.dev/schedule`` label), their payloads and phases, and the schedules' status.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from kubernetes import client

from kubetasks.devcluster.local import OperatorProcess
from tests.cluster.helpers import GROUP, VERSION, create, custom, make_task, phase, wait_until

pytestmark = pytest.mark.cluster

TICK_ENTRYPOINT = "tests.cluster.tasks:tick"
EVERY_MINUTE = "* * * * *"


def make_schedule(api: client.ApiClient, namespace: str, name: str, **spec: Any
                  ) -> dict[str, Any]:
    return create(api, namespace, "taskschedules", {
        "kind": "TaskSchedule", "metadata": {"name": name},
        "spec": {"task": "tick", "cron": EVERY_MINUTE, **spec},
    })


def get_schedule(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskschedules", name)
    return result


def runs_of(api: client.ApiClient, namespace: str, schedule: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns",
        label_selector=f"kubetasks.dev/schedule={schedule}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def minute_name(schedule: str, tick: dt.datetime) -> str:
    return f"{schedule}-{tick.strftime('%Y%m%d%H%M')}"


def next_minute(after: float) -> dt.datetime:
    moment = dt.datetime.fromtimestamp(after, dt.UTC).replace(second=0, microsecond=0)
    return moment + dt.timedelta(minutes=1)


def rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in (obj.get("status") or {}).get("conditions") or []
             if c["type"] == type_]
    assert found, f"no {type_} condition in {obj.get('status')}"
    return found[0]


def start_schedules_early_in_a_minute() -> float:
    """Wait, if needed, so that the schedules are created in the first 40 s of a minute:
    their first tick is then at least 20 s away, well after the operator has seen them."""
    now = time.time()
    if now % 60 > 40:
        sleep_until(now - now % 60 + 61)
    return time.time()


@pytest.mark.timeout(420)
def test_ticks_make_one_run_each_and_every_policy_holds(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    kubectl: Any,
) -> None:
    make_task(kube_api, namespace, "tick", entrypoint=TICK_ENTRYPOINT)
    created = start_schedules_early_in_a_minute()
    first, second = next_minute(created), next_minute(created) + dt.timedelta(minutes=1)
    make_schedule(kube_api, namespace, "allow", timezone="Europe/Paris", externalID="user-1",
                  tags=["nightly"], metadata={"sleep": 0}, maxAttempts=2)
    make_schedule(kube_api, namespace, "forbid", concurrencyPolicy="Forbid",
                  metadata={"sleep": 300})
    make_schedule(kube_api, namespace, "replace", concurrencyPolicy="Replace",
                  metadata={"sleep": 300})
    make_schedule(kube_api, namespace, "paused", metadata={"sleep": 0})

    # Before any tick: the status says what comes, in UTC and in English.
    allow = wait_until(lambda: (get_schedule(kube_api, namespace, "allow").get("status")
                                or {}).get("upcoming") and get_schedule(kube_api, namespace,
                                                                        "allow"),
                       timeout=20, what="the schedule's status")
    assert allow["status"]["nextScheduleTime"] == rfc3339(first)
    assert allow["status"]["upcoming"] == [
        rfc3339(first + dt.timedelta(minutes=i)) for i in range(5)]
    assert allow["status"]["description"] == "Every minute, every hour, every day"
    assert allow["status"]["timezone"] == "Europe/Paris"
    assert condition(allow, "Ready")["status"] == "True"
    assert runs_of(kube_api, namespace, "allow") == []

    # The first tick: one run per schedule, named after the tick.
    wait_until(lambda: all(runs_of(kube_api, namespace, name)
                           for name in ("allow", "forbid", "replace", "paused")),
               timeout=first.timestamp() - time.time() + 20, what="the first tick's runs")
    custom(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskschedules", "paused", {"spec": {"active": False}})
    for name in ("allow", "forbid", "replace", "paused"):
        assert [r["metadata"]["name"] for r in runs_of(kube_api, namespace, name)] == [
            minute_name(name, first)], name

    # The second tick, and a few seconds for its writes.
    sleep_until(second.timestamp() + 8)
    wait_until(lambda: len(runs_of(kube_api, namespace, "allow")) == 2, timeout=20,
               what="the second tick's run")

    allow_runs = runs_of(kube_api, namespace, "allow")
    assert [r["metadata"]["name"] for r in allow_runs] == [
        minute_name("allow", first), minute_name("allow", second)]
    for run, tick, previous in ((allow_runs[0], first, None), (allow_runs[1], second, first)):
        spec = run["spec"]
        assert spec["payload"] == {
            "type": "IMPERATIVE",
            "timestamp": rfc3339(tick),
            "last_timestamp": rfc3339(previous) if previous else None,
            "timezone": "Europe/Paris",
            "schedule_id": f"{namespace}/allow",
            "external_id": "user-1",
            "upcoming": [rfc3339(tick + dt.timedelta(minutes=i)) for i in range(1, 6)],
        }
        assert spec["tags"] == ["nightly"] and spec["maxAttempts"] == 2
        assert run["metadata"]["labels"]["kubetasks.dev/schedule"] == "allow"
        assert run["metadata"]["annotations"]["kubetasks.dev/schedule-time"] == rfc3339(tick)
    # The task ran and returned its payload.
    done = wait_until(
        lambda: all(phase(r) == "Completed" for r in runs_of(kube_api, namespace, "allow"))
        and runs_of(kube_api, namespace, "allow"), timeout=60, what="allow's runs complete")
    output = done[1]["status"]["output"]
    assert output["typed"] == "ScheduledPayload" and output["aware"] is True
    assert output["timestamp"] == rfc3339(second)
    assert output["last_timestamp"] == rfc3339(first)

    # Forbid: the first run still executes, so the second tick made none, and says why.
    forbid_runs = runs_of(kube_api, namespace, "forbid")
    assert [r["metadata"]["name"] for r in forbid_runs] == [minute_name("forbid", first)]
    assert phase(forbid_runs[0]) == "Executing"
    forbid = get_schedule(kube_api, namespace, "forbid")
    skipped = condition(forbid, "Skipped")
    assert skipped["status"] == "True" and skipped["reason"] == "ConcurrencyPolicyForbid"
    assert minute_name("forbid", first) in skipped["message"]
    assert forbid["status"]["lastScheduleTime"] == rfc3339(second)

    # Replace: the first run is canceled, the second one runs.
    replace_runs = runs_of(kube_api, namespace, "replace")
    assert [r["metadata"]["name"] for r in replace_runs] == [
        minute_name("replace", first), minute_name("replace", second)]
    assert replace_runs[0]["spec"].get("cancel") is True
    wait_until(lambda: phase(runs_of(kube_api, namespace, "replace")[0]) == "Canceled",
               timeout=30, what="the replaced run to be canceled")
    assert phase(runs_of(kube_api, namespace, "replace")[1]) in {"Queued", "Executing"}

    # Deactivated after its first run: no second one, and the status says so.
    paused = get_schedule(kube_api, namespace, "paused")
    assert len(runs_of(kube_api, namespace, "paused")) == 1
    ready = condition(paused, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "Inactive"
    assert "nextScheduleTime" not in paused["status"]

    # kubectl shows the schedules with their columns.
    table = kubectl("get", "taskschedules", "-n", namespace)
    header = table.splitlines()[0].split()
    assert header[:6] == ["NAME", "TASK", "CRON", "TIMEZONE", "ACTIVE", "LAST"], table
    assert "Europe/Paris" in table


@pytest.mark.timeout(420)
def test_operator_killed_around_a_tick_still_makes_exactly_one_run(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "tick", entrypoint=TICK_ENTRYPOINT)
    start_schedules_early_in_a_minute()
    make_schedule(kube_api, namespace, "every", metadata={"sleep": 0})
    # A tick more than a second late is past this one's deadline: skipped, never run late.
    make_schedule(kube_api, namespace, "strict", metadata={"sleep": 0},
                  startingDeadlineSeconds=1)
    wait_until(lambda: (get_schedule(kube_api, namespace, "every").get("status") or {})
               .get("nextScheduleTime"), timeout=20, what="the schedule's status")

    # Killed 2 s before a tick, back 4 s after it: the tick is caught up, once.
    first = next_minute(time.time())
    sleep_until(first.timestamp() - 2)
    try:
        operator.kill()
        sleep_until(first.timestamp() + 4)
    finally:
        operator.start()
    wait_until(lambda: runs_of(kube_api, namespace, "every"), timeout=30,
               what="the caught-up run")
    assert [r["metadata"]["name"] for r in runs_of(kube_api, namespace, "every")] == [
        minute_name("every", first)]
    strict = wait_until(
        lambda: (s := get_schedule(kube_api, namespace, "strict"))["status"].get(
            "lastScheduleTime") == rfc3339(first) and s, timeout=30,
        what="the strict schedule to pass over the late tick")
    assert runs_of(kube_api, namespace, "strict") == []
    assert condition(strict, "Skipped")["reason"] == "MissedStartingDeadline"
    # From here on a restart may make it a few seconds late: give it room.
    custom(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskschedules", "strict",
        {"spec": {"startingDeadlineSeconds": 60}})

    # Killed the moment the next tick's run appears (its status write may not be done):
    # the restarted operator finds the run and creates no second one.
    second = first + dt.timedelta(minutes=1)
    sleep_until(second.timestamp() - 1)
    deadline = time.monotonic() + 30
    while len(runs_of(kube_api, namespace, "every")) < 2:
        assert time.monotonic() < deadline, "the second tick made no run"
        time.sleep(0.02)
    try:
        operator.kill()
    finally:
        operator.start()
    every = wait_until(
        lambda: (s := get_schedule(kube_api, namespace, "every"))["status"].get(
            "lastScheduleTime") == rfc3339(second) and s, timeout=30,
        what="lastScheduleTime to reach the second tick")
    time.sleep(3)  # time for a wrong second create to show
    names = [r["metadata"]["name"] for r in runs_of(kube_api, namespace, "every")]
    assert names == [minute_name("every", first), minute_name("every", second)]
    assert every["status"]["lastRun"] == minute_name("every", second)
    # The strict schedule ran its on-time tick.
    assert [r["metadata"]["name"] for r in runs_of(kube_api, namespace, "strict")] == [
        minute_name("strict", second)]
