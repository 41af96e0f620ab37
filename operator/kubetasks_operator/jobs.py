"""The Job for one attempt of a run: a pure function of the run, its Task and the settings."""

from __future__ import annotations

from typing import Any

from kubetasks.api.v1alpha1 import API_VERSION
from kubetasks.protocol.pod import (
    ENV_ATTEMPT,
    ENV_ENTRYPOINT,
    ENV_NAMESPACE,
    ENV_POD_NAME,
    ENV_RUN_NAME,
    ENV_RUN_UID,
    ENV_TASK,
    LABEL_ATTEMPT,
    LABEL_CONCURRENCY_KEY,
    LABEL_MANAGED_BY,
    LABEL_QUEUE,
    LABEL_RUN,
    LABEL_RUN_UID,
    LABEL_TASK,
    MANAGED_BY,
    label_value,
)
from kubetasks_operator.core.lifecycle import attempt_job_name
from kubetasks_operator.settings import OperatorSettings

Json = dict[str, Any]

# Trigger.dev's machine presets: (vCPU, memory in GiB).
MACHINES: dict[str, tuple[float, float]] = {
    "micro": (0.25, 0.25),
    "small-1x": (0.5, 0.5),
    "small-2x": (1, 1),
    "medium-1x": (1, 2),
    "medium-2x": (2, 4),
    "large-1x": (4, 8),
    "large-2x": (8, 16),
}
DEFAULT_MACHINE = "small-1x"
# The Job's own deadline is a backstop a little after the pod's, so that the pod reports
# DeadlineExceeded itself (a clear TimedOut) before the Job controller kills it.
JOB_DEADLINE_MARGIN = 10


def machine_resources(machine: str | None) -> Json:
    cpu, memory_gib = MACHINES.get(machine or DEFAULT_MACHINE, MACHINES[DEFAULT_MACHINE])
    memory = f"{int(memory_gib * 1024)}Mi"
    return {
        "requests": {"cpu": f"{int(cpu * 1000)}m", "memory": memory},
        "limits": {"memory": memory},
    }


def attempt_labels(run: Json, queue: str, attempt: int) -> dict[str, str]:
    meta, spec = run["metadata"], run.get("spec") or {}
    labels = {
        LABEL_RUN: label_value(meta["name"]),
        LABEL_RUN_UID: meta["uid"],
        LABEL_TASK: spec["task"],
        LABEL_QUEUE: label_value(queue),
        LABEL_ATTEMPT: str(attempt),
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    if spec.get("concurrencyKey"):
        labels[LABEL_CONCURRENCY_KEY] = label_value(spec["concurrencyKey"])
    return labels


def attempt_job(
    run: Json, task: Json, queue: str, attempt: int, settings: OperatorSettings
) -> Json:
    meta, spec = run["metadata"], run.get("spec") or {}
    task_spec = task.get("spec") or {}
    name = attempt_job_name(meta["name"], attempt)
    labels = attempt_labels(run, queue, attempt)
    machine = spec.get("machine") or task_spec.get("machine")
    max_duration = spec.get("maxDurationSeconds") or task_spec.get("maxDurationSeconds")
    env: list[Json] = [
        {"name": ENV_RUN_NAME, "value": meta["name"]},
        {"name": ENV_RUN_UID, "value": meta["uid"]},
        {"name": ENV_NAMESPACE, "value": meta["namespace"]},
        {"name": ENV_TASK, "value": spec["task"]},
        {"name": ENV_ENTRYPOINT, "value": task_spec.get("entrypoint", "")},
        {"name": ENV_ATTEMPT, "value": str(attempt)},
        {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *settings.pod_env(),
        *(task_spec.get("env") or []),
    ]
    container: Json = {
        "name": "task",
        "image": task_spec.get("image", ""),
        "command": list(settings.worker_command),
        "env": env,
        "resources": machine_resources(machine),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
            # Without it, namespaces that enforce the restricted Pod Security Standard
            # refuse every attempt's pod.
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: Json = {
        "restartPolicy": "Never",
        "serviceAccountName": task_spec.get("serviceAccountName")
        or settings.task_service_account,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "containers": [container],
    }
    job_spec: Json = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if max_duration:
        pod_spec["activeDeadlineSeconds"] = int(max_duration)
        job_spec["activeDeadlineSeconds"] = int(max_duration) + JOB_DEADLINE_MARGIN
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "TaskRun", "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": job_spec,
    }
