"""Small helpers for cluster tests: create kubetasks objects, wait for phases, read what
really ran from the node agent's records."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client

from kubetasks.devcluster.nodeagent import NodeAgentProcess

GROUP, VERSION = "kubetasks.dev", "v1alpha1"
TERMINAL = {"Completed", "Failed", "Canceled", "Expired", "TimedOut", "Crashed"}


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create(api: client.ApiClient, namespace: str, plural: str, body: dict[str, Any]
           ) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
    result: dict[str, Any] = custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body)
    return result


def ts(value: str) -> float:
    """An RFC 3339 time of the API (``...Z``) as epoch seconds."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_until(condition: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    """Call ``condition`` every 0.2 s until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# The function in tests/cluster/tasks.py that does what a run's payload says.
BEHAVE_ENTRYPOINT = "tests.cluster.tasks:run"


def make_task(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    """A Task whose runs do what their payload says (see tests/cluster/tasks.py)."""
    create(api, namespace, "tasks", {
        "kind": "Task", "metadata": {"name": name},
        "spec": {"image": "local", "entrypoint": BEHAVE_ENTRYPOINT, **spec},
    })


def make_queue(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    create(api, namespace, "taskqueues", {"kind": "TaskQueue", "metadata": {"name": name},
                                          "spec": spec})


def make_run(api: client.ApiClient, namespace: str, name: str, task: str,
             payload: Any = None, **spec: Any) -> dict[str, Any]:
    return create(api, namespace, "taskruns", {
        "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"task": task, "payload": payload, **spec},
    })


def get_run(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns", name)
    return result


def patch_run(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    custom(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns", name, {"spec": spec})


def phase(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


def wait_for(api: client.ApiClient, namespace: str, name: str, phases: Iterable[str],
             timeout: float = 60) -> dict[str, Any]:
    wanted = set(phases)
    deadline = time.monotonic() + timeout
    run = get_run(api, namespace, name)
    while phase(run) not in wanted:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{namespace}/{name} is {phase(run)!r} after {timeout} s, wanted {wanted}: "
                f"{run.get('status')}")
        time.sleep(0.1)
        run = get_run(api, namespace, name)
    return run


def wait_all_terminal(api: client.ApiClient, namespace: str, timeout: float
                      ) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = custom(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskruns")["items"]
        if runs and all(phase(r) in TERMINAL for r in runs):
            return list(runs)
        if time.monotonic() > deadline:
            pending = [(r["metadata"]["name"], phase(r)) for r in runs
                       if phase(r) not in TERMINAL]
            raise AssertionError(f"{len(pending)} runs not finished: {pending[:10]}")
        time.sleep(0.5)


def executions(agent: NodeAgentProcess, namespace: str) -> list[dict[str, Any]]:
    """What really ran in ``namespace``: one entry per process, with start and end times
    and the pod's labels, from the node agent's records."""
    starts: dict[tuple[str, int], dict[str, Any]] = {}
    for record in agent.records():
        if record["namespace"] != namespace:
            continue
        key = (record["uid"], record["pid"])
        if record["event"] == "start":
            starts[key] = {**record, "end": None}
        elif key in starts:
            starts[key]["end"] = record["time"]
            starts[key]["exitCode"] = record.get("exitCode")
            starts[key]["reason"] = record.get("reason")
    return list(starts.values())


def max_overlap(intervals: Iterable[tuple[float, float | None]]) -> int:
    """The most intervals open at one instant (an open end counts as still running)."""
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((end if end is not None else float("inf"), -1))
    # At equal times, ends come before starts: a slot freed and retaken is not an overlap.
    points.sort(key=lambda p: (p[0], p[1]))
    current = best = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def create_namespace(api: client.ApiClient, name: str, timeout: float = 30) -> None:
    """Create namespace ``name`` and wait until its default ServiceAccount exists (pods
    need it)."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            return
        except client.ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
