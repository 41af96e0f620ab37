"""Prometheus metrics of the operator, and the small HTTP server that serves them.

Every metric lives in the operator's own ``CollectorRegistry`` (never the process-wide
default), so two operators in one process, or a test, see only their own numbers. Labels take
bounded values only (namespace, queue, phase, outcome, kind, verb, resource): never a run's
name or uid.

Gauges that describe the current picture (runs per phase, runs queued and running per queue)
are computed at scrape time from the World and the scheduler's slot bookkeeping, so they are
always right and cost nothing between scrapes. The server runs on the operator's event loop:
a scrape reads the World from the thread that changes it.

| metric | type | labels | meaning |
|---|---|---|---|
| kubetasks_runs | gauge | namespace, phase | TaskRuns the operator knows, per phase |
| kubetasks_queue_queued_runs | gauge | namespace, queue | runs waiting for a slot |
| kubetasks_queue_running_runs | gauge | namespace, queue | runs holding a slot |
| kubetasks_queue_active_keys | gauge | namespace, queue | concurrency keys holding a slot |
| kubetasks_namespace_running_runs | gauge | namespace | runs holding a slot, all queues |
| kubetasks_namespace_concurrency_limit | gauge | namespace | the namespace cap, where set |
| kubetasks_admissions_total | counter | namespace, queue | slots granted (start, retry, resume) |
| kubetasks_attempts_total | counter | namespace, queue, outcome | attempts that ended |
| kubetasks_trigger_to_start_seconds | histogram | namespace, queue | creation -> 1st start |
| kubetasks_reconcile_errors_total | counter | kind | failed applies, batch steps, passes |
| kubetasks_api_writes_total | counter | verb, resource | writes sent to the API server |
| kubetasks_batch_runs_created_total | counter | namespace | TaskRuns created by fan-outs |
| kubetasks_scheduler_pass_seconds | histogram | | one scheduler pass (decide, plan, act) |
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from kubetasks_operator.adapters.slots import SlotId
from kubetasks_operator.core.lifecycle import Decision
from kubetasks_operator.core.model import AttemptOutcome, Phase, RunView
from kubetasks_operator.observe import parse_time
from kubetasks_operator.world import Key, World

log = logging.getLogger("kubetasks.metrics")

# Seconds from a run's trigger to its first attempt's start: a free queue starts in well under
# a second; a busy or delayed one may take hours.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                   1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PHASES = tuple(p.value for p in Phase)
ERROR_KINDS = ("apply", "batch", "schedule", "pass")


class SlotState(Protocol):
    """What the scrape reads from the scheduler: who waits for a slot, who holds one."""

    @property
    def waiting(self) -> Mapping[Key, Decision]: ...

    @property
    def holders(self) -> Mapping[Key, tuple[str, SlotId]]: ...

    def namespace_limit(self, namespace: str) -> int | None: ...


class StateCollector(Collector):
    """Runs per phase and runs queued/running per queue, counted when scraped."""

    def __init__(self) -> None:
        self.world: World | None = None
        self.slots: SlotState | None = None

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("kubetasks_runs", "TaskRuns the operator knows, by phase.",
                                 labels=["namespace", "phase"])
        queued = GaugeMetricFamily("kubetasks_queue_queued_runs",
                                   "Runs waiting for a slot in their queue.",
                                   labels=["namespace", "queue"])
        running = GaugeMetricFamily("kubetasks_queue_running_runs",
                                    "Runs holding a slot of their queue.",
                                    labels=["namespace", "queue"])
        active_keys = GaugeMetricFamily("kubetasks_queue_active_keys",
                                        "Concurrency keys with a run holding a slot.",
                                        labels=["namespace", "queue"])
        ns_running = GaugeMetricFamily("kubetasks_namespace_running_runs",
                                       "Runs holding a slot in the namespace, all queues.",
                                       labels=["namespace"])
        ns_limit = GaugeMetricFamily("kubetasks_namespace_concurrency_limit",
                                     "The operator's cap over every queue of the namespace.",
                                     labels=["namespace"])
        if self.world is not None:
            per_phase: Tally[tuple[str, str]] = Tally()
            namespaces: set[str] = set()
            for (namespace, _), run in self.world.runs.items():
                phase = (run.get("status") or {}).get("phase") or Phase.PENDING.value
                per_phase[(namespace, str(phase))] += 1
                namespaces.add(namespace)
            # Every phase of every namespace with runs, zeros included: a series that comes
            # and goes makes rates and alerts lie.
            for namespace in sorted(namespaces):
                for phase in PHASES:
                    runs.add_metric([namespace, phase], per_phase.pop((namespace, phase), 0))
            for (namespace, phase), count in sorted(per_phase.items()):
                runs.add_metric([namespace, phase], count)  # a phase this build does not know
        if self.slots is not None:
            waiting: Tally[tuple[str, str]] = Tally()
            for (namespace, _), decision in self.slots.waiting.items():
                if decision.wants_slot is not None:
                    waiting[(namespace, decision.wants_slot.queue)] += 1
            holding: Tally[tuple[str, str]] = Tally()
            keys: dict[tuple[str, str], set[str]] = {}
            for _, slot in self.slots.holders.values():
                holding[(slot.namespace, slot.queue)] += 1
                if slot.concurrency_key is not None:
                    keys.setdefault((slot.namespace, slot.queue), set()).add(
                        slot.concurrency_key)
            in_namespace: Tally[str] = Tally()
            for qid in sorted(waiting.keys() | holding.keys()):
                queued.add_metric(list(qid), waiting[qid])
                running.add_metric(list(qid), holding[qid])
                active_keys.add_metric(list(qid), len(keys.get(qid, ())))
                in_namespace[qid[0]] += holding[qid]
            for namespace in sorted(in_namespace):
                ns_running.add_metric([namespace], in_namespace[namespace])
                cap = self.slots.namespace_limit(namespace)
                if cap is not None:
                    ns_limit.add_metric([namespace], cap)
        schedules = GaugeMetricFamily("kubetasks_schedules",
                                      "TaskSchedules the operator knows, active or not.",
                                      labels=["namespace", "active"])
        if self.world is not None:
            per_state: Tally[tuple[str, str]] = Tally()
            for (namespace, _), schedule in self.world.schedules.items():
                active = (schedule.get("spec") or {}).get("active", True) is not False
                per_state[(namespace, "true" if active else "false")] += 1
            for labels in sorted(per_state):
                schedules.add_metric(list(labels), per_state[labels])
        yield runs
        yield schedules
        yield queued
        yield running
        yield active_keys
        yield ns_running
        yield ns_limit


def ended_outcomes(view: RunView, status: Mapping[str, Any]) -> list[str]:
    """The outcomes of the attempts that a status patch records as ended, given the view the
    patch was decided from: attempts whose record gains a ``finishedTime`` (an attempt lost
    with its Job counts as Crashed), and an unfinished attempt whose run is canceled."""
    finished = {a.number for a in view.attempts if a.finished_at is not None}
    outcomes: list[str] = []
    for entry in status.get("attempts") or ():
        number = entry.get("number")
        if not entry.get("finishedTime") or number in finished:
            continue
        ended = view.ended_attempt
        if ended is not None and ended.number == number:
            outcomes.append(ended.outcome.value)
        else:
            outcomes.append(AttemptOutcome.CRASHED.value)
        finished.add(number)
    if (status.get("phase") == Phase.CANCELED.value and view.phase is not Phase.CANCELED
            and view.attempt > 0 and view.attempt not in finished):
        outcomes.append(AttemptOutcome.CANCELED.value)
    return outcomes


def trigger_to_start(view: RunView, status: Mapping[str, Any]) -> float | None:
    """Seconds from the run's creation to its first attempt's start, if this status patch
    records that start (``startedTime`` is written once per run, with attempt 1)."""
    if view.started_at is not None:
        return None
    started = parse_time(status.get("startedTime"))
    if started is None:
        return None
    # creationTimestamp has whole seconds: the figure can be up to 1 s too long.
    return max(0.0, started - view.created_at)


class OperatorMetrics:
    """The operator's metrics in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.admissions = Counter(
            "kubetasks_admissions", "Queue slots granted to runs (a start, a retry or a "
            "resume after children finished).", ["namespace", "queue"], registry=r)
        self.attempts = Counter(
            "kubetasks_attempts", "Attempts that ended, by outcome.",
            ["namespace", "queue", "outcome"], registry=r)
        self.trigger_to_start = Histogram(
            "kubetasks_trigger_to_start_seconds", "Seconds from a run's creation to the "
            "start of its first attempt.", ["namespace", "queue"], buckets=LATENCY_BUCKETS,
            registry=r)
        self.reconcile_errors = Counter(
            "kubetasks_reconcile_errors", "Failures the operator retries: applying a run's "
            "decision (apply), a batch step (batch), a schedule step (schedule), a scheduler "
            "pass (pass).", ["kind"], registry=r)
        self.api_writes = Counter(
            "kubetasks_api_writes", "Writes sent to the Kubernetes API server.",
            ["verb", "resource"], registry=r)
        self.batch_runs_created = Counter(
            "kubetasks_batch_runs_created", "TaskRuns created by batch fan-outs.",
            ["namespace"], registry=r)
        self.schedule_runs_created = Counter(
            "kubetasks_schedule_runs_created", "TaskRuns created by TaskSchedule ticks.",
            registry=r)
        self.schedule_ticks_missed = Counter(
            "kubetasks_schedule_ticks_missed", "TaskSchedule ticks that created no run: "
            "passed while the operator could not act, later than startingDeadlineSeconds, "
            "forbidden by concurrencyPolicy Forbid, or of a Task that does not exist.",
            registry=r)
        self.schedule_tick_lag = Histogram(
            "kubetasks_schedule_tick_lag_seconds", "Seconds from a tick's nominal time to "
            "the creation of its TaskRun.", buckets=LATENCY_BUCKETS, registry=r)
        self.pass_seconds = Histogram(
            "kubetasks_scheduler_pass_seconds", "Duration of one scheduler pass.",
            buckets=PASS_BUCKETS, registry=r)
        for kind in ERROR_KINDS:
            self.reconcile_errors.labels(kind)  # present (at 0) before the first error
        self.state = StateCollector()
        r.register(self.state)

    def track(self, world: World, slots: SlotState) -> None:
        """Read runs per phase from ``world`` and slots from ``slots`` at every scrape."""
        self.state.world = world
        self.state.slots = slots

    def admitted(self, namespace: str, queue: str) -> None:
        self.admissions.labels(namespace, queue).inc()

    def status_written(self, view: RunView, status: Mapping[str, Any], queue: str) -> None:
        """A run's status patch was written: count the attempts it ends and observe its
        first start."""
        for outcome in ended_outcomes(view, status):
            self.attempts.labels(view.namespace, queue, outcome).inc()
        latency = trigger_to_start(view, status)
        if latency is not None:
            self.trigger_to_start.labels(view.namespace, queue).observe(latency)

    def error(self, kind: str) -> None:
        self.reconcile_errors.labels(kind).inc()

    def wrote(self, verb: str, resource: str) -> None:
        self.api_writes.labels(verb, resource).inc()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type (OpenMetrics if the scraper asks for it)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class MetricsServer:
    """``/metrics`` and ``/healthz`` on one port, served from the running event loop.

    ``/healthz`` answers 200 while ``healthy()`` is true (the scheduler loop runs), else 503.
    """

    def __init__(self, metrics: OperatorMetrics, healthy: Callable[[], bool]) -> None:
        self.metrics = metrics
        self.healthy = healthy
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="scheduler loop not running\n")

    async def start(self, port: int, host: str = "0.0.0.0") -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        # No access log: a scrape every few seconds would drown the operator's own lines.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
