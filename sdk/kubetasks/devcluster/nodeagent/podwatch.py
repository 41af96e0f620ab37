"""The pods bound to this node, listed then watched (listed again whenever the watch fails),
each event handed to the agent."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kubetasks.devcluster.nodeagent.client import ApiError, Json, KubeClient

log = logging.getLogger("kubetasks.nodeagent")


class _WatchExpired(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class PodWatch:
    """Calls ``on_event(kind, pod)`` for every pod event (``ADDED``, ``MODIFIED``,
    ``DELETED``) until ``stopping``. A list reports every pod ``ADDED``, and ``DELETED``
    (with only its UID) each pod in ``known_uids()`` that it no longer shows;
    ``on_first_list`` is called once, after the first list."""

    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        stopping: threading.Event,
        *,
        on_event: Callable[[str, Json], None],
        known_uids: Callable[[], list[str]],
        on_first_list: Callable[[], None],
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.stopping = stopping
        self._on_event = on_event
        self._known_uids = known_uids
        self._on_first_list = on_first_list

    def _pod_query(self) -> dict[str, str]:
        return {"fieldSelector": f"spec.nodeName={self.node_name}"}

    def run(self) -> None:
        resource_version: str | None = None
        first = True
        delay = 0.5
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                    if first:
                        self._on_first_list()
                        first = False
                resource_version = self._watch(resource_version)
                delay = 0.5
            except _WatchExpired:
                log.debug("watch expired: listing again")
                resource_version = None
            except Exception as exc:
                log.warning("pod watch failed (%s); listing again in %.1f s", exc, delay)
                resource_version = None
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _relist(self) -> str:
        query = {**self._pod_query(), "limit": "500"}
        seen: set[str] = set()
        while True:
            listing = self.client.request("GET", "/api/v1/pods", query=query)
            for pod in listing.get("items") or []:
                seen.add(pod["metadata"]["uid"])
                self._on_event("ADDED", pod)
            meta = listing.get("metadata") or {}
            if not meta.get("continue"):
                break
            query["continue"] = meta["continue"]
        gone = [uid for uid in self._known_uids() if uid not in seen]
        for uid in gone:
            self._on_event("DELETED", {"metadata": {"uid": uid}})
        return str(meta.get("resourceVersion", ""))

    def _watch(self, resource_version: str) -> str:
        query = {**self._pod_query(), "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        for event in self.client.watch("/api/v1/pods", query, read_timeout=330):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _WatchExpired()
                raise ApiError(int(obj.get("code", 500)), "WATCH", "/api/v1/pods", obj)
            resource_version = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self._on_event(str(kind), obj)
            if self.stopping.is_set():
                break
        return resource_version
