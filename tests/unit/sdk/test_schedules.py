"""Schedules in the SDK, offline: options checked before anything is written (with messages
that name what to change), the names deduplication keys give, declarative schedules on
``@task``, the payload a tick's run receives, a TaskSchedule read back as a Schedule, and
create / update / delete against a Kubernetes API in memory."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kubetasks._internal.client as client_module
from kubetasks import (
    Context,
    CronSchedule,
    InvalidOptionError,
    InvalidScheduleError,
    ScheduleConflictError,
    ScheduledPayload,
    ScheduleNotFoundError,
    TaskDefinitionError,
    runs,
    schedule,
    schedules,
    task,
)
from kubetasks._internal.client import Client, Json, KubeApi
from kubetasks._internal.scheduling import merge_patch
from kubetasks.api.v1alpha1 import TaskSchedule
from kubetasks.errors import ApiError
from kubetasks.options import to_schedule_fields
from kubetasks.protocol import cron
from kubetasks.protocol.deduplication import deduplication_digest, schedule_name
from kubetasks.protocol.payloads import validate_as
from kubetasks.worker.runtime import load_payload

NS = "offline"
NOW = dt.datetime(2030, 3, 30, 12, 0, tzinfo=dt.UTC)  # a Saturday; Paris is UTC+1
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- options ---------------------------------------------------------------------------------


def test_options_become_spec_fields_read_as_trigger_options_are() -> None:
    fields = to_schedule_fields({
        "task": "send-report", "cron": " 0  9 * *  MON-FRI ", "timezone": "Europe/Paris",
        "external_id": "user-42", "active": False, "concurrency_policy": "Forbid",
        "starting_deadline": "2m", "queue": "reports", "concurrency_key": "user-42",
        "ttl": "1h", "max_attempts": 3, "max_duration": 600, "machine": "micro",
        "tags": ["reports", "reports", "daily"], "metadata": {"plan": "pro"},
    })
    spec = TaskSchedule.model_validate({"metadata": {"name": "s"}, "spec": fields})
    assert spec.model_dump(mode="json")["spec"] == {
        "task": "send-report", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris",
        "externalID": "user-42", "active": False, "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 120, "queue": {"name": "reports"},
        "concurrencyKey": "user-42", "ttlSeconds": 3600, "maxAttempts": 3,
        "maxDurationSeconds": 600, "machine": "micro", "tags": ["reports", "daily"],
        "metadata": {"plan": "pro"},
    }
    assert to_schedule_fields({"timezone": None, "tags": None}) == {"timezone": None,
                                                                    "tags": None}


@pytest.mark.parametrize(("options", "message"), [
    ({"cron": "0 25 * * *"}, r"cron '0 25 \* \* \*': Bad hour; use five fields"),
    ({"cron": "*/100 * * * *"}, r"the minute field '\*/100' is not valid"),
    ({"cron": "0 2 * * 01"}, "the day-of-week field '01' is not valid; it takes 0-7, "
                             "SUN-SAT"),
    ({"cron": "@daily"}, "macros such as @daily are not supported"),
    ({"cron": "0 0 30 2 *"}, "cron '0 0 30 2 \\*': Bad day-of-month"),
    ({"timezone": "Mars/Olympus"}, r"timezone 'Mars/Olympus' is not an IANA time zone name"
                                   r".*timezones\(\) lists them"),
    ({"concurrency_policy": "forbid"}, "concurrency_policy 'forbid' is not a policy; use "
                                       "'Allow'"),
    ({"starting_deadline": 0}, "invalid starting_deadline 0 .*between 1 and"),
    ({"task": "Send_Report"}, "task id 'Send_Report' must be a DNS label"),
    ({"cron": None}, "cron cannot be None"),
    ({"active": "yes"}, "active is 'yes'; use True or False"),
    ({"external_id": ""}, "external_id '' must be a string of 1 to 256 characters"),
    ({"machine": "huge"}, "machine 'huge' is not a machine preset; use one of micro"),
    ({"delay": "1h"}, "unknown schedule option.*delay; the options are"),
])
def test_a_bad_option_is_refused_with_what_to_change(options: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        to_schedule_fields(options)


def test_cron_and_timezone_errors_are_invalid_schedule_errors() -> None:
    for options in ({"cron": "61 * * * *"}, {"timezone": "Europe/Pariss"}):
        with pytest.raises(InvalidScheduleError):
            to_schedule_fields(options)


# --- deduplication names ---------------------------------------------------------------------


def test_a_key_names_its_schedule_readably_and_uniquely() -> None:
    name = schedule_name("User 42 / nightly report")
    assert name == f"user-42-nightly-report-{deduplication_digest('User 42 / nightly report')[:16]}"
    assert schedule_name("User 42 / nightly report") == name
    assert schedule_name("user 42 / nightly report") != name  # keys are case-sensitive
    assert schedule_name("ключ").startswith("schedule-")
    assert len(schedule_name("k" * 256)) == 63


@given(st.text(min_size=1, max_size=256))
def test_every_key_gives_a_name_that_fits_a_label(key: str) -> None:
    name = schedule_name(key)
    assert len(name) <= 63 and DNS_LABEL.match(name), name
    assert len(deduplication_digest(key)) == 32


# --- declarative schedules -------------------------------------------------------------------


def test_task_takes_a_cron_string_or_a_schedule_checked_at_the_decorator() -> None:
    @task(id="unit-nightly", cron="0  2 * * *")
    def nightly(payload: ScheduledPayload, ctx: Context) -> None: ...

    @task(id="unit-paris", cron=schedule("30 2 * * *", timezone="Europe/Paris",
                                         concurrency_policy="Forbid",
                                         starting_deadline="10m"))
    def paris(payload: ScheduledPayload, ctx: Context) -> None: ...

    @task(id="unit-unscheduled")
    def plain(payload: Any, ctx: Context) -> None: ...

    assert nightly.schedule == CronSchedule("0 2 * * *")
    assert nightly.schedule.description == "At 02:00, every day"
    assert paris.schedule == CronSchedule("30 2 * * *", "Europe/Paris", "Forbid", 600)
    assert plain.schedule is None
    assert nightly.payload_type is ScheduledPayload


@pytest.mark.parametrize(("cron", "message"), [
    ("0 2 * *", r"task 'unit-bad': cron '0 2 \* \*' has 4 field\(s\), not 5; use five "
                r"fields: minute hour day-of-month month day-of-week"),
    ("0 2 * * * *", r"task 'unit-bad': cron '0 2 \* \* \* \*' has 6 field\(s\), not 5"),
    (42, "task 'unit-bad': cron must be a cron string such as '0 2 \\* \\* \\*'"),
])
def test_a_bad_cron_fails_at_the_decorator(cron: Any, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        task(id="unit-bad", cron=cron)


def test_a_bad_timezone_fails_where_the_schedule_is_made() -> None:
    with pytest.raises(InvalidScheduleError, match="timezone 'Paris'"):
        schedule("0 2 * * *", timezone="Paris")
    with pytest.raises(InvalidOptionError, match="invalid starting_deadline"):
        schedule("0 2 * * *", starting_deadline="soon")


# --- the payload -----------------------------------------------------------------------------


def operator_payload(**changes: Any) -> dict[str, object]:
    """A tick's payload as the operator builds it (``protocol.cron.scheduled_payload``)."""
    tick = dt.datetime(2030, 3, 30, 1, 30, tzinfo=dt.UTC)  # 02:30 in Paris (winter time)
    arguments: dict[str, Any] = dict(
        schedule="jobs/nightly", schedule_type="DECLARATIVE", timestamp=tick,
        last_timestamp=tick - dt.timedelta(days=1), timezone="Europe/Paris",
        external_id="user-42",
        upcoming=cron.ticks_after("30 2 * * *", "Europe/Paris", tick, 5))
    arguments.update(changes)
    return cron.scheduled_payload(**arguments)


