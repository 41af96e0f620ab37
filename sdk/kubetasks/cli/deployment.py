"""``kubetasks deploy``: the ``Task`` and ``TaskQueue`` objects for the tasks of a module,
and a ``TaskSchedule`` for each task declared with ``@task(cron=...)``, applied with
server-side apply (so fields others own, such as a queue's ``paused`` or a schedule's
``active``, stay as they are, and fields a redeploy no longer sets are removed).

A declarative schedule is named after its task and labelled ``declarative``. Deploying a
module deletes the declarative schedules that the module no longer declares: those of its
tasks without a cron, and those deployed from it whose task is gone from it. Other modules'
schedules and imperative schedules (``schedules.create``) are never touched."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetasks._internal.client import Client, Json
from kubetasks.errors import (
    ApiError,
    KubetasksError,
    ScheduleConflictError,
    TaskDefinitionError,
)
from kubetasks.protocol.pod import (
    LABEL_MANAGED_BY,
    LABEL_SCHEDULE_TYPE,
    MANAGED_BY,
    SCHEDULE_DECLARATIVE,
)
from kubetasks.tasks import Task

FIELD_MANAGER = "kubetasks-deploy"
ANNOTATION_DEPLOYED_FROM = "kubetasks.dev/deployed-from"
"""On a declarative TaskSchedule: the module whose deploy applied it."""
DECLARED_SCHEDULES = (f"{LABEL_SCHEDULE_TYPE}={SCHEDULE_DECLARATIVE},"
                      f"{LABEL_MANAGED_BY}={MANAGED_BY}")
PLURALS = {"Task": "tasks", "TaskQueue": "taskqueues", "TaskSchedule": "taskschedules"}


@dataclass(frozen=True)
class FoundTask:
    """A task found in a module, and the entrypoint that imports it."""

    task: Task[Any, Any]
    entrypoint: str


def find_tasks(module_name: str) -> list[FoundTask]:
    """Every ``@task`` that is an attribute of the module, by id (sorted)."""
    module = importlib.import_module(module_name)
    found: dict[str, FoundTask] = {}
    for attr, value in sorted(vars(module).items()):
        if not isinstance(value, Task):
            continue
        entrypoint = f"{module_name}:{attr}"
        previous = found.get(value.id)
        if previous is not None and previous.task is not value:
            raise TaskDefinitionError(
                f"task id {value.id!r} is defined twice in {module_name} ({previous.entrypoint} "
                f"and {entrypoint}); give each task its own id")
        if previous is None:
            found[value.id] = FoundTask(value, entrypoint)
    return [found[k] for k in sorted(found)]


def task_manifest(found: FoundTask, image: str, env: Mapping[str, str] | None = None,
                  service_account: str | None = None) -> Json:
    """The ``Task`` object for one task."""
    from kubetasks.api.v1alpha1 import EnvVar, ObjectMeta, QueueSpec, RetryPolicy, TaskSpec
    from kubetasks.api.v1alpha1 import Task as TaskObject

    t = found.task
    spec = TaskSpec(
        image=image,
        entrypoint=found.entrypoint,
        queue=(QueueSpec(name=t.queue.name, concurrency_limit=t.queue.concurrency_limit)
               if t.queue else None),
        retry=RetryPolicy.model_validate(t.retry.to_api()) if t.retry else None,
        machine=t.machine,
        max_duration_seconds=t.max_duration_seconds,
        ttl_seconds=t.ttl_seconds,
        env=[EnvVar(name=k, value=v) for k, v in sorted((env or {}).items())] or None,
        service_account_name=service_account,
    )
    obj = TaskObject(metadata=ObjectMeta(name=t.id, labels={LABEL_MANAGED_BY: MANAGED_BY}),
                     spec=spec)
    manifest: Json = obj.model_dump(mode="json")
    return manifest


def schedule_manifest(found: FoundTask, module_name: str) -> Json | None:
    """The declarative ``TaskSchedule`` of a task declared with ``@task(cron=...)``, named
    after the task; ``None`` for a task without one. It leaves ``spec.active`` out, so a
    schedule someone deactivated stays deactivated across deploys."""
    from kubetasks.api.v1alpha1 import ObjectMeta, TaskSchedule, TaskScheduleSpec

    t, declared = found.task, found.task.schedule
    if declared is None:
        return None
    spec = TaskScheduleSpec(task=t.id, cron=declared.cron, timezone=declared.timezone,
                            concurrency_policy=declared.concurrency_policy,
                            starting_deadline_seconds=declared.starting_deadline_seconds)
    meta = ObjectMeta(name=t.id,
                      labels={LABEL_MANAGED_BY: MANAGED_BY,
                              LABEL_SCHEDULE_TYPE: SCHEDULE_DECLARATIVE},
                      annotations={ANNOTATION_DEPLOYED_FROM: module_name})
    manifest: Json = TaskSchedule(metadata=meta, spec=spec).model_dump(mode="json")
    del manifest["spec"]["active"]
    return manifest


def queue_manifests(found: list[FoundTask]) -> list[Json]:
    """One ``TaskQueue`` per queue the tasks declare; the same queue declared with two
    limits is an error."""
    limits: dict[str, tuple[int | None, str]] = {}
    for f in found:
        q = f.task.queue
        if q is None:
            continue
        if q.name in limits and limits[q.name][0] != q.concurrency_limit:
            other_limit, other_task = limits[q.name]
            raise TaskDefinitionError(
                f"queue {q.name!r} has concurrency_limit {other_limit} in task {other_task!r} "
                f"but {q.concurrency_limit} in task {f.task.id!r}; declare it once, e.g. "
                f"{q.name.replace('-', '_')} = queue({q.name!r}, concurrency_limit=...), and "
                "use that in both")
        limits[q.name] = (q.concurrency_limit, f.task.id)
    manifests = []
    for name, (limit, _) in sorted(limits.items()):
        spec: Json = {} if limit is None else {"concurrencyLimit": limit}
        manifests.append({
            "apiVersion": "kubetasks.dev/v1alpha1", "kind": "TaskQueue",
            "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
            "spec": spec,
        })
    return manifests


def manifests(module_name: str, image: str, env: Mapping[str, str] | None = None,
              service_account: str | None = None) -> list[Json]:
    """Every object ``deploy`` applies for the module: queues first, then tasks, then the
    tasks' declarative schedules (so a schedule never names a task not yet deployed)."""
    found = find_tasks(module_name)
    if not found:
        raise TaskDefinitionError(
            f"module {module_name} defines no tasks; decorate functions with @task(id=...) "
            "at module level")
    schedules = [schedule_manifest(f, module_name) for f in found]
    return [*queue_manifests(found),
            *(task_manifest(f, image, env, service_account) for f in found),
            *(s for s in schedules if s is not None)]


