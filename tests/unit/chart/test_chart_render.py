"""The Helm chart, rendered by a real ``helm`` without a cluster: lint, the objects each
values file produces, and the messages bad values fail with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetasks_operator.settings import OperatorSettings
from tests.helm_chart import (
    CHART,
    INVALID_VALUES_FILES,
    VALUES_DIR,
    VALUES_FILES,
    Manifest,
    container_env,
    expected_error,
    find,
    helm,
    one,
    render,
    template_error,
)

NS = "kubetasks"
OPERATOR = "kubetasks-operator"
TASK = "kubetasks-task"
CLUSTER_ROLE = "kubetasks-kubetasks-operator"  # cluster-scoped names carry the namespace

OPERATOR_RULES = {
    ("kubetasks.dev", "taskruns"): {"get", "list", "watch", "create", "patch"},
    ("kubetasks.dev", "taskbatches"): {"get", "list", "watch", "patch"},
    ("kubetasks.dev", "tasks"): {"get", "list", "watch"},
    ("kubetasks.dev", "taskqueues"): {"get", "list", "watch"},
    ("kubetasks.dev", "taskruns/status"): {"patch"},
    ("kubetasks.dev", "taskbatches/status"): {"patch"},
    ("kubetasks.dev", "taskqueues/status"): {"patch"},
    ("kubetasks.dev", "taskschedules"): {"get", "list", "watch"},
    ("kubetasks.dev", "taskschedules/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "list", "watch"},
}
# What Kopf reads at the cluster scope (found by 403s in the operator's log on a real API
# server; see tests/cluster/chart/test_helm_chart.py).
# The operator turns Kopf's CRD and namespace scanning off: Kopf needs no rights of its own.
KOPF_RULES: dict[tuple[str, str], set[str]] = {}
TASK_RULES = {
    ("kubetasks.dev", "taskruns"): {"get", "list", "watch", "create"},
    ("kubetasks.dev", "taskbatches"): {"get", "list", "watch", "create"},
}


def values(name: str) -> Path:
    return VALUES_DIR / f"values-{name}.yaml"


def rules(role: Manifest) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs; fails on anything broader than one group/resource."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def operator_deployment(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment", OPERATOR)


def pod_spec(deployment: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


# --- lint and rendering ---------------------------------------------------------------------


# `helm lint` has no --api-versions, so a ServiceMonitor (whose CRD lint cannot see) is
# checked by rendering only.
LINTABLE = [p for p in VALUES_FILES if "serviceMonitor:\n    enabled: true" not in p.read_text()]


@pytest.mark.parametrize("path", [None, *LINTABLE], ids=lambda p: p.name if p else "none")
def test_lint_strict_passes(path: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if path is not None:
        args.append(f"--values={path}")
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: p.name)
def test_every_values_file_renders_namespaced_labelled_objects(path: Path) -> None:
    objects = render([path])
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for obj in objects:
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "kubetasks", meta["name"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in meta
        else:
            assert meta.get("namespace"), f"{obj['kind']} {meta['name']} has no namespace"


def test_service_monitor_disabled_renders_without_its_crd() -> None:
    # No --api-versions: the cluster has no monitoring.coreos.com.
    text = helm("template", "kubetasks", str(CHART)).stdout
    assert "ServiceMonitor" not in text


# --- the operator Deployment ----------------------------------------------------------------


def test_operator_deployment_defaults() -> None:
    objects = render()
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == OPERATOR
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["command"] == [
        "kubetasks", "operator", "--liveness", "http://0.0.0.0:8080/healthz"]
    assert container["image"] == "ghcr.io/kubetasks/kubetasks:0.1.0"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert spec["volumes"][0]["name"] == "tmp" and "emptyDir" in spec["volumes"][0]

    env = container_env(deployment)
    assert env["KUBETASKS_REDIS_URL"] == "redis://kubetasks-redis.kubetasks.svc:6379/0"
    assert env["KUBETASKS_NAMESPACES"] == ""
    assert env["KUBETASKS_TASK_SERVICE_ACCOUNT"] == TASK
    assert env["KUBETASKS_METRICS_PORT"] == "9090"
    assert env["KUBETASKS_PRESIGN_EXPIRY"] == "300"
    assert env["KUBETASKS_LOG_FORMAT"] == "text"
    assert "KUBETASKS_TASK_ENV" not in env
    assert "KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT" not in env  # no namespace cap by default
    assert not {"AWS_ACCESS_KEY_ID", "KUBETASKS_S3_CREDENTIALS_SECRET"} & set(env)


def test_operator_env_is_what_the_operator_settings_accept() -> None:
    """Every plain value the chart sets parses into the operator's own settings."""
    deployment = operator_deployment(render([values("external")], sets=["redis.enabled=true",
                                                                          "redis.existingSecret="]))
    env = {k: v for k, v in container_env(deployment).items() if isinstance(v, str)}
    settings = OperatorSettings.from_env(env)
    assert settings.write_qps == 50 and settings.write_burst == 100
    assert settings.fanout_qps == 75.5 and settings.fanout_burst == 25
    assert settings.task_service_account == "my-tasks"
    assert settings.task_env == {"LOG_LEVEL": "debug", "FEATURE_X": "on"}
    assert settings.s3_endpoint == "https://s3.example.com"
    assert settings.s3_bucket == "kubetasks-payloads"
    assert settings.s3_region == "eu-west-1"
    assert settings.presign_expiry == 900
    assert settings.s3_credentials_secret == "kubetasks-s3"
    assert settings.namespaces == []
    assert settings.metrics_port == 9090
    assert settings.log_format == "json"
    caps = settings.namespace_concurrency_limit
    assert (caps.limit_for("prod"), caps.limit_for("preview-7"), caps.limit_for("dev")) == (
        200, 5, 50)


