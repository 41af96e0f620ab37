"""batch_trigger and batch_trigger_and_wait through the SDK, with the operator, the node agent
running the real worker, and the S3 server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

import kubetasks
from kubetasks import batch
from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from tests.cluster.helpers import GROUP, VERSION, custom, executions, make_queue, phase
from tests.cluster.tasks import batch_parent, child

pytestmark = pytest.mark.cluster


def taskruns(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns")["items"]
    return items


@pytest.mark.timeout(900)
def test_a_thousand_item_batch_completes_with_every_result_in_order(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    node_agent: NodeAgentProcess, sdk: kubetasks.Client,
) -> None:
    make_queue(kube_api, namespace, "wide", concurrencyLimit=25)
    items = ({"payload": {"output": {"item": i}}, "options": {"queue": "wide"}}
             for i in range(1000))  # a generator: streamed into the batch
    started = time.monotonic()
    handle = kubetasks.tasks.batch_trigger("behave", items)
    assert handle.run_count == 1000
    assert time.monotonic() - started < 10  # one request, not a thousand
    done = handle.poll(timeout=800)
    assert done.status == "Completed", done.counts
    runs = handle.runs()
    assert [r.output for r in runs] == [{"item": i} for i in range(1000)]
    assert [r.status for r in runs] == ["Completed"] * 1000
    # Exactly one process per item really ran, never more than the queue allows at once.
    ran = executions(node_agent, namespace)
    assert len(ran) == 1000
    assert len({e["labels"]["kubetasks.dev/run"] for e in ran}) == 1000
    listed = list(kubetasks.runs.list(batch=handle.id, limit=2000))
    assert len(listed) == 1000


def test_batch_trigger_and_wait_returns_results_in_order_and_frees_the_parent_slot(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    sdk: kubetasks.Client,
) -> None:
    # The parent's queue holds one run: its children can only run if it lets go while it
    # waits; a second parent queued behind it starts meanwhile.
    values = [3, 1, 4, 1, 5]
    first = batch_parent.trigger({"values": values, "fail": [4], "sleep": 1},
                                 queue=kubetasks.queue("parents", concurrency_limit=1))
    deadline = time.monotonic() + 60
    while kubetasks.runs.retrieve(first.id).status != "Waiting":
        assert time.monotonic() < deadline, kubetasks.runs.retrieve(first.id).status
        time.sleep(0.1)
    second = batch_parent.trigger({"values": [7]},
                                  queue=kubetasks.queue("parents", concurrency_limit=1))
    assert second.poll(timeout=120).status == "Completed"
    run = first.poll(timeout=120)
    assert run.status == "Completed", run.error
    results = run.output["results"]
    assert [r["ok"] for r in results] == [True, True, False, True, True]
    assert [r["output"]["doubled"] if r["ok"] else None for r in results] == [
        6, 2, None, 2, 10]
    assert results[2]["status"] == "Failed"
    # Each child knows its parent; the batch names the parent and waited for it.
    batches = custom(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskbatches")["items"]
    mine = [b for b in batches if b["spec"]["parent"]["name"] == first.name]
    assert len(mine) == 1 and mine[0]["spec"]["parent"]["wait"] is True
    assert mine[0]["status"]["phase"] == "PartiallyFailed"


def test_a_retried_parent_gets_its_batch_children_back_without_running_them_again(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    node_agent: NodeAgentProcess, sdk: kubetasks.Client,
) -> None:
    handle = batch_parent.trigger({"values": [1, 2], "fail_before_attempt": 2})
    run = handle.poll(timeout=120)
    assert run.status == "Completed", run.error
    assert run.attempts[-1].number == 2
    assert [r["output"]["doubled"] for r in run.output["results"]] == [2, 4]
    children = [r for r in taskruns(kube_api, namespace) if r["spec"]["task"] == "child"]
    assert len(children) == 2  # attempt 2's batch reused attempt 1's children by key
    child_processes = [e for e in executions(node_agent, namespace)
                       if e["labels"].get("kubetasks.dev/task") == "child"]
    assert len(child_processes) == 2


def test_items_with_keys_dedupe_and_the_batch_waits_on_the_run_it_reused(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    sdk: kubetasks.Client,
) -> None:
    earlier = child.trigger({"value": 21, "sleep": 3}, idempotency_key="order-1")
    handle = child.batch_trigger([
        batch.item({"value": 1}, idempotency_key="order-1"),
        batch.item({"value": 2}, idempotency_key="order-2"),
        {"payload": {"value": 3}, "options": {"idempotency_key": "order-2"}},
    ])
    done = handle.poll(timeout=120)
    assert done.status == "Completed"
    assert done.reused == 2
    runs = handle.runs()
    assert runs[0].id == earlier.id
    assert runs[0].output["doubled"] == 42  # the earlier run's result: not run again
    assert runs[1].id == runs[2].id
    assert len(taskruns(kube_api, namespace)) == 2


def test_large_items_go_through_object_storage(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    sdk: kubetasks.Client,
) -> None:
    from tests.cluster.tasks import blob

    big = "x" * 100_000  # above the 32 KiB inline limit: offloaded on its own
    items = [{"payload": {"text": big}}] + [{"payload": {"text": "y" * 20_000}}] * 10
    handle = blob.batch_trigger(items)  # 300 KB of items: the list itself goes to S3
    stored = custom(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskbatches", handle.name)
    assert "itemsRef" in stored["spec"] and stored["spec"]["itemCount"] == 11
    done = handle.poll(timeout=120)
    assert done.status == "Completed", done.counts
    outputs = [r.output["echo_length"] for r in handle.runs()]
    assert outputs == [100_000] + [20_000] * 10
    first = custom(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns", done.run_names[0])
    assert "payloadRef" in first["spec"]


def test_cancel_a_batch_from_the_sdk(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    sdk: kubetasks.Client,
) -> None:
    handle = child.batch_trigger([batch.item({"value": i}, delay="1h") for i in range(5)])
    deadline = time.monotonic() + 60
    while handle.retrieve().created < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    handle.cancel()
    done = handle.poll(timeout=60)
    assert done.status == "Canceled"
    assert {phase(r) for r in taskruns(kube_api, namespace)} == {"Canceled"}
    results = handle.results()
    assert [r.ok for r in results] == [False] * 5
