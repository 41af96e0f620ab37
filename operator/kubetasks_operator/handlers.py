"""Thin Kopf handlers: watch events go into the World and wake the scheduler; nothing else.

Run with ``kubetasks operator`` or ``kopf run -m kubetasks_operator.handlers``. No handler
writes to the API (no diff-base annotations, no per-object timers): the one scheduler loop
does all writes.

TaskRuns are not watched through Kopf but through the operator's own informer
(``adapters/informer.py``), which calls :func:`taskrun_event` in the event loop.

The Kopf event handlers are ``async`` on purpose although they never await: Kopf runs plain
functions in a thread pool, and the World, the scheduler's dirty set and its
``asyncio.Event`` belong to the event loop (a set() from another thread does not wake it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
from kubernetes import client, config
from redis.asyncio import Redis

from kubetasks.api.v1alpha1 import GROUP, VERSION
from kubetasks.protocol.logformat import use_json_logs
from kubetasks.protocol.pod import LABEL_RUN_UID
from kubetasks_operator.adapters.informer import Informer, failed_create_events
from kubetasks_operator.adapters.kube import KubeAdapter
from kubetasks_operator.adapters.slots import SlotStore
from kubetasks_operator.metrics import MetricsServer, OperatorMetrics
from kubetasks_operator.scheduler import Scheduler
from kubetasks_operator.settings import OperatorSettings
from kubetasks_operator.world import World

log = logging.getLogger("kubetasks.operator")

_state: dict[str, Any] = {}


def _scheduler() -> Scheduler | None:
    scheduler = _state.get("scheduler")
    return scheduler if isinstance(scheduler, Scheduler) else None


def _scheduler_alive() -> bool:
    """The scheduler has started and its loop still runs."""
    scheduler, task = _scheduler(), _state.get("task")
    return (scheduler is not None and scheduler.ready.is_set()
            and isinstance(task, asyncio.Task) and not task.done())


async def _serve_metrics(settings: OperatorSettings) -> OperatorMetrics:
    """The operator's metrics, served on ``metrics_port`` (unless 0) from the first start-up
    attempt on; ``/healthz`` answers 503 until the scheduler runs."""
    metrics = _state.get("metrics")
    if not isinstance(metrics, OperatorMetrics):
        metrics = _state["metrics"] = OperatorMetrics()
    if settings.metrics_port and "metrics_server" not in _state:
        server = MetricsServer(metrics, _scheduler_alive)
        await server.start(settings.metrics_port)
        _state["metrics_server"] = server
    return metrics


def configure_logging(settings: OperatorSettings) -> None:
    """Switch the log handlers Kopf has set up to JSON lines if the settings ask for it."""
    if settings.log_format == "json":
        use_json_logs()


def _load_kube_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 64
    api = client.ApiClient(configuration)
    # Its own User-Agent, so that the API server's audit log tells the operator's writes
    # apart from other clients with the same credentials (bench/api_cost.py).
    api.user_agent = "kubetasks-operator"
    return api


class _NoDiffBase(kopf.DiffBaseStorage):
    """This operator has only ``on.event`` handlers, so Kopf's per-event essence of each
    object (a deep copy, about a quarter of the operator's CPU under load) is never used."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = OperatorSettings.from_env()
    configure_logging(ours)
    # Our own Events are posted deliberately; Kopf's log-to-Event bridge stays off so that a
    # busy operator does not flood the API with one Event per handler call.
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = _NoDiffBase()
    # The watched resources are fixed and namespaces are named, not patterns: no need to
    # scan CRDs or namespaces (which needs cluster-wide list/watch rights it would lack).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.connect_timeout = 10
    settings.queueing.worker_limit = 100
    settings.queueing.idle_timeout = 0.2
    metrics = await _serve_metrics(ours)
    api = _load_kube_client()
    kube = KubeAdapter(api, ours.write_qps, ours.write_burst, ours.fanout_qps,
                       ours.fanout_burst, ours.schedule_qps, ours.schedule_burst,
                       metrics=metrics)
    redis = Redis.from_url(ours.redis_url)
    world = World()
    # Rebuild the picture from the API before any decision: the Redis slot sets are derived
    # from what really runs, never trusted blindly after a restart.
    for obj in await kube.list_custom("tasks", ours.namespaces):
        world.put_task(obj)
    for obj in await kube.list_custom("taskqueues", ours.namespaces):
        world.put_queue(obj)
    # TaskRuns come through the operator's own informer (one list, in pages, then a watch
    # from its resourceVersion), not Kopf's: see adapters/informer.py.
    informer = Informer(kube, "taskruns", ours.namespaces)
    await informer.sync(lambda page: _put_runs(world, page))
    for obj in await kube.list_custom("taskbatches", ours.namespaces):
        world.put_batch(obj)
    for obj in await kube.list_custom("taskschedules", ours.namespaces):
        world.put_schedule(obj)
    for obj in await kube.list_labelled("jobs", ours.namespaces):
        world.put_job(obj)
    for obj in await kube.list_labelled("pods", ours.namespaces):
        world.put_pod(obj)
    # After the Jobs: an Event counts only for a Job the World holds.
    job_events = Informer(kube, "events", ours.namespaces, failed_create_events(kube))
    await job_events.sync(lambda page: _put_job_events(world, page))
    scheduler = Scheduler(world, kube, SlotStore(redis), ours, metrics=metrics)
    _state.update(world=world, kube=kube, redis=redis, scheduler=scheduler, settings=ours,
                  informer=informer, job_events=job_events)
    _state["task"] = asyncio.create_task(scheduler.run_forever(), name="kubetasks-scheduler")
    informer.start(asyncio.get_running_loop(), taskrun_event, taskruns_relisted)
    job_events.start(asyncio.get_running_loop(), job_event_seen, _ignore_relist)
    await scheduler.ready.wait()
    log.info("kubetasks operator ready: %d runs, %d jobs, %d pods",
             len(world.runs), len(world.jobs), len(world.pods))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for name in ("informer", "job_events"):
        informer = _state.get(name)
        if isinstance(informer, Informer):
            informer.stop()
    task = _state.get("task")
    if isinstance(task, asyncio.Task):
        task.cancel()
    scheduler = _scheduler()
    if scheduler is not None:
        scheduler.batches.stop()
        scheduler.schedules.stop()
    redis = _state.get("redis")
    if isinstance(redis, Redis):
        await redis.aclose()
    kube = _state.get("kube")
    if isinstance(kube, KubeAdapter):
        kube.close()
    server = _state.pop("metrics_server", None)
    if isinstance(server, MetricsServer):
        await server.stop()


@kopf.on.probe(id="scheduler")
async def scheduler_probe(**_: Any) -> dict[str, Any]:
    scheduler = _scheduler()
    if scheduler is None:
        raise kopf.TemporaryError("scheduler not started")
    task = _state.get("task")
    if isinstance(task, asyncio.Task) and task.done():
        raise kopf.PermanentError("scheduler loop stopped")
    return {"waiting": len(scheduler.waiting), "holding": len(scheduler.holders)}


def _obj(event: kopf.RawEvent) -> dict[str, Any]:
    return cast(dict[str, Any], event["object"])


def _world() -> World | None:
    world = _state.get("world")
    return world if isinstance(world, World) else None


def _put_runs(world: World, page: list[dict[str, Any]]) -> None:
    for obj in page:
        world.put_run(obj)
    page.clear()  # each object is now held by the World alone


def taskrun_event(kind: str, obj: dict[str, Any]) -> None:
    """A TaskRun watch event from the informer, called in the event loop's thread."""
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    if kind == "DELETED":
        scheduler.touch(world.drop_run(obj) | {(obj["metadata"]["namespace"],
                                                obj["metadata"]["name"])})
    else:
        scheduler.touch(world.put_run(obj))


def _put_job_events(world: World, page: list[dict[str, Any]]) -> None:
    for obj in page:
        world.put_job_event(obj)


def job_event_seen(kind: str, obj: dict[str, Any]) -> None:
    """A FailedCreate Event of a Job, from its informer (in the event loop's thread). A
    deleted Event (expired) changes nothing: the Job's pod was refused all the same."""
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None or kind == "DELETED":
        return
    scheduler.touch(world.put_job_event(obj))


def _ignore_relist(namespace: str | None, seen: set[tuple[str, str]], list_rv: int) -> None:
    return None


def taskruns_relisted(namespace: str | None, seen: set[tuple[str, str]],
                      list_rv: int) -> None:
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    scheduler.touch(world.relisted(namespace, seen, list_rv))


@kopf.on.event(GROUP, VERSION, "taskbatches")
async def taskbatch_event(event: kopf.RawEvent, **_: Any) -> None:
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    obj = _obj(event)
    if event.get("type") == "DELETED":
        scheduler.touch(world.drop_batch(obj))
    else:
        scheduler.touch(world.put_batch(obj))
    scheduler.poke()


@kopf.on.event(GROUP, VERSION, "taskschedules")
async def taskschedule_event(event: kopf.RawEvent, **_: Any) -> None:
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    if event.get("type") == "DELETED":
        world.drop_schedule(_obj(event))
    else:
        world.put_schedule(_obj(event))
    scheduler.poke()


@kopf.on.event(GROUP, VERSION, "tasks")
async def task_event(event: kopf.RawEvent, **_: Any) -> None:
    world = _world()
    if world is None:
        return
    if event.get("type") == "DELETED":
        world.drop_task(_obj(event))
    else:
        world.put_task(_obj(event))
    scheduler = _scheduler()
    if scheduler is not None and world.changed_schedules:
        scheduler.poke()


@kopf.on.event(GROUP, VERSION, "taskqueues")
async def taskqueue_event(event: kopf.RawEvent, **_: Any) -> None:
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    if event.get("type") == "DELETED":
        world.drop_queue(_obj(event))
    else:
        world.put_queue(_obj(event))
    scheduler.poke()


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_RUN_UID: kopf.PRESENT})
async def job_event(event: kopf.RawEvent, **_: Any) -> None:
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    obj = _obj(event)
    affected = world.drop_job(obj) if event.get("type") == "DELETED" else world.put_job(obj)
    scheduler.touch(affected)


@kopf.on.event("", "v1", "pods", labels={LABEL_RUN_UID: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    world, scheduler = _world(), _scheduler()
    if world is None or scheduler is None:
        return
    obj = _obj(event)
    affected = world.drop_pod(obj) if event.get("type") == "DELETED" else world.put_pod(obj)
    scheduler.touch(affected)
    if event.get("type") == "DELETED":
        scheduler.poke()
