"""The dashboard's picture of the cluster: kubetasks objects kept up to date by a list and a
watch per kind and namespace, so that pages never list from the API server per request.

``Store`` is pure (events in, objects and a change sequence out); ``Watcher`` feeds it from
the API server in a thread, relisting when the watch's resourceVersion is too old (410).
Subscribers (the server-sent events of the pages) wait on ``Store.next_changes`` in the event
loop, holding no thread while they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3

from kubetasks._internal.client import KubeApi
from kubetasks.errors import ApiError

Json = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace, name)
log = logging.getLogger("kubetasks.dashboard")

KINDS = ("taskruns", "taskqueues", "taskbatches", "tasks", "taskschedules")
RELIST_AFTER_ERROR = 2.0
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(obj: Json) -> Json:
    """Drop what no page shows and that costs the most memory."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    return obj


@dataclass
class Change:
    """One change: its sequence number, what changed and how (ADDED, MODIFIED, DELETED)."""

    seq: int
    kind: str
    key: Key
    obj: Json


@dataclass
class Store:
    """Objects by (plural, namespace, name), and the last changes in order."""

    objects: dict[Key, Json] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    seq: int = 0
    keep_changes: int = 5000
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(
        default_factory=list)

    def apply(self, plural: str, event_type: str, obj: Json) -> Change | None:
        meta = obj.get("metadata") or {}
        key = (plural, str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._cond:
            old = self.objects.get(key)
            if event_type == "DELETED":
                if old is None:
                    return None
                del self.objects[key]
            else:
                if old is not None and _rv(old) >= _rv(obj) > 0:
                    return None  # an old version, or the same one again
                self.objects[key] = slim(obj)
            self.seq += 1
            change = Change(self.seq, event_type if old is not None or event_type == "DELETED"
                            else "ADDED", key, obj)
            self.changes.append(change)
            if len(self.changes) > self.keep_changes:
                del self.changes[: len(self.changes) - self.keep_changes]
            self._cond.notify_all()
            for loop, event in self._waiters:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    loop.call_soon_threadsafe(event.set)
            self._waiters.clear()
            return change

    def replace(self, plural: str, namespace: str, items: list[Json]) -> list[Change]:
        """A fresh list of one kind in one namespace: what it lacks was deleted."""
        seen = set()
        changes = []
        for obj in items:
            change = self.apply(plural, "MODIFIED", obj)
            seen.add(str((obj.get("metadata") or {}).get("name", "")))
            if change is not None:
                changes.append(change)
        gone = [obj for (p, ns, name), obj in list(self.objects.items())
                if p == plural and ns == namespace and name not in seen]
        for obj in gone:
            change = self.apply(plural, "DELETED", obj)
            if change is not None:
                changes.append(change)
        return changes

    def of_kind(self, plural: str, namespace: str | None = None) -> list[Json]:
        with self._cond:
            return [obj for (p, ns, _), obj in self.objects.items()
                    if p == plural and (namespace is None or ns == namespace)]

    def get(self, plural: str, namespace: str, name: str) -> Json | None:
        with self._cond:
            return self.objects.get((plural, namespace, name))

    async def next_changes(self, seq: int, timeout: float) -> tuple[int, list[Change]]:
        """``changed_since`` for the event loop: waits without a thread of its own, so any
        number of open pages cost no more than their connections."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._cond:
            if self.seq > seq:
                event.set()
            else:
                self._waiters.append(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self.changed_since(seq, 0)

    def changed_since(self, seq: int, timeout: float) -> tuple[int, list[Change]]:
        """The changes after ``seq`` (waiting up to ``timeout`` for one), and the new
        sequence number. A subscriber too far behind gets every object again (seq 0)."""
        with self._cond:
            if self.seq <= seq:
                self._cond.wait(timeout)
            if self.changes and seq < self.changes[0].seq - 1:
                return self.seq, [Change(self.seq, "MODIFIED", k, o)
                                  for k, o in self.objects.items()]
            return self.seq, [c for c in self.changes if c.seq > seq]


def _rv(obj: Json) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Watcher:
    """Lists and watches one kind in one namespace into a ``Store``, in a daemon thread."""

    def __init__(self, kube: KubeApi, store: Store, plural: str, namespace: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.kube = kube
        self.store = store
        self.plural = plural
        self.namespace = namespace
        self.sleep = sleep
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"dashboard-watch-{plural}-{namespace}")

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> str:
        items: list[Json] = []
        token: str | None = None
        version = ""
        while True:
            page: Json = self.kube.request("GET", KubeApi.path(self.plural, self.namespace),
                                           params={"limit": 500, "continue": token})
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            token = meta.get("continue") or None
            if not token:
                break
        self.store.replace(self.plural, self.namespace, items)
        self.synced.set()
        return version

    def _events(self, version: str) -> Iterator[Json]:
        buffer = b""
        for chunk in self.kube.stream(
                KubeApi.path(self.plural, self.namespace),
                params={"watch": "true", "resourceVersion": version,
                        "allowWatchBookmarks": "true", "timeoutSeconds": 300},
                read_timeout=330):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                for event in self._events(version):
                    if self._stop.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        version = ""  # 410 Gone: too old; list again
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion")
                                  or version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.store.apply(self.plural, kind, obj)
            except (ApiError, urllib3.exceptions.HTTPError) as error:
                if self._stop.is_set():
                    return
                # An API error, or the connection lost (the API server restarted): routine.
                log.warning("watching %s in %s: %s; listing again", self.plural,
                            self.namespace, error)
                version = ""
                self.sleep(RELIST_AFTER_ERROR)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("watching %s in %s failed; listing again", self.plural,
                              self.namespace)
                version = ""
                self.sleep(RELIST_AFTER_ERROR)