def apply(client: Client, objects: list[Json]) -> list[Json]:
    """Server-side apply each object in the client's namespace."""
    return [client.kube.apply(PLURALS[obj["kind"]], client.namespace, obj["metadata"]["name"],
                              obj, FIELD_MANAGER) for obj in objects]


def applied_detail(obj: Json) -> str:
    """What ``deploy`` prints after an applied object: a task's entrypoint, a schedule's
    cron, time zone and description.

    >>> applied_detail({"kind": "TaskSchedule", "spec": {"cron": "0 2 * * *"}})
    " (cron '0 2 * * *' in UTC: At 02:00, every day)"
    """
    spec = obj.get("spec") or {}
    if obj["kind"] == "Task":
        return f" ({spec['entrypoint']})"
    if obj["kind"] == "TaskSchedule":
        from kubetasks.protocol import cron

        timezone = spec.get("timezone") or cron.DEFAULT_TIMEZONE
        return f" (cron {spec['cron']!r} in {timezone}: {cron.describe(spec['cron'])})"
    return ""


@dataclass(frozen=True)
class Deployed:
    """What ``deploy`` did: the objects it applied, and the declarative schedules it
    deleted."""

    applied: list[Json]
    deleted: list[Json]


def deploy(client: Client, module_name: str, objects: list[Json]) -> Deployed:
    """Apply the module's objects, after checking that no schedule it declares would take
    over a schedule made otherwise; then delete the declarative schedules the module no
    longer declares."""
    declared = _declared_schedules(client, objects)
    _check_schedule_names(client, objects, {_name(obj) for obj in declared})
    applied = apply(client, objects)
    deleted = [obj for obj in stale_schedules(declared, module_name, objects)
               if _delete_schedule(client, obj)]
    return Deployed(applied, deleted)


def _declared_schedules(client: Client, objects: list[Json]) -> list[Json]:
    """The declarative schedules in the namespace; none where the TaskSchedule CRD is not
    installed yet and the module declares no schedule (its deploy needs none)."""
    try:
        return list(client.kube.list_objects("taskschedules", client.namespace,
                                             label_selector=DECLARED_SCHEDULES))
    except ApiError as exc:
        if exc.status != 404:
            raise
    if any(obj["kind"] == "TaskSchedule" for obj in objects):
        raise KubetasksError(
            "the module declares schedules but the cluster has no TaskSchedule resource; "
            "install the CRDs first: kubectl apply --server-side -f crds/")
    return []


def stale_schedules(declared: list[Json], module_name: str, objects: list[Json]
                    ) -> list[Json]:
    """The declarative schedules among ``declared`` that deploying ``objects`` from
    ``module_name`` leaves without a declaration: a task of the module that no longer has a
    cron, or a task gone from the module that declared it."""
    kept = {_name(obj) for obj in objects if obj["kind"] == "TaskSchedule"}
    tasks = {_name(obj) for obj in objects if obj["kind"] == "Task"}
    return [obj for obj in declared
            if _name(obj) not in kept
            and (_name(obj) in tasks or _deployed_from(obj) == module_name)]


def _name(obj: Json) -> str:
    return str(obj["metadata"]["name"])


def _deployed_from(obj: Json) -> str | None:
    return ((obj["metadata"].get("annotations") or {}).get(ANNOTATION_DEPLOYED_FROM))


def _check_schedule_names(client: Client, objects: list[Json], declared: set[str]) -> None:
    for obj in objects:
        name = _name(obj)
        if obj["kind"] != "TaskSchedule" or name in declared:
            continue
        try:
            client.kube.get_object("taskschedules", client.namespace, name)
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        raise ScheduleConflictError(
            f"task {name!r} declares a cron, but TaskSchedule {client.namespace}/{name} "
            "exists and was not made by kubetasks deploy; delete it (kubetasks schedules "
            "delete) or give the task another id")


def _delete_schedule(client: Client, obj: Json) -> bool:
    """Delete the schedule if it is still that object; False if it is gone already."""
    try:
        client.kube.delete_object("taskschedules", client.namespace, _name(obj),
                                  uid=obj["metadata"].get("uid"))
    except ApiError as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True
