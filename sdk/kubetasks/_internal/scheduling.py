"""Writing TaskSchedules: the checked spec, creation (with a deduplication key, atomically by
name), updates as merge patches, activation and deletion. Every value is checked before
anything is written; schedules declared in code are changed only by ``kubetasks deploy``.

A deduplication key names its schedule (``protocol.deduplication.schedule_name``): a create
whose name exists answers 409, and the caller then replaces that schedule's spec with what
it asked for (one JSON patch, no precondition), so concurrent creates with one key leave one
schedule, holding the spec of the last of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetasks._internal.client import Client, Json
from kubetasks.errors import (
    ApiError,
    InvalidOptionError,
    ScheduleConflictError,
    ScheduleNotFoundError,
)
from kubetasks.options import check_text, to_schedule_fields
from kubetasks.protocol.deduplication import deduplication_digest, schedule_name
from kubetasks.protocol.pod import (
    LABEL_DEDUPLICATION_KEY,
    LABEL_SCHEDULE_TYPE,
    SCHEDULE_DECLARATIVE,
    SCHEDULE_IMPERATIVE,
)

PLURAL = "taskschedules"
MAX_ROUNDS = 5
"""Attempts at a write that others race (a 409 from a concurrent change) before giving up."""


def read_schedule(client: Client, namespace: str, name: str) -> Json:
    """The TaskSchedule object; ScheduleNotFoundError when there is none."""
    try:
        return client.kube.get_object(PLURAL, namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            raise ScheduleNotFoundError(name, namespace) from None
        raise


def checked_spec(fields: Mapping[str, Any]) -> Json:
    """The spec (API names, unset fields left out) of ``TaskScheduleSpec`` fields given by
    Python name, checked by the API's model."""
    from pydantic import ValidationError

    from kubetasks.api.v1alpha1 import TaskScheduleSpec

    try:
        spec = TaskScheduleSpec.model_validate(dict(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors())
        raise InvalidOptionError(f"invalid schedule: {problems}") from None
    dumped: Json = spec.model_dump(mode="json")
    return dumped


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> Json:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: changed values,
    nested objects as patches of their own, ``None`` for what ``new`` leaves out.

    >>> merge_patch({"cron": "0 2 * * *", "metadata": {"a": 1, "b": 2}, "ttlSeconds": 60},
    ...             {"cron": "0 3 * * *", "metadata": {"a": 1}})
    {'cron': '0 3 * * *', 'metadata': {'b': None}, 'ttlSeconds': None}
    """
    patch: Json = {}
    for key, value in new.items():
        before = old.get(key)
        if key in old and before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def _spec_fields_of(obj: Json) -> dict[str, Any]:
    """The stored spec as ``TaskScheduleSpec`` fields by Python name (unknown fields left
    out)."""
    from kubetasks.api.v1alpha1 import TaskScheduleSpec

    stored = TaskScheduleSpec.model_validate(obj.get("spec") or {})
    return {name: getattr(stored, name) for name in TaskScheduleSpec.model_fields}


def _known_spec(obj: Json) -> Json:
    """The stored spec, only the fields this SDK knows (the others are left as they are)."""
    from kubetasks.api.v1alpha1 import TaskScheduleSpec

    known = {field.alias or name for name, field in TaskScheduleSpec.model_fields.items()}
    return {k: v for k, v in (obj.get("spec") or {}).items() if k in known}


def is_declarative(obj: Json) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_SCHEDULE_TYPE) == SCHEDULE_DECLARATIVE


def refuse_declarative(obj: Json, action: str) -> None:
    """ScheduleConflictError for ``action`` (update, delete) on a schedule declared in code."""
    if not is_declarative(obj):
        return
    meta = obj.get("metadata") or {}
    task = (obj.get("spec") or {}).get("task", meta.get("name"))
    raise ScheduleConflictError(
        f"cannot {action} TaskSchedule {meta.get('namespace')}/{meta.get('name')}: it is "
        f"declared in code by @task(id={task!r}, cron=...); change or remove the cron there "
        "and run `kubetasks deploy` (activate and deactivate work on it)")


# --- create ----------------------------------------------------------------------------------


def create_schedule(client: Client, task: str, cron: str, deduplication_key: str | None,
                    options: Mapping[str, Any]) -> tuple[Json, bool]:
    """Create an imperative schedule, or update the one of ``deduplication_key`` to exactly
    what this call asks for. Returns the object and whether it was created."""
    fields = to_schedule_fields({"task": task, "cron": cron, **options})
    labels = {LABEL_SCHEDULE_TYPE: SCHEDULE_IMPERATIVE}
    if deduplication_key is None:
        body = _body({"generateName": f"{fields['task']}-", "labels": labels},
                     checked_spec(fields))
        return client.kube.create_object(PLURAL, client.namespace, body), True
    key = check_text(deduplication_key, "deduplication_key")
    spec = checked_spec({**fields, "deduplication_key": key})
    digest = deduplication_digest(key)
    name = schedule_name(key)
    body = _body({"name": name, "labels": {**labels, LABEL_DEDUPLICATION_KEY: digest}}, spec)
    for _ in range(MAX_ROUNDS):
        try:
            return client.kube.create_object(PLURAL, client.namespace, body), True
        except ApiError as exc:
            if exc.status != 409:
                raise
        updated = _update_to(client, name, key, digest, spec)
        if updated is not None:
            return updated, False
    raise ScheduleConflictError(
        f"could not create or update the schedule of deduplication key {key!r} "
        f"(TaskSchedule {client.namespace}/{name}) in {MAX_ROUNDS} rounds: it is deleted as "
        "fast as it is written; try again")


def _body(metadata: Json, spec: Json) -> Json:
    from kubetasks.api.v1alpha1 import API_VERSION

    return {"apiVersion": API_VERSION, "kind": "TaskSchedule", "metadata": metadata,
            "spec": spec}


def _update_to(client: Client, name: str, key: str, digest: str, spec: Json) -> Json | None:
    """Make the existing schedule of the key hold ``spec``; None when it is gone meanwhile
    (the caller creates it again)."""
    try:
        existing = client.kube.get_object(PLURAL, client.namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    labels = (existing.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_DEDUPLICATION_KEY) != digest:
        raise ScheduleConflictError(
            f"TaskSchedule {client.namespace}/{name} exists but was not created for "
            f"deduplication key {key!r}; delete it or use another key")
    try:
        # The whole spec, whatever it holds now: under concurrent creates the last one wins.
        return client.kube.json_patch(PLURAL, client.namespace, name,
                                      [{"op": "replace", "path": "/spec", "value": spec}])
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


# --- change ----------------------------------------------------------------------------------


def update_schedule(client: Client, namespace: str, name: str,
                    changes: Mapping[str, Any]) -> Json:
    """Change the given fields of an imperative schedule (``None`` unsets one)."""
    fields = to_schedule_fields(changes)
    for _ in range(MAX_ROUNDS):
        obj = read_schedule(client, namespace, name)
        refuse_declarative(obj, "update")
        spec = checked_spec({**_spec_fields_of(obj), **fields})
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                 "spec": merge_patch(_known_spec(obj), spec)}
        try:
            return client.kube.merge_patch(PLURAL, namespace, name, patch)
        except ApiError as exc:
            if exc.status == 404:
                raise ScheduleNotFoundError(name, namespace) from None
            if exc.status != 409:  # 409: changed meanwhile, read it again
                raise
    raise ScheduleConflictError(
        f"TaskSchedule {namespace}/{name} changed {MAX_ROUNDS} times while it was being "
        "updated; try again")


def set_active(client: Client, namespace: str, name: str, active: bool) -> Json:
    """Turn the schedule's ticks on or off (declared schedules too: deploy leaves
    ``active`` alone)."""
    try:
        return client.kube.merge_patch(PLURAL, namespace, name, {"spec": {"active": active}})
    except ApiError as exc:
        if exc.status == 404:
            raise ScheduleNotFoundError(name, namespace) from None
        raise


def delete_schedule(client: Client, namespace: str, name: str) -> None:
    """Delete an imperative schedule; its runs stay."""
    obj = read_schedule(client, namespace, name)
    refuse_declarative(obj, "delete")
    try:
        client.kube.delete_object(PLURAL, namespace, name, uid=obj["metadata"].get("uid"))
    except ApiError as exc:
        if exc.status == 404:
            raise ScheduleNotFoundError(name, namespace) from None
        raise