def test_the_worker_hands_a_tick_payload_over_as_a_scheduled_payload() -> None:
    run = {"spec": {"task": "nightly", "payload": operator_payload()}}
    payload = load_payload(None, run, ScheduledPayload)  # type: ignore[arg-type]
    assert isinstance(payload, ScheduledPayload)
    assert payload.type == "DECLARATIVE"
    assert payload.timestamp == dt.datetime(2030, 3, 30, 1, 30, tzinfo=dt.UTC)
    assert payload.last_timestamp == dt.datetime(2030, 3, 29, 1, 30, tzinfo=dt.UTC)
    assert (payload.timezone, payload.schedule_id, payload.external_id) == (
        "Europe/Paris", "jobs/nightly", "user-42")
    # 31 March 2030 skips 02:00-03:00 in Paris: that tick fires once, at 03:00 summer time
    # (01:00 UTC); from then on 02:30 is 00:30 UTC.
    assert payload.upcoming[:2] == [dt.datetime(2030, 3, 31, 1, 0, tzinfo=dt.UTC),
                                    dt.datetime(2030, 4, 1, 0, 30, tzinfo=dt.UTC)]
    assert len(payload.upcoming) == 5
    first = validate_as(operator_payload(last_timestamp=None, external_id=None),
                        ScheduledPayload)
    assert first.last_timestamp is None and first.external_id is None


