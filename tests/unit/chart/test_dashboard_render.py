"""The chart's dashboard: off by default; on, a read-only account that may only ask who a
token is and what it may do, a Deployment that runs `kubetasks dashboard --per-user` (with the
object storage settings and any extra env, on the port asked for), its Service, an Ingress
only when asked (with a host), and a word in NOTES.txt on how to reach it and sign in. It
shows, with a read Role in each, the namespaces where tasks run unless told others."""

from __future__ import annotations

from typing import Any

import pytest

from kubetasks.protocol.storage import StorageSettings
from tests.helm_chart import CHART, Manifest, container_env, find, helm, one, render
from tests.unit.chart.test_chart_render import rules, values

NS = "kubetasks"
NAME = "kubetasks-dashboard"


def test_the_dashboard_is_off_by_default() -> None:
    assert not [o for o in render() if "dashboard" in o["metadata"]["name"]]


def test_the_dashboard_reads_and_reviews_and_nothing_more() -> None:
    objects = render(sets=["dashboard.enabled=true"])
    cluster_role = one(objects, "ClusterRole", "kubetasks-kubetasks-dashboard")
    assert rules(cluster_role) == {
        ("authentication.k8s.io", "tokenreviews"): {"create"},
        ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
    }
    role = one(objects, "Role", NAME, NS)
    assert rules(role) == {("kubetasks.dev", plural): {"get", "list", "watch"}
                           for plural in ("taskruns", "taskqueues", "taskbatches", "tasks",
                                          "taskschedules")}
    deployment = one(objects, "Deployment", NAME, NS)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    command = pod["containers"][0]["command"]
    assert command[:3] == ["kubetasks", "dashboard", "--per-user"]
    assert command[command.index("--namespace") + 1] == NS
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = one(objects, "Service", NAME, NS)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert not find(objects, "Ingress")


def test_an_ingress_when_asked_for_a_host() -> None:
    objects = render(sets=["dashboard.enabled=true", "dashboard.ingress.enabled=true",
                           "dashboard.ingress.host=tasks.example.com"])
    ingress = one(objects, "Ingress", NAME, NS)
    assert ingress["spec"]["rules"][0]["host"] == "tasks.example.com"


def shown(objects: list[Manifest]) -> list[str]:
    """The --namespace arguments of the dashboard's command."""
    command = dashboard_container(objects)["command"]
    return [command[i + 1] for i, a in enumerate(command) if a == "--namespace"]


def dashboard_container(objects: list[Manifest]) -> dict[str, Any]:
    container: dict[str, Any] = one(objects, "Deployment", NAME, NS)["spec"]["template"][
        "spec"]["containers"][0]
    return container


def read_roles(objects: list[Manifest]) -> list[str]:
    """The namespaces of the dashboard's Roles, each bound to its account."""
    bindings = {b["metadata"]["namespace"]: b for b in find(objects, "RoleBinding", NAME)}
    for ns, binding in bindings.items():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": NAME, "namespace": NS}], ns
    roles = sorted(r["metadata"]["namespace"] for r in find(objects, "Role", NAME))
    assert roles == sorted(bindings)
    return roles


@pytest.mark.parametrize(("sets", "namespaces"), [
    ([], [NS]),
    (["watchNamespaces={jobs,reports}"], ["jobs", "reports"]),
    # Every namespace watched: where the chart lets tasks run, not the operator's namespace.
    (["tasks.namespaces={team-a,team-b}"], ["team-a", "team-b"]),
    # tasks.namespaces counts only with every namespace watched.
    (["watchNamespaces={jobs}", "tasks.namespaces={team-a}"], ["jobs"]),
    (["dashboard.namespaces={team-b}", "tasks.namespaces={team-a,team-b}"], ["team-b"]),
], ids=["release", "watched", "task-namespaces", "watched-wins", "explicit"])
def test_it_shows_where_tasks_run_with_a_read_role_in_each(
    sets: list[str], namespaces: list[str]
) -> None:
    objects = render(sets=["dashboard.enabled=true", *sets])
    assert shown(objects) == namespaces
    assert read_roles(objects) == sorted(namespaces)


def test_port_object_storage_and_extra_env() -> None:
    objects = render([values("external")])  # port 9191, one extraEnv
    container = dashboard_container(objects)
    command = container["command"]
    assert command[command.index("--port") + 1] == "9191"
    assert container["ports"] == [{"name": "http", "containerPort": 9191, "protocol": "TCP"}]
    assert one(objects, "Service", NAME, NS)["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http"}]
    env = container_env(one(objects, "Deployment", NAME, NS))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "kubetasks-s3", "key": key}}
    # Only the operator hands the Secret on to task pods.
    assert "KUBETASKS_S3_CREDENTIALS_SECRET" not in env
    assert env["KUBETASKS_LOG_FORMAT"] == "json"
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in plain.items():
            patch.setenv(key, value)
        settings = StorageSettings.from_env()
    assert (settings.endpoint, settings.bucket, settings.region, settings.presign_expiry) == (
        "https://s3.example.com", "kubetasks-payloads", "eu-west-1", 900)


def test_without_object_storage_only_the_presign_expiry() -> None:
    env = container_env(one(render(sets=["dashboard.enabled=true"]), "Deployment", NAME, NS))
    assert env == {"KUBETASKS_PRESIGN_EXPIRY": "300"}


def test_notes_say_how_to_reach_it_and_sign_in() -> None:
    def notes(*sets: str) -> str:
        out = helm("install", "kubetasks", str(CHART), f"--namespace={NS}",
                   "--dry-run=client", *[f"--set={s}" for s in sets]).stdout
        return out[out.index("NOTES:"):]

    assert "dashboard" not in notes()
    text = notes("dashboard.enabled=true", "tasks.namespaces={team-a}")
    assert "it shows team-a" in text
    assert f"kubectl port-forward svc/{NAME} 8484:80 -n {NS}" in text
    assert "Authorization: Bearer" in text
    assert "kubectl create token SERVICE_ACCOUNT -n team-a" in text
    assert "paste one at /login" in text
    assert "(the Ingress)" not in text
    assert "https://tasks.example.com/ (the Ingress)" in notes(
        "dashboard.enabled=true", "dashboard.ingress.enabled=true",
        "dashboard.ingress.host=tasks.example.com")
