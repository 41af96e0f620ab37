"""The Helm chart on a real API server: every rendering passes server-side validation, and a
real ``helm install`` runs the operator from the chart's own pod spec, under the chart's
ServiceAccount and RBAC, until task runs complete; ``helm uninstall`` leaves only the CRDs.

The install runs on a control plane of its own: the session's operator fixture, once another
test started it, watches every namespace and would act on this release's runs too, and a
fresh cluster lets ``helm install`` install the CRDs from the chart itself.

The node agent runs pods as local processes and gives them no in-cluster credentials (no
token mount, no KUBERNETES_SERVICE_HOST). So each pod gets, through the chart's own values
(``operator.extraEnv``, ``operator.taskEnv``), a ``KUBECONFIG`` whose exec credential plugin
asks the API server for a token of that pod's ServiceAccount (TokenRequest, as the kubelet
does): the operator and the task pods talk to the API with exactly the chart's RBAC.

The cluster-wide install also runs the dashboard (``dashboard.enabled``) from its pod spec,
with its own ServiceAccount's credentials the same way: it shows where tasks run, answers only
a person's valid token, lists runs for a read-only person and refuses their writes; its own
account only reads and asks reviews. One install serves both, to keep the suite fast.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

import kubetasks
from kubetasks.devcluster import ControllerSettings, ControlPlane
from kubetasks.devcluster.local import LOCAL_NODE_CAPACITY
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.devcluster.process import free_port
from kubetasks.devcluster.services import RedisServer, S3Server
from tests.cluster.conftest import Kubectl
from tests.cluster.helpers import get_run, make_run, make_task, wait_for
from tests.helm_chart import (
    CHART,
    REPO,
    VALUES_FILES,
    helm,
    render_text,
    values_namespaces,
)

pytestmark = pytest.mark.cluster

RELEASE = "kubetasks"
OPERATOR_SA = "kubetasks-operator"
TASK_SA = "kubetasks-task"
DASHBOARD_SA = "kubetasks-dashboard"
S3_SECRET = "kubetasks-s3"
CRDS = ("taskruns", "taskbatches", "tasks", "taskqueues", "taskschedules")
# Everything the chart creates carries this label; uninstall must leave none of it.
CHART_KINDS = ("deployments", "replicasets", "pods", "serviceaccounts", "services",
               "networkpolicies", "roles", "rolebindings", "clusterroles",
               "clusterrolebindings")


# --- every rendering, validated by the API server ------------------------------------------


@pytest.fixture(scope="module")
def named_namespaces(kubectl: Kubectl) -> Iterator[None]:
    """The namespaces the values files name (watched, or where tasks run) must exist."""
    names = sorted({ns for path in VALUES_FILES for ns in values_namespaces(path)})
    for name in names:
        kubectl("create", "namespace", name, check=False)
    yield
    for name in names:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: p.name)
def test_rendering_is_accepted_by_the_api_server(
    path: Path, namespace: str, kubectl: Kubectl, named_namespaces: None
) -> None:
    docs = [d for d in yaml.safe_load_all(render_text([path], namespace=namespace)) if d]
    # The test cluster has no Prometheus Operator CRD; the ServiceMonitor is checked by the
    # unit tests (rendered with --api-versions) instead.
    checked = [d for d in docs if d["kind"] != "ServiceMonitor"]
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(checked))
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == len(checked), out
    assert all(line.endswith("(server dry run)") for line in lines), out


# --- a real install on a cluster of its own ------------------------------------------------


@dataclass
class ChartCluster:
    control_plane: ControlPlane
    agent: NodeAgentProcess
    redis: RedisServer
    workdir: Path
    api: client.ApiClient

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.control_plane.kubectl(*args, input=input, check=check)

    def helm(self, *args: str, check: bool = True, timeout: float = 180
             ) -> subprocess.CompletedProcess[str]:
        return helm(*args, kubeconfig=self.control_plane.kubeconfig, check=check,
                    timeout=timeout)


@pytest.fixture(scope="module")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartCluster]:
    workdir = tmp_path_factory.mktemp("chart-cluster")
    cp = ControlPlane(workdir / "cluster", controller_settings=ControllerSettings.tuned())
    cp.start()
    try:
        agent = NodeAgentProcess(cp, workdir=workdir / "node", **LOCAL_NODE_CAPACITY).start()
        try:
            with RedisServer(workdir / "redis") as redis:
                api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(cp.kubeconfig))
                try:
                    yield ChartCluster(cp, agent, redis, workdir, api)
                finally:
                    api.close()
        finally:
            agent.stop()
    finally:
        cp.stop()


def service_account_kubeconfig(cluster: ChartCluster, namespace: str, account: str) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``namespace/account``: its exec
    plugin asks the API server for a fresh token of that account (TokenRequest)."""
    directory = cluster.workdir / "credentials"
    directory.mkdir(exist_ok=True)
    cp = cluster.control_plane
    plugin = directory / f"{namespace}-{account}-token"
    plugin.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        set -e
        token=$({shlex.quote(cp.binaries.kubectl)} --kubeconfig={shlex.quote(str(cp.kubeconfig))} \\
          create token {account} --namespace={namespace} --duration=1h)
        printf '{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",\
"status":{{"token":"%s"}}}}' "$token"
        """))
    plugin.chmod(0o755)
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    path = directory / f"{namespace}-{account}.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
            "interactiveMode": "Never"}}}],
        "contexts": [{"name": account, "context": {"cluster": "local", "user": account,
                                                   "namespace": namespace}}],
        "current-context": account,
    }))
    return path


@dataclass
class Release:
    namespace: str
    task_namespace: str
    health_port: int
    metrics_port: int
    dashboard_port: int | None = None


def install(cluster: ChartCluster, s3: S3Server, release_ns: str, task_ns: str,
            cluster_wide: bool, dashboard: bool = False) -> Release:
    """``helm install`` with values that point the operator at this cluster's Redis and the
    session's S3 server, and give its pods a PATH with this venv's ``kubetasks``; with
    ``dashboard``, the dashboard too, on a free port."""
    for ns in {release_ns, task_ns}:
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("create", "secret", "generic", S3_SECRET, f"--namespace={ns}",
                        f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key}",
                        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_key}")
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "kubetasks").exists(), f"no kubetasks script in {venv_bin}"
    path = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    release = Release(release_ns, task_ns, free_port(), free_port())
    values = {
        "image": {"repository": "local/kubetasks", "tag": "test"},  # the node agent runs no images
        "s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
               "existingSecret": S3_SECRET},
        "operator": {
            "healthPort": release.health_port,
            "extraEnv": [
                {"name": "KUBECONFIG", "value": str(
                    service_account_kubeconfig(cluster, release_ns, OPERATOR_SA))},
                {"name": "PATH", "value": path},
            ],
            "taskEnv": {
                "KUBECONFIG": str(service_account_kubeconfig(cluster, task_ns, TASK_SA)),
                "PATH": path,
                "PYTHONPATH": str(REPO),
            },
        },
        "metrics": {"port": release.metrics_port},
    }
    if dashboard:
        release.dashboard_port = free_port()
        values["dashboard"] = {
            "enabled": True,
            "port": release.dashboard_port,
            "extraEnv": [
                {"name": "KUBECONFIG", "value": str(
                    service_account_kubeconfig(cluster, release_ns, DASHBOARD_SA))},
                {"name": "PATH", "value": path},
                # The venv's kubetasks may be an editable install of another checkout: the
                # dashboard must be this one's.
                {"name": "PYTHONPATH", "value": str(Path(kubetasks.__file__).parents[1])},
            ],
        }
    if not cluster_wide:
        values["watchNamespaces"] = [release_ns]
    else:
        values["tasks"] = {"namespaces": [task_ns]}
    values_path = cluster.workdir / f"values-{release_ns}.yaml"
    values_path.write_text(yaml.safe_dump(values))
    cluster.helm("install", RELEASE, str(CHART), f"--namespace={release_ns}",
                 f"--values={values_path}",
                 "--set=redis.enabled=false", f"--set=redis.url={cluster.redis.url}",
                 "--wait", "--timeout=120s")
    return release


def wait_healthy(port: int, timeout: float = 60, what: str = "the operator") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}'s /healthz on port {port} never answered 200")
        time.sleep(0.5)


def operator_pod(cluster: ChartCluster, namespace: str) -> dict[str, Any]:
    return component_pod(cluster, namespace, "operator")


def component_pod(cluster: ChartCluster, namespace: str, component: str) -> dict[str, Any]:
    pods = json.loads(cluster.kubectl(
        "get", "pods", f"--namespace={namespace}", "-o", "json",
        f"--selector=app.kubernetes.io/component={component}"))["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod: dict[str, Any] = pods[0]
    return pod


def operator_log(cluster: ChartCluster, namespace: str, pod: str) -> str:
    return container_log(cluster, namespace, pod, "operator")


def container_log(cluster: ChartCluster, namespace: str, pod: str, container: str) -> str:
    return cluster.agent.pod_log_path(namespace, pod, container).read_text(errors="replace")


def notes_taskrun(notes: str) -> str:
    """The TaskRun manifest NOTES.txt tells the user to create."""
    match = re.search(r"<<'YAML'\n(.*?)\n\s*YAML\n", notes, re.DOTALL)
    assert match, notes
    return textwrap.dedent(match.group(1))


def can_i(cluster: ChartCluster, account: str, verb: str, resource: str, namespace: str,
          subresource: str = "") -> bool:
    extra = [f"--subresource={subresource}"] if subresource else []
    out = cluster.kubectl("auth", "can-i", verb, resource, f"--namespace={namespace}",
                          f"--as=system:serviceaccount:{account}", *extra, check=False)
    return out.strip() == "yes"


def chart_objects(cluster: ChartCluster) -> list[str]:
    out = cluster.kubectl("get", ",".join(CHART_KINDS), "--all-namespaces", "-o", "name",
                          f"--selector=app.kubernetes.io/instance={RELEASE}")
    return out.split()


# --- the dashboard, as a person reaches it -------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str


def call(port: int, method: str, path: str, *, token: str | None = None,
         headers: dict[str, str] | None = None, form: dict[str, str] | None = None) -> Answer:
    """One request to the dashboard; redirects are not followed."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, response.headers,
                      response.read().decode(errors="replace"))
    finally:
        connection.close()