# --- a TaskSchedule read back ----------------------------------------------------------------


def stored(name: str = "nightly", labels: dict[str, str] | None = None,
           status: Json | None = None, **spec: Any) -> Json:
    return {
        "apiVersion": "kubetasks.dev/v1alpha1", "kind": "TaskSchedule",
        "metadata": {"name": name, "namespace": "jobs", "labels": labels or {},
                     "creationTimestamp": "2030-03-01T00:00:00Z"},
        "spec": {"task": "report", "cron": "0 2 * * *", **spec},
        "status": status or {},
    }


def test_a_schedule_reads_its_spec_status_and_next_ticks_in_its_time_zone() -> None:
    obj = stored(labels={"kubetasks.dev/schedule-type": "declarative"},
                 status={"lastScheduleTime": "2030-03-30T01:00:00Z",
                         "lastRun": "nightly-203003300100",
                         "conditions": [{"type": "Ready", "status": "True",
                                         "reason": "Scheduled", "message": "next tick",
                                         "lastTransitionTime": "2030-03-01T00:00:01Z"}]},
                 timezone="Europe/Paris", externalID="user-42", concurrencyPolicy="Replace",
                 queue={"name": "reports"}, tags=["a"], metadata={"k": 1})
    found = schedules.Schedule.from_object(obj, "default", NOW)
    assert (found.id, found.task_id, found.type) == ("jobs/nightly", "report", "DECLARATIVE")
    assert (found.cron, found.timezone, found.description) == (
        "0 2 * * *", "Europe/Paris", "At 02:00, every day")
    assert found.active and found.external_id == "user-42"
    assert (found.concurrency_policy, found.starting_deadline_seconds) == ("Replace", 300)
    # 31 March 2030 has no 02:00 in Paris: the tick fires at 03:00 summer time (01:00 UTC);
    # from then on 02:00 Paris is 00:00 UTC.
    assert found.next_run == dt.datetime(2030, 3, 31, 1, 0, tzinfo=dt.UTC)
    assert found.upcoming[1] == dt.datetime(2030, 4, 1, 0, 0, tzinfo=dt.UTC)
    assert len(found.upcoming) == 5
    assert found.last_schedule_time == dt.datetime(2030, 3, 30, 1, 0, tzinfo=dt.UTC)
    assert found.last_run_id == "jobs/nightly-203003300100"
    ready = found.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("True", "Scheduled")
    assert found.condition("Skipped") is None
    assert (found.queue, found.tags, found.metadata) == ("reports", ["a"], {"k": 1})

    inactive = schedules.Schedule.from_object(stored(active=False), "default", NOW)
    assert inactive.type == "IMPERATIVE" and inactive.timezone == "UTC"
    assert inactive.next_run is None and inactive.upcoming == []


