"""Attempts whose pod the Job controller cannot create (a Task naming a ServiceAccount that
does not exist, an image the API refuses): the run says why while the Job controller
retries, and once the operator's pod-create timeout passes (30 s here, 60 s by default) the
Job is deleted, in the foreground, and only then does the attempt end, with the Job
controller's message. A cause that passes in time (the ServiceAccount created late) costs
nothing: the same attempt runs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.protocol.pod import LABEL_RUN_UID
from tests.cluster.helpers import executions, get_run, make_run, make_task, wait_for

pytestmark = pytest.mark.cluster

POD_CREATE_TIMEOUT = 30.0  # tests/cluster/conftest.py: KUBETASKS_POD_CREATE_TIMEOUT


def succeeded(run: dict[str, Any]) -> dict[str, Any]:
    for cond in (run.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Succeeded":
            return dict(cond)
    return {}


def wait_for_reason(api: client.ApiClient, namespace: str, name: str, reason: str,
                    timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run = get_run(api, namespace, name)
    while succeeded(run).get("reason") != reason:
        assert time.monotonic() < deadline, (
            f"no {reason} condition after {timeout} s: {run.get('status')}")
        time.sleep(0.2)
        run = get_run(api, namespace, name)
    return run


def jobs_of(api: client.ApiClient, namespace: str, run: dict[str, Any]) -> list[str]:
    jobs = client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector=f"{LABEL_RUN_UID}={run['metadata']['uid']}").items
    return [str(job.metadata.name) for job in jobs if job.metadata is not None]


@pytest.mark.parametrize(("spec", "cause"), [
    ({"serviceAccountName": "nobody"}, 'serviceaccount "nobody" not found'),
    ({"image": " local"}, "whitespace"),
], ids=["missing-service-account", "image-with-spaces"])
def test_an_attempt_whose_pod_cannot_be_created_ends_with_the_reason(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    node_agent: NodeAgentProcess, spec: dict[str, Any], cause: str,
) -> None:
    make_task(kube_api, namespace, "no-pods", retry={"minTimeoutSeconds": 1,
                                                     "maxTimeoutSeconds": 1}, **spec)
    make_run(kube_api, namespace, "run", "no-pods", {}, maxAttempts=2)
    began = time.monotonic()

    # While the Job controller retries, the run says why it does not start.
    waiting = wait_for_reason(kube_api, namespace, "run", "PodNotCreated", timeout=30)
    assert waiting["status"]["phase"] == "Executing"
    assert cause in succeeded(waiting)["message"], succeeded(waiting)
    assert time.monotonic() - began < POD_CREATE_TIMEOUT - 5  # said long before the end

    # Each attempt ends after the timeout, once its Job is gone; the second is a new Job.
    run = wait_for(kube_api, namespace, "run", ["Failed"], timeout=2 * POD_CREATE_TIMEOUT + 60)
    assert time.monotonic() - began >= 2 * POD_CREATE_TIMEOUT - 1
    status = run["status"]
    assert status["error"]["type"] == "PodNotCreated", status
    assert cause in status["error"]["message"], status["error"]
    assert [a["reason"] for a in status["attempts"]] == ["PodNotCreated"] * 2, status
    assert [a["job"] for a in status["attempts"]] == ["run-1", "run-2"]
    assert all(cause in a["message"] and a.get("finishedTime") for a in status["attempts"])
    message = succeeded(run)["message"]
    assert "attempt 2 of 2" in message and "PodNotCreated" in message and cause in message
    assert jobs_of(kube_api, namespace, run) == []
    assert executions(node_agent, namespace) == []  # no pod ever ran

    events = client.CoreV1Api(kube_api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=TaskRun,reason=PodNotCreated").items
    assert len(events) >= 1 and all(cause in (e.message or "") for e in events), events


def test_a_pod_created_late_runs_the_same_attempt(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    node_agent: NodeAgentProcess,
) -> None:
    make_task(kube_api, namespace, "late-account", serviceAccountName="late")
    make_run(kube_api, namespace, "run", "late-account", {"output": "done"}, maxAttempts=1)
    wait_for_reason(kube_api, namespace, "run", "PodNotCreated", timeout=30)
    # The cause goes away well before the timeout: the Job controller's next retry (1, 2,
    # 4, 8 s apart) creates the pod, and the attempt runs as if nothing happened.
    client.CoreV1Api(kube_api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="late")))
    run = wait_for(kube_api, namespace, "run", ["Completed", "Failed", "Crashed"],
                   timeout=POD_CREATE_TIMEOUT + 60)
    assert run["status"]["phase"] == "Completed", run["status"]
    assert run["status"]["output"] == "done"
    assert [a["job"] for a in run["status"]["attempts"]] == ["run-1"]
    assert len(executions(node_agent, namespace)) == 1
