"""Throughput: N trivial runs through kubetasks against the same work as raw Jobs, on the real
local control plane with the node agent, under both controller-manager settings.

    .venv/bin/python bench/throughput.py [--runs 1000] [--settings default,tuned] \
        [--limits 10,25,50,none] [--threads 8] [--json bench/results/throughput.json]

For each setting (``default`` = ``ControllerSettings()``, the controller manager's own client
limits, under which the Job controller makes about 9 pods/s; ``tuned`` =
``ControllerSettings.tuned()``) a fresh ``LocalCluster`` is started and the sides run one
after the other, in this order, each in its own namespace:

1. ``kubetasks``: N runs of one Task spread round-robin over four queues (``TaskQueue`` s with
   ``concurrencyLimit`` 10, 25 and 50, and one without a limit; ``--limits``), triggered with
   the SDK's ``kubetasks.tasks.trigger(task, payload, queue=...)`` (what a user calls) from a
   pool of ``--threads`` threads (8). The operator watches this namespace only, and its
   ``KUBETASKS_WORKER_COMMAND`` is a minimal Python command that writes the success
   termination message (``WORKER``), so the figures measure orchestration, not the worker's
   imports. A run is done when its TaskRun is ``Completed``.
2. ``raw-limited``: N Jobs running the same command, built by the operator's own
   ``attempt_job`` (one container, ``restartPolicy: Never``, ``backoffLimit: 0``, the same
   resources, env, security context and TTL; no owner, other labels), created with the
   Kubernetes client (``BatchV1Api``, response not deserialised) from the same thread pool,
   spread over the same four groups with the same limits: the benchmark is the dispatcher, and
   creates a group's next Job when its watch sees one of the group's pods ``Succeeded`` (a
   kubetasks slot too is freed only when the pod has stopped). This is the like-for-like
   baseline for the queue limits: the target ratio is measured against it.
3. ``raw``: the same N Jobs, no limits, created as fast as the thread pool allows: the
   ceiling of the control plane itself. Under ``default`` it is skipped unless ``--sides``
   names it: there the Job controller (about 3 Jobs/s end to end) caps both raw sides alike
   (100 Jobs: 3.4/s limited, 3.2/s unlimited), and a 1000-Job side costs 5-6 minutes.

All times are stamped by this process (``time.time()``): a run's trigger (or a Job's create)
just before its API call, then watch events: the TaskRun's first phase ``Executing``
(admission, for kubetasks), the Pod's ``ADDED``, the Pod's ``Succeeded``, the Job's
``Complete`` condition and the TaskRun's ``Completed`` phase. creationTimestamp has whole
seconds only, so it is not used. A kubetasks run is done when its TaskRun is ``Completed``
(the operator writes it when it sees the pod end), a raw Job when its pod has ``Succeeded``:
the Job's ``Complete`` condition comes later, after the Job controller's own bookkeeping,
which kubetasks does not wait for either (it is in the JSON: ``to_job_complete``,
``job_complete_rate_per_s``). Before each side the cluster is idle: every pod finished and
every Job ``Complete``, so no side inherits the last one's backlog.

Rates are N over the time from the first trigger (create) to the last such event. Latencies
of kubetasks include the wait in a limited queue (the trigger is the user's call); those of
``raw-limited`` start at the Job's create, i.e. after the dispatcher's own queue. The JSON
has both sides' latencies per queue (group); kubetasks' unlimited queue compares with ``raw``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

import kubetasks
from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess
from kubetasks.protocol.pod import LABEL_RUN
from kubetasks.protocol.storage import StorageSettings
from kubetasks_operator.jobs import attempt_job
from kubetasks_operator.settings import OperatorSettings

Json = dict[str, Any]
GROUP, VERSION = "kubetasks.dev", "v1alpha1"
TASK = "noop"
TASK_SPEC = {"image": "local", "entrypoint": "bench:noop"}
KT_NS, LIMITED_NS, RAW_NS = "bench-kubetasks", "bench-raw-limited", "bench-raw"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
WORKER = [sys.executable, "-c",
          "import os; open(os.environ['KUBETASKS_TERMINATION_MESSAGE_PATH'], 'w')"
          ".write('{\"ok\": true, \"output\": null}')"]
SIDES = ("kubetasks", "raw-limited", "raw")
# Under the controller manager's defaults its Job controller caps every side alike (about 3
# Jobs/s end to end, 5 min per 1000 Jobs); unlimited raw Jobs are no faster than limited ones
# there, so that side runs under ``tuned`` only unless --sides asks for it.
DEFAULT_SIDES = {"default": ("kubetasks", "raw-limited"), "tuned": SIDES}
SETTINGS = {"default": ControllerSettings(), "tuned": ControllerSettings.tuned()}


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": round(percentile(values, 50), 3),
            "p95_s": round(percentile(values, 95), 3), "p99_s": round(percentile(values, 99), 3),
            "max_s": round(max(values), 3)}


def rate(count: int, start: float, end: float) -> float:
    return round(count / (end - start), 2) if end > start else 0.0


def deltas(start: dict[str, float], end: dict[str, float]) -> list[float]:
    return [end[k] - start[k] for k in start if k in end]


# --- watches ---------------------------------------------------------------------------------


class Watcher:
    """Stamps the events of one kind in one namespace: ``on_event(type, object, now)`` runs
    in the watch's thread. Raw JSON (no model deserialisation), resumed after the server
    ends the watch."""

    def __init__(self, api: client.ApiClient, kind: str, namespace: str,
                 on_event: Callable[[str, Json, float], None]) -> None:
        self.api, self.kind, self.namespace, self.on_event = api, kind, namespace, on_event
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._stream: Any = None  # kubernetes.watch is untyped
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{kind}")

    def _list(self) -> Callable[..., Any]:
        if self.kind == "pods":
            return client.CoreV1Api(self.api).list_namespaced_pod
        if self.kind == "jobs":
            return client.BatchV1Api(self.api).list_namespaced_job
        custom = client.CustomObjectsApi(self.api)

        def taskruns(namespace: str, **kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "taskruns",
                                                        **kwargs)
        return taskruns

    def __enter__(self) -> Watcher:
        self._thread.start()
        if not self._ready.wait(30):
            raise SystemExit(f"watch of {self.kind} did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.stop()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # the cluster going away at the end
            if not self._stop.is_set():
                raise

    def _loop(self) -> None:
        list_ = self._list()
        while not self._stop.is_set():
            listed = list_(self.namespace, _preload_content=False)
            body = json.loads(listed.data)
            version = body["metadata"]["resourceVersion"]
            now = time.time()
            for item in body["items"]:  # only between sides or after a 410: stamped late
                self.on_event("ADDED", item, now)
            self._ready.set()
            while not self._stop.is_set():
                stream: Any = watch.Watch()  # type: ignore[no-untyped-call]
                self._stream = stream
                try:
                    for event in stream.stream(list_, self.namespace,
                                                     resource_version=version,
                                                     timeout_seconds=300,
                                                     allow_watch_bookmarks=True,
                                                     deserialize=False):
                        now = time.time()
                        obj = event["object"]
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self.on_event(event["type"], obj, now)
                        if self._stop.is_set():
                            break
                except client.ApiException as exc:
                    if exc.status == 410:
                        break  # relist
                    raise


def first(stamps: dict[str, float], key: str, now: float) -> None:
    stamps.setdefault(key, now)


def condition_true(obj: Json, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


@dataclass
class Stamps:
    """Per run (TaskRun name, or Job name): when each event was first seen."""

    trigger: dict[str, float] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)   # create call returned
    queue: dict[str, str] = field(default_factory=dict)
    admitted: dict[str, float] = field(default_factory=dict)  # TaskRun Executing
    pod_added: dict[str, float] = field(default_factory=dict)
    pod_succeeded: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)      # Completed / pod Succeeded
    job_complete: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pod_event(self, key_label: str, on_succeeded: Callable[[str], None] | None = None
                  ) -> Callable[[str, Json, float], None]:
        def handle(kind: str, pod: Json, now: float) -> None:
            owner = (pod["metadata"].get("labels") or {}).get(key_label)
            if owner is None:
                return
            first(self.pod_added, owner, now)
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded" and owner not in self.pod_succeeded:
                self.pod_succeeded[owner] = now
                if on_succeeded is not None:  # raw Jobs: the pod's end is the run's end
                    self.done[owner] = now
                    on_succeeded(owner)
            elif phase == "Failed":
                self.failed.setdefault(owner, "pod Failed")
        return handle

    def taskrun_event(self, kind: str, run: Json, now: float) -> None:
        name = run["metadata"]["name"]
        phase = (run.get("status") or {}).get("phase")
        if phase in ("Executing", "Completed"):
            first(self.admitted, name, now)
        if phase == "Completed":
            first(self.done, name, now)
        elif phase in ("Failed", "Canceled", "Expired", "TimedOut", "Crashed", "Retrying"):
            self.failed.setdefault(name, str(phase))

    def job_event(self, kind: str, job: Json, now: float) -> None:
        name = job["metadata"]["name"]
        if condition_true(job, "Complete"):
            first(self.job_complete, name, now)
        elif condition_true(job, "Failed"):
            self.failed.setdefault(name, "Job Failed")

    def wait(self, count: int, timeout: float, what: str, jobs: bool = False) -> None:
        """Until ``count`` runs are done (and, with ``jobs``, their Jobs ``Complete``)."""
        deadline = time.monotonic() + timeout
        while len(self.done) < count or (jobs and len(self.job_complete) < count):
            if self.failed:
                raise SystemExit(f"{what}: {len(self.failed)} failed, e.g. "
                                 f"{next(iter(self.failed.items()))}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{what}: only {len(self.done)} of {count} done after {timeout:.0f} s "
                    f"(created {len(self.created)}, admitted {len(self.admitted)}, pods "
                    f"{len(self.pod_added)}, pods succeeded {len(self.pod_succeeded)}, Jobs "
                    f"Complete {len(self.job_complete)}; not "
                    f"done: {sorted(set(self.trigger) - set(self.done))[:5]})")
            time.sleep(0.05)

    def figures(self, count: int, kubetasks_side: bool) -> Json:
        start = min(self.trigger.values())
        result: Json = {
            "runs": count,
            "create_rate_per_s": rate(count, start, max(self.created.values())),
            "completion_rate_per_s": rate(count, start, max(self.done.values())),
            "wall_s": round(max(self.done.values()) - start, 3),
            "to_pod_created": latency(deltas(self.trigger, self.pod_added)),
            "to_pod_succeeded": latency(deltas(self.trigger, self.pod_succeeded)),
            "to_completed": latency(deltas(self.trigger, self.done)),
        }
        if self.job_complete:
            result["job_complete_rate_per_s"] = rate(count, start,
                                                     max(self.job_complete.values()))
            result["to_job_complete"] = latency(deltas(self.trigger, self.job_complete))
        if kubetasks_side:
            result["admission_rate_per_s"] = rate(count, start, max(self.admitted.values()))
            result["to_admitted"] = latency(deltas(self.trigger, self.admitted))
            result["pod_succeeded_to_completed"] = latency(deltas(self.pod_succeeded,
                                                                  self.done))
        per_group: Json = {}
        for group in sorted(set(self.queue.values())):
            keys = [k for k, g in self.queue.items() if g == group]
            per_group[group] = {
                "runs": len(keys),
                "to_completed": latency([self.done[k] - self.trigger[k] for k in keys
                                         if k in self.done]),
                "last_completed_s": round(max(self.done[k] for k in keys) - start, 3),
            }
        result["per_queue"] = per_group
        return result


# --- the three sides -------------------------------------------------------------------------


def queue_names(limits: list[int | None]) -> list[str]:
    return [f"q-{limit}" if limit is not None else "q-none" for limit in limits]


def run_kubetasks(api: client.ApiClient, runs: int, limits: list[int | None], threads: int,
                  timeout: float) -> Json:
    stamps = Stamps()
    names = queue_names(limits)

    def trigger(i: int) -> None:
        queue = names[i % len(names)]
        began = time.time()
        handle = kubetasks.tasks.trigger(TASK, {"i": i}, queue=queue)
        returned = time.time()
        with stamps.lock:
            stamps.trigger[handle.name] = began
            stamps.created[handle.name] = returned
            stamps.queue[handle.name] = queue

    with Watcher(api, "taskruns", KT_NS, stamps.taskrun_event), \
            Watcher(api, "pods", KT_NS, stamps.pod_event(LABEL_RUN)), \
            ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(trigger, i) for i in range(runs)]:
            f.result()
        stamps.wait(runs, timeout, "kubetasks")
    return stamps.figures(runs, kubetasks_side=True)


def raw_job(name: str, namespace: str, group: str, operator_settings: OperatorSettings
            ) -> Json:
    """The Job the operator would create for one attempt, as an independent Job."""
    run = {"metadata": {"name": name, "uid": str(uuid.uuid4()), "namespace": namespace},
           "spec": {"task": TASK}}
    job = attempt_job(run, {"spec": TASK_SPEC}, group, 1, operator_settings)
    labels = {"bench": "raw", "bench-group": group}
    job["metadata"] = {"name": name, "labels": labels}
    job["spec"]["template"]["metadata"]["labels"] = labels
    return job


def run_raw(api: client.ApiClient, namespace: str, runs: int, limits: list[int | None],
            threads: int, operator_settings: OperatorSettings, timeout: float) -> Json:
    """Raw Jobs; with ``limits`` the benchmark dispatches each group's next Job when one of
    its pods has succeeded, else all at once."""
    stamps = Stamps()
    batch: Any = client.BatchV1Api(api)  # raw JSON in and out: typed for models only
    names = queue_names(limits)
    jobs = [(f"job-{i}", names[i % len(names)]) for i in range(runs)]
    group_of = dict(jobs)
    pending: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
    free: dict[str, int | None] = dict(zip(names, limits, strict=True))
    lock = threading.Lock()
    futures: list[Future[None]] = []
    pool = ThreadPoolExecutor(threads)

    def create(name: str) -> None:
        body = raw_job(name, namespace, group_of[name], operator_settings)
        began = time.time()
        try:
            response = batch.create_namespaced_job(namespace, body, _preload_content=False)
            response.data  # noqa: B018  read the answer before the connection is reused
            response.release_conn()
        except Exception as exc:
            stamps.failed[name] = f"create: {exc!r}"[:300]
            raise
        returned = time.time()
        with stamps.lock:
            stamps.trigger[name] = began
            stamps.created[name] = returned
            stamps.queue[name] = group_of[name]

    def dispatch(ready: Iterable[str]) -> None:
        futures.extend(pool.submit(create, name) for name in ready)

    def on_succeeded(name: str) -> None:
        group = group_of.get(name)
        if group is None:
            return
        with lock:
            if pending[group]:
                dispatch([pending[group].popleft()])
            else:
                count = free[group]
                free[group] = None if count is None else count + 1

    with Watcher(api, "jobs", namespace, stamps.job_event), \
            Watcher(api, "pods", namespace, stamps.pod_event(JOB_NAME_LABEL, on_succeeded)):
        with lock:
            ready = []
            for name, group in jobs:
                count = free[group]
                if count is None:
                    ready.append(name)
                elif count > 0:
                    free[group] = count - 1
                    ready.append(name)
                else:
                    pending[group].append(name)
            dispatch(ready)
        stamps.wait(runs, timeout, namespace, jobs=True)
        pool.shutdown()
        for f in futures:
            f.result()
    return stamps.figures(runs, kubetasks_side=False)


# --- cluster set-up ----------------------------------------------------------------------


def prepare_namespaces(api: client.ApiClient, limits: list[int | None]) -> None:
    core: Any = client.CoreV1Api(api)  # plain dicts, not models
    custom = client.CustomObjectsApi(api)
    for namespace in (KT_NS, LIMITED_NS, RAW_NS):
        core.create_namespace({"metadata": {"name": namespace}})
    custom.create_namespaced_custom_object(GROUP, VERSION, KT_NS, "tasks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task", "metadata": {"name": TASK},
        "spec": TASK_SPEC})
    for name, limit in zip(queue_names(limits), limits, strict=True):
        spec = {} if limit is None else {"concurrencyLimit": limit}
        custom.create_namespaced_custom_object(GROUP, VERSION, KT_NS, "taskqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskQueue",
            "metadata": {"name": name}, "spec": spec})
    deadline = time.monotonic() + 60
    for namespace in (KT_NS, LIMITED_NS, RAW_NS):  # pods need the default ServiceAccount
        while not core.list_namespaced_service_account(namespace).items:
            if time.monotonic() > deadline:
                raise SystemExit(f"no default ServiceAccount in {namespace}")
            time.sleep(0.1)


def wait_idle(api: client.ApiClient, timeout: float = 300) -> float:
    """Until every pod of the benchmark has finished and every Job has ended; seconds
    waited."""
    core: Any = client.CoreV1Api(api)  # raw JSON answers (_preload_content=False)
    batch: Any = client.BatchV1Api(api)
    began = time.monotonic()
    while True:
        busy = 0
        for namespace in (KT_NS, LIMITED_NS, RAW_NS):
            pods = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)
            busy += sum(1 for p in pods["items"]
                        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
            jobs = json.loads(batch.list_namespaced_job(namespace, _preload_content=False).data)
            busy += sum(1 for j in jobs["items"]
                        if not (condition_true(j, "Complete") or condition_true(j, "Failed")))
        if busy == 0:
            return round(time.monotonic() - began, 2)
        if time.monotonic() - began > timeout:
            raise SystemExit(f"cluster not idle after {timeout} s: {busy} pods/Jobs busy")
        time.sleep(0.5)


def operator_env() -> dict[str, str]:
    """Operator settings from this process's environment (KUBETASKS_WRITE_QPS=... etc.)."""
    keep = ("KUBETASKS_WRITE_QPS", "KUBETASKS_WRITE_BURST", "KUBETASKS_REPAIR_INTERVAL",
            "KUBETASKS_QUEUE_STATUS_INTERVAL")
    return {k: os.environ[k] for k in keep if k in os.environ}


