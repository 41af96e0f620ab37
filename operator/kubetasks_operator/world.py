"""The operator's in-memory picture of the cluster, fed by watch events and by the responses
to its own writes: TaskRuns, Tasks, TaskQueues and the Jobs and Pods of runs, with the
indexes the scheduler needs. Pure data; no I/O."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kubetasks.protocol.idempotency import LABEL_KEY
from kubetasks.protocol.pod import LABEL_RUN_UID, LABEL_SCHEDULE
from kubetasks_operator.core.model import TERMINAL, QueueConfig, RunView, TaskDefaults
from kubetasks_operator.observe import attempt_number, queue_config, run_view, task_defaults

Json = dict[str, Any]
Key = tuple[str, str]
FAILED_CREATE = "FailedCreate"  # the Job controller's Event reason when a pod is refused


def key_of(obj: Json) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _slim(obj: Json) -> Json:
    """Drop what the operator never reads and that costs the most memory: managedFields are
    about 60% of a parsed TaskRun; ``kubectl apply`` adds a copy of the whole object."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    return obj


def _slim_run(obj: Json) -> Json:
    """A TaskRun as the operator keeps it: also without the payload and the output, which
    only the worker and the SDK read (each up to 32 KiB inline)."""
    _slim(obj)
    spec, status = obj.get("spec"), obj.get("status")
    if isinstance(spec, dict):
        spec.pop("payload", None)
    if isinstance(status, dict):
        status.pop("output", None)
    return obj


def _stale(old: Json | None, new: Json) -> bool:
    """``new`` adds nothing to ``old``: an older version, or the same one again (a watch
    re-delivers what the start-up list or a write's response already gave; keeping the
    object already held lets the duplicate be freed at once)."""
    if old is None:
        return False
    new_rv = _rv(new)
    return _rv(old) > new_rv or (new_rv > 0 and _rv(old) == new_rv)


