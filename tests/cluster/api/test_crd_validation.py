"""The API server itself rejects bad kubetasks objects, with a message that says what to fix.

These run against a real kube-apiserver with the CRDs from crds/ applied, so they prove the
generated schemas and CEL rules, not just the pydantic models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from kubernetes import client

from kubetasks.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    VERSION,
    ObjectMeta,
    QueueSpec,
    TaskQueue,
    TaskQueueSpec,
    TaskRun,
    TaskRunSpec,
)

pytestmark = pytest.mark.cluster

Kubectl = Callable[..., str]
SHA = "ab" * 32
REF = {"bucket": "payloads", "key": "runs/abc.json", "size": 12, "sha256": SHA}


def manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def taskrun(name: str = "run", **spec: Any) -> dict[str, Any]:
    return manifest("TaskRun", name, {"task": "send-email", "payload": {"to": "a@b.c"}, **spec})


PLURALS = {
    "TaskRun": "taskruns",
    "TaskBatch": "taskbatches",
    "Task": "tasks",
    "TaskQueue": "taskqueues",
}


class Api:
    """Posts and patches raw manifests, as a user with kubectl would."""

    def __init__(self, kube_api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(kube_api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[body["kind"]], body
        )
        return cast(dict[str, Any], created)

    def patch(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        patched = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind], name, {"spec": spec}
        )
        return cast(dict[str, Any], patched)

    def patch_status(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        patched = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURALS[kind], name, body
        )
        return cast(dict[str, Any], patched)


@pytest.fixture
def api(kube_api: client.ApiClient, namespace: str) -> Api:
    return Api(kube_api, namespace)


def rejected(call: Callable[[], object], *fragments: str) -> str:
    """Run ``call``, expect 422 Unprocessable Entity; return the API server's message."""
    with pytest.raises(client.ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    message: str = json.loads(caught.value.body or "{}")["message"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- TaskRun on create ----------------------------------------------------------------------


def test_payload_and_payload_ref_together_are_rejected(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(payloadRef=REF)),
        "must validate one and only one schema (oneOf)",
        "Found 2 valid alternatives",
    )


def test_neither_payload_nor_payload_ref_is_rejected(api: Api) -> None:
    body = taskrun()
    del body["spec"]["payload"]
    rejected(lambda: api.create(body), "Found none valid", "spec.payload: Required value")


def test_negative_ttl_is_rejected(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(ttlSeconds=-1)),
        "spec.ttlSeconds",
        "should be greater than or equal to 0",
    )


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, "should be greater than or equal to 1"), (101, "should be less than or equal to 100")],
)
def test_max_attempts_out_of_range_is_rejected(api: Api, attempts: int, expected: str) -> None:
    rejected(lambda: api.create(taskrun(maxAttempts=attempts)), "spec.maxAttempts", expected)


def test_delay_until_must_be_a_timestamp(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(delayUntil="in one hour")),
        'spec.delayUntil in body must be of type date-time: "in one hour"',
    )


def test_more_than_ten_tags_are_rejected(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(tags=[f"tag-{i}" for i in range(11)])),
        "spec.tags: Too many: 11: must have at most 10 items",
    )


def test_duplicate_tags_are_rejected(api: Api) -> None:
    rejected(lambda: api.create(taskrun(tags=["a", "a"])), 'spec.tags[1]: Duplicate value: "a"')


def test_too_long_concurrency_key_is_rejected(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(concurrencyKey="u" * 257)),
        "spec.concurrencyKey: Too long: may not be more than 256",
    )


def test_queue_name_must_be_label_safe(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(queue={"name": "Paid_Users"})),
        "spec.queue.name",
        "should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
    )


def test_unknown_machine_is_rejected(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(machine="huge")),
        'spec.machine: Unsupported value: "huge"',
        '"small-1x"',
    )


def test_idempotency_options_need_a_key(api: Api) -> None:
    rejected(
        lambda: api.create(taskrun(idempotencyKeyScope="global")),
        "spec.idempotencyKey: Required value",
        "set the key or remove them",
    )


# --- TaskRun on update ----------------------------------------------------------------------


def test_task_cannot_change_after_creation(api: Api) -> None:
    api.create(taskrun("run"))
    rejected(
        lambda: api.patch("TaskRun", "run", {"task": "other-task"}),
        "spec.task: Forbidden: spec.task is immutable; create a new TaskRun",
    )


