"""The chart's dashboard: off by default; on, a read-only account that may only ask who a
token is and what it may do, a Deployment that runs `kubetasks dashboard --per-user`, its
Service, and an Ingress only when asked (with a host)."""

from __future__ import annotations

from tests.helm_chart import find, one, render
from tests.unit.chart.test_chart_render import rules

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


def test_watched_namespaces_each_get_a_read_role() -> None:
    objects = render(sets=["dashboard.enabled=true", "watchNamespaces={jobs,reports}"])
    for ns in ("jobs", "reports"):
        one(objects, "Role", NAME, ns)
    command = one(objects, "Deployment", NAME, NS)["spec"]["template"]["spec"][
        "containers"][0]["command"]
    assert [command[i + 1] for i, a in enumerate(command) if a == "--namespace"] == [
        "jobs", "reports"]
