"""The operator's writes to the Kubernetes API, and its start-up reads.

Every write goes through a token bucket (``write_qps``/``write_burst``; a batch's fan-out has
its own, ``fanout_qps``/``fanout_burst``): Kopf itself has no client-side rate limit. Calls
run in a small thread pool on the official client, with raw JSON in and out (the client's
model deserialisation is slow and not needed here).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetasks.api.v1alpha1 import API_VERSION, GROUP, VERSION
from kubetasks.protocol.payloads import has_nested_null
from kubetasks.protocol.pod import LABEL_RUN_UID
from kubetasks_operator.metrics import OperatorMetrics

Json = dict[str, Any]
COMPONENT = "kubetasks-operator"


class TokenBucket:
    """``rate`` writes per second with bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def refused(exc: BaseException) -> bool:
    """The API server answered a write with a client error (4xx): it changed nothing. A
    timeout, a lost connection or a 5xx leaves it unknown whether the write happened."""
    return isinstance(exc, ApiException) and exc.status is not None and 400 <= exc.status < 500


def _json(response: Any) -> Json:
    data = response.data if hasattr(response, "data") else response
    return json.loads(data) if data else {}


class KubeAdapter:
    def __init__(self, api: client.ApiClient, write_qps: float, write_burst: int,
                 fanout_qps: float = 300.0, fanout_burst: int = 100,
                 schedule_qps: float = 500.0, schedule_burst: int = 1000,
                 threads: int = 24, fanout_threads: int = 8, schedule_threads: int = 16,
                 metrics: OperatorMetrics | None = None) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.bucket = TokenBucket(write_qps, write_burst)
        # A batch's fan-out has its own budget: however big, it cannot use up the one that
        # moves runs along.
        self.fanout_bucket = TokenBucket(fanout_qps, fanout_burst)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kube")
        # Fan-out calls have their own threads too: queued behind a burst of status writes,
        # a batch's creates would crawl.
        self.fanout_pool = ThreadPoolExecutor(fanout_threads, thread_name_prefix="fanout")
        # Schedule ticks too: a minute's ticks all come due in one second, and their runs
        # must not queue behind (or hold up) the writes that move runs along.
        self.tick_bucket = TokenBucket(schedule_qps, schedule_burst)
        self.tick_pool = ThreadPoolExecutor(schedule_threads, thread_name_prefix="tick")
        self.instance = socket.gethostname()
        self.writes = 0
        self.metrics = metrics if metrics is not None else OperatorMetrics()

    async def _call(self, fn: Any, *args: Any, write: bool = True, background: bool = False,
                    tick: bool = False, op: tuple[str, str] = ("other", "other"),
                    **kwargs: Any) -> Any:
        """Call the client in a thread; a write (``op``: verb, resource) takes a token: of
        the schedule ticks' budget (``tick``), the background one, or the main one."""
        if write:
            bucket = (self.tick_bucket if tick else
                      self.fanout_bucket if background else self.bucket)
            await bucket.take()
            self.writes += 1
            self.metrics.wrote(*op)
        loop = asyncio.get_running_loop()
        pool = self.tick_pool if tick else self.fanout_pool if background else self.pool
        return await loop.run_in_executor(pool, lambda: fn(*args, **kwargs))

    # --- reads (start-up rebuild) ----------------------------------------------------------

    async def list_custom(self, plural: str, namespaces: list[str]) -> list[Json]:
        items: list[Json] = []
        for ns in namespaces or [None]:  # type: ignore[list-item]
            cont = None
            while True:
                kwargs: dict[str, Any] = {"limit": 500, "_preload_content": False}
                if cont:
                    kwargs["_continue"] = cont
                if ns is None:
                    resp = await self._call(self.custom.list_cluster_custom_object, GROUP,
                                            VERSION, plural, write=False, **kwargs)
                else:
                    resp = await self._call(self.custom.list_namespaced_custom_object, GROUP,
                                            VERSION, ns, plural, write=False, **kwargs)
                body = _json(resp)
                items.extend(body.get("items", []))
                cont = (body.get("metadata") or {}).get("continue")
                if not cont:
                    break
        return items

    async def list_labelled(self, kind: str, namespaces: list[str]) -> list[Json]:
        """Jobs or Pods that belong to a run (label ``kubetasks.dev/run-uid``)."""
        items: list[Json] = []
        for ns in namespaces or [None]:  # type: ignore[list-item]
            fn: Any
            if kind == "jobs":
                fn = (self.batch.list_job_for_all_namespaces if ns is None
                      else self.batch.list_namespaced_job)
            else:
                fn = (self.core.list_pod_for_all_namespaces if ns is None
                      else self.core.list_namespaced_pod)
            cont = None
            while True:
                kwargs: dict[str, Any] = {"label_selector": LABEL_RUN_UID, "limit": 500,
                                          "_preload_content": False}
                if cont:
                    kwargs["_continue"] = cont
                args = () if ns is None else (ns,)
                body = _json(await self._call(fn, *args, write=False, **kwargs))
                for item in body.get("items", []):
                    item.setdefault("kind", "Job" if kind == "jobs" else "Pod")
                    items.append(item)
                cont = (body.get("metadata") or {}).get("continue")
                if not cont:
                    break
        return items

    async def _get_custom(self, plural: str, namespace: str, name: str) -> Json | None:
        try:
            resp = await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION,
                                    namespace, plural, name, write=False,
                                    _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(resp)

    async def get_task(self, namespace: str, name: str) -> Json | None:
        return await self._get_custom("tasks", namespace, name)

    # --- writes ----------------------------------------------------------------------------

    async def create_job(self, job: Json) -> tuple[Json | None, bool]:
        """Create the Job; ``(job, created)``. AlreadyExists returns the existing Job."""
        ns = job["metadata"]["namespace"]
        try:
            resp = await self._call(self.batch.create_namespaced_job, ns, job,
                                    op=("create", "jobs"), _preload_content=False)
            return _json(resp), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        resp = await self._call(self.batch.read_namespaced_job, job["metadata"]["name"], ns,
                                write=False, _preload_content=False)
        return _json(resp), False

    async def delete_job(self, namespace: str, name: str, foreground: bool = False) -> None:
        """Foreground: the Job stays (marked deleted) until its pods are gone."""
        policy = "Foreground" if foreground else "Background"
        try:
            await self._call(
                self.batch.delete_namespaced_job, name, namespace,
                body={"propagationPolicy": policy}, op=("delete", "jobs"),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_run_status(self, namespace: str, name: str, status: Json) -> Json | None:
        """A merge patch of the status. In a merge patch a null member means "delete", so an
        output holding nulls is set first with a JSON patch, which keeps it intact; the merge
        patch (with the phase) follows, so nobody sees the new phase without its output."""
        try:
            if "output" in status and has_nested_null(status["output"]):
                status = dict(status)
                await self._call(
                    self.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                    namespace, "taskruns", name,
                    [{"op": "add", "path": "/status/output", "value": status.pop("output")}],
                    op=("patch", "taskruns/status"), _preload_content=False,
                    _content_type="application/json-patch+json",
                )
            resp = await self._call(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                "taskruns", name, {"status": status}, op=("patch", "taskruns/status"),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(resp)

    async def get_run(self, namespace: str, name: str) -> Json | None:
        return await self._get_custom("taskruns", namespace, name)

    async def create_run(self, body: Json, tick: bool = False) -> tuple[Json | None, bool]:
        """Create a TaskRun as background work (a batch's fan-out) or on the schedule ticks'
        budget (``tick``); ``(run, created)``. AlreadyExists returns the existing run
        (``None`` if it is gone again)."""
        meta = body["metadata"]
        try:
            resp = await self._call(self.custom.create_namespaced_custom_object, GROUP,
                                    VERSION, meta["namespace"], "taskruns", body,
                                    background=not tick, tick=tick,
                                    op=("create", "taskruns"),
                                    _preload_content=False)
            return _json(resp), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return await self.get_run(meta["namespace"], meta["name"]), False

    async def patch_batch_status(self, namespace: str, name: str, status: Json
                                 ) -> Json | None:
        try:
            resp = await self._call(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                "taskbatches", name, {"status": status}, op=("patch", "taskbatches/status"),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(resp)

    async def patch_schedule_status(self, namespace: str, name: str, status: Json
                                    ) -> Json | None:
        """Merge-patch a TaskSchedule's status; ``None`` when the schedule is gone. Background
        work: when many ticks fall on one second, their runs go out first."""
        try:
            resp = await self._call(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                "taskschedules", name, {"status": status}, background=True,
                op=("patch", "taskschedules/status"), _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(resp)

    async def cancel_batch(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                "taskbatches", name, {"spec": {"cancel": True}}, op=("patch", "taskbatches"),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def cancel_run(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                "taskruns", name, {"spec": {"cancel": True}}, op=("patch", "taskruns"),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_queue_status(self, namespace: str, name: str, status: Json) -> None:
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                "taskqueues", name, {"status": status}, op=("patch", "taskqueues/status"),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def post_event(self, run: Json, type_: str, reason: str, message: str,
                         kind: str = "TaskRun") -> None:
        meta = run["metadata"]
        now = dt.datetime.now(dt.UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION, "kind": kind, "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        # An event is a courtesy: never fail a transition because of one.
        with contextlib.suppress(ApiException):
            await self._call(self.core.create_namespaced_event, meta["namespace"], body,
                             op=("create", "events"), _preload_content=False)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.fanout_pool.shutdown(wait=False, cancel_futures=True)
        self.tick_pool.shutdown(wait=False, cancel_futures=True)
