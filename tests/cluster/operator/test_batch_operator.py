"""The operator's side of TaskBatches, with batches posted straight to the API (as kubectl
would): fan-out, status, items from object storage, keyed items, cancel, and a fan-out that
survives the operator being killed."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from kubernetes import client

import kubetasks
from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.services import S3Server
from kubetasks.idempotency_keys import IdempotencyKey, run_name
from kubetasks.protocol.payloads import Encoded
from kubetasks.protocol.storage import ObjectStore, StorageSettings
from tests.cluster.helpers import GROUP, VERSION, create, custom, make_task, phase

pytestmark = pytest.mark.cluster

TERMINAL_BATCH = {"Completed", "PartiallyFailed", "Canceled", "Failed"}


def make_batch(api: client.ApiClient, namespace: str, name: str, task: str,
               items: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "TaskBatch", "metadata": {"name": name},
                            "spec": {"task": task, **spec}}
    if items is not None:
        body["spec"]["items"] = items
    return create(api, namespace, "taskbatches", body)


def get_batch(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskbatches", name)
    return result


def wait_batch(api: client.ApiClient, namespace: str, name: str, phases: set[str],
               timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = get_batch(api, namespace, name)
        if phase(batch) in phases:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {namespace}/{name} is {phase(batch)!r} after "
                                 f"{timeout} s, wanted {phases}: {batch.get('status')}")
        time.sleep(0.2)


def list_runs(api: client.ApiClient, namespace: str, selector: str | None = None
              ) -> list[dict[str, Any]]:
    kwargs = {"label_selector": selector} if selector else {}
    items: list[dict[str, Any]] = custom(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns", **kwargs)["items"]
    return items


def test_inline_batch_fans_out_into_owned_runs_and_completes(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    items = [{"payload": {"output": {"item": i}}} for i in range(5)]
    items[3]["options"] = {"tags": ["third"], "maxAttempts": 1}
    batch = make_batch(kube_api, namespace, "fan", "behave", items)

    done = wait_batch(kube_api, namespace, "fan", TERMINAL_BATCH)
    status = done["status"]
    assert status["phase"] == "Completed"
    assert status["total"] == 5 and status["created"] == 5
    assert status["counts"]["completed"] == 5
    runs = {r["metadata"]["name"]: r for r in list_runs(kube_api, namespace)}
    assert sorted(runs) == [f"fan-{i}" for i in range(5)]
    for i in range(5):
        run = runs[f"fan-{i}"]
        assert run["status"]["output"] == {"item": i}
        assert run["spec"]["batch"] == {"name": "fan", "index": i}
        assert run["metadata"]["labels"]["kubetasks.dev/batch-index"] == str(i)
        owner = run["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("TaskBatch", batch["metadata"]["uid"])
    assert runs["fan-3"]["spec"]["tags"] == ["third"]
    assert runs["fan-3"]["spec"]["maxAttempts"] == 1


def test_failed_items_make_the_batch_partially_failed(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    make_batch(kube_api, namespace, "mixed", "behave",
               [{"payload": {}}, {"payload": {"exit": 65}}, {"payload": {}}])
    done = wait_batch(kube_api, namespace, "mixed", TERMINAL_BATCH)
    assert done["status"]["phase"] == "PartiallyFailed"
    assert done["status"]["counts"]["completed"] == 2
    assert done["status"]["counts"]["failed"] == 1


def _store(s3: S3Server) -> ObjectStore:
    return ObjectStore(StorageSettings(bucket=s3.bucket, endpoint=s3.endpoint,
                                       region=s3.region))


def test_items_from_object_storage_are_fanned_out(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    make_task(kube_api, namespace, "behave")
    items = [{"payload": {"output": {"item": i}}} for i in range(3)]
    data = json.dumps(items).encode()
    ref = _store(s3_server).put(f"batches/{namespace}/items.json", Encoded(data, items))
    make_batch(kube_api, namespace, "stored", "behave", itemsRef=ref, itemCount=3)
    done = wait_batch(kube_api, namespace, "stored", TERMINAL_BATCH)
    assert done["status"]["phase"] == "Completed"
    outputs = {r["metadata"]["name"]: r["status"]["output"] for r in list_runs(kube_api,
                                                                            namespace)}
    assert outputs == {f"stored-{i}": {"item": i} for i in range(3)}

    # A list that does not match its digest is refused whole: nothing is created.
    bad = dict(ref, sha256="0" * 64)
    make_batch(kube_api, namespace, "tampered", "behave", itemsRef=bad, itemCount=3)
    failed = wait_batch(kube_api, namespace, "tampered", TERMINAL_BATCH)
    assert failed["status"]["phase"] == "Failed"
    condition = failed["status"]["conditions"][0]
    assert condition["reason"] == "ItemsInvalid" and "SHA-256" in condition["message"]
    assert not list_runs(kube_api, namespace, "kubetasks.dev/batch=tampered")

    # Items the API server never saw are checked as it would have checked them.
    invalid = [{"payload": 1, "options": {"maxAttempts": 0}}]
    raw = json.dumps(invalid).encode()
    invalid_ref = _store(s3_server).put(f"batches/{namespace}/bad.json", Encoded(raw, invalid))
    make_batch(kube_api, namespace, "invalid", "behave", itemsRef=invalid_ref, itemCount=1)
    refused = wait_batch(kube_api, namespace, "invalid", TERMINAL_BATCH)
    assert refused["status"]["phase"] == "Failed"
    assert "maxAttempts" in refused["status"]["conditions"][0]["message"]


def test_keyed_items_reuse_the_run_that_holds_their_key(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    sdk: kubetasks.Client,
) -> None:
    # The sdk fixture deploys the "behave" task.
    existing = kubetasks.tasks.trigger("behave", {"output": "first"}, idempotency_key="k1")
    existing.poll(timeout=60)
    items = [
        {"payload": {"output": "again"}, "options": {"idempotencyKey": "k1"}},
        {"payload": {"output": "new"}, "options": {"idempotencyKey": "k2"}},
        {"payload": {"output": "dup"}, "options": {"idempotencyKey": "k2"}},
        {"payload": {"output": "plain"}},
    ]
    make_batch(kube_api, namespace, "keyed", "behave", items)
    done = wait_batch(kube_api, namespace, "keyed", TERMINAL_BATCH)
    status = done["status"]
    assert status["phase"] == "Completed", status
    k2 = run_name("behave", IdempotencyKey("k2", "global").digest("behave"), 0)
    assert status["keyedRuns"] == {"0": existing.name, "1": k2, "2": k2}
    assert status["reused"] == 2  # item 0 took the older run, item 2 the one item 1 made
    names = sorted(r["metadata"]["name"] for r in list_runs(kube_api, namespace))
    assert names == sorted([existing.name, k2, "keyed-3"])
    assert kubetasks.runs.retrieve(k2).output in ("new", "dup")
    assert kubetasks.runs.retrieve(existing.name).output == "first"


def test_canceling_a_batch_cancels_its_unfinished_runs(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    make_batch(kube_api, namespace, "stop", "behave",
               [{"payload": {"sleep": 60}}, {"payload": {}, "options": {"delayUntil": later}}])
    deadline = time.monotonic() + 60
    while {phase(r) for r in list_runs(kube_api, namespace)} != {"Executing", "Delayed"}:
        assert time.monotonic() < deadline, [phase(r) for r in list_runs(kube_api, namespace)]
        time.sleep(0.2)
    custom(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskbatches", "stop", {"spec": {"cancel": True}})
    done = wait_batch(kube_api, namespace, "stop", TERMINAL_BATCH, timeout=60)
    assert done["status"]["phase"] == "Canceled"
    assert {phase(r) for r in list_runs(kube_api, namespace)} == {"Canceled"}
    assert done["status"]["counts"]["canceled"] == 2


@pytest.mark.timeout(600)
def test_fan_out_killed_twice_still_gives_exactly_one_run_per_item(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = [{"payload": {"i": i}, "options": {"delayUntil": later}} for i in range(1000)]
    # A few keyed items: their runs are named from the key, so a restart must find them.
    for i in (5, 400, 999):
        items[i]["options"]["idempotencyKey"] = f"key-{i}"
    make_batch(kube_api, namespace, "big", "behave", items)

    def existing() -> int:
        return len(list_runs(kube_api, namespace))

    kills = 0
    at_kill: list[int] = []
    try:
        for threshold in (150, 550):
            deadline = time.monotonic() + 120
            while existing() < threshold:
                assert time.monotonic() < deadline, f"fan-out stalled at {existing()}"
                time.sleep(0.05)
            operator.kill()
            kills += 1
            at_kill.append(existing())
            time.sleep(0.5)
            operator.start()
    finally:
        if not operator.alive():
            operator.start()
    assert kills == 2
    # Both kills hit the fan-out mid-way (not after it had finished).
    assert all(n < 1000 for n in at_kill), at_kill
    deadline = time.monotonic() + 180
    while (get_batch(kube_api, namespace, "big").get("status") or {}).get("created") != 1000:
        assert time.monotonic() < deadline, get_batch(kube_api, namespace, "big").get("status")
        time.sleep(0.5)
    runs = list_runs(kube_api, namespace)
    indexes = sorted(r["spec"]["batch"]["index"] for r in runs)
    assert indexes == list(range(1000)), f"{len(runs)} runs for 1000 items"
    status = get_batch(kube_api, namespace, "big")["status"]
    assert status["phase"] == "Running"
    assert sorted(status["keyedRuns"]) == ["400", "5", "999"]
    deadline = time.monotonic() + 60
    while get_batch(kube_api, namespace, "big")["status"]["counts"]["pending"] != 1000:
        assert time.monotonic() < deadline, get_batch(kube_api, namespace, "big")["status"]
        time.sleep(0.5)