def test_payload_cannot_change_after_creation(api: Api) -> None:
    api.create(taskrun("run"))
    rejected(
        lambda: api.patch("TaskRun", "run", {"payload": {"to": "someone-else@b.c"}}),
        "only spec.delayUntil and spec.cancel may change after creation",
    )


def test_payload_ref_cannot_change_after_creation(api: Api) -> None:
    body = taskrun("run", payloadRef=REF)
    del body["spec"]["payload"]
    api.create(body)
    rejected(
        lambda: api.patch("TaskRun", "run", {"payloadRef": {"size": 13}}),
        "spec.payloadRef: Forbidden: spec.payloadRef is immutable",
    )


def test_queue_and_concurrency_key_cannot_change(api: Api) -> None:
    api.create(taskrun("run", queue={"name": "free-users"}, concurrencyKey="user-1"))
    rejected(
        lambda: api.patch("TaskRun", "run", {"queue": {"name": "paid-users"}}),
        "spec.queue and spec.concurrencyKey are immutable",
    )
    rejected(
        lambda: api.patch("TaskRun", "run", {"concurrencyKey": "user-2"}),
        "spec.queue and spec.concurrencyKey are immutable",
    )


def test_cancel_cannot_go_back_to_false(api: Api) -> None:
    api.create(taskrun("run"))
    api.patch("TaskRun", "run", {"cancel": True})
    rejected(
        lambda: api.patch("TaskRun", "run", {"cancel": False}),
        "spec.cancel: Forbidden: spec.cancel cannot go back to false",
    )
    rejected(
        lambda: api.patch("TaskRun", "run", {"cancel": None}),
        "spec.cancel cannot go back to false",
    )


# --- the other kinds ------------------------------------------------------------------------


def test_batch_with_items_and_items_ref_is_rejected(api: Api) -> None:
    body = manifest(
        "TaskBatch",
        "batch",
        {"task": "send-email", "items": [{"payload": 1}], "itemsRef": REF, "itemCount": 1},
    )
    rejected(lambda: api.create(body), "set exactly one of spec.items or spec.itemsRef")


def test_batch_of_more_than_1000_items_is_rejected(api: Api) -> None:
    body = manifest(
        "TaskBatch", "batch", {"task": "t", "items": [{"payload": i} for i in range(1001)]}
    )
    rejected(lambda: api.create(body), "spec.items: Too many: 1001: must have at most 1000 items")


def test_batch_items_cannot_change(api: Api) -> None:
    items = [{"payload": {"i": i}, "options": {"tags": ["bulk"]}} for i in range(1000)]
    api.create(manifest("TaskBatch", "batch", {"task": "t", "items": items}))
    items[999] = {"payload": {"i": -1}}
    rejected(
        lambda: api.patch("TaskBatch", "batch", {"items": items}),
        "spec.items, spec.itemsRef and spec.itemCount are immutable",
    )
    api.patch("TaskBatch", "batch", {"cancel": True})


def test_task_entrypoint_must_be_module_colon_function(api: Api) -> None:
    body = manifest("Task", "send-email", {"image": "example/app:1", "entrypoint": "send_email"})
    rejected(lambda: api.create(body), "spec.entrypoint", "should match")


def test_task_retry_backoff_bounds_must_be_ordered(api: Api) -> None:
    body = manifest(
        "Task",
        "send-email",
        {
            "image": "example/app:1",
            "entrypoint": "app.tasks:send_email",
            "retry": {"minTimeoutSeconds": 60, "maxTimeoutSeconds": 5},
        },
    )
    rejected(lambda: api.create(body), "spec.retry.minTimeoutSeconds must not exceed")


def test_queue_concurrency_limit_is_bounded(api: Api) -> None:
    rejected(
        lambda: api.create(manifest("TaskQueue", "q", {"concurrencyLimit": 10001})),
        "spec.concurrencyLimit",
        "should be less than or equal to 10000",
    )
    # 0 passes the schema; the operator reports it on the queue.
    api.create(manifest("TaskQueue", "q", {"concurrencyLimit": 0}))


def test_total_concurrency_limit_is_bounded(api: Api) -> None:
    rejected(
        lambda: api.create(manifest("TaskQueue", "q", {"totalConcurrencyLimit": 10001})),
        "spec.totalConcurrencyLimit",
        "should be less than or equal to 10000",
    )