def test_external_redis_s3_secret_and_task_env() -> None:
    objects = render([values("external")])
    assert not find(objects, "Deployment", "kubetasks-redis")
    assert not find(objects, "Service", "kubetasks-redis")
    assert not find(objects, "NetworkPolicy")
    assert not find(objects, "ServiceMonitor")
    deployment = operator_deployment(objects)
    assert pod_spec(deployment)["serviceAccountName"] == "tasks-operator"
    one(objects, "ServiceAccount", "tasks-operator", NS)
    env = container_env(deployment)
    assert env["KUBETASKS_REDIS_URL"] == {
        "secretKeyRef": {"name": "kubetasks-redis", "key": "redis-url"}}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "kubetasks-s3", "key": key}}
    assert env["KUBETASKS_S3_CREDENTIALS_SECRET"] == "kubetasks-s3"
    assert json.loads(env["KUBETASKS_TASK_ENV"]) == {"LOG_LEVEL": "debug", "FEATURE_X": "on"}
    assert env["KUBETASKS_JOB_TTL_SECONDS"] == "600"  # extraEnv
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "200m", "memory": "512Mi"},
                         "limits": {"memory": "2Gi"}}
    task_sa = one(objects, "ServiceAccount", "my-tasks", NS)
    assert task_sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/kubetasks-tasks"}
    binding = one(objects, "RoleBinding", TASK, NS)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "my-tasks",
                                    "namespace": NS}]


def test_external_redis_by_url() -> None:
    objects = render([values("redis-url")])
    env = container_env(one(objects, "Deployment", "kt-operator"))
    assert env["KUBETASKS_REDIS_URL"] == "redis://redis.example.internal:6379/2"
    assert not find(objects, "Deployment", "kt-redis")


# --- RBAC -----------------------------------------------------------------------------------


def test_cluster_wide_operator_gets_a_cluster_role_with_only_what_it_uses() -> None:
    objects = render()
    assert not find(objects, "Role", OPERATOR)
    role = one(objects, "ClusterRole", CLUSTER_ROLE)
    assert rules(role) == {**OPERATOR_RULES, **KOPF_RULES}
    binding = one(objects, "ClusterRoleBinding", CLUSTER_ROLE)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": CLUSTER_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR,
                                    "namespace": NS}]


def test_task_pods_manage_schedules_only_when_asked() -> None:
    assert ("kubetasks.dev", "taskschedules") not in rules(one(render(), "Role", TASK, NS))
    role = one(render(sets=["tasks.manageSchedules=true"]), "Role", TASK, NS)
    assert rules(role) == {
        **TASK_RULES,
        ("kubetasks.dev", "taskschedules"): {"get", "list", "watch", "create", "patch",
                                            "delete"},
    }


def test_task_pods_may_only_read_and_create_runs_and_batches() -> None:
    objects = render()
    role = one(objects, "Role", TASK, NS)
    assert rules(role) == TASK_RULES
    binding = one(objects, "RoleBinding", TASK, NS)
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": TASK, "namespace": NS}]
    # Task rights are never cluster-wide.
    assert [r["metadata"]["name"] for r in find(objects, "ClusterRole")] == [CLUSTER_ROLE]


