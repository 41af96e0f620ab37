"""The operator's Prometheus metrics and health endpoint, scraped from the session's operator
while real runs go through it. Counters are compared before and after, per namespace (each
test has its own), so what other tests did in the same operator does not count."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from kubetasks.devcluster.local import OperatorProcess
from tests.cluster.helpers import (
    create,
    make_queue,
    make_run,
    make_task,
    wait_all_terminal,
    wait_for,
)

pytestmark = pytest.mark.cluster

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ALLOWED_LABELS = {"namespace", "queue", "phase", "outcome", "kind", "verb", "resource", "le"}


def scrape(operator: OperatorProcess) -> Samples:
    with urllib.request.urlopen(operator.metrics_url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def scrape_until(operator: OperatorProcess, done: Callable[[Samples], bool],
                 timeout: float = 15) -> Samples:
    """Counters move right after the operator's status write returns, which may be a moment
    after a client sees the new phase: scrape until they have moved."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(operator)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def assert_bounded_labels(samples: Samples, run_names: set[str]) -> None:
    for name, labels in samples:
        keys = {k for k, _ in labels}
        assert keys <= ALLOWED_LABELS, (name, labels)
        assert not run_names & {v for _, v in labels}, (name, labels)


def test_runs_move_the_counters_gauges_and_histogram_by_the_right_amounts(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    health = f"http://127.0.0.1:{operator.metrics_port}/healthz"
    with urllib.request.urlopen(health, timeout=10) as response:
        assert response.status == 200
    before = scrape(operator)
    ns, q = {"namespace": namespace}, {"namespace": namespace, "queue": "behave"}

    make_task(kube_api, namespace, "behave")
    make_run(kube_api, namespace, "metrics-ok-a", "behave", {})
    make_run(kube_api, namespace, "metrics-ok-b", "behave", {"output": {"n": 2}})
    make_run(kube_api, namespace, "metrics-abort", "behave", {"exit": 65})
    wait_for(kube_api, namespace, "metrics-ok-a", ["Completed"])
    wait_for(kube_api, namespace, "metrics-ok-b", ["Completed"])
    wait_for(kube_api, namespace, "metrics-abort", ["Failed"])

    def moved(s: Samples) -> bool:
        return (total(s, "kubetasks_attempts_total", **ns) >= 3
                and get(s, "kubetasks_runs", phase="Completed", **ns) == 2
                and get(s, "kubetasks_runs", phase="Failed", **ns) == 1)

    after = scrape_until(operator, moved)
    # A little later nothing has been counted twice (the runs are looked at again).
    time.sleep(1.5)
    after = scrape(operator)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta("kubetasks_admissions_total", **q) == 3
    assert delta("kubetasks_attempts_total", outcome="Succeeded", **q) == 2
    assert delta("kubetasks_attempts_total", outcome="Aborted", **q) == 1
    assert total(after, "kubetasks_attempts_total", **ns) == 3
    assert delta("kubetasks_trigger_to_start_seconds_count", **q) == 3
    # Each run started within a minute of its creation (one bucket, cumulative).
    assert delta("kubetasks_trigger_to_start_seconds_bucket", le="60.0", **q) == 3
    assert delta("kubetasks_trigger_to_start_seconds_sum", **q) > 0
    assert get(after, "kubetasks_runs", phase="Completed", **ns) == 2
    assert get(after, "kubetasks_runs", phase="Failed", **ns) == 1
    assert get(after, "kubetasks_runs", phase="Executing", **ns) == 0
    assert get(after, "kubetasks_queue_running_runs", **q) == 0
    assert get(after, "kubetasks_queue_queued_runs", **q) == 0
    # Writes: a Job per run, at least an admission-and-start and an end per run.
    assert (get(after, "kubetasks_api_writes_total", verb="create", resource="jobs")
            - get(before, "kubetasks_api_writes_total", verb="create", resource="jobs")) >= 3
    assert (get(after, "kubetasks_api_writes_total", verb="patch", resource="taskruns/status")
            - get(before, "kubetasks_api_writes_total", verb="patch",
                  resource="taskruns/status")) >= 6
    assert (get(after, "kubetasks_scheduler_pass_seconds_count")
            > get(before, "kubetasks_scheduler_pass_seconds_count"))
    for kind in ("apply", "batch", "pass"):
        assert ("kubetasks_reconcile_errors_total", frozenset({("kind", kind)})) in after
    assert_bounded_labels(after, {"metrics-ok-a", "metrics-ok-b", "metrics-abort",
                                  "metrics-ok-a-1", "metrics-ok-b-1", "metrics-abort-1"})


def test_queue_gauges_show_the_running_and_the_waiting_run(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_queue(kube_api, namespace, "one", concurrencyLimit=1)
    make_task(kube_api, namespace, "behave", queue={"name": "one"})
    make_run(kube_api, namespace, "metrics-first", "behave", {"sleep": 4})
    wait_for(kube_api, namespace, "metrics-first", ["Executing"])
    make_run(kube_api, namespace, "metrics-second", "behave", {"sleep": 0})
    wait_for(kube_api, namespace, "metrics-second", ["Queued"])
    q = {"namespace": namespace, "queue": "one"}

    during = scrape_until(operator,
                          lambda s: get(s, "kubetasks_queue_queued_runs", **q) == 1)
    assert get(during, "kubetasks_queue_running_runs", **q) == 1
    assert get(during, "kubetasks_queue_queued_runs", **q) == 1
    assert get(during, "kubetasks_runs", namespace=namespace, phase="Executing") == 1
    assert get(during, "kubetasks_runs", namespace=namespace, phase="Queued") == 1

    wait_all_terminal(kube_api, namespace, timeout=60)
    after = scrape_until(
        operator, lambda s: get(s, "kubetasks_runs", namespace=namespace,
                                phase="Completed") == 2)
    assert get(after, "kubetasks_runs", namespace=namespace, phase="Completed") == 2
    assert get(after, "kubetasks_admissions_total", **q) == 2
    assert get(after, "kubetasks_queue_running_runs", **q) == 0
    assert get(after, "kubetasks_queue_queued_runs", **q) == 0


def test_a_batch_counts_the_runs_it_creates(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    create(kube_api, namespace, "taskbatches", {
        "kind": "TaskBatch", "metadata": {"name": "metrics-batch"},
        "spec": {"task": "behave", "items": [{"payload": {}} for _ in range(4)]},
    })
    wait_all_terminal(kube_api, namespace, timeout=90)
    ns = {"namespace": namespace}
    after = scrape_until(operator, lambda s: total(
        s, "kubetasks_attempts_total", outcome="Succeeded", **ns) == 4)
    assert get(after, "kubetasks_batch_runs_created_total", **ns) == 4
    assert total(after, "kubetasks_admissions_total", **ns) == 4
    assert total(after, "kubetasks_attempts_total", outcome="Succeeded", **ns) == 4
    assert_bounded_labels(after, {"metrics-batch", *(f"metrics-batch-{i}" for i in range(4))})


def test_health_answers_200_and_metrics_are_plain_text(operator: OperatorProcess) -> None:
    base = f"http://127.0.0.1:{operator.metrics_port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(operator.metrics_url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/nothing", timeout=10)
    assert missing.value.code == 404
