"""Idempotency keys through the API server (no Redis), and ``trigger_and_wait`` from
inside running tasks: the child's output comes back, and a retried parent does not trigger
its child again."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubetasks import idempotency_keys, runs, tasks
from kubetasks._internal.client import Client
from tests.cluster.tasks import async_parent, blob, parent, run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def all_runs(sdk: Client) -> list[dict]:
    return list(sdk.kube.list_objects("taskruns", sdk.namespace))


def test_twenty_concurrent_triggers_with_one_key_create_exactly_one_run(sdk: Client) -> None:
    def trigger(i: int) -> tuple[str, bool]:
        handle = blob.trigger({"text": str(i)}, idempotency_key="order-1234")
        return handle.id, handle.is_cached

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(trigger, range(20)))
    assert len({run_id for run_id, _ in results}) == 1
    assert sorted(cached for _, cached in results) == [False] + [True] * 19
    assert len(all_runs(sdk)) == 1
    # Later triggers with the key, once the run completed, still return it.
    first = runs.poll(results[0][0], timeout=60)
    again = blob.trigger({"text": "other"}, idempotency_key="order-1234")
    assert (again.id, again.is_cached) == (first.id, True)
    # The same key for another task, or another key, is another run.
    assert run.trigger({}, idempotency_key="order-1234").id != first.id
    assert blob.trigger({}, idempotency_key="order-5678").id != first.id
    assert len(all_runs(sdk)) == 3


def test_a_failed_run_releases_its_key_and_the_old_run_stays(sdk: Client) -> None:
    key = idempotency_keys.create("charge-42", scope="global")
    failed = run.trigger({"exit": 65}, idempotency_key=key)
    assert failed.poll(timeout=60).status == "Failed"
    retried = run.trigger({"output": "paid"}, idempotency_key=key)
    assert not retried.is_cached and retried.id != failed.id
    assert retried.poll(timeout=60).output == "paid"
    assert run.trigger({}, idempotency_key=key).id == retried.id
    assert runs.retrieve(failed.id).status == "Failed"
    assert len(all_runs(sdk)) == 2


def test_a_key_whose_ttl_passed_starts_a_new_run(sdk: Client) -> None:
    first = tasks.trigger("behave", {}, idempotency_key="hourly", idempotency_key_ttl=1)
    assert tasks.trigger("behave", {}, idempotency_key="hourly").id == first.id
    time.sleep(1.5)
    second = tasks.trigger("behave", {}, idempotency_key="hourly", idempotency_key_ttl="1h")
    assert second.id != first.id and not second.is_cached
    assert tasks.trigger("behave", {}, idempotency_key="hourly").id == second.id


def test_trigger_and_wait_inside_a_task_returns_the_childs_output(sdk: Client) -> None:
    done = parent.trigger({"value": 21, "child_sleep": 1}).poll(timeout=90)
    assert done.status == "Completed", done.error
    assert done.output["child"] == {"doubled": 42, "parent": done.id}
    assert done.output["ok"] is True
    child = runs.retrieve(done.output["child_id"])
    assert child.parent_id == done.id
    assert child.raw["spec"]["parent"] == {"name": done.name, "uid": done.uid, "wait": True,
                                           "attempt": 1}
    assert child.idempotency_key == "the-child"
    assert child.raw["spec"]["idempotencyKeyScope"] == "run"


def test_a_retried_parent_does_not_trigger_its_child_again(sdk: Client) -> None:
    done = parent.trigger({"value": 5, "fail_before_attempt": 2}, max_attempts=3
                          ).poll(timeout=120)
    assert done.status == "Completed", done.error
    assert done.attempt_count == 2
    children = [r for r in all_runs(sdk) if r["spec"]["task"] == "child"]
    assert len(children) == 1
    assert done.output["child"]["doubled"] == 10


def test_an_async_task_waits_for_a_failing_child_and_gets_its_error(sdk: Client) -> None:
    done = async_parent.trigger({"value": 1, "child_fail": True}).poll(timeout=90)
    assert done.status == "Completed", done.error
    # Nulls inside an output survive (the operator writes such outputs with a JSON patch).
    assert done.output_ref is None
    assert done.output == {"ok": False, "output": None, "error_type": "AbortTaskRunError"}
