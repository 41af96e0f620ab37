"""The logs of a run's attempts: each attempt is one pod (of the Job ``<run>-<n>``), whose
log the API server serves through ``pods/log`` (it asks the node's kubelet).

The pod of attempt ``n`` carries the labels ``kubetasks.dev/run-uid=<run uid>`` and
``kubetasks.dev/attempt=<n>``. It lives as long as its Job: the operator's Jobs are deleted
``KUBETASKS_JOB_TTL_SECONDS`` (default 3600) after they finish, and the log with them.

>>> pod = attempt_pod(client, run, 1)                      # doctest: +SKIP
>>> for chunk in pod_log(client, pod, follow=True): ...     # doctest: +SKIP
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

from kubetasks._internal.client import Client, Json
from kubetasks.handles import Run
from kubetasks.protocol.pod import LABEL_ATTEMPT, LABEL_RUN_UID

TASK_CONTAINER = "task"
"""The container of an attempt's pod that runs the worker."""


def attempt_pods(client: Client, namespace: str, run_uid: str, attempt: int) -> list[Json]:
    """The pods of one attempt, newest first (normally exactly one)."""
    selector = f"{LABEL_RUN_UID}={run_uid},{LABEL_ATTEMPT}={attempt}"
    answer = client.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                 params={"labelSelector": selector})
    pods: list[Json] = list((answer or {}).get("items") or [])
    pods.sort(key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp", "")),
              reverse=True)
    return pods


def attempt_pod(client: Client, run: Run[Any], attempt: int) -> Json | None:
    """The pod of attempt ``attempt`` (from 1) of ``run``; None when there is none (not
    created yet, or deleted with its Job)."""
    pods = attempt_pods(client, run.namespace, run.uid, attempt)
    return pods[0] if pods else None


def log_container(pod: Json) -> str:
    """The container whose log is the attempt's: ``task``, else the pod's first one."""
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    return TASK_CONTAINER if TASK_CONTAINER in names or not names else names[0]


def container_state(pod: Json, container: str) -> str | None:
    """``waiting``, ``running`` or ``terminated`` from the pod's status; None before the
    node reported the container."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            state = status.get("state") or {}
            for name in ("terminated", "running", "waiting"):
                if name in state:
                    return name
    return None


def pod_log(client: Client, pod: Json, *, container: str | None = None, follow: bool = False,
            tail_lines: int | None = None) -> Iterator[bytes]:
    """The container's log through the API server (``pods/log``), chunk by chunk. With
    ``follow`` it goes on until the container ends (or the caller stops reading)."""
    meta = pod.get("metadata") or {}
    namespace = urllib.parse.quote(str(meta.get("namespace", "")), safe="")
    name = urllib.parse.quote(str(meta.get("name", "")), safe="")
    params: dict[str, Any] = {"container": container or log_container(pod)}
    if follow:
        params["follow"] = "true"
    if tail_lines is not None:
        params["tailLines"] = str(tail_lines)
    yield from client.kube.stream(f"/api/v1/namespaces/{namespace}/pods/{name}/log",
                                  params=params, read_timeout=None if follow else 60.0)