def read_only_token(cluster: ChartCluster, namespace: str, name: str) -> str:
    """A token of a ServiceAccount that may only get, list and watch TaskRuns there."""
    cluster.kubectl("create", "serviceaccount", name, f"--namespace={namespace}")
    cluster.kubectl("create", "role", name, "--verb=get,list,watch",
                    "--resource=taskruns.kubetasks.dev", f"--namespace={namespace}")
    cluster.kubectl("create", "rolebinding", name, f"--role={name}",
                    f"--serviceaccount={namespace}:{name}", f"--namespace={namespace}")
    return cluster.kubectl("create", "token", name, f"--namespace={namespace}",
                           "--duration=1h").strip()


def check_dashboard(cluster: ChartCluster, release: Release, notes: str) -> str:
    """The dashboard runs from the chart's pod spec as its own account, shows where tasks run,
    lets a read-only person list runs and refuses their cancel; its account only reads and
    asks reviews. Returns its pod's name."""
    port, shown = release.dashboard_port, release.task_namespace
    assert port is not None
    assert f"kubectl port-forward svc/{DASHBOARD_SA} 8484:80 -n {release.namespace}" in notes
    pod = component_pod(cluster, release.namespace, "dashboard")
    assert pod["spec"]["serviceAccountName"] == DASHBOARD_SA
    command = pod["spec"]["containers"][0]["command"]
    assert command[:3] == ["kubetasks", "dashboard", "--per-user"]
    assert command[command.index("--port") + 1] == str(port)
    # Every namespace watched: it shows the namespace where the chart lets tasks run.
    assert [command[i + 1] for i, a in enumerate(command) if a == "--namespace"] == [shown]
    wait_healthy(port, what="the dashboard")

    # No token: a page view goes to the sign-in form, a script's request gets a 401 that
    # says how to sign in.
    anonymous = call(port, "GET", "/runs?status=Failed")
    assert anonymous.status == 303, (anonymous.status, anonymous.body)
    assert anonymous.headers["Location"] == "/login?next=%2Fruns%3Fstatus%3DFailed"
    assert call(port, "GET", "/login").status == 200
    script = call(port, "GET", "/runs?fragment=1")
    assert script.status == 401 and "Authorization: Bearer" in script.body
    # A token the API server does not accept (TokenReview) is no better.
    assert call(port, "GET", "/runs?fragment=1", token="not-a-token").status == 401

    # A person who may only read runs: a delayed run (it waits, nothing else changes it).
    token = read_only_token(cluster, shown, "run-viewer")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    make_run(cluster.api, shown, "dashboard-later", "send-email", {"to": "x@example.com"},
             delayUntil=later)
    wait_for(cluster.api, shown, "dashboard-later", ["Delayed"], timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the dashboard's watch brings it
        runs = call(port, "GET", "/runs", token=token)
        assert runs.status == 200, (runs.status, runs.body)
        if f"/runs/{shown}/dashboard-later" in runs.body:
            break
        assert time.monotonic() < deadline, "the run never showed on /runs"
        time.sleep(0.5)

    # Its cancel, sent as the page's form would (CSRF cookie and field, same origin): the
    # SubjectAccessReview says no, and nothing is written.
    page = call(port, "GET", f"/runs/{shown}/dashboard-later", token=token)
    assert page.status == 200, (page.status, page.body)
    cookie = next(c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie", [])
                  if c.startswith("kubetasks_csrf="))
    field = re.search(rf'action="/runs/{shown}/dashboard-later/cancel"[^>]*>\s*'
                      r'<input type="hidden" name="csrf" value="([^"]+)"', page.body)
    assert field, page.body
    assert cookie == f"kubetasks_csrf={field.group(1)}"
    before = get_run(cluster.api, shown, "dashboard-later")
    refused = call(port, "POST", f"/runs/{shown}/dashboard-later/cancel", token=token,
                   headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
                   form={"csrf": field.group(1)})
    assert refused.status == 403, (refused.status, refused.body)
    assert (f"system:serviceaccount:{shown}:run-viewer may not patch taskruns in namespace "
            f"{shown}") in refused.body, refused.body
    after = get_run(cluster.api, shown, "dashboard-later")
    assert "cancel" not in after["spec"]
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"]["phase"] == "Delayed"

    # Its own account, asked of the API server's authorizer: reads what it shows, reviews.
    account = f"{release.namespace}:{DASHBOARD_SA}"
    for verb in ("get", "list", "watch"):
        assert can_i(cluster, account, verb, "taskruns", shown), verb
    for resource in ("tokenreviews", "subjectaccessreviews"):
        assert can_i(cluster, account, "create", resource, shown), resource
    for verb in ("create", "patch", "delete"):
        assert not can_i(cluster, account, verb, "taskruns", shown), verb
    for ns in (shown, release.namespace):
        assert not can_i(cluster, account, "get", "secrets", ns), ns
    assert not can_i(cluster, account, "get", "pods", shown, subresource="log")
    assert not can_i(cluster, account, "list", "taskruns", "default")

    # None of its own requests (the watches, the reviews) was refused.
    name = str(pod["metadata"]["name"])
    log = container_log(cluster, release.namespace, name, "dashboard")
    refusals = [line for line in log.splitlines()
                if re.search(r"\b403\b|[Ff]orbidden", line)]
    assert not refusals, "\n".join(refusals)
    return name


@pytest.mark.parametrize("cluster_wide", [False, True],
                         ids=["namespaced", "cluster-wide-with-dashboard"])
def test_install_runs_tasks_and_uninstall_leaves_only_the_crds(
    chart_cluster: ChartCluster, s3_server: S3Server, cluster_wide: bool
) -> None:
    cluster = chart_cluster
    release_ns = "kt-cluster-wide" if cluster_wide else "kt-namespaced"
    # Cluster-wide, tasks run in a namespace of their own, away from the operator.
    task_ns = f"{release_ns}-tasks" if cluster_wide else release_ns

    # Bad values are refused at install time too, before anything is created.
    bad = cluster.helm("install", RELEASE, str(CHART), f"--namespace={release_ns}",
                       "--set=watchNamespaces[0]=Not_A_Namespace", check=False)
    assert bad.returncode != 0
    assert "at '/watchNamespaces/0': 'Not_A_Namespace' does not match pattern" in bad.stderr

    release = install(cluster, s3_server, release_ns, task_ns, cluster_wide,
                      dashboard=cluster_wide)

    # Helm installed the CRDs from the chart's crds/ (this cluster had none).
    for plural in CRDS:
        cluster.kubectl("get", "crd", f"{plural}.kubetasks.dev")
    # The operator runs from the Deployment's pod spec: `kubetasks operator --liveness ...`.
    pod = operator_pod(cluster, release_ns)
    assert pod["spec"]["serviceAccountName"] == OPERATOR_SA
    assert pod["spec"]["containers"][0]["command"][:2] == ["kubetasks", "operator"]
    wait_healthy(release.health_port)

    # The first run exactly as NOTES.txt describes it, for a Task of that name.
    status = cluster.helm("status", RELEASE, f"--namespace={release_ns}").stdout
    make_task(cluster.api, task_ns, "send-email")
    created = cluster.kubectl("create", f"--namespace={task_ns}", "-f", "-", "-o", "name",
                              input=notes_taskrun(status))
    first = created.strip().split("/")[-1]
    done = wait_for(cluster.api, task_ns, first, ["Completed", "Failed", "Crashed"])
    assert done["status"]["phase"] == "Completed", done["status"]
    assert re.search(rf"^{first}\s+send-email\s+Completed\s", cluster.kubectl(
        "get", "taskruns", f"--namespace={task_ns}"), re.MULTILINE)
    # Its attempt ran as the task ServiceAccount.
    job = json.loads(cluster.kubectl("get", "job", f"{first}-1", f"--namespace={task_ns}",
                                     "-o", "json"))
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == TASK_SA

    # A task that triggers a child and waits (the task account creates and reads TaskRuns),
    # and one that batch-triggers (TaskBatches; the operator fans out into TaskRuns).
    make_task(cluster.api, task_ns, "parent", entrypoint="tests.cluster.tasks:parent")
    make_task(cluster.api, task_ns, "child", entrypoint="tests.cluster.tasks:child")
    make_task(cluster.api, task_ns, "batch-parent",
              entrypoint="tests.cluster.tasks:batch_parent")
    make_run(cluster.api, task_ns, "parent-1", "parent", {"value": 21})
    make_run(cluster.api, task_ns, "batch-1", "batch-parent", {"values": [1, 2]})
    for name in ("parent-1", "batch-1"):
        run = wait_for(cluster.api, task_ns, name, ["Completed", "Failed", "Crashed"],
                       timeout=90)
        assert run["status"]["phase"] == "Completed", (name, run["status"])
    assert get_run(cluster.api, task_ns, "parent-1")["status"]["output"]["child"][
        "doubled"] == 42
    batch_output = get_run(cluster.api, task_ns, "batch-1")["status"]["output"]
    assert [r["output"]["doubled"] for r in batch_output["results"]] == [2, 4]

    # The Python SDK, as NOTES.txt shows it.
    sdk = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""\
            import kubetasks
            from kubetasks import tasks
            kubetasks.configure(namespace="{task_ns}")
            handle = tasks.trigger("send-email", {{"to": "someone@example.com"}})
            print(handle.poll(timeout=60).status)
            """)],
        capture_output=True, text=True, timeout=90, cwd=REPO,
        env={**os.environ, "KUBECONFIG": str(cluster.control_plane.kubeconfig)})
    assert sdk.stdout.strip() == "Completed", sdk.stderr

    # Metrics are served where the chart's Service points.
    with urllib.request.urlopen(f"http://127.0.0.1:{release.metrics_port}/metrics",
                                timeout=5) as response:
        assert b"kubetasks_" in response.read()

    dashboard_pod = check_dashboard(cluster, release, status) if cluster_wide else None

    # Least privilege, asked of the API server's authorizer.
    task_account = f"{task_ns}:{TASK_SA}"
    for verb, resource in (("create", "taskruns"), ("get", "taskruns"),
                           ("watch", "taskbatches"), ("create", "taskbatches")):
        assert can_i(cluster, task_account, verb, resource, task_ns), (verb, resource)
    for verb, resource in (("get", "pods"), ("create", "jobs"), ("get", "secrets"),
                           ("delete", "taskruns"), ("patch", "taskruns/status"),
                           ("get", "tasks"), ("create", "events")):
        assert not can_i(cluster, task_account, verb, resource, task_ns), (verb, resource)
    assert not can_i(cluster, task_account, "get", "taskruns", "default")
    operator_account = f"{release_ns}:{OPERATOR_SA}"
    assert can_i(cluster, operator_account, "create", "jobs", task_ns)
    assert not can_i(cluster, operator_account, "get", "secrets", task_ns)
    assert not can_i(cluster, operator_account, "update", "taskruns", task_ns)
    assert can_i(cluster, operator_account, "list", "taskruns", "default") == cluster_wide

    # Nothing the operator did was refused.
    log = operator_log(cluster, release_ns, pod["metadata"]["name"])
    refused = [line for line in log.splitlines()
               if re.search(r"\b403\b|[Ff]orbidden|[Nn]ot enough permissions", line)]
    assert not refused, "\n".join(refused)

    if dashboard_pod is not None:
        assert [o for o in chart_objects(cluster) if "dashboard" in o]
    cluster.helm("uninstall", RELEASE, f"--namespace={release_ns}", "--wait",
                 "--timeout=120s")
    deadline = time.monotonic() + 60
    while (left := chart_objects(cluster)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"helm uninstall left {left}"
    # CRDs stay (Helm never deletes them), and with them the runs.
    for plural in CRDS:
        cluster.kubectl("get", "crd", f"{plural}.kubetasks.dev")
    assert get_run(cluster.api, task_ns, "parent-1")["status"]["phase"] == "Completed"
    # The operator process is gone with its pod.
    ended = [r for r in cluster.agent.records() if r["event"] == "end"
             and r["namespace"] == release_ns and r["pod"] == pod["metadata"]["name"]]
    assert ended, "the operator process did not stop"
    if dashboard_pod is not None:  # its objects went with the others (chart_objects)
        assert [r for r in cluster.agent.records() if r["event"] == "end"
                and r["namespace"] == release_ns and r["pod"] == dashboard_pod], (
            "the dashboard process did not stop")
