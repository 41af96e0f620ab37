"""The attempt Job is a pure function of the run, its Task and the operator settings."""

from __future__ import annotations

from typing import Any

from kubetasks_operator.jobs import attempt_job
from kubetasks_operator.settings import OperatorSettings

RUN: dict[str, Any] = {
    "metadata": {"name": "r1", "namespace": "ns", "uid": "u-1"},
    "spec": {"task": "send-email", "payload": {}, "concurrencyKey": "user 42/ä"},
}
TASK: dict[str, Any] = {
    "metadata": {"name": "send-email"},
    "spec": {"image": "registry/app:1", "entrypoint": "app.tasks:send", "machine": "micro",
             "maxDurationSeconds": 30, "env": [{"name": "FROM_TASK", "value": "1"}]},
}


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_job_is_named_labelled_owned_and_bounded() -> None:
    job = attempt_job(RUN, TASK, "emails", 2, OperatorSettings())
    assert job["metadata"]["name"] == "r1-2"
    labels = job["metadata"]["labels"]
    assert labels["kubetasks.dev/attempt"] == "2"
    assert labels["kubetasks.dev/queue"] == "emails"
    assert labels["kubetasks.dev/concurrency-key"].startswith("h-")  # not a label value
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["activeDeadlineSeconds"] == 30
    assert job["spec"]["activeDeadlineSeconds"] > 30
    assert pod["containers"][0]["image"] == "registry/app:1"
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "256Mi"


def test_s3_settings_reach_the_pod_and_credentials_only_by_reference() -> None:
    settings = OperatorSettings.from_env({
        "KUBETASKS_S3_ENDPOINT": "http://s3:9000",
        "KUBETASKS_S3_BUCKET": "runs",
        "KUBETASKS_S3_CREDENTIALS_SECRET": "s3-creds",
        "KUBETASKS_TASK_ENV": '{"EXTRA": "x"}',
    })
    env = env_of(attempt_job(RUN, TASK, "emails", 1, settings))
    assert env["KUBETASKS_S3_ENDPOINT"] == "http://s3:9000"
    assert env["KUBETASKS_S3_BUCKET"] == "runs"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-creds",
                                                             "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["EXTRA"] == "x" and env["FROM_TASK"] == "1"
    assert env["KUBETASKS_RUN_NAME"] == "r1" and env["KUBETASKS_ATTEMPT"] == "1"


def test_the_attempt_pod_meets_the_restricted_pod_security_standard() -> None:
    container = attempt_job(RUN, TASK, "emails", 1, OperatorSettings())[
        "spec"]["template"]["spec"]["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
