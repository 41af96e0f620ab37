"""The node agent runs pods as real local processes and reports them as a kubelet would."""

from __future__ import annotations

import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from kubernetes import client

from kubetasks.devcluster.nodeagent import NodeAgentProcess, ProcessRecord

pytestmark = pytest.mark.cluster

T = TypeVar("T")


def _eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """The probe's first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


Obj = dict[str, Any]


def _python(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


def _plain(kube_api: client.ApiClient, obj: object) -> Obj:
    """A client model as the API's own JSON (camelCase field names)."""
    return cast(Obj, kube_api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]


def _pod_spec(command: list[str], **extra: Any) -> Obj:
    container: Obj = {"name": "main", "image": "none", "command": command}
    container.update(extra.pop("container", {}))
    return {"restartPolicy": "Never", "containers": [container], **extra}


def _create_job(kube_api: client.ApiClient, namespace: str, command: list[str], *,
                name: str | None = None, job_spec: Obj | None = None,
                **pod_extra: Any) -> str:
    name = name or f"job-{uuid.uuid4().hex[:6]}"
    body = client.V1Job.from_dict({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, **(job_spec or {}),
                 "template": {"spec": _pod_spec(command, **pod_extra)}},
    })
    assert body is not None
    client.BatchV1Api(kube_api).create_namespaced_job(namespace, body)
    return name


def _create_pod(kube_api: client.ApiClient, namespace: str, command: list[str] | None,
                **pod_extra: Any) -> Obj:
    name = f"pod-{uuid.uuid4().hex[:6]}"
    spec = _pod_spec(command or [], **pod_extra)
    if command is None:
        del spec["containers"][0]["command"]
    body = client.V1Pod.from_dict({"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": name}, "spec": spec})
    assert body is not None
    return _plain(kube_api, client.CoreV1Api(kube_api).create_namespaced_pod(namespace, body))


def _read_pod(kube_api: client.ApiClient, namespace: str, name: str) -> Obj | None:
    try:
        pod = client.CoreV1Api(kube_api).read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return _plain(kube_api, pod)


def _pod_in_phase(kube_api: client.ApiClient, namespace: str, name: str, phase: str) -> (
        Obj | None):
    pod = _read_pod(kube_api, namespace, name)
    return pod if pod and pod.get("status", {}).get("phase") == phase else None


def _job_finished(kube_api: client.ApiClient, namespace: str, name: str) -> Obj | None:
    """The Job's Complete or Failed condition once it has one."""
    job = _plain(kube_api, client.BatchV1Api(kube_api).read_namespaced_job(name, namespace))
    for condition in job.get("status", {}).get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return cast(Obj, condition)
    return None


def _job_pod(kube_api: client.ApiClient, namespace: str, job: str) -> Obj | None:
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector=f"job-name={job}").items
    return _plain(kube_api, pods[0]) if pods else None


def _terminated(pod: Obj) -> Obj:
    return cast(Obj, pod["status"]["containerStatuses"][0]["state"]["terminated"])