def slow_passes(log: Path) -> Json:
    """The operator's warnings of slow scheduler passes (one pass holds up every decision)."""
    took = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if "a scheduler pass took" in line:
                took.append(float(line.split("took ", 1)[1].split(" s", 1)[0]))
    return {"count": len(took), "total_s": round(sum(took), 2),
            "max_s": max(took, default=0.0)}


def machine() -> Json:
    model = ""
    memory = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal"):
                memory = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory": memory,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(), "python": platform.python_version()}


def versions(api: client.ApiClient) -> Json:
    server = client.VersionApi(api).get_code()
    return {"kubernetes_server": server.git_version,
            "kubetasks": kubetasks.__version__,
            "kopf": importlib.metadata.version("kopf"),
            "kubernetes_client": importlib.metadata.version("kubernetes")}


TICK = os.sysconf("SC_CLK_TCK")


def component_cpu(local: LocalCluster, op: OperatorProcess) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each component; ``pods`` is what the node
    agent's finished children (the pods' processes) used."""
    pids: dict[str, int | None] = {
        name: proc.pid for name, proc in local.control_plane.processes.items()}
    pids["operator"] = op.process.pid if op.process is not None else None
    pids["node agent"] = (local.node_agent.process.pid
                          if local.node_agent.process is not None else None)
    pids["benchmark (triggers, watches)"] = os.getpid()
    out: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = (int(fields[11]) + int(fields[12])) / TICK
        if name == "node agent":
            out["pods"] = (int(fields[13]) + int(fields[14])) / TICK
    return out


def run_setting(name: str, runs: int, limits: list[int | None], threads: int,
                only: list[str]) -> Json:
    timeout = max(180.0, runs * 0.6)
    settings = SETTINGS[name]
    with LocalCluster(controller_settings=settings) as local:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(local.control_plane.kubeconfig))
        prepare_namespaces(api, limits)
        env = {**local.env(), "KUBETASKS_WORKER_COMMAND": shlex.join(WORKER),
               "KUBETASKS_NAMESPACES": KT_NS, **operator_env()}
        operator_settings = OperatorSettings.from_env(env)
        kubetasks.configure(kubeconfig=local.control_plane.kubeconfig, namespace=KT_NS,
                            storage=StorageSettings(bucket=local.s3.bucket,
                                                    endpoint=local.s3.endpoint,
                                                    region=local.s3.region))
        op = OperatorProcess(local.workdir / "operator", env).start()
        result: Json = {
            "controller_manager_flags": settings.flags(),
            "cluster_start_s": round(local.started_seconds or 0, 1),
            "operator": {"write_qps": operator_settings.write_qps,
                         "write_burst": operator_settings.write_burst,
                         "repair_interval": operator_settings.repair_interval,
                         "queue_status_interval": operator_settings.queue_status_interval,
                         "worker_command": operator_settings.worker_command,
                         "namespaces": operator_settings.namespaces},
            "versions": versions(api),
            "sides": {},
        }
        print(f"[{name}] cluster up in {result['cluster_start_s']} s, controller manager "
              f"flags {settings.flags() or '(its defaults)'}", flush=True)
        try:
            sides: list[tuple[str, Callable[[], Json]]] = [
                ("kubetasks", lambda: run_kubetasks(api, runs, limits, threads, timeout)),
                ("raw-limited", lambda: run_raw(api, LIMITED_NS, runs, limits, threads,
                                                operator_settings, timeout)),
                ("raw", lambda: run_raw(api, RAW_NS, runs, [None], threads,
                                        operator_settings, timeout)),
            ]
            for side, how in sides:
                if side not in only:
                    continue
                idle = wait_idle(api)
                cpu_before = component_cpu(local, op)
                figures = how()
                cpu_after = component_cpu(local, op)
                figures["cpu_s"] = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1)
                                    for k in cpu_after}
                figures["idle_wait_before_s"] = idle
                result["sides"][side] = figures
                print(f"[{name}] {side:<12} {runs} done in {figures['wall_s']:7.2f} s "
                      f"({figures['completion_rate_per_s']:.1f}/s); CPU s: "
                      + ", ".join(f"{k} {v}" for k, v in figures["cpu_s"].items()),
                      flush=True)
        finally:
            op.stop()
            result["operator"]["log"] = str(op.log_path)
            result["operator"]["slow_passes"] = slow_passes(op.log_path)
    sides_ = result["sides"]
    done = {k: v["completion_rate_per_s"] for k, v in sides_.items()}
    for other in ("raw-limited", "raw"):
        if "kubetasks" in done and other in done:
            result[f"ratio_completion_kubetasks_over_{other.replace('-', '_')}"] = round(
                done["kubetasks"] / done[other], 2)
    return result


# --- output ----------------------------------------------------------------------------------


def table(results: Json) -> None:
    def trio(row: Json) -> str:
        if not row.get("n"):
            return f"{'-':>18}"
        return f"{row['p50_s']:>6.2f}{row['p95_s']:>6.2f}{row['p99_s']:>6.2f}"

    print()
    print(f"{'setting':<9}{'side':<13}{'create/s':>9}{'admit/s':>9}"
          f"{'-> pod p50/95/99 s':>19}{'-> done p50/95/99 s':>20}{'done/s':>8}"
          f"{'Job Complete/s':>15}")
    for name, setting in results["settings"].items():
        for side, row in setting["sides"].items():
            admit = row.get("admission_rate_per_s")
            print(f"{name:<9}{side:<13}{row['create_rate_per_s']:>9.1f}"
                  f"{(f'{admit:.1f}' if admit is not None else '-'):>9}"
                  f" {trio(row['to_pod_created'])}  {trio(row['to_completed'])}"
                  f"{row['completion_rate_per_s']:>8.1f}"
                  f"{row.get('job_complete_rate_per_s', '-'):>15}")
        kt = setting["sides"].get("kubetasks")
        if kt:
            lag = kt["pod_succeeded_to_completed"]
            print(f"{name:<9}kubetasks: pod Succeeded -> TaskRun Completed p50 {lag['p50_s']:.2f} "
                  f"s, p95 {lag['p95_s']:.2f} s; trigger -> Executing p50 "
                  f"{kt['to_admitted']['p50_s']:.2f} s")
        slow = setting["operator"].get("slow_passes") or {}
        if slow.get("count"):
            print(f"{name:<9}operator: {slow['count']} slow scheduler passes, "
                  f"{slow['total_s']} s in all, longest {slow['max_s']} s")
        for other in ("raw_limited", "raw"):
            ratio = setting.get(f"ratio_completion_kubetasks_over_{other}")
            if ratio is not None:
                print(f"{name:<9}completion rate kubetasks / {other.replace('_', '-')} = "
                      f"{ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--settings", default="default,tuned",
                        help="comma-separated: default, tuned (a fresh cluster each)")
    parser.add_argument("--limits", default="10,25,50,none",
                        help="concurrency limit per queue (and raw-limited group); none: no "
                             "limit")
    parser.add_argument("--threads", type=int, default=8,
                        help="threads that create TaskRuns and Jobs")
    parser.add_argument("--sides", default=None,
                        help="comma-separated subset of " + ", ".join(SIDES) + " for every "
                             "setting (default: kubetasks,raw-limited under default, all three "
                             "under tuned)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; use {', '.join(SETTINGS)}")
    only = [s.strip() for s in (args.sides or "").split(",") if s.strip()]
    if any(s not in SIDES for s in only):
        parser.error(f"unknown sides in {only}; use {', '.join(SIDES)}")
    limits = [None if v.strip().lower() == "none" else int(v) for v in args.limits.split(",")]

    results: Json = {
        "runs": args.runs,
        "queue_limits": limits,
        "threads": args.threads,
        "trigger": "kubetasks.tasks.trigger(task, payload, queue=...) from a thread pool",
        "raw_create": "BatchV1Api.create_namespaced_job from the same thread pool",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {},
    }
    print(f"machine: {results['machine']['cpus']} CPUs, {results['machine']['cpu_model']}, "
          f"load {results['machine']['load_average_at_start']}; {args.runs} runs, queue "
          f"limits {limits}, {args.threads} threads", flush=True)
    began = time.monotonic()
    for name in names:
        results["settings"][name] = run_setting(
            name, args.runs, limits, args.threads, only or list(DEFAULT_SIDES[name]))
    results["total_s"] = round(time.monotonic() - began, 1)
    first_setting = next(iter(results["settings"].values()))
    print(f"versions: {first_setting['versions']}")
    table(results)
    print(f"total {results['total_s']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
