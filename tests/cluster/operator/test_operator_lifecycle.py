"""The operator's TaskRun lifecycle on the real control plane, with pods run by the node
agent. Each test states its runs' behaviour in their payloads (see tests/cluster/tasks.py)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from kubernetes import client

from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from tests.cluster.helpers import (
    executions,
    get_run,
    make_queue,
    make_run,
    make_task,
    max_overlap,
    patch_run,
    ts,
    wait_all_terminal,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def iso_in(seconds: float) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def condition(run: dict, type_: str) -> dict:
    return next(c for c in run["status"]["conditions"] if c["type"] == type_)


def test_a_run_completes_with_its_output_through_a_job_per_attempt(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "echo")
    make_run(kube_api, namespace, "r1", "echo", {"output": {"hello": "world"}})
    run = wait_for(kube_api, namespace, "r1", ["Completed"])
    assert run["status"]["output"] == {"hello": "world"}
    assert run["status"]["attempt"] == 1
    assert condition(run, "Succeeded")["status"] == "True"
    job = client.BatchV1Api(kube_api).read_namespaced_job("r1-1", namespace)
    assert job.spec.backoff_limit == 0
    assert job.metadata.owner_references[0].uid == run["metadata"]["uid"]
    assert job.metadata.labels["kubetasks.dev/attempt"] == "1"
    assert job.metadata.labels["kubetasks.dev/task"] == "echo"
    assert job.metadata.labels["kubetasks.dev/queue"] == "echo"
    assert job.spec.ttl_seconds_after_finished is not None


def test_unknown_task_fails_with_task_not_found_and_an_event(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_run(kube_api, namespace, "r1", "missing", {})
    run = wait_for(kube_api, namespace, "r1", ["Failed"])
    assert condition(run, "Succeeded")["reason"] == "TaskNotFound"
    # The Event is posted right after the status write: allow it a moment to land.
    deadline = time.monotonic() + 10
    while True:
        events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
        if any(e.reason == "TaskNotFound" and e.involved_object.name == "r1" for e in events):
            break
        assert time.monotonic() < deadline, [(e.reason, e.message) for e in events]
        time.sleep(0.2)


def test_no_job_before_delay_until_and_reschedule_moves_it(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo")
    make_run(kube_api, namespace, "r1", "echo", {}, delayUntil=iso_in(2))
    make_run(kube_api, namespace, "r2", "echo", {}, delayUntil=iso_in(30))
    assert wait_for(kube_api, namespace, "r2", ["Delayed"])
    new_delay = iso_in(3)
    patch_run(kube_api, namespace, "r2", {"delayUntil": new_delay})
    for name, delay_key in (("r1", None), ("r2", new_delay)):
        run = wait_for(kube_api, namespace, name, ["Completed"], timeout=30)
        delay = ts(delay_key or run["spec"]["delayUntil"])
        assert ts(run["status"]["startedTime"]) >= delay
    started = {e["labels"]["kubetasks.dev/run"]: e["time"] for e in executions(
        node_agent, namespace)}
    assert started["r2"] >= ts(new_delay)


def test_reschedule_after_the_run_left_delayed_is_refused_with_a_condition(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "echo")
    make_run(kube_api, namespace, "r1", "echo", {"sleep": 3})
    wait_for(kube_api, namespace, "r1", ["Executing"])
    patch_run(kube_api, namespace, "r1", {"delayUntil": iso_in(600)})
    deadline = time.monotonic() + 20
    while True:
        run = get_run(kube_api, namespace, "r1")
        conds = {c["type"]: c for c in run["status"].get("conditions", [])}
        if "Rescheduled" in conds:
            break
        assert time.monotonic() < deadline, run["status"]
        time.sleep(0.2)
    assert conds["Rescheduled"]["status"] == "False"
    assert conds["Rescheduled"]["reason"] == "RescheduleRefused"
    assert wait_for(kube_api, namespace, "r1", ["Completed"])


def test_ttl_expires_a_run_that_could_not_start_and_it_never_runs(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo")
    make_queue(kube_api, namespace, "one", concurrencyLimit=1)
    make_run(kube_api, namespace, "blocker", "echo", {"sleep": 6}, queue={"name": "one"})
    wait_for(kube_api, namespace, "blocker", ["Executing"])
    make_run(kube_api, namespace, "late", "echo", {}, queue={"name": "one"}, ttlSeconds=2)
    run = wait_for(kube_api, namespace, "late", ["Expired"], timeout=20)
    expiry = ts(run["status"]["expiresTime"])
    assert abs(ts(run["status"]["finishedTime"]) - expiry) < 1.5
    wait_for(kube_api, namespace, "blocker", ["Completed"], timeout=30)
    ran = {e["labels"]["kubetasks.dev/run"] for e in executions(node_agent, namespace)}
    assert ran == {"blocker"}


def test_queue_limit_is_never_exceeded(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "two"})
    make_queue(kube_api, namespace, "two", concurrencyLimit=2)
    for i in range(8):
        make_run(kube_api, namespace, f"r{i}", "echo", {"sleep": 0.8})
    runs = wait_all_terminal(kube_api, namespace, timeout=90)
    assert {r["status"]["phase"] for r in runs} == {"Completed"}
    done = executions(node_agent, namespace)
    assert len(done) == 8
    assert max_overlap((e["time"], e["end"]) for e in done) == 2


def test_paused_queue_starts_nothing_until_resumed(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "held"})
    make_queue(kube_api, namespace, "held", concurrencyLimit=5, paused=True)
    make_run(kube_api, namespace, "r1", "echo", {})
    wait_for(kube_api, namespace, "r1", ["Queued"])
    time.sleep(2)
    assert executions(node_agent, namespace) == []
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "kubetasks.dev", "v1alpha1", namespace, "taskqueues", "held",
        {"spec": {"paused": False}})
    wait_for(kube_api, namespace, "r1", ["Completed"], timeout=30)


def test_queue_limit_zero_fails_with_a_clear_reason(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "echo")
    make_run(kube_api, namespace, "r1", "echo", {}, queue={"name": "zero",
                                                           "concurrencyLimit": 0})
    run = wait_for(kube_api, namespace, "r1", ["Failed"])
    assert condition(run, "Succeeded")["reason"] == "InvalidQueue"
    assert "concurrencyLimit 0" in condition(run, "Succeeded")["message"]


def test_a_flaky_run_is_retried_with_backoff_and_succeeds(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "flaky", retry={"maxAttempts": 3, "minTimeoutSeconds": 1,
                                                    "maxTimeoutSeconds": 2, "factor": 2})
    make_run(kube_api, namespace, "r1", "flaky", {"fail_before_attempt": 2})
    run = wait_for(kube_api, namespace, "r1", ["Completed"], timeout=60)
    attempts = run["status"]["attempts"]
    assert [a["number"] for a in attempts] == [1, 2]
    assert attempts[0]["exitCode"] == 1
    gap = ts(attempts[1]["startedTime"]) - ts(attempts[0]["finishedTime"])
    assert gap >= 0.9


def test_max_attempts_on_the_run_overrides_the_task(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "flaky", retry={"maxAttempts": 5, "minTimeoutSeconds": 1})
    make_run(kube_api, namespace, "r1", "flaky", {"fail_before_attempt": 9}, maxAttempts=1)
    run = wait_for(kube_api, namespace, "r1", ["Failed"], timeout=60)
    assert len(run["status"]["attempts"]) == 1
    assert run["status"]["error"]["type"] == "Flaky"


def test_abort_exit_code_fails_at_once(kube_api: client.ApiClient, namespace: str) -> None:
    make_task(kube_api, namespace, "echo")
    make_run(kube_api, namespace, "r1", "echo", {"exit": 65})
    run = wait_for(kube_api, namespace, "r1", ["Failed"])
    assert run["status"]["attempt"] == 1
    assert condition(run, "Succeeded")["reason"] == "Aborted"


def test_exceeding_max_duration_ends_timed_out_without_retry(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "slow", maxDurationSeconds=2)
    make_run(kube_api, namespace, "r1", "slow", {"sleep": 60})
    run = wait_for(kube_api, namespace, "r1", ["TimedOut"], timeout=40)
    assert run["status"]["attempt"] == 1


def test_a_crash_is_retried_and_all_crashes_end_crashed(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "crashy", retry={"maxAttempts": 2, "minTimeoutSeconds": 1})
    make_run(kube_api, namespace, "r1", "crashy", {"kill_self_before_attempt": 2})
    make_run(kube_api, namespace, "r2", "crashy", {"kill_self_before_attempt": 9})
    assert wait_for(kube_api, namespace, "r1", ["Completed"], timeout=60)
    run = wait_for(kube_api, namespace, "r2", ["Crashed"], timeout=60)
    assert [a["exitCode"] for a in run["status"]["attempts"]] == [137, 137]


def test_cancel_stops_the_pod_and_marks_the_run_canceled(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "slow")
    make_run(kube_api, namespace, "r1", "slow", {"sleep": 60})
    wait_for(kube_api, namespace, "r1", ["Executing"])
    deadline = time.monotonic() + 20
    while not executions(node_agent, namespace):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    patch_run(kube_api, namespace, "r1", {"cancel": True})
    wait_for(kube_api, namespace, "r1", ["Canceled"])
    deadline = time.monotonic() + 20
    while executions(node_agent, namespace)[0]["end"] is None:
        assert time.monotonic() < deadline, "the pod's process was not stopped"
        time.sleep(0.1)


def test_canceling_a_finished_run_changes_nothing(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "echo")
    make_run(kube_api, namespace, "r1", "echo", {})
    before = wait_for(kube_api, namespace, "r1", ["Completed"])
    patch_run(kube_api, namespace, "r1", {"cancel": True})
    time.sleep(2)
    after = get_run(kube_api, namespace, "r1")
    assert after["status"] == before["status"]


def test_a_waiting_parent_frees_its_slot_so_its_child_can_run(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "solo"})
    make_queue(kube_api, namespace, "solo", concurrencyLimit=1)
    parent = make_run(kube_api, namespace, "parent", "echo", {"sleep": 6})
    wait_for(kube_api, namespace, "parent", ["Executing"])
    make_run(kube_api, namespace, "child", "echo", {"sleep": 0.5},
             parent={"name": "parent", "uid": parent["metadata"]["uid"], "wait": True})
    wait_for(kube_api, namespace, "parent", ["Waiting"], timeout=20)
    wait_for(kube_api, namespace, "child", ["Completed"], timeout=30)
    wait_for(kube_api, namespace, "parent", ["Completed"], timeout=30)


def test_taskqueue_status_shows_running_and_queued(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "slow", queue={"name": "busy"})
    make_queue(kube_api, namespace, "busy", concurrencyLimit=1)
    for i in range(3):
        make_run(kube_api, namespace, f"r{i}", "slow", {"sleep": 5})
    deadline = time.monotonic() + 20
    while True:
        q = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            "kubetasks.dev", "v1alpha1", namespace, "taskqueues", "busy")
        # No namespace cap here: its fields are absent (the operator's nulls remove them).
        if q.get("status") == {"running": 1, "queued": 2, "activeKeys": 0}:
            break
        assert time.monotonic() < deadline, q.get("status")
        time.sleep(0.2)


def test_operator_is_running(operator: OperatorProcess) -> None:
    assert operator.alive()


def test_canceling_a_waiting_parent_cancels_the_child_it_waits_on(
    kube_api: client.ApiClient, namespace: str
) -> None:
    make_task(kube_api, namespace, "slow")
    parent = make_run(kube_api, namespace, "parent", "slow", {"sleep": 30})
    wait_for(kube_api, namespace, "parent", ["Executing"])
    make_run(kube_api, namespace, "child", "slow", {"sleep": 30},
             parent={"name": "parent", "uid": parent["metadata"]["uid"], "wait": True})
    make_run(kube_api, namespace, "bystander", "slow", {"sleep": 0.2},
             parent={"name": "parent", "uid": parent["metadata"]["uid"], "wait": False})
    wait_for(kube_api, namespace, "parent", ["Waiting"], timeout=20)
    patch_run(kube_api, namespace, "parent", {"cancel": True})
    wait_for(kube_api, namespace, "parent", ["Canceled"])
    wait_for(kube_api, namespace, "child", ["Canceled"], timeout=20)
    wait_for(kube_api, namespace, "bystander", ["Completed"], timeout=20)


def test_priority_jumps_ahead_of_runs_enqueued_up_to_that_many_seconds_earlier(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "line"})
    make_queue(kube_api, namespace, "line", concurrencyLimit=1)
    make_run(kube_api, namespace, "blocker", "echo", {"sleep": 3})
    wait_for(kube_api, namespace, "blocker", ["Executing"])
    make_run(kube_api, namespace, "early", "echo", {})
    time.sleep(1.1)
    make_run(kube_api, namespace, "urgent", "echo", {}, priority=60)
    make_run(kube_api, namespace, "later", "echo", {})
    wait_all_terminal(kube_api, namespace, timeout=60)
    order = [e["labels"]["kubetasks.dev/run"]
             for e in sorted(executions(node_agent, namespace), key=lambda e: e["time"])]
    assert order == ["blocker", "urgent", "early", "later"]


def test_a_key_with_one_run_is_not_stuck_behind_a_key_with_many(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "shared"})
    make_queue(kube_api, namespace, "shared", concurrencyLimit=1)
    for i in range(25):
        make_run(kube_api, namespace, f"big{i:02d}", "echo", {}, concurrencyKey="big")
    time.sleep(1)
    make_run(kube_api, namespace, "small", "echo", {}, concurrencyKey="small")
    wait_all_terminal(kube_api, namespace, timeout=120)
    order = [e["labels"]["kubetasks.dev/run"]
             for e in sorted(executions(node_agent, namespace), key=lambda e: e["time"])]
    # FIFO would run "small" last (26th); fair sharing between keys runs it within a
    # couple of turns of its arrival.
    assert order.index("small") < 10, order