def _records_of(agent: NodeAgentProcess, uid: str) -> list[ProcessRecord]:
    return [r for r in agent.records() if r["uid"] == uid]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_job_completes_with_its_downward_env_message_and_log(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    script = """
        import os
        names = ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME", "JOB_LABEL", "POD_IP"]
        print("env:", " ".join(f"{n}={os.environ[n]}" for n in names))
        print("greeting:", os.environ["GREETING"])
        with open(os.environ["KUBETASKS_TERMINATION_MESSAGE_PATH"], "w") as f:
            f.write("result=42")
    """

    def field(name: str, path: str) -> Obj:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    env = [
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_UID", "metadata.uid"),
        field("NODE_NAME", "spec.nodeName"),
        field("JOB_LABEL", "metadata.labels['job-name']"),
        field("POD_IP", "status.podIP"),
        {"name": "GREETING", "value": "hello from $(POD_NAME)"},
    ]
    job = _create_job(kube_api, namespace, _python(script), container={"env": env})

    condition = _eventually(lambda: _job_finished(kube_api, namespace, job), 60, "the Job")
    assert condition["type"] == "Complete"

    pod = _job_pod(kube_api, namespace, job)
    assert pod is not None
    meta, status = pod["metadata"], pod["status"]
    assert (status["phase"], status["podIP"]) == ("Succeeded", "127.0.0.1")
    terminated = _terminated(pod)
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert terminated["message"] == "result=42"

    output = node_agent.pod_log_path(namespace, meta["name"], "main").read_text()
    assert (f"env: POD_NAME={meta['name']} POD_NAMESPACE={namespace} POD_UID={meta['uid']} "
            f"NODE_NAME={node_agent.node_name} JOB_LABEL={job} POD_IP=127.0.0.1") in output
    assert f"greeting: hello from {meta['name']}" in output

    records = _records_of(node_agent, meta["uid"])
    assert [r["event"] for r in records] == ["start", "end"]
    assert records[0]["labels"]["job-name"] == job
    assert records[0]["pid"] == records[1]["pid"]
    assert records[1].get("exitCode") == 0


def test_a_failing_command_fails_the_job_with_its_exit_code(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    script = "import sys; print('it broke', file=sys.stderr); sys.exit(3)"
    job = _create_job(kube_api, namespace, _python(script),
                      container={"terminationMessagePolicy": "FallbackToLogsOnError"})

    condition = _eventually(lambda: _job_finished(kube_api, namespace, job), 60, "the Job")
    assert (condition["type"], condition["reason"]) == ("Failed", "BackoffLimitExceeded")
    pod = _job_pod(kube_api, namespace, job)
    assert pod is not None
    assert pod["status"]["phase"] == "Failed"
    terminated = _terminated(pod)
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    # Nothing was written to the message file: the log's tail stands in for it.
    assert terminated["message"].strip() == "it broke"


def test_a_pod_without_command_fails_with_reason_no_command(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    name = _create_pod(kube_api, namespace, None)["metadata"]["name"]
    pod = _eventually(lambda: _pod_in_phase(kube_api, namespace, name, "Failed"), 30,
                      "the pod to fail")
    assert pod["status"]["reason"] == "NoCommand"
    assert "command" in _terminated(pod)["message"]
    assert _records_of(node_agent, pod["metadata"]["uid"]) == []


def test_deleting_a_running_pod_kills_its_process_and_the_pod_goes_away(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    meta = _create_pod(kube_api, namespace, _python("import time; time.sleep(300)"))["metadata"]
    start = _eventually(lambda: _records_of(node_agent, meta["uid"]), 30,
                        "the process to start")[0]
    assert _alive(start["pid"])
    _eventually(lambda: _pod_in_phase(kube_api, namespace, meta["name"], "Running"), 10,
                "the pod to be Running")

    client.CoreV1Api(kube_api).delete_namespaced_pod(meta["name"], namespace)  # grace 30 s

    _eventually(lambda: _read_pod(kube_api, namespace, meta["name"]) is None, 20,
                "the pod object to go away")
    assert not _alive(start["pid"])
    end = _records_of(node_agent, meta["uid"])[-1]
    assert (end["event"], end.get("exitCode")) == ("end", 143)  # SIGTERM was enough


def test_a_pod_ignoring_sigterm_gets_one_sigterm_then_sigkill_after_its_grace_period(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    script = """
        import signal, time
        signal.signal(signal.SIGTERM, lambda *_: print("got SIGTERM", flush=True))
        print("ready", flush=True)
        time.sleep(300)
    """
    meta = _create_pod(kube_api, namespace, _python(script))["metadata"]
    log_path = node_agent.pod_log_path(namespace, meta["name"], "main")
    _eventually(lambda: log_path.exists() and "ready" in log_path.read_text(), 30,
                "the process to start")
    core = client.CoreV1Api(kube_api)
    deleted_at = time.monotonic()
    core.delete_namespaced_pod(meta["name"], namespace, grace_period_seconds=3)
    # Every change to a terminating pod is a new event for the agent: none may re-signal.
    for i in range(3):
        time.sleep(0.3)
        core.patch_namespaced_pod(meta["name"], namespace, {"metadata": {"labels": {"n": str(i)}}})

    _eventually(lambda: _read_pod(kube_api, namespace, meta["name"]) is None, 20,
                "the pod object to go away")
    assert 2.5 < time.monotonic() - deleted_at < 15
    assert log_path.read_text().count("got SIGTERM") == 1
    end = _records_of(node_agent, meta["uid"])[-1]
    assert (end["event"], end.get("exitCode")) == ("end", 137)


def test_a_pod_past_its_active_deadline_is_stopped_and_fails(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    name = _create_pod(kube_api, namespace, ["sleep", "60"],
                       activeDeadlineSeconds=2)["metadata"]["name"]
    pod = _eventually(lambda: _pod_in_phase(kube_api, namespace, name, "Failed"), 30,
                      "the pod to fail")
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert _terminated(pod)["exitCode"] == 143
    records = _records_of(node_agent, pod["metadata"]["uid"])
    assert [r["event"] for r in records] == ["start", "end"]
    assert 1.5 < records[1]["time"] - records[0]["time"] < 10


def test_a_job_past_its_active_deadline_fails_and_its_process_ends(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    job = _create_job(kube_api, namespace, ["sleep", "60"],
                      job_spec={"activeDeadlineSeconds": 3})
    condition = _eventually(lambda: _job_finished(kube_api, namespace, job), 60, "the Job")
    assert (condition["type"], condition["reason"]) == ("Failed", "DeadlineExceeded")

    def ended_processes() -> list[ProcessRecord]:
        records = [r for r in node_agent.records() if r["labels"].get("job-name") == job]
        return [r for r in records if r["event"] == "end"]

    end = _eventually(ended_processes, 30, "the Job's process to end")[0]
    assert end.get("exitCode") == 143
    assert not _alive(end["pid"])


def test_twenty_jobs_all_complete_and_each_runs_exactly_once(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    started = time.monotonic()
    jobs = [_create_job(kube_api, namespace, ["sh", "-c", "echo $0", "run"], name=f"many-{i}")
            for i in range(20)]

    def all_finished() -> list[Obj] | None:
        conditions = [_job_finished(kube_api, namespace, j) for j in jobs]
        return [c for c in conditions if c] if all(conditions) else None

    conditions = _eventually(all_finished, 120, "20 Jobs to finish")
    elapsed = time.monotonic() - started
    assert [c["type"] for c in conditions] == ["Complete"] * len(jobs)
    starts = [r for r in node_agent.records()
              if r["namespace"] == namespace and r["event"] == "start"]
    assert sorted(r["labels"]["job-name"] for r in starts) == sorted(jobs)
    print(f"20 Jobs completed in {elapsed:.1f} s")


def test_a_restarted_agent_fails_the_pods_that_died_with_the_old_one(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    job = _create_job(kube_api, namespace, ["sh", "-c", "sleep 300 & sleep 301"])

    def running_pod() -> Obj | None:
        pod = _job_pod(kube_api, namespace, job)
        return pod if pod and pod["status"].get("phase") == "Running" else None

    meta = _eventually(running_pod, 30, "the pod to run")["metadata"]
    pid = _records_of(node_agent, meta["uid"])[0]["pid"]

    node_agent.kill()
    try:
        # A node failure takes its processes with it.
        _eventually(lambda: not _alive(pid), 5, "the pod's process to die with the agent")
    finally:
        node_agent.start()

    condition = _eventually(lambda: _job_finished(kube_api, namespace, job), 60, "the Job")
    assert condition["type"] == "Failed"
    pod = _read_pod(kube_api, namespace, meta["name"])
    assert pod is not None
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "NodeAgentRestarted")
    assert _terminated(pod)["exitCode"] == 137
    records = _records_of(node_agent, meta["uid"])
    assert [(r["event"], r.get("reason")) for r in records] == [
        ("start", None), ("end", "NodeAgentRestarted")]
