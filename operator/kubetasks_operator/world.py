"""The operator's in-memory picture of the cluster, fed by watch events and by the responses
to its own writes: TaskRuns, Tasks, TaskQueues and the Jobs and Pods of runs, with the
indexes the scheduler needs. Pure data; no I/O."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kubetasks.protocol import LABEL_RUN_UID
from kubetasks_operator.core.model import QueueConfig, RunView, TaskDefaults
from kubetasks_operator.observe import attempt_number, queue_config, run_view, task_defaults

Json = dict[str, Any]
Key = tuple[str, str]


def key_of(obj: Json) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


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
        self.children_of: dict[str, set[Key]] = defaultdict(set)
        self._task_cache: dict[Key, TaskDefaults] = {}
        self._queue_cache: dict[Key, QueueConfig] = {}

    # --- updates: each returns the run keys whose decisions may change -------------------

    def put_run(self, obj: Json) -> set[Key]:
        key = key_of(obj)
        old = self.runs.get(key)
        if old is not None and _rv(old) > _rv(obj):
            return set()
        self.runs[key] = obj
        uid = obj["metadata"]["uid"]
        self.run_by_uid[uid] = key
        affected = {key}
        parent = (obj.get("spec") or {}).get("parent") or {}
        if parent.get("wait") and parent.get("uid"):
            self.children_of[parent["uid"]].add(key)
            parent_key = self.run_by_uid.get(parent["uid"])
            if parent_key is not None:
                affected.add(parent_key)
        return affected

    def drop_run(self, obj: Json) -> set[Key]:
        key = key_of(obj)
        existing = self.runs.pop(key, None)
        uid = obj["metadata"].get("uid")
        if uid and self.run_by_uid.get(uid) == key:
            del self.run_by_uid[uid]
        affected: set[Key] = set()
        parent = ((existing or obj).get("spec") or {}).get("parent") or {}
        if parent.get("uid"):
            self.children_of[parent["uid"]].discard(key)
            parent_key = self.run_by_uid.get(parent["uid"])
            if parent_key is not None:
                affected.add(parent_key)
        return affected

    def put_task(self, obj: Json) -> None:
        key = key_of(obj)
        self.tasks[key] = obj
        self._task_cache.pop(key, None)

    def drop_task(self, obj: Json) -> None:
        key = key_of(obj)
        self.tasks.pop(key, None)
        self._task_cache.pop(key, None)

    def put_queue(self, obj: Json) -> None:
        key = key_of(obj)
        self.queues[key] = obj
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
        if old is not None and _rv(old) > _rv(obj):
            return set()
        store[key] = obj
        index[uid].add(key)
        run_key = self.run_by_uid.get(uid)
        return {run_key} if run_key else set()

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
        return {run_key} if run_key else set()

    def put_job(self, obj: Json) -> set[Key]:
        return self._put_owned(self.jobs, self.jobs_of_run, obj)

    def drop_job(self, obj: Json) -> set[Key]:
        return self._drop_owned(self.jobs, self.jobs_of_run, obj)

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

    def view(self, key: Key) -> RunView | None:
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
        return run_view(run, jobs, pods, children)

    def job_names_of(self, key: Key) -> list[str]:
        run = self.runs.get(key)
        if run is None:
            return []
        return sorted(k[1] for k in self.jobs_of_run.get(run["metadata"]["uid"], ()))