def test_namespaced_watch_gets_roles_and_task_accounts_in_each_namespace() -> None:
    objects = render([values("namespaced")])
    # Nothing at the cluster scope.
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    watched = ["chart-watch-a", "chart-watch-b"]
    env = container_env(operator_deployment(objects))
    assert env["KUBETASKS_NAMESPACES"] == ",".join(watched)
    for ns in watched:
        assert rules(one(objects, "Role", OPERATOR, ns)) == OPERATOR_RULES
        binding = one(objects, "RoleBinding", OPERATOR, ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "Role", "name": OPERATOR}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR,
                                        "namespace": NS}]
        one(objects, "ServiceAccount", TASK, ns)
        assert rules(one(objects, "Role", TASK, ns)) == TASK_RULES
        assert one(objects, "RoleBinding", TASK, ns)["subjects"][0]["namespace"] == ns
    # The operator's own ServiceAccount stays in the release namespace only.
    assert [sa["metadata"]["namespace"] for sa in find(objects, "ServiceAccount", OPERATOR)
            ] == [NS]
    assert not find(objects, "ServiceAccount", TASK, NS)


def test_cluster_wide_watch_puts_task_accounts_where_tasks_run() -> None:
    objects = render([values("redis-url")])
    assert rules(one(objects, "ClusterRole", "kt-kubetasks-operator")) == {
        **OPERATOR_RULES, **KOPF_RULES}
    for ns in ("chart-tasks-a", "chart-tasks-b"):
        one(objects, "ServiceAccount", "kt-task", ns)
        assert rules(one(objects, "Role", "kt-task", ns)) == TASK_RULES
    assert not find(objects, "ServiceAccount", "kt-task", NS)


# --- Redis, metrics ---------------------------------------------------------------------------


def test_bundled_redis_is_small_non_root_and_keeps_nothing() -> None:
    objects = render()
    redis = one(objects, "Deployment", "kubetasks-redis")
    spec = pod_spec(redis)
    (container,) = spec["containers"]
    assert container["image"] == "redis:7-alpine"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"][:5] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert [v for v in spec["volumes"] if "persistentVolumeClaim" in v] == []
    assert "limits" in container["resources"]
    service = one(objects, "Service", "kubetasks-redis")
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    policy = one(objects, "NetworkPolicy", "kubetasks-redis")
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed == operator_deployment(objects)["spec"]["selector"]["matchLabels"]


def test_metrics_service_and_service_monitor_point_at_the_operator() -> None:
    objects = render([values("servicemonitor")])
    deployment = operator_deployment(objects)
    container = pod_spec(deployment)["containers"][0]
    assert container["command"][-1] == "http://0.0.0.0:8081/healthz"
    assert container_env(deployment)["KUBETASKS_METRICS_PORT"] == "9191"
    assert {"name": "metrics", "containerPort": 9191, "protocol": "TCP"} in container["ports"]
    service = one(objects, "Service", "kubetasks-operator-metrics")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 80, "targetPort": "metrics",
                                         "protocol": "TCP"}]
    monitor = one(objects, "ServiceMonitor", OPERATOR)
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]


# --- bad values and NOTES -------------------------------------------------------------------


@pytest.mark.parametrize("path", INVALID_VALUES_FILES, ids=lambda p: p.stem)
def test_bad_values_fail_with_a_message_that_says_what_to_change(path: Path) -> None:
    error = template_error([path])
    assert expected_error(path) in error


def test_invalid_values_files_exist() -> None:
    assert len(INVALID_VALUES_FILES) >= 5


def test_notes_tell_how_to_trigger_and_watch_a_first_run() -> None:
    out = helm("install", "kubetasks", str(CHART), "--namespace=jobs", "--dry-run=client",
               f"--values={values('namespaced')}").stdout
    notes = out[out.index("NOTES:"):]
    assert "reconciles TaskRuns in chart-watch-a, chart-watch-b" in notes
    assert "kubectl create -n chart-watch-a -f -" in notes
    assert "kind: TaskRun" in notes
    assert 'tasks.trigger("send-email"' in notes
    assert "kubectl get taskruns -n chart-watch-a" in notes
    assert "kubectl apply --server-side -f crds/" in notes