def _rv(obj: Json | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


class World:
    def __init__(self) -> None:
        self.runs: dict[Key, Json] = {}
        self.run_by_uid: dict[str, Key] = {}
        self.tasks: dict[Key, Json] = {}
        self.queues: dict[Key, Json] = {}
        self.jobs: dict[Key, Json] = {}
        self.pods: dict[Key, Json] = {}
        self.jobs_of_run: dict[str, set[Key]] = defaultdict(set)
        self.pods_of_run: dict[str, set[Key]] = defaultdict(set)
        # Job uid -> the Job controller's last FailedCreate message (its pod was refused)
        self.pod_errors: dict[str, str] = {}
        self.children_of: dict[str, set[Key]] = defaultdict(set)
        self.batches: dict[Key, Json] = {}
        self.schedules: dict[Key, Json] = {}
        self.changed_schedules: set[Key] = set()
        # (namespace, schedule name) -> its unfinished runs, by the kubetasks.dev/schedule
        # label (a schedule's finished runs pile up; they are never looked at)
        self.schedule_unfinished: dict[Key, set[Key]] = defaultdict(set)
        # batch key -> item index -> run key, for runs whose spec.batch names the batch
        self.batch_runs: dict[Key, dict[int, Key]] = defaultdict(dict)
        # runs reused by batches through an idempotency key: run key -> batch keys
        self.reused_by: dict[Key, set[Key]] = defaultdict(set)
        self.batches_waited_by: dict[str, set[Key]] = defaultdict(set)  # parent uid ->
        self.runs_by_key: dict[str, set[Key]] = defaultdict(set)  # idempotency digest ->
        # Batches whose decisions may have changed (drained by the scheduler).
        self.changed_batches: set[Key] = set()
        self._task_cache: dict[Key, TaskDefaults] = {}
        # A run's view is rebuilt only when something it is made of changed: every update
        # below drops the views of the runs it affects.
        self._views: dict[Key, RunView] = {}
        self._queue_cache: dict[Key, QueueConfig] = {}

    # --- updates: each returns the run keys whose decisions may change -------------------

    def _changed(self, keys: set[Key]) -> set[Key]:
        for key in keys:
            self._views.pop(key, None)
        return keys

    def put_run(self, obj: Json) -> set[Key]:
        return self._changed(self._put_run(obj))

    def _put_run(self, obj: Json) -> set[Key]:
        key = key_of(obj)
        old = self.runs.get(key)
        if _stale(old, obj):
            return set()
        self.runs[key] = _slim_run(obj)
        uid = obj["metadata"]["uid"]
        self.run_by_uid[uid] = key
        affected = {key}
        self._index_run_for_batches(key, obj)
        schedule = (obj["metadata"].get("labels") or {}).get(LABEL_SCHEDULE)
        if schedule:
            if ((obj.get("status") or {}).get("phase")) in TERMINAL:
                self._unindex_schedule_run(key, schedule)
            else:
                self.schedule_unfinished[(key[0], schedule)].add(key)
        parent = (obj.get("spec") or {}).get("parent") or {}
        if parent.get("wait") and parent.get("uid"):
            self.children_of[parent["uid"]].add(key)
            parent_key = self.run_by_uid.get(parent["uid"])
            if parent_key is not None:
                affected.add(parent_key)
        return affected

    def drop_run(self, obj: Json) -> set[Key]:
        self._views.pop(key_of(obj), None)
        return self._changed(self._drop_run(obj))

    def relisted(self, namespace: str | None, seen: set[Key], list_rv: int) -> set[Key]:
        """A fresh list of ``namespace`` (None: all) saw only ``seen``: the other runs held
        were deleted while no watch was open, unless they are newer than the list (a write's
        response made after it)."""
        affected: set[Key] = set()
        gone = [run for key, run in self.runs.items()
                if (namespace is None or key[0] == namespace) and key not in seen
                and _rv(run) <= list_rv]
        for run in gone:
            affected |= self.drop_run(run) | {key_of(run)}
        return affected

    def _drop_run(self, obj: Json) -> set[Key]:
        key = key_of(obj)
        existing = self.runs.pop(key, None)
        uid = obj["metadata"].get("uid")
        if uid and self.run_by_uid.get(uid) == key:
            del self.run_by_uid[uid]
        affected: set[Key] = set()
        self._unindex_run_for_batches(key, existing or obj)
        schedule = ((existing or obj)["metadata"].get("labels") or {}).get(LABEL_SCHEDULE)
        if schedule:
            self._unindex_schedule_run(key, schedule)
        parent = ((existing or obj).get("spec") or {}).get("parent") or {}
        if parent.get("uid"):
            self.children_of[parent["uid"]].discard(key)
            parent_key = self.run_by_uid.get(parent["uid"])
            if parent_key is not None:
                affected.add(parent_key)
        return affected

    def _unindex_schedule_run(self, key: Key, schedule: str) -> None:
        runs = self.schedule_unfinished.get((key[0], schedule))
        if runs is not None:
            runs.discard(key)
            if not runs:
                del self.schedule_unfinished[(key[0], schedule)]

    def _index_run_for_batches(self, key: Key, obj: Json) -> None:
        batch = (obj.get("spec") or {}).get("batch") or {}
        if batch.get("name") is not None and isinstance(batch.get("index"), int):
            batch_key = (key[0], batch["name"])
            self.batch_runs[batch_key][batch["index"]] = key
            self.changed_batches.add(batch_key)
        digest = ((obj["metadata"].get("labels")) or {}).get(LABEL_KEY)
        if digest:
            self.runs_by_key[digest].add(key)
        for batch_key in self.reused_by.get(key, ()):
            self.changed_batches.add(batch_key)

    def _unindex_run_for_batches(self, key: Key, obj: Json) -> None:
        batch = (obj.get("spec") or {}).get("batch") or {}
        if batch.get("name") is not None:
            batch_key = (key[0], batch["name"])
            runs = self.batch_runs.get(batch_key)
            if runs is not None and runs.get(batch.get("index", -1)) == key:
                del runs[batch["index"]]
                if not runs:
                    del self.batch_runs[batch_key]
            self.changed_batches.add(batch_key)
        digest = ((obj["metadata"].get("labels")) or {}).get(LABEL_KEY)
        if digest and digest in self.runs_by_key:
            self.runs_by_key[digest].discard(key)
            if not self.runs_by_key[digest]:
                del self.runs_by_key[digest]
        for batch_key in self.reused_by.get(key, ()):
            self.changed_batches.add(batch_key)

    def put_batch(self, obj: Json) -> set[Key]:
        """Store a TaskBatch; the run keys to look at again (a parent that waits on it)."""
        key = key_of(obj)
        old = self.batches.get(key)
        if _stale(old, obj):
            return set()
        self.batches[key] = _slim(obj)
        self.changed_batches.add(key)
        for index, name in (((obj.get("status") or {}).get("keyedRuns")) or {}).items():
            run_key = (key[0], name)
            if self.batch_runs.get(key, {}).get(int(index)) != run_key:
                self.reused_by[run_key].add(key)
        return self._changed(self._parent_of_batch(obj))

    def drop_batch(self, obj: Json) -> set[Key]:
        key = key_of(obj)
        existing = self.batches.pop(key, None) or obj
        self.changed_batches.add(key)
        for name in (((existing.get("status") or {}).get("keyedRuns")) or {}).values():
            holders = self.reused_by.get((key[0], name))
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self.reused_by[(key[0], name)]
        parent = (existing.get("spec") or {}).get("parent") or {}
        if parent.get("uid"):
            self.batches_waited_by[parent["uid"]].discard(key)
            if not self.batches_waited_by[parent["uid"]]:
                del self.batches_waited_by[parent["uid"]]
        return self._changed(self._parent_of_batch(existing))

    def _parent_of_batch(self, obj: Json) -> set[Key]:
        parent = (obj.get("spec") or {}).get("parent") or {}
        if not (parent.get("wait") and parent.get("uid")):
            return set()
        if key_of(obj) in self.batches:
            self.batches_waited_by[parent["uid"]].add(key_of(obj))
        parent_key = self.run_by_uid.get(parent["uid"])
        return {parent_key} if parent_key is not None else set()

    def put_task(self, obj: Json) -> None:
        key = key_of(obj)
        if key not in self.tasks:
            self._schedules_of_task(key)
        self.tasks[key] = _slim(obj)
        self._task_cache.pop(key, None)

    def drop_task(self, obj: Json) -> None:
        key = key_of(obj)
        if self.tasks.pop(key, None) is not None:
            self._schedules_of_task(key)
        self._task_cache.pop(key, None)

    def _schedules_of_task(self, task: Key) -> None:
        """A Task came or went: its schedules' TaskNotFound condition may change."""
        self.changed_schedules.update(
            key for key, obj in self.schedules.items()
            if key[0] == task[0] and (obj.get("spec") or {}).get("task") == task[1])

    def put_schedule(self, obj: Json) -> None:
        key = key_of(obj)
        if _stale(self.schedules.get(key), obj):
            return
        self.schedules[key] = _slim(obj)
        self.changed_schedules.add(key)

    def drop_schedule(self, obj: Json) -> None:
        key = key_of(obj)
        self.schedules.pop(key, None)
        self.changed_schedules.add(key)

    def unfinished_schedule_runs(self, key: Key) -> tuple[str, ...]:
        """Names of the schedule's runs not in a final phase, oldest first."""
        unfinished = [self.runs[k] for k in self.schedule_unfinished.get(key, ())
                      if k in self.runs]
        unfinished.sort(key=lambda r: (r["metadata"].get("creationTimestamp") or "",
                                       r["metadata"]["name"]))
        return tuple(r["metadata"]["name"] for r in unfinished)

    def put_queue(self, obj: Json) -> None:
        key = key_of(obj)
        self.queues[key] = _slim(obj)
        self._queue_cache.pop(key, None)

    def drop_queue(self, obj: Json) -> None:
        key = key_of(obj)
        self.queues.pop(key, None)
        self._queue_cache.pop(key, None)

    def _owner(self, obj: Json) -> str | None:
        labels = obj["metadata"].get("labels") or {}
        uid = labels.get(LABEL_RUN_UID)
        return uid if isinstance(uid, str) else None

    def _put_owned(self, store: dict[Key, Json], index: dict[str, set[Key]], obj: Json
                   ) -> set[Key]:
        uid = self._owner(obj)
        if uid is None:
            return set()
        key = key_of(obj)
        old = store.get(key)
        if _stale(old, obj):
            return set()
        store[key] = _slim(obj)
        index[uid].add(key)
        run_key = self.run_by_uid.get(uid)
        return self._changed({run_key} if run_key else set())

    def _drop_owned(self, store: dict[Key, Json], index: dict[str, set[Key]], obj: Json
                    ) -> set[Key]:
        key = key_of(obj)
        store.pop(key, None)
        uid = self._owner(obj)
        if uid is None:
            return set()
        index[uid].discard(key)
        if not index[uid]:
            del index[uid]
        run_key = self.run_by_uid.get(uid)
        return self._changed({run_key} if run_key else set())

    def put_job(self, obj: Json) -> set[Key]:
        return self._put_owned(self.jobs, self.jobs_of_run, obj)

    def drop_job(self, obj: Json) -> set[Key]:
        self.pod_errors.pop(str(obj["metadata"].get("uid")), None)
        return self._drop_owned(self.jobs, self.jobs_of_run, obj)

    def put_job_event(self, event: Json) -> set[Key]:
        """A core/v1 Event. Only the Job controller's FailedCreate on one of our Jobs counts:
        its message says why the attempt's pod could not be created."""
        involved = event.get("involvedObject") or {}
        if involved.get("kind") != "Job" or event.get("reason") != FAILED_CREATE:
            return set()
        namespace = involved.get("namespace") or event["metadata"].get("namespace", "")
        job = self.jobs.get((namespace, str(involved.get("name"))))
        uid = str(involved.get("uid"))
        if job is None or job["metadata"].get("uid") != uid:
            return set()  # not ours, or an older Job of that name
        message = str(event.get("message") or "no message")[:4096]
        if self.pod_errors.get(uid) == message:
            return set()
        self.pod_errors[uid] = message
        owner = self._owner(job)
        run_key = self.run_by_uid.get(owner) if owner else None
        return self._changed({run_key} if run_key else set())

    def put_pod(self, obj: Json) -> set[Key]:
        return self._put_owned(self.pods, self.pods_of_run, obj)

    def drop_pod(self, obj: Json) -> set[Key]:
        return self._drop_owned(self.pods, self.pods_of_run, obj)

    # --- reads -----------------------------------------------------------------------------

    def task_for(self, run: Json) -> TaskDefaults | None:
        key = (run["metadata"]["namespace"], (run.get("spec") or {}).get("task", ""))
        cached = self._task_cache.get(key)
        if cached is None and key in self.tasks:
            cached = self._task_cache[key] = task_defaults(self.tasks[key])
        return cached

    def queue(self, namespace: str, name: str) -> QueueConfig | None:
        key = (namespace, name)
        cached = self._queue_cache.get(key)
        if cached is None and key in self.queues:
            cached = self._queue_cache[key] = queue_config(self.queues[key])
        return cached

    def drop_views(self) -> None:
        """Forget every cached view (benchmarks measure the cost of building them)."""
        self._views.clear()

    def view(self, key: Key) -> RunView | None:
        cached = self._views.get(key)
        if cached is not None:
            return cached
        built = self._build_view(key)
        if built is not None:
            self._views[key] = built
        return built

    def _build_view(self, key: Key) -> RunView | None:
        run = self.runs.get(key)
        if run is None:
            return None
        uid = run["metadata"]["uid"]
        jobs: dict[int, Json] = {}
        for job_key in self.jobs_of_run.get(uid, ()):
            job = self.jobs[job_key]
            number = attempt_number(job)
            if number is not None:
                jobs[number] = job
        pods: dict[int, list[Json]] = defaultdict(list)
        for pod_key in self.pods_of_run.get(uid, ()):
            pod = self.pods[pod_key]
            number = attempt_number(pod)
            if number is not None:
                pods[number].append(pod)
        children = [self.runs[k] for k in self.children_of.get(uid, ()) if k in self.runs]
        batches = [self.batches[k] for k in self.batches_waited_by.get(uid, ())
                   if k in self.batches]
        return run_view(run, jobs, pods, children, batches, self.pod_errors)

    def job_names_of(self, key: Key) -> list[str]:
        run = self.runs.get(key)
        if run is None:
            return []
        return sorted(k[1] for k in self.jobs_of_run.get(run["metadata"]["uid"], ()))
