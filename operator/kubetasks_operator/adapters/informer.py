"""The operator's own list-then-watch of TaskRuns, the one resource that comes in thousands,
and of the Job controller's FailedCreate Events (filtered by the API server, so the operator
never sees the busy stream of all Events).

Kopf would list every TaskRun a second time at start-up (after the operator's rebuild), hold
the whole parsed list while it hands the objects out one by one, and keep a worker per object
meanwhile: at 10,000 runs that doubled the operator's peak memory. This informer lists in
pages of 500 (each page goes into the World, slimmed, before the next is read), then watches
from the list's resourceVersion, so every object is parsed once.

The watch runs in a thread per namespace (the official client is synchronous) and hands each
event to the event loop in arrival order. A lost connection (API server restart) is retried
from the last resourceVersion seen, with backoff; a 410 Gone (that version compacted away)
relists, and the runs the relist no longer shows are reported as deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from kubetasks.api.v1alpha1 import GROUP, VERSION
from kubetasks_operator.adapters.kube import KubeAdapter

Json = dict[str, Any]
PAGE = 500
WATCH_TIMEOUT = 300  # the server ends each watch after this many seconds; it is reopened
log = logging.getLogger("kubetasks.operator.informer")

# (namespace or None for all, keyword arguments) -> the raw response of a list or watch
Lister = Callable[[str | None, dict[str, Any]], Any]
# (event type: ADDED, MODIFIED or DELETED; the object)
OnEvent = Callable[[str, Json], None]
# (namespace or None for all; (namespace, name) of every object a relist saw; its
# resourceVersion)
OnRelisted = Callable[[str | None, set[tuple[str, str]], int], None]


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class Informer:
    def __init__(self, kube: KubeAdapter, plural: str, namespaces: list[str],
                 lister: Lister | None = None) -> None:
        """Lists and watches the custom resource ``plural``, or what ``lister`` returns."""
        self.kube = kube
        self.plural = plural
        self._lister = lister
        self.namespaces: list[str | None] = list(namespaces) or [None]
        self.resource_versions: dict[str | None, str] = {}
        self.relists = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- listing -------------------------------------------------------------------------

    def _list(self, namespace: str | None, kwargs: dict[str, Any]) -> Any:
        """The raw (unparsed) response of a list or watch call (blocking)."""
        if self._lister is not None:
            return self._lister(namespace, kwargs)
        if namespace is None:
            return self.kube.custom.list_cluster_custom_object(
                GROUP, VERSION, self.plural, **kwargs)
        return self.kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, self.plural, **kwargs)

    def _pages(self, namespace: str | None) -> Iterator[tuple[list[Json], str]]:
        """Each page of the list, with the list's resourceVersion (blocking)."""
        cont: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False}
            if cont:
                kwargs["_continue"] = cont
            resp = self._list(namespace, kwargs)
            body = json.loads(resp.data)
            meta = body.get("metadata") or {}
            yield body.get("items") or [], str(meta.get("resourceVersion", ""))
            cont = meta.get("continue")
            if not cont:
                return

    async def sync(self, on_page: Callable[[list[Json]], None]) -> int:
        """The start-up list: every page is handed to ``on_page`` in the event loop before
        the next one is read. Returns the number of objects."""
        loop = asyncio.get_running_loop()
        total = 0
        for namespace in self.namespaces:
            pages = self._pages(namespace)
            while True:
                page = await loop.run_in_executor(self.kube.pool, next, pages, None)
                if page is None:
                    break
                items, rv = page
                on_page(items)
                total += len(items)
                self.resource_versions[namespace] = rv
        return total

    # --- watching ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, on_event: OnEvent,
              on_relisted: OnRelisted) -> None:
        """Watch every namespace from where :meth:`sync` left off."""
        for namespace in self.namespaces:
            thread = threading.Thread(
                target=self._run, args=(namespace, loop, on_event, on_relisted),
                name=f"watch-{self.plural}-{namespace or 'all'}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _post(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., None],
              *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the operator is shutting down
            self._stop.set()

    def _run(self, namespace: str | None, loop: asyncio.AbstractEventLoop,
             on_event: OnEvent, on_relisted: OnRelisted) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._watch(namespace, loop, on_event)
                backoff = 0.5
            except Gone:
                self._relist(namespace, loop, on_event, on_relisted)
            except ApiException as exc:
                if exc.status == 410:
                    self._relist(namespace, loop, on_event, on_relisted)
                    continue
                self._pause(namespace, exc, backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # a lost connection, a server restarting: reconnect
                self._pause(namespace, exc, backoff)
                backoff = min(backoff * 2, 30.0)

    def _pause(self, namespace: str | None, exc: BaseException, backoff: float) -> None:
        if self._stop.is_set():
            return
        self.reconnects += 1
        log.warning("watch of %s in %s broke (%s); reconnecting in %.1f s", self.plural,
                    namespace or "all namespaces", str(exc).splitlines()[0][:200], backoff)
        time.sleep(backoff)

    def _watch(self, namespace: str | None, loop: asyncio.AbstractEventLoop,
               on_event: OnEvent) -> None:
        kwargs: dict[str, Any] = {
            "watch": True, "allow_watch_bookmarks": True,
            "resource_version": self.resource_versions.get(namespace, ""),
            "timeout_seconds": WATCH_TIMEOUT, "_preload_content": False,
            "_request_timeout": (10, WATCH_TIMEOUT + 30),
        }
        resp = self._list(namespace, kwargs)
        try:
            lines: Iterator[str] = iter_resp_lines(resp)  # type: ignore[no-untyped-call]
            for line in lines:
                if self._stop.is_set():
                    return
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_versions[namespace] = rv
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._post(loop, on_event, kind, obj)
        finally:
            resp.release_conn()

    def _relist(self, namespace: str | None, loop: asyncio.AbstractEventLoop,
                on_event: OnEvent, on_relisted: OnRelisted) -> None:
        """List again after a 410; what the World holds but the list lacks was deleted
        meanwhile (the caller drops it, unless it is newer than the list)."""
        self.relists += 1
        log.info("watch of %s in %s expired: listing again", self.plural,
                 namespace or "all namespaces")
        seen: set[tuple[str, str]] = set()
        rv = ""
        for items, page_rv in self._pages(namespace):
            rv = page_rv
            for obj in items:
                meta = obj["metadata"]
                seen.add((meta.get("namespace", ""), meta["name"]))
                self._post(loop, on_event, "ADDED", obj)
        self.resource_versions[namespace] = rv
        try:
            list_rv = int(rv)
        except ValueError:
            list_rv = 0
        self._post(loop, on_relisted, namespace, seen, list_rv)


# What the Job controller posts when the API refuses an attempt's pod.
FAILED_CREATE_SELECTOR = "involvedObject.kind=Job,reason=FailedCreate"


def failed_create_events(kube: KubeAdapter) -> Lister:
    """Lists and watches only the Events that say a Job's pod could not be created."""

    def lister(namespace: str | None, kwargs: dict[str, Any]) -> Any:
        kwargs = {**kwargs, "field_selector": FAILED_CREATE_SELECTOR}
        if namespace is None:
            return kube.core.list_event_for_all_namespaces(**kwargs)
        return kube.core.list_namespaced_event(namespace, **kwargs)

    return lister
