"""``kubetasks deploy``: the ``Task`` and ``TaskQueue`` objects for the tasks of a module,
applied with server-side apply (so fields others own, such as a queue's ``paused``, stay
as they are, and fields a redeploy no longer sets are removed)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetasks._internal.client import Client, Json
from kubetasks.errors import TaskDefinitionError
from kubetasks.protocol.pod import LABEL_MANAGED_BY, MANAGED_BY
from kubetasks.tasks import Task

FIELD_MANAGER = "kubetasks-deploy"


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
    """Every object ``deploy`` applies for the module: queues first, then tasks."""
    found = find_tasks(module_name)
    if not found:
        raise TaskDefinitionError(
            f"module {module_name} defines no tasks; decorate functions with @task(id=...) "
            "at module level")
    return [*queue_manifests(found),
            *(task_manifest(f, image, env, service_account) for f in found)]


def apply(client: Client, objects: list[Json]) -> list[Json]:
    """Server-side apply each object in the client's namespace."""
    plural = {"Task": "tasks", "TaskQueue": "taskqueues"}
    return [client.kube.apply(plural[obj["kind"]], client.namespace, obj["metadata"]["name"],
                              obj, FIELD_MANAGER) for obj in objects]