def test_merge_patch_unsets_what_the_new_spec_leaves_out() -> None:
    old = {"cron": "0 2 * * *", "metadata": {"a": 1, "b": 2}, "tags": ["x"], "active": True}
    new = {"cron": "0 2 * * *", "metadata": {"a": 1, "c": 3}, "tags": ["y"], "active": False}
    assert merge_patch(old, new) == {"metadata": {"b": None, "c": 3}, "tags": ["y"],
                                     "active": False}
    assert merge_patch(old, old) == {}


# --- against an API in memory ----------------------------------------------------------------


class MemoryKube(KubeApi):
    """TaskSchedules and TaskRuns in memory: generateName, 409 on a taken name, merge
    patches with a resourceVersion precondition, a JSON patch replacing the spec, deletes,
    label selectors."""

    def __init__(self) -> None:
        self.namespace = NS
        self.objects: dict[tuple[str, str], Json] = {}
        self.writes: list[tuple[str, str]] = []
        self.selectors: list[str | None] = []
        self.version = 0

    def _stamp(self, obj: Json) -> Json:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)

    def get_object(self, plural: str, namespace: str, name: str) -> Json:
        try:
            return copy.deepcopy(self.objects[(plural, name)])
        except KeyError:
            raise ApiError(404, "NotFound", f"{plural} {name!r} not found") from None

    def create_object(self, plural: str, namespace: str, body: Json) -> Json:
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta["name"] = meta.get("name") or f"{meta['generateName']}{len(self.writes):05d}"
        if (plural, meta["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists", f"{plural} {meta['name']!r} exists")
        meta.update(namespace=namespace, uid=f"uid-{len(self.writes)}",
                    creationTimestamp="2030-03-01T00:00:00Z")
        self.writes.append(("create", meta["name"]))
        self.objects[(plural, meta["name"])] = obj
        return self._stamp(obj)

    def merge_patch(self, plural: str, namespace: str, name: str, patch: Json) -> Json:
        obj = self.objects.get((plural, name))
        if obj is None:
            raise ApiError(404, "NotFound", f"{plural} {name!r} not found")
        version = (patch.get("metadata") or {}).get("resourceVersion")
        if version is not None and version != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        apply_merge_patch(obj["spec"], patch.get("spec") or {})
        self.writes.append(("patch", name))
        return self._stamp(obj)

    def json_patch(self, plural: str, namespace: str, name: str,
                   operations: list[Json]) -> Json:
        obj = self.objects.get((plural, name))
        if obj is None:
            raise ApiError(404, "NotFound", f"{plural} {name!r} not found")
        assert operations == [{"op": "replace", "path": "/spec",
                               "value": operations[0]["value"]}]
        obj["spec"] = copy.deepcopy(operations[0]["value"])
        self.writes.append(("replace", name))
        return self._stamp(obj)

    def delete_object(self, plural: str, namespace: str, name: str,
                      uid: str | None = None) -> None:
        if (plural, name) not in self.objects:
            raise ApiError(404, "NotFound", f"{plural} {name!r} not found")
        self.writes.append(("delete", name))
        del self.objects[(plural, name)]

    def list_objects(self, plural: str, namespace: str, *, label_selector: str | None = None,
                     page_size: int = 250) -> Iterator[Json]:
        self.selectors.append(label_selector)
        for (kind, _), obj in sorted(self.objects.items()):
            if kind == plural and selects(label_selector, obj["metadata"].get("labels") or {}):
                yield copy.deepcopy(obj)


def apply_merge_patch(target: Json, patch: Json) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            apply_merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def selects(selector: str | None, labels: dict[str, str]) -> bool:
    for term in (selector or "").split(","):
        if "!=" in term:
            key, value = term.split("!=")
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
    return True


@pytest.fixture
def kube() -> Iterator[MemoryKube]:
    previous = client_module._default
    memory = MemoryKube()
    client_module.use_client(Client(memory))
    try:
        yield memory
    finally:
        client_module._default = previous


def test_create_without_a_key_makes_an_imperative_schedule_named_after_the_task(
        kube: MemoryKube) -> None:
    made = schedules.create("send-report", "0 9 * * 1-5", timezone="America/New_York",
                            external_id="user-7", ttl="1h")
    assert made.name.startswith("send-report-") and made.id == f"{NS}/{made.name}"
    assert (made.type, made.timezone, made.external_id, made.ttl_seconds) == (
        "IMPERATIVE", "America/New_York", "user-7", 3600)
    obj = kube.objects[("taskschedules", made.name)]
    assert obj["metadata"]["labels"] == {"kubetasks.dev/schedule-type": "imperative"}
    assert obj["spec"] == {"task": "send-report", "cron": "0 9 * * 1-5",
                           "timezone": "America/New_York", "externalID": "user-7",
                           "active": True, "ttlSeconds": 3600}
    other = schedules.create("send-report", "0 9 * * 1-5")
    assert other.id != made.id


def test_create_with_a_key_twice_updates_the_one_schedule_to_the_second_call(
        kube: MemoryKube) -> None:
    first = schedules.create("send-report", "0 9 * * *", deduplication_key="user-42 report",
                             external_id="user-42", tags=["a"], metadata={"x": 1, "y": 2})
    assert first.name == schedule_name("user-42 report")
    assert first.deduplication_key == "user-42 report"
    again = schedules.create("send-report", "0 10 * * *", deduplication_key="user-42 report",
                             metadata={"x": 1}, active=False)
    assert again.id == first.id and len(list(schedules.list())) == 1
    spec = kube.objects[("taskschedules", first.name)]["spec"]
    # Exactly what the second call asked for: what it left out is gone.
    assert spec == {"task": "send-report", "cron": "0 10 * * *", "active": False,
                    "deduplicationKey": "user-42 report", "metadata": {"x": 1}}
    labels = kube.objects[("taskschedules", first.name)]["metadata"]["labels"]
    assert labels["kubetasks.dev/deduplication-key"] == deduplication_digest("user-42 report")


def test_a_name_taken_by_another_key_or_by_hand_is_a_conflict(kube: MemoryKube) -> None:
    kube.create_object("taskschedules", NS, stored(name=schedule_name("mine")))
    with pytest.raises(ScheduleConflictError, match="not created for deduplication key "
                                                    "'mine'; delete it or use another key"):
        schedules.create("send-report", "0 9 * * *", deduplication_key="mine")


def test_nothing_is_written_when_an_option_is_bad(kube: MemoryKube) -> None:
    with pytest.raises(InvalidScheduleError, match="timezone 'Europe/Pari'"):
        schedules.create("send-report", "0 9 * * *", timezone="Europe/Pari")
    with pytest.raises(InvalidScheduleError, match="cron '0 9 \\* \\*'"):
        schedules.create("send-report", "0 9 * *", deduplication_key="k")
    with pytest.raises(InvalidOptionError, match="deduplication_key '' must be"):
        schedules.create("send-report", "0 9 * * *", deduplication_key="")
    made = schedules.create("send-report", "0 9 * * *")
    with pytest.raises(InvalidOptionError, match="max_attempts is 0"):
        schedules.update(made.id, max_attempts=0)
    assert kube.writes == [("create", made.name)]


def test_update_changes_only_what_it_is_given_and_none_unsets(kube: MemoryKube) -> None:
    made = schedules.create("send-report", "0 9 * * *", timezone="Europe/Paris",
                            external_id="user-1", tags=["t"])
    updated = schedules.update(made.id, cron="*/5 * * * *", external_id=None,
                               concurrency_policy="Forbid")
    assert (updated.cron, updated.external_id, updated.concurrency_policy) == (
        "*/5 * * * *", None, "Forbid")
    assert (updated.timezone, updated.tags) == ("Europe/Paris", ["t"])
    assert "externalID" not in kube.objects[("taskschedules", made.name)]["spec"]
    assert not schedules.deactivate(made.name).active
    assert schedules.retrieve(made).next_run is None
    assert schedules.activate(made.id).active
    schedules.delete(made.id)
    with pytest.raises(ScheduleNotFoundError, match=f"TaskSchedule '{made.name}' not found in "
                                                    f"namespace '{NS}'"):
        schedules.retrieve(made.id)
    with pytest.raises(ScheduleNotFoundError):
        schedules.activate(made.id)


def test_a_declared_schedule_is_changed_only_through_the_code(kube: MemoryKube) -> None:
    kube.create_object("taskschedules", NS, stored(
        name="report", labels={"kubetasks.dev/schedule-type": "declarative"}))
    for call in (lambda: schedules.update("report", cron="0 3 * * *"),
                 lambda: schedules.delete("report")):
        with pytest.raises(ScheduleConflictError, match=r"declared in code by "
                           r"@task\(id='report', cron=...\); change or remove the cron there "
                           r"and run `kubetasks deploy`"):
            call()
    assert not schedules.deactivate("report").active  # deploy leaves `active` alone


def test_list_filters_by_task_activity_and_type(kube: MemoryKube) -> None:
    kube.create_object("taskschedules", NS, stored(
        name="report", labels={"kubetasks.dev/schedule-type": "declarative"}))
    kube.create_object("taskschedules", NS, stored(name="by-hand", task="other"))
    made = schedules.create("report", "0 9 * * *", active=False)
    assert [s.name for s in schedules.list(type="declarative")] == ["report"]
    assert kube.selectors[-1] == "kubetasks.dev/schedule-type=declarative"
    assert {s.name for s in schedules.list(type="IMPERATIVE")} == {"by-hand", made.name}
    assert [s.name for s in schedules.list(task="report", active=False)] == [made.name]
    assert len(list(schedules.list(limit=2))) == 2
    with pytest.raises(InvalidOptionError, match="type 'cron' is not a schedule type"):
        list(schedules.list(type="cron"))


def test_runs_list_selects_a_schedules_runs_by_label(kube: MemoryKube) -> None:
    assert list(runs.list(schedule="jobs/nightly")) == []
    assert kube.selectors[-1] == "kubetasks.dev/schedule=nightly"
    assert list(runs.list(schedule="nightly", batch="b")) == []
    assert kube.selectors[-1] == "kubetasks.dev/batch=b,kubetasks.dev/schedule=nightly"


async def test_the_async_forms_do_the_same(kube: MemoryKube) -> None:
    made = await schedules.create_async("send-report", "0 9 * * *", deduplication_key="k")
    assert (await schedules.retrieve_async(made.id)).id == made.id
    assert (await schedules.update_async(made.id, cron="0 8 * * *")).cron == "0 8 * * *"
    assert not (await schedules.deactivate_async(made.id)).active
    assert (await schedules.activate_async(made.id)).active
    assert [s.id async for s in schedules.list_async(task="send-report")] == [made.id]
    assert "UTC" in await schedules.timezones_async()
    kube.create_object("taskruns", NS, {
        "metadata": {"name": f"{made.name}-203001010800",
                     "labels": {"kubetasks.dev/schedule": made.name}},
        "spec": {"task": "send-report", "payload": None}})
    assert [r.name async for r in runs.list_async(schedule=made)] == [
        f"{made.name}-203001010800"]
    await schedules.delete_async(made.id)
    assert [s async for s in schedules.list_async()] == []
