"""The operator's metrics: the scrape-time collector, the counting rules for attempts and
start latency, the scheduler and adapter counting through fakes, and the HTTP server."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from kubetasks.devcluster.process import free_port
from kubetasks_operator.adapters.kube import KubeAdapter
from kubetasks_operator.adapters.slots import SlotId
from kubetasks_operator.core.lifecycle import Decision, SlotRequest
from kubetasks_operator.core.model import (
    AttemptOutcome,
    AttemptRecord,
    AttemptResult,
    Phase,
    RunView,
)
from kubetasks_operator.metrics import (
    MetricsServer,
    OperatorMetrics,
    ended_outcomes,
    trigger_to_start,
)
from kubetasks_operator.scheduler import Scheduler
from kubetasks_operator.settings import OperatorSettings
from kubetasks_operator.world import Key, World
from tests.unit.fakes import FakeSlots

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CREATED = "2027-01-15T08:00:00Z"
ALLOWED_LABELS = {"namespace", "queue", "phase", "outcome", "kind", "verb", "resource", "le"}


def run_obj(namespace: str, name: str, phase: str | None = None, **spec: Any
            ) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}",
                     "generation": 1, "resourceVersion": "1", "creationTimestamp": CREATED},
        "spec": {"task": "echo", **spec},
    }
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class Slots:
    def __init__(self, waiting: dict[Key, Decision],
                 holders: dict[Key, tuple[str, SlotId]]) -> None:
        self.waiting = waiting
        self.holders = holders

    def namespace_limit(self, namespace: str) -> int | None:
        return {"a": 10}.get(namespace)


# --- the collector ---------------------------------------------------------------------------


def test_runs_per_phase_are_counted_from_the_world_at_scrape_time() -> None:
    world = World()
    world.put_run(run_obj("a", "r1", "Completed"))
    world.put_run(run_obj("a", "r2", "Completed"))
    world.put_run(run_obj("a", "r3"))  # no status yet: Pending
    world.put_run(run_obj("b", "r4", "Executing"))
    metrics = OperatorMetrics()
    metrics.track(world, Slots({}, {}))

    assert value(metrics, "kubetasks_runs", namespace="a", phase="Completed") == 2
    assert value(metrics, "kubetasks_runs", namespace="a", phase="Pending") == 1
    assert value(metrics, "kubetasks_runs", namespace="a", phase="Failed") == 0
    assert value(metrics, "kubetasks_runs", namespace="b", phase="Executing") == 1

    # Always right: the next scrape sees the World as it is then.
    world.put_run({**run_obj("a", "r3", "Queued"),
                   "metadata": {**run_obj("a", "r3")["metadata"], "resourceVersion": "2"}})
    world.drop_run(run_obj("b", "r4"))
    assert value(metrics, "kubetasks_runs", namespace="a", phase="Pending") == 0
    assert value(metrics, "kubetasks_runs", namespace="a", phase="Queued") == 1
    assert value(metrics, "kubetasks_runs", namespace="b", phase="Executing") is None


def test_queued_and_running_per_queue_come_from_the_scheduler_bookkeeping() -> None:
    waiting = {
        ("a", "r1"): Decision(wants_slot=SlotRequest("q", None, 0.0)),
        ("a", "r2"): Decision(wants_slot=SlotRequest("q", "k", 0.0)),
        ("b", "r3"): Decision(wants_slot=SlotRequest("other", None, 0.0)),
    }
    holders = {("a", "r4"): ("u4", SlotId("a", "q", None)),
               ("a", "r5"): ("u5", SlotId("a", "busy", "k"))}
    metrics = OperatorMetrics()
    metrics.track(World(), Slots(waiting, holders))

    assert value(metrics, "kubetasks_queue_queued_runs", namespace="a", queue="q") == 2
    assert value(metrics, "kubetasks_queue_running_runs", namespace="a", queue="q") == 1
    assert value(metrics, "kubetasks_queue_queued_runs", namespace="a", queue="busy") == 0
    assert value(metrics, "kubetasks_queue_running_runs", namespace="a", queue="busy") == 1
    assert value(metrics, "kubetasks_queue_queued_runs", namespace="b", queue="other") == 1
    assert value(metrics, "kubetasks_queue_active_keys", namespace="a", queue="busy") == 1
    assert value(metrics, "kubetasks_queue_active_keys", namespace="a", queue="q") == 0
    assert value(metrics, "kubetasks_namespace_running_runs", namespace="a") == 2
    assert value(metrics, "kubetasks_namespace_running_runs", namespace="b") == 0
    assert value(metrics, "kubetasks_namespace_concurrency_limit", namespace="a") == 10
    assert value(metrics, "kubetasks_namespace_concurrency_limit", namespace="b") is None


def test_each_metrics_object_has_its_own_registry() -> None:
    one, two = OperatorMetrics(), OperatorMetrics()  # no "duplicated timeseries" error
    one.admitted("a", "q")
    assert value(one, "kubetasks_admissions_total", namespace="a", queue="q") == 1
    assert value(two, "kubetasks_admissions_total", namespace="a", queue="q") is None
    assert value(two, "kubetasks_reconcile_errors_total", kind="apply") == 0


# --- what a status write counts --------------------------------------------------------------


def view(**fields: Any) -> RunView:
    base: dict[str, Any] = {"namespace": "ns", "name": "r1", "uid": "u1", "generation": 1,
                            "created_at": T0, "task_id": "echo"}
    return RunView(**{**base, **fields})


STARTED = AttemptRecord(1, "r1-1", started_at=T0 + 2)


def test_an_attempt_is_counted_when_its_record_gains_a_finished_time() -> None:
    ended = AttemptResult(1, AttemptOutcome.ABORTED, exit_code=65)
    before = view(phase=Phase.EXECUTING, attempt=1, attempts=(STARTED,), ended_attempt=ended)
    status = {"phase": "Failed", "attempts": [
        {"number": 1, "job": "r1-1", "finishedTime": "2027-01-15T08:00:05.000000Z"}]}
    assert ended_outcomes(before, status) == ["Aborted"]
    # The same patch decided again from a view that already has it counts nothing.
    after = view(phase=Phase.FAILED, attempt=1,
                 attempts=(AttemptRecord(1, "r1-1", T0 + 2, T0 + 5),), ended_attempt=ended)
    assert ended_outcomes(after, status) == []


def test_an_attempt_lost_with_its_job_counts_as_crashed() -> None:
    before = view(phase=Phase.EXECUTING, attempt=1, attempts=(STARTED,))
    status = {"phase": "Retrying", "attempts": [
        {"number": 1, "job": "r1-1", "reason": "AttemptLost",
         "finishedTime": "2027-01-15T08:01:05.000000Z"}]}
    assert ended_outcomes(before, status) == ["Crashed"]


def test_canceling_a_running_attempt_counts_it_as_canceled_once() -> None:
    running = view(phase=Phase.EXECUTING, attempt=1, attempts=(STARTED,), live_attempt=1)
    assert ended_outcomes(running, {"phase": "Canceled"}) == ["Canceled"]
    assert ended_outcomes(view(phase=Phase.CANCELED, attempt=1, attempts=(STARTED,)),
                          {"phase": "Canceled"}) == []
    # A run between attempts, or not started, has no attempt to cancel.
    retrying = view(phase=Phase.RETRYING, attempt=1,
                    attempts=(AttemptRecord(1, "r1-1", T0 + 2, T0 + 5),))
    assert ended_outcomes(retrying, {"phase": "Canceled"}) == []
    assert ended_outcomes(view(phase=Phase.QUEUED), {"phase": "Canceled"}) == []


def test_trigger_to_start_is_observed_once_with_the_first_start() -> None:
    first = {"phase": "Executing", "attempt": 1, "startedTime": "2027-01-15T08:00:02.500000Z"}
    assert trigger_to_start(view(phase=Phase.QUEUED), first) == 2.5
    assert trigger_to_start(view(phase=Phase.RETRYING, started_at=T0 + 2.5),
                            {"phase": "Executing", "attempt": 2}) is None
    assert trigger_to_start(view(phase=Phase.QUEUED), {"phase": "Queued"}) is None


# --- the scheduler and the adapter count -----------------------------------------------------


class FakeKube:
    """Answers status patches like the API server would (a merge patch, a new
    resourceVersion), so the scheduler sees its own writes."""

    def __init__(self, world: World, fail_status: bool = False) -> None:
        self.world = world
        self.fail_status = fail_status

    async def create_job(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return {**job, "metadata": {**job["metadata"], "resourceVersion": "2"}}, True

    async def patch_run_status(self, namespace: str, name: str, status: dict[str, Any]
                               ) -> dict[str, Any] | None:
        if self.fail_status:
            raise TimeoutError("read timed out")
        run = self.world.runs[(namespace, name)]
        merged = {k: v for k, v in {**(run.get("status") or {}), **status}.items()
                  if v is not None}
        rv = str(int(run["metadata"]["resourceVersion"]) + 1)
        return {**run, "metadata": {**run["metadata"], "resourceVersion": rv},
                "status": merged}

    async def post_event(self, *args: Any) -> None:
        pass


async def test_the_scheduler_counts_a_start_and_the_attempt_that_ends() -> None:
    world = World()
    world.put_task({"metadata": {"namespace": "ns", "name": "echo"},
                    "spec": {"image": "img", "entrypoint": "app:run"}})
    world.put_run(run_obj("ns", "r1"))
    now = [T0 + 3]
    metrics = OperatorMetrics()
    scheduler = Scheduler(world, FakeKube(world), FakeSlots(),  # type: ignore[arg-type]
                          OperatorSettings(), clock=lambda: now[0], metrics=metrics)
    await scheduler.start()
    await scheduler.pass_once()
    await scheduler.drain()

    assert world.runs[("ns", "r1")]["status"]["phase"] == "Executing"
    assert value(metrics, "kubetasks_admissions_total", namespace="ns", queue="echo") == 1
    assert value(metrics, "kubetasks_trigger_to_start_seconds_count",
                 namespace="ns", queue="echo") == 1
    assert value(metrics, "kubetasks_trigger_to_start_seconds_sum",
                 namespace="ns", queue="echo") == 3.0
    assert value(metrics, "kubetasks_runs", namespace="ns", phase="Executing") == 1
    assert value(metrics, "kubetasks_queue_running_runs", namespace="ns", queue="echo") == 1

    # The attempt's Job completes: one Succeeded attempt, counted once however often the
    # run is looked at again.
    job = next(iter(world.jobs.values()))
    world.put_job({**job, "metadata": {**job["metadata"], "resourceVersion": "3"},
                   "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    now[0] = T0 + 10
    for _ in range(3):
        scheduler.touch([("ns", "r1")])
        await scheduler.pass_once()
        await scheduler.drain()

    assert world.runs[("ns", "r1")]["status"]["phase"] == "Completed"
    assert value(metrics, "kubetasks_attempts_total", namespace="ns", queue="echo",
                 outcome="Succeeded") == 1
    assert value(metrics, "kubetasks_admissions_total", namespace="ns", queue="echo") == 1
    assert value(metrics, "kubetasks_trigger_to_start_seconds_count",
                 namespace="ns", queue="echo") == 1
    assert value(metrics, "kubetasks_runs", namespace="ns", phase="Completed") == 1
    assert value(metrics, "kubetasks_queue_running_runs", namespace="ns", queue="echo") is None
    assert value(metrics, "kubetasks_scheduler_pass_seconds_count") is not None
    assert value(metrics, "kubetasks_reconcile_errors_total", kind="apply") == 0

    # Only bounded label values: no run name or uid anywhere.
    body, _ = metrics.exposition()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            assert not {"r1", "uid-r1", "r1-1"} & set(sample.labels.values()), sample


async def test_a_failed_write_counts_an_apply_error_and_no_start() -> None:
    world = World()
    world.put_task({"metadata": {"namespace": "ns", "name": "echo"},
                    "spec": {"image": "img", "entrypoint": "app:run"}})
    world.put_run(run_obj("ns", "r1"))
    metrics = OperatorMetrics()
    scheduler = Scheduler(world, FakeKube(world, fail_status=True),  # type: ignore[arg-type]
                          FakeSlots(), OperatorSettings(),  # type: ignore[arg-type]
                          clock=lambda: T0, metrics=metrics)
    await scheduler.start()
    await scheduler.pass_once()
    await scheduler.drain()
    assert value(metrics, "kubetasks_reconcile_errors_total", kind="apply") == 1
    assert value(metrics, "kubetasks_trigger_to_start_seconds_count",
                 namespace="ns", queue="echo") is None


class Response:
    def __init__(self, data: bytes) -> None:
        self.data = data


def stub(api: object, method: str, data: bytes) -> None:
    """Replace a client method with one that answers ``data`` without a server."""
    setattr(api, method, lambda *args, **kwargs: Response(data))


async def test_the_adapter_counts_writes_by_verb_and_resource_not_reads() -> None:
    metrics = OperatorMetrics()
    kube = KubeAdapter(client.ApiClient(), 100.0, 10, metrics=metrics)
    try:
        stub(kube.batch, "create_namespaced_job", b'{"metadata": {"name": "j"}}')
        stub(kube.custom, "patch_namespaced_custom_object_status", b"{}")
        stub(kube.custom, "get_namespaced_custom_object", b"{}")
        await kube.create_job({"metadata": {"namespace": "ns", "name": "j"}})
        await kube.patch_run_status("ns", "r1", {"phase": "Queued"})
        await kube.patch_run_status("ns", "r1", {"output": {"a": None}})  # two writes
        await kube.get_run("ns", "r1")
    finally:
        kube.close()
    assert value(metrics, "kubetasks_api_writes_total", verb="create", resource="jobs") == 1
    assert value(metrics, "kubetasks_api_writes_total", verb="patch",
                 resource="taskruns/status") == 3
    assert kube.writes == 4


# --- the server ------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_the_server_serves_metrics_and_health() -> None:
    metrics = OperatorMetrics()
    metrics.admitted("ns", "q")
    alive = [False]
    server = MetricsServer(metrics, lambda: alive[0])
    port = free_port()
    await server.start(port, "127.0.0.1")
    await server.start(port, "127.0.0.1")  # a start-up retried by Kopf: still one server
    try:
        base = f"http://127.0.0.1:{port}"
        status, content_type, body = await asyncio.to_thread(fetch, f"{base}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert 'kubetasks_admissions_total{namespace="ns",queue="q"} 1.0' in body
        assert (await asyncio.to_thread(fetch, f"{base}/healthz"))[0] == 503
        alive[0] = True
        assert (await asyncio.to_thread(fetch, f"{base}/healthz"))[0] == 200
    finally:
        await server.stop()