def test_the_retired_concurrency_key_limit_is_refused_with_the_migration(api: Api) -> None:
    spec = {"concurrencyLimit": 100, "concurrencyKeyLimit": 1}
    rejected(lambda: api.create(manifest("TaskQueue", "q", spec)),
             "spec.concurrencyKeyLimit is retired",
             "{concurrencyLimit: K, totalConcurrencyLimit: N}")
    api.create(manifest("TaskQueue", "q", {"concurrencyLimit": 100}))
    rejected(lambda: api.patch("TaskQueue", "q", {"concurrencyKeyLimit": 1}),
             "spec.concurrencyKeyLimit is retired")


# --- what is accepted -----------------------------------------------------------------------


def test_valid_taskrun_is_accepted_and_listed_with_its_columns(
    api: Api, kubectl: Kubectl, namespace: str
) -> None:
    run = TaskRun(
        metadata=ObjectMeta(name="send-email-1"),
        spec=TaskRunSpec(
            task="send-email",
            payload={"to": "a@example.com"},
            queue=QueueSpec(name="emails", concurrency_limit=5),
            concurrency_key="user-123",
            tags=["welcome"],
            metadata={"source": {"campaign": 7}},
        ),
    )
    created = TaskRun.model_validate(api.create(run.model_dump(mode="json")))
    assert created.spec == run.spec
    api.patch_status(
        "TaskRun",
        "send-email-1",
        {"status": {"phase": "Executing", "attempt": 1, "queue": "emails"}},
    )

    table = kubectl("get", "taskruns", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "TASK", "STATUS", "ATTEMPT", "QUEUE", "AGE"]
    assert table[1].split()[:5] == ["send-email-1", "send-email", "Executing", "1", "emails"]
    assert "send-email-1" in kubectl("get", "ktr", "-n", namespace)
    assert "taskrun.kubetasks.dev/send-email-1" in kubectl(
        "get", "kubetasks", "-n", namespace, "-o", "name"
    )


def test_null_payload_is_kept(api: Api) -> None:
    created = api.create(
        TaskRun(metadata=ObjectMeta(name="no-input"), spec=TaskRunSpec(task="t")).model_dump(
            mode="json"
        )
    )
    assert "payload" in created["spec"]
    assert created["spec"]["payload"] is None


def test_delay_until_can_be_rescheduled_and_cancel_set(api: Api) -> None:
    api.create(taskrun("run", delayUntil="2030-01-01T00:00:00Z"))
    patched = api.patch("TaskRun", "run", {"delayUntil": "2030-06-01T12:30:00Z"})
    assert patched["spec"]["delayUntil"] == "2030-06-01T12:30:00Z"
    patched = api.patch("TaskRun", "run", {"cancel": True})
    assert patched["spec"]["cancel"] is True


def test_queue_status_is_written_through_the_status_subresource(
    api: Api, kubectl: Kubectl, namespace: str
) -> None:
    queue = TaskQueue(metadata=ObjectMeta(name="emails"), spec=TaskQueueSpec(concurrency_limit=3))
    api.create(queue.model_dump(mode="json"))
    # If the session's operator runs (tests before this one started it), it writes the
    # queue's counts once, soon after the queue appears, and again only when they change:
    # let that first write happen, so that it cannot land after ours.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = api.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskqueues", "emails")
        if "running" in (current.get("status") or {}):
            break
        time.sleep(0.2)
    # A spec change sent to /status is ignored: status is the operator's, spec the user's.
    api.patch_status(
        "TaskQueue",
        "emails",
        {"spec": {"concurrencyLimit": 4},
         "status": {"running": 2, "queued": 7, "activeKeys": 2}},
    )
    api.patch("TaskQueue", "emails", {"totalConcurrencyLimit": 40})
    table = kubectl("get", "ktq", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "LIMIT", "TOTAL", "RUNNING", "QUEUED", "KEYS", "PAUSED",
                                "AGE"]
    assert table[1].split()[:7] == ["emails", "3", "40", "2", "7", "2", "false"]
    wide = kubectl("get", "ktq", "-n", namespace, "-o", "wide").splitlines()
    assert "NS LIMIT" in wide[0]
