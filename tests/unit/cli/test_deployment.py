"""``kubetasks deploy``'s objects: one Task per task (entrypoint = module:attribute), one
TaskQueue per declared queue, one TaskSchedule per task declared with a cron, and which
declarative schedules a deploy removes."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from kubetasks import (
    Context,
    KubetasksError,
    RetryOptions,
    TaskDefinitionError,
    queue,
    schedule,
    task,
)
from kubetasks._internal.client import Client, Json, KubeApi
from kubetasks.cli import main
from kubetasks.cli.deployment import applied_detail, deploy, manifests, stale_schedules
from kubetasks.errors import ApiError


@pytest.fixture
def module() -> Iterator[str]:
    name = "kubetasks_unit_deploy_example"
    mod = types.ModuleType(name)
    emails = queue("emails", concurrency_limit=5)

    def send(payload: Any, ctx: Context) -> None: ...

    def digest(payload: Any, ctx: Context) -> None: ...

    send.__module__ = digest.__module__ = name
    mod.send_email = task(id="unit-send-email", queue=emails,  # type: ignore[attr-defined]
                          retry=RetryOptions(max_attempts=3, min_timeout=1),
                          machine="small-2x", max_duration=300, ttl="10m")(send)
    mod.digest = task(id="unit-digest", queue=emails)(digest)  # type: ignore[attr-defined]
    mod.alias = mod.digest  # type: ignore[attr-defined]
    sys.modules[name] = mod
    try:
        yield name
    finally:
        del sys.modules[name]


def test_manifests_have_queues_then_tasks(module: str) -> None:
    objects = manifests(module, "registry/app:1", {"LOG": "debug"}, "runner")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("TaskQueue", "emails"), ("Task", "unit-digest"), ("Task", "unit-send-email")]
    assert objects[0]["spec"] == {"concurrencyLimit": 5}  # never "paused": not ours
    send = objects[2]
    assert send["apiVersion"] == "kubetasks.dev/v1alpha1"
    assert send["spec"] == {
        "image": "registry/app:1",
        "entrypoint": f"{module}:send_email",
        "queue": {"name": "emails", "concurrencyLimit": 5},
        "retry": {"maxAttempts": 3, "minTimeoutSeconds": 1},
        "machine": "small-2x",
        "maxDurationSeconds": 300,
        "ttlSeconds": 600,
        "env": [{"name": "LOG", "value": "debug"}],
        "serviceAccountName": "runner",
    }
    assert objects[1]["spec"]["entrypoint"] == f"{module}:alias"  # first attribute by name


def test_a_queue_declared_with_two_limits_is_refused(module: str) -> None:
    mod = sys.modules[module]

    def other(payload: Any, ctx: Context) -> None: ...

    other.__module__ = module
    mod.other = task(id="unit-other", queue=queue("emails", concurrency_limit=9))(other)  # type: ignore[attr-defined]
    with pytest.raises(TaskDefinitionError, match=r"concurrency_limit 5 in task .* but 9"):
        manifests(module, "img")


def test_deploy_dry_run_prints_yaml_and_a_module_without_tasks_is_an_error(
    module: str
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["deploy", "--image", "img", "--dry-run", module])
    assert result.exit_code == 0, result.output
    assert "kind: TaskQueue" in result.output and f"entrypoint: {module}:send_email" in (
        result.output)
    empty = runner.invoke(main, ["deploy", "--image", "img", "--dry-run", "json"])
    assert empty.exit_code == 1
    assert "defines no tasks" in empty.output


# --- declarative schedules -------------------------------------------------------------------


@pytest.fixture
def scheduled_module() -> Iterator[str]:
    name = "kubetasks_unit_deploy_scheduled"
    mod = types.ModuleType(name)

    def nightly(payload: Any, ctx: Context) -> None: ...

    def hourly(payload: Any, ctx: Context) -> None: ...

    def plain(payload: Any, ctx: Context) -> None: ...

    nightly.__module__ = hourly.__module__ = plain.__module__ = name
    mod.nightly = task(id="unit-nightly-report",  # type: ignore[attr-defined]
                       cron=schedule("0 2 * * *", timezone="Europe/Paris",
                                     concurrency_policy="Forbid", starting_deadline="10m")
                       )(nightly)
    mod.hourly = task(id="unit-hourly", cron="0 * * * *")(hourly)  # type: ignore[attr-defined]
    mod.plain = task(id="unit-plain")(plain)  # type: ignore[attr-defined]
    sys.modules[name] = mod
    try:
        yield name
    finally:
        del sys.modules[name]


def test_a_task_with_a_cron_gets_a_declarative_schedule_after_the_tasks(
        scheduled_module: str) -> None:
    objects = manifests(scheduled_module, "img")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Task", "unit-hourly"), ("Task", "unit-nightly-report"), ("Task", "unit-plain"),
        ("TaskSchedule", "unit-hourly"), ("TaskSchedule", "unit-nightly-report")]
    nightly = objects[4]
    assert nightly["metadata"] == {
        "name": "unit-nightly-report",
        "labels": {"app.kubernetes.io/managed-by": "kubetasks",
                   "kubetasks.dev/schedule-type": "declarative"},
        "annotations": {"kubetasks.dev/deployed-from": scheduled_module},
    }
    # No `active`: deploy does not own it, so a deactivated schedule stays deactivated.
    assert nightly["spec"] == {"task": "unit-nightly-report", "cron": "0 2 * * *",
                               "timezone": "Europe/Paris", "concurrencyPolicy": "Forbid",
                               "startingDeadlineSeconds": 600}
    assert objects[3]["spec"] == {"task": "unit-hourly", "cron": "0 * * * *"}
    assert applied_detail(nightly) == (
        " (cron '0 2 * * *' in Europe/Paris: At 02:00, every day)")


def declared(name: str, module: str) -> dict[str, Any]:
    return {"kind": "TaskSchedule", "metadata": {
        "name": name, "annotations": {"kubetasks.dev/deployed-from": module}}}


def test_a_deploy_removes_only_the_schedules_its_module_no_longer_declares(
        scheduled_module: str) -> None:
    objects = manifests(scheduled_module, "img")
    existing = [
        declared("unit-hourly", scheduled_module),       # still declared: kept
        declared("unit-plain", "elsewhere"),             # its task has no cron now: removed
        declared("unit-gone", scheduled_module),         # its task left the module: removed
        declared("other-app-task", "other.app"),         # another module's: kept
    ]
    stale = stale_schedules(existing, scheduled_module, objects)
    assert [obj["metadata"]["name"] for obj in stale] == ["unit-plain", "unit-gone"]


def test_dry_run_shows_the_schedules(scheduled_module: str) -> None:
    result = CliRunner().invoke(main, ["deploy", "--image", "img", "--dry-run",
                                       scheduled_module])
    assert result.exit_code == 0, result.output
    assert "kind: TaskSchedule" in result.output and "cron: 0 2 * * *" in result.output


class NoScheduleCrd(KubeApi):
    """A cluster whose CRDs predate TaskSchedules: listing them answers 404."""

    def __init__(self) -> None:
        self.namespace = "apps"
        self.applied: list[str] = []

    def list_objects(self, plural: str, namespace: str, *, label_selector: str | None = None,
                     page_size: int = 250) -> Iterator[Json]:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def apply(self, plural: str, namespace: str, name: str, body: Json,
              field_manager: str) -> Json:
        self.applied.append(f"{plural}/{name}")
        return body


def test_without_the_schedule_crd_only_a_module_that_declares_schedules_fails(
        module: str, scheduled_module: str) -> None:
    kube = NoScheduleCrd()
    done = deploy(Client(kube), module, manifests(module, "img"))
    assert done.deleted == [] and kube.applied == [
        "taskqueues/emails", "tasks/unit-digest", "tasks/unit-send-email"]
    with pytest.raises(KubetasksError, match="no TaskSchedule resource; install the CRDs "
                                             "first: kubectl apply --server-side -f crds/"):
        deploy(Client(kube), scheduled_module, manifests(scheduled_module, "img"))
    assert len(kube.applied) == 3  # nothing more was applied
