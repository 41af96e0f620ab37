"""Creating TaskRuns: payload encoding and offload, trigger options, the parent link inside
a task, idempotency keys (see ``kubetasks.idempotency_keys`` for how they stay atomic), and
waiting for a child from inside its parent."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetasks._internal.client import Client, Json
from kubetasks.context import Context, current_context
from kubetasks.errors import (
    ApiError,
    IdempotencyKeyConflictError,
    InvalidOptionError,
    NotInTaskError,
    RunNotDelayedError,
    TaskRunCanceledError,
    TaskRunNotFoundError,
)
from kubetasks.handles import (
    TERMINAL_PHASES,
    Result,
    Run,
    RunHandle,
    RunRef,
    read_run,
    run_id_of,
    split_run_id,
)
from kubetasks.idempotency_keys import (
    LABEL_GENERATION,
    LABEL_KEY,
    IdempotencyKey,
    generation_of,
    key_released,
    resolve,
    run_name,
)
from kubetasks.options import (
    Delay,
    TriggerOptionsDict,
    check_dns_label,
    parse_delay,
    to_trigger_options,
)
from kubetasks.protocol.payloads import Encoded, encode_payload
from kubetasks.protocol.pod import LABEL_TASK
from kubetasks.protocol.storage import payload_key

ANNOTATION_REPLAY_OF = "kubetasks.dev/replay-of"
MAX_CLAIM_ROUNDS = 10
WAIT_POLL_MAX = 1.0
# Fields a replay copies: the payload and the options that shape how the run runs; not the
# delay, the idempotency key (it would return the original), the parent or the batch.
REPLAYED_FIELDS = ("task", "payload", "payloadRef", "ttlSeconds", "queue", "concurrencyKey",
                   "maxAttempts", "maxDurationSeconds", "machine", "priority", "tags",
                   "metadata")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class PreparedRun:
    """A run ready to create: everything checked; the payload is uploaded on first use, so a
    trigger that finds an existing run (idempotency) uploads nothing."""

    client: Client
    namespace: str
    task_id: str
    encoded: Encoded
    spec_fields: dict[str, Any]
    _payload_ref: Json | None = field(default=None, init=False)

    def payload_fields(self) -> Json:
        if self.encoded.size <= self.client.inline_limit:
            return {"payload": self.encoded.value}
        if self._payload_ref is None:
            self._payload_ref = self.client.storage.put(
                payload_key(self.namespace, self.task_id), self.encoded)
        return {"payloadRef": self._payload_ref}

    def body(self, name: str | None, labels: dict[str, str],
             annotations: dict[str, str] | None = None) -> Json:
        from kubetasks.api.v1alpha1 import ObjectMeta, TaskRun, TaskRunSpec

        spec = TaskRunSpec.model_validate({**self.spec_fields, **self.payload_fields(),
                                           "task": self.task_id})
        meta = ObjectMeta(name=name, generate_name=None if name else f"{self.task_id}-",
                          labels={LABEL_TASK: self.task_id, **labels},
                          annotations=annotations or None)
        body: Json = TaskRun(metadata=meta, spec=spec).model_dump(mode="json")
        return body


def prepare(client: Client, task_id: str, payload: Any, options: TriggerOptionsDict,
            *, wait: bool, method: str) -> tuple[PreparedRun, IdempotencyKey | None]:
    """Check everything before anything is written: payload size, options, parent."""
    ctx = current_context()
    if wait and ctx is None:
        raise NotInTaskError(method)
    check_dns_label(task_id, "task id", "send-email")
    encoded = encode_payload(payload)
    key = resolve(options["idempotency_key"]) if "idempotency_key" in options else None
    trigger_options = to_trigger_options(options, utcnow(), key)
    fields: Json = trigger_options.model_dump(mode="json")
    parent = _parent_ref(client, ctx, wait, method)
    if parent is not None:
        fields["parent"] = parent
    return PreparedRun(client, client.namespace, task_id, encoded, fields), key


def _parent_ref(client: Client, ctx: Context | None, wait: bool, method: str
                ) -> Json | None:
    """``spec.parent`` of a run or batch triggered from inside a task (same namespace): the
    parent, whether it waits, and its attempt (keys of scope "attempt" are unique to it)."""
    if ctx is None:
        return None
    if ctx.run.namespace != client.namespace:
        if wait:
            raise InvalidOptionError(
                f"{method}() links the child to its parent, so it must run in the parent's "
                f"namespace {ctx.run.namespace!r}, not {client.namespace!r}")
        return None
    return {"name": ctx.run.name, "uid": ctx.run.uid, "wait": wait,
            "attempt": ctx.attempt.number}


def create_run(prepared: PreparedRun, key: IdempotencyKey | None,
               output_type: Any = Any) -> RunHandle[Any]:
    """Create the run, or find the run that holds the idempotency key."""
    client = prepared.client
    if key is None:
        created = client.kube.create_object("taskruns", prepared.namespace,
                                            prepared.body(None, {}))
        return _handle(client, created, output_type, cached=False)
    return _claim(prepared, key, output_type)


def _handle(client: Client, obj: Json, output_type: Any, cached: bool) -> RunHandle[Any]:
    return RunHandle(run_id_of(obj), obj["spec"]["task"], cached, client, output_type)


def _claim(prepared: PreparedRun, key: IdempotencyKey, output_type: Any) -> RunHandle[Any]:
    client, namespace, task_id = prepared.client, prepared.namespace, prepared.task_id
    digest = key.digest(task_id)
    floor = 0
    for _ in range(MAX_CLAIM_ROUNDS):
        holders = list(client.kube.list_objects(
            "taskruns", namespace, label_selector=f"{LABEL_KEY}={digest}"))
        latest = max(holders, key=generation_of, default=None)
        if latest is not None and not key_released(latest, utcnow()):
            return _handle(client, latest, output_type, cached=True)
        generation = max(floor, generation_of(latest) + 1 if latest is not None else 0)
        name = run_name(task_id, digest, generation)
        labels = {LABEL_KEY: digest, LABEL_GENERATION: str(generation)}
        try:
            created = client.kube.create_object("taskruns", namespace,
                                                prepared.body(name, labels))
            return _handle(client, created, output_type, cached=False)
        except ApiError as exc:
            if exc.status != 409:
                raise
        # Someone else created this generation first: theirs is the run, unless it has
        # already released the key too.
        try:
            other = client.kube.get_object("taskruns", namespace, name)
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        if ((other.get("metadata") or {}).get("labels") or {}).get(LABEL_KEY) != digest:
            raise IdempotencyKeyConflictError(
                f"TaskRun {namespace}/{name} exists but was not created for idempotency key "
                f"{key.key!r}; delete it or use another key")
        if not key_released(other, utcnow()):
            return _handle(client, other, output_type, cached=True)
        floor = generation + 1
    raise IdempotencyKeyConflictError(
        f"could not claim idempotency key {key.key!r} of task {task_id!r} after "
        f"{MAX_CLAIM_ROUNDS} rounds: its runs are released as fast as they are created")


def trigger(client: Client, task_id: str, payload: Any, options: TriggerOptionsDict,
            output_type: Any = Any) -> RunHandle[Any]:
    prepared, key = prepare(client, task_id, payload, options, wait=False, method="trigger")
    return create_run(prepared, key, output_type)


# --- waiting for a child from inside its parent ----------------------------------------------


def _child_done(client: Client, ctx: Context, namespace: str, name: str) -> Json | None:
    """The child when it has ended and the parent may go on; else ``None``.

    The operator moves a parent whose children are unfinished to Waiting (it gives up its
    queue slot) and back to Executing when it is granted a slot again, so the parent goes
    on only when it is no longer Waiting."""
    child = read_run(client, namespace, name)
    if ((child.get("status") or {}).get("phase")) not in TERMINAL_PHASES:
        return None
    try:
        parent = read_run(client, ctx.run.namespace, ctx.run.name)
    except TaskRunNotFoundError:
        return child
    if ((parent.get("status") or {}).get("phase")) == "Waiting":
        return None
    return child


def _result(client: Client, child: Json, output_type: Any) -> Result[Any]:
    return Result.from_run(Run.from_object(child, client, output_type, presign=False))


def trigger_and_wait(client: Client, task_id: str, payload: Any, options: TriggerOptionsDict,
                     output_type: Any = Any,
                     sleep: Callable[[float], Any] = time.sleep) -> Result[Any]:
    prepared, key = prepare(client, task_id, payload, options, wait=True,
                            method="trigger_and_wait")
    ctx = current_context()
    assert ctx is not None
    handle = create_run(prepared, key, output_type)
    interval = 0.1
    while True:
        if ctx.is_cancelled():
            raise TaskRunCanceledError(f"run {ctx.run.id} was asked to stop")
        child = _child_done(client, ctx, handle.namespace, handle.name)
        if child is not None:
            return _result(client, child, output_type)
        sleep(interval)
        interval = min(WAIT_POLL_MAX, interval * 1.5)


async def trigger_and_wait_async(client: Client, task_id: str, payload: Any,
                                 options: TriggerOptionsDict,
                                 output_type: Any = Any) -> Result[Any]:
    prepared, key = prepare(client, task_id, payload, options, wait=True,
                            method="trigger_and_wait_async")
    ctx = current_context()
    assert ctx is not None
    handle = await asyncio.to_thread(create_run, prepared, key, output_type)
    interval = 0.1
    while True:
        child = await asyncio.to_thread(_child_done, client, ctx, handle.namespace,
                                        handle.name)
        if child is not None:
            return await asyncio.to_thread(_result, client, child, output_type)
        await asyncio.sleep(interval)
        interval = min(WAIT_POLL_MAX, interval * 1.5)


# --- runs.reschedule and runs.replay ---------------------------------------------------------


def reschedule(client: Client, run_id: RunRef, delay: Delay) -> Run[Any]:
    """Move a Delayed run's start; RunNotDelayedError once it left Delayed."""
    namespace, name = split_run_id(run_id, client.namespace)
    for _ in range(5):
        obj = read_run(client, namespace, name)
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        delayed = phase == "Delayed" or (phase == "Pending" and obj["spec"].get("delayUntil"))
        if not delayed:
            raise RunNotDelayedError(f"{namespace}/{name}", phase)
        until = parse_delay(delay, utcnow())
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                 "spec": {"delayUntil": rfc3339(until)}}
        try:
            patched = client.kube.merge_patch("taskruns", namespace, name, patch)
        except ApiError as exc:
            if exc.status == 409:  # changed meanwhile (e.g. it left Delayed): look again
                continue
            raise
        return Run.from_object(patched, client)
    raise RunNotDelayedError(f"{namespace}/{name}", "changing too often to reschedule")


def replay(client: Client, run_id: RunRef) -> RunHandle[Any]:
    """A new run of the same task with the same payload and options."""
    namespace, name = split_run_id(run_id, client.namespace)
    original = read_run(client, namespace, name)
    spec = {k: v for k, v in (original.get("spec") or {}).items() if k in REPLAYED_FIELDS}
    if "payloadRef" not in spec:
        spec.setdefault("payload", None)
    task_id = spec["task"]
    body = {
        "apiVersion": original.get("apiVersion", "kubetasks.dev/v1alpha1"),
        "kind": "TaskRun",
        "metadata": {"generateName": f"{task_id}-", "labels": {LABEL_TASK: task_id},
                     "annotations": {ANNOTATION_REPLAY_OF: name}},
        "spec": spec,
    }
    created = client.kube.create_object("taskruns", namespace, body)
    return _handle(client, created, Any, cached=False)
