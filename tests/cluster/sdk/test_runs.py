"""The SDK end to end on the real control plane: tasks deployed with ``kubetasks deploy``,
triggered with the SDK, run by the real worker in pods of the node agent, with Redis and the
S3 server. Trigger, retrieve, poll, cancel, reschedule, replay, list, retries and aborts."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

import kubetasks
from kubetasks import RunNotDelayedError, RunPollTimeoutError, runs, tasks
from kubetasks._internal.client import Client
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from tests.cluster.helpers import executions
from tests.cluster.tasks import Order, Receipt, async_cancellable, cancellable, receipt, run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def wait_status(run_id: str, statuses: set[str], timeout: float = 30) -> kubetasks.Run[Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = runs.retrieve(run_id)
        if current.status in statuses:
            return current
        assert time.monotonic() < deadline, f"{run_id} is {current.status}, wanted {statuses}"
        time.sleep(0.1)


def test_deploy_creates_tasks_pointing_at_their_functions(sdk: Client) -> None:
    task = sdk.kube.get_object("tasks", sdk.namespace, "receipt")
    assert task["spec"]["entrypoint"] == "tests.cluster.tasks:receipt"
    assert task["spec"]["image"] == "local"
    behave = sdk.kube.get_object("tasks", sdk.namespace, "behave")
    assert behave["spec"]["entrypoint"] == "tests.cluster.tasks:run"


def test_trigger_then_retrieve_a_typed_output(sdk: Client) -> None:
    handle = receipt.trigger(Order(id="o-1", amount=21), tags=["shop", "vip"],
                             metadata={"source": "test"})
    assert handle.id.startswith(f"{sdk.namespace}/receipt-")
    assert not handle.is_cached
    done = handle.poll(timeout=60)
    assert done.status == "Completed", done.error
    assert done.output == Receipt(order_id="o-1", total=42, attempt=1)
    retrieved = runs.retrieve(handle.id)
    assert retrieved.output == {"order_id": "o-1", "total": 42, "attempt": 1}
    assert retrieved.payload == {"id": "o-1", "amount": 21}
    assert retrieved.task_id == "receipt"
    assert retrieved.tags == ["shop", "vip"]
    assert retrieved.metadata == {"source": "test"}
    assert retrieved.attempt_count == 1
    assert [a.exit_code for a in retrieved.attempts] == [0]
    assert retrieved.created_at and retrieved.started_at and retrieved.finished_at
    assert retrieved.created_at <= retrieved.started_at
    # finishedTime comes from the pod's terminated.finishedAt, which has whole seconds.
    assert retrieved.started_at - dt.timedelta(seconds=1) <= retrieved.finished_at
    assert retrieved.payload_presigned_url is None and retrieved.output_presigned_url is None
    assert runs.retrieve(handle.name).id == handle.id  # a bare name: the client's namespace


def test_a_payload_that_does_not_fit_the_type_fails_at_once(sdk: Client) -> None:
    done = tasks.trigger_and_poll("receipt", {"id": "o-2", "amount": "lots"}, max_attempts=3,
                                  timeout=60)
    assert done.status == "Failed"
    assert done.attempt_count == 1
    assert done.error is not None and done.error.type == "InvalidPayloadError"


def test_trigger_and_poll_returns_the_finished_run_and_times_out_clearly(sdk: Client) -> None:
    done = tasks.trigger_and_poll("behave", {"output": {"x": 1}}, timeout=60)
    assert (done.status, done.output) == ("Completed", {"x": 1})
    typed = tasks.trigger_and_poll("receipt", {"id": "o-3", "amount": 1},
                                   output_type=Receipt, timeout=60)
    assert typed.output == Receipt(order_id="o-3", total=2, attempt=1)
    with pytest.raises(RunPollTimeoutError, match="still"):
        tasks.trigger_and_poll("behave", {"sleep": 30}, timeout=1, poll_interval=0.2)


def test_abort_ends_after_one_attempt(sdk: Client) -> None:
    done = run.trigger({"exit": 65}, max_attempts=3).poll(timeout=60)
    assert done.status == "Failed"
    assert done.attempt_count == 1
    assert done.error is not None and done.error.type == "AbortTaskRunError"
    assert "abort" in (done.error.message or "")
    assert "raise AbortTaskRunError" in (done.error.stack or "")


def test_a_flaky_task_succeeds_on_attempt_2(sdk: Client) -> None:
    done = run.trigger({"fail_before_attempt": 2}, max_attempts=3).poll(timeout=90)
    assert done.status == "Completed"
    assert done.output == {"attempt": 2}
    assert [a.exit_code for a in done.attempts] == [1, 0]


def test_cancel_stops_a_sync_task_which_sees_the_cancellation(
    sdk: Client, tmp_path: Path, node_agent: NodeAgentProcess
) -> None:
    marker = tmp_path / "sync.marker"
    handle = cancellable.trigger({"marker": str(marker)})
    wait_status(handle.id, {"Executing"})
    deadline = time.monotonic() + 20
    while not executions(node_agent, sdk.namespace):
        assert time.monotonic() < deadline, "the pod never started"
        time.sleep(0.1)
    time.sleep(1.0)  # let the worker import the task and enter its sleep
    runs.cancel(handle.id)
    assert handle.poll(timeout=30).status == "Canceled"
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, "the task never saw the cancellation"
        time.sleep(0.1)
    assert marker.read_text() == "cancelled=True"
    runs.cancel(handle.id)  # canceling a finished run changes nothing
    assert runs.retrieve(handle.id).status == "Canceled"


def test_cancel_reaches_an_async_task_as_cancelled_error(
    sdk: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "async.marker"
    handle = async_cancellable.trigger({"marker": str(marker)})
    wait_status(handle.id, {"Executing"})
    time.sleep(1.5)
    handle.cancel()
    assert handle.poll(timeout=30).status == "Canceled"
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, "the task never saw the cancellation"
        time.sleep(0.1)
    assert marker.read_text() == "cancelled=True"


def test_reschedule_moves_a_delayed_run_and_refuses_once_it_left_delayed(
    sdk: Client
) -> None:
    handle = run.trigger({"output": "late"}, delay="1h")
    delayed = wait_status(handle.id, {"Delayed"})
    assert delayed.delay_until is not None
    assert delayed.delay_until > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)
    moved = runs.reschedule(handle.id, delay="2s")
    assert moved.delay_until is not None
    assert moved.delay_until < dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    done = handle.poll(timeout=60)
    assert done.status == "Completed" and done.output == "late"
    assert done.started_at is not None and done.started_at >= moved.delay_until
    with pytest.raises(RunNotDelayedError, match="Completed, not Delayed"):
        runs.reschedule(handle.id, delay="1h")


def test_replay_makes_a_new_run_with_the_same_payload_and_options(sdk: Client) -> None:
    first = tasks.trigger_and_poll("behave", {"output": {"n": 7}}, tags="replayed",
                                   max_attempts=2, timeout=60)
    again = runs.replay(first.id)
    assert again.id != first.id
    done = again.poll(timeout=60)
    assert (done.status, done.output, done.payload) == ("Completed", {"n": 7},
                                                        {"output": {"n": 7}})
    assert done.tags == ["replayed"]
    assert done.raw["spec"]["maxAttempts"] == 2
    assert done.raw["metadata"]["annotations"]["kubetasks.dev/replay-of"] == first.name


def test_list_filters_and_pages_through_continue_tokens(sdk: Client) -> None:
    handles = [run.trigger({"output": i}, tags=["even" if i % 2 == 0 else "odd"])
               for i in range(5)]
    failed = run.trigger({"exit": 65})
    for handle in [*handles, failed]:
        handle.poll(timeout=60)
    everything = list(runs.list(page_size=2))
    assert {r.id for r in everything} == {h.id for h in [*handles, failed]}
    even = list(runs.list(tag="even", page_size=2))
    assert sorted(r.output for r in even) == [0, 2, 4]
    assert [r.id for r in runs.list(status="Failed", page_size=2)] == [failed.id]
    assert len(list(runs.list(status="Completed", task="behave", limit=3, page_size=2))) == 3
    assert list(runs.list(task="receipt")) == []
    assert len(list(runs.list(queue="behave"))) == 6
