"""A pod's status as a kubelet reports it, and the writes that carry it to the API server:
status patches, retried while the API server is away, and the final deletion of a pod."""

from __future__ import annotations

import logging
import threading
import time

from kubetasks.devcluster.nodeagent.client import ApiError, Json, KubeClient

log = logging.getLogger("kubetasks.nodeagent")

LOCAL_IP = "127.0.0.1"  # the node's address, and every pod's: they share the host's network
STATUS_RETRY_SECONDS = 300.0  # how long a pod status write is retried (API server down)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def waiting_status(container: Json, reason: str) -> Json:
    return {
        "name": container["name"], "image": container.get("image") or "local",
        "imageID": "", "ready": False, "started": False, "restartCount": 0,
        "state": {"waiting": {"reason": reason}},
    }


def terminated_state(
    code: int, reason: str, message: str, started: float, finished: float,
    container_id: str | None = None,
) -> Json:
    state: Json = {"exitCode": code, "reason": reason,
                   "startedAt": timestamp(started), "finishedAt": timestamp(finished)}
    if message:
        state["message"] = message
    if container_id:
        state["containerID"] = container_id
    return {"terminated": state}


def pod_condition(kind: str, status: bool, reason: str | None = None) -> Json:
    condition: Json = {"type": kind, "status": "True" if status else "False",
                       "lastTransitionTime": timestamp(time.time()), "lastProbeTime": None}
    if reason:
        condition["reason"] = reason
    return condition


def pod_status(
    phase: str,
    *,
    start_time: float,
    initialized: bool,
    init_statuses: dict[str, Json],
    main_statuses: dict[str, Json],
    reason: str | None = None,
    message: str | None = None,
) -> Json:
    """The whole status of a pod in ``phase``, its containers' statuses included."""
    terminal = phase in TERMINAL_PHASES
    running = phase == "Running"
    completed = "PodCompleted" if terminal else None
    status: Json = {
        "phase": phase,
        "hostIP": LOCAL_IP, "hostIPs": [{"ip": LOCAL_IP}],
        "podIP": LOCAL_IP, "podIPs": [{"ip": LOCAL_IP}],
        "startTime": timestamp(start_time),
        "conditions": [
            pod_condition("Initialized", initialized),
            pod_condition("ContainersReady", running, completed),
            pod_condition("Ready", running, completed),
        ],
        # Lists are replaced whole by a patch: always send all of them.
        "containerStatuses": list(main_statuses.values()),
    }
    if init_statuses:
        status["initContainerStatuses"] = list(init_statuses.values())
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status


class PodWriter:
    """Writes pods' status, and deletes pods, for the whole agent (any thread)."""

    def __init__(self, client: KubeClient, stopping: threading.Event) -> None:
        self.client = client
        self.stopping = stopping

    def patch_status(self, namespace: str, name: str, uid: str, status: Json) -> None:
        """Write a pod's status; while the API server is unreachable or answers 5xx/429,
        again with backoff (as the kubelet's status manager does): a lost final status
        would leave the pod Running in the API forever, holding its run's queue slot."""
        delay = 0.5
        deadline = time.monotonic() + STATUS_RETRY_SECONDS
        while True:
            try:
                self.client.request(
                    "PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                    # The UID makes the patch fail (409) on a new pod that reuses the name.
                    body={"metadata": {"uid": uid}, "status": status},
                    content_type="application/strategic-merge-patch+json", want_body=False,
                )
                return
            except ApiError as exc:
                if exc.status in (404, 409):
                    log.debug("pod %s/%s is gone; status not written", namespace, name)
                    return
                if exc.status < 500 and exc.status != 429:
                    log.error("writing the status of pod %s/%s failed: %s", namespace, name,
                              exc)
                    return
                failure: Exception = exc
            except Exception as exc:
                failure = exc
            if self.stopping.is_set() or time.monotonic() + delay > deadline:
                log.error("writing the status of pod %s/%s failed, giving up: %s",
                          namespace, name, failure)
                return
            log.warning("writing the status of pod %s/%s failed (%s); retrying in %.1f s",
                        namespace, name, failure, delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, 5.0)

    def delete(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.client.request(
                "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                      "preconditions": {"uid": uid}}, want_body=False,
            )
            log.debug("deleted pod %s/%s", namespace, name)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.error("deleting pod %s/%s failed: %s", namespace, name, exc)
        except Exception as exc:
            log.error("deleting pod %s/%s failed: %s", namespace, name, exc)
