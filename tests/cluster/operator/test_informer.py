"""The operator's TaskRun informer against the real API server: the start-up list in pages,
then the watch from its resourceVersion, and a relist when that version is gone (410)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client

from kubetasks.api.v1alpha1 import API_VERSION, GROUP, VERSION
from kubetasks_operator.adapters import informer as informer_module
from kubetasks_operator.adapters.informer import Informer
from kubetasks_operator.adapters.kube import KubeAdapter


def _create(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "taskruns", {
        "apiVersion": API_VERSION, "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"task": "echo", "payload": {"n": name}}})


async def _next(events: asyncio.Queue[tuple[str, Any]], timeout: float = 20) -> tuple[str, Any]:
    """The next event other than MODIFIED: the session's operator, when an earlier test
    started it, writes these runs' status (their Task does not exist) at any moment."""
    while True:
        event = await asyncio.wait_for(events.get(), timeout)
        if event[0] != "MODIFIED":
            return event


def test_lists_in_pages_then_watches_and_relists_when_its_version_is_gone(
    kube_api: client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    for i in range(5):
        _create(custom, namespace, f"r{i}")
    monkeypatch.setattr(informer_module, "PAGE", 2)

    async def scenario() -> None:
        kube = KubeAdapter(kube_api, 50, 50)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            events.put_nowait((kind, obj["metadata"]["name"]))

        def on_relisted(ns: str | None, seen: set[tuple[str, str]], rv: int) -> None:
            events.put_nowait(("RELISTED", (ns, sorted(name for _, name in seen), rv)))

        pages: list[list[str]] = []
        informer = Informer(kube, "taskruns", [namespace])
        try:
            total = await informer.sync(
                lambda page: pages.append([o["metadata"]["name"] for o in page]))
            assert total == 5
            assert pages == [["r0", "r1"], ["r2", "r3"], ["r4"]]
            informer.start(loop, on_event, on_relisted)
            # The watch starts where the list ended: nothing listed comes again.
            await loop.run_in_executor(None, _create, custom, namespace, "r5")
            assert await _next(events) == ("ADDED", "r5")
            await loop.run_in_executor(None, lambda: custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, "taskruns", "r0"))
            assert await _next(events) == ("DELETED", "r0")
        finally:
            informer.stop()

        # A watch from a version the server no longer has: 410, then a full relist whose
        # names replace what was held.
        stale = Informer(kube, "taskruns", [namespace])
        stale.resource_versions[namespace] = "1"
        stale.start(loop, on_event, on_relisted)
        try:
            added = []
            while True:
                kind, detail = await _next(events)
                if kind == "RELISTED":
                    break
                assert kind == "ADDED"
                added.append(detail)
            ns, seen, rv = detail
            assert ns == namespace and seen == ["r1", "r2", "r3", "r4", "r5"] and rv > 1
            assert sorted(added) == seen
            assert stale.relists == 1
            # ... and then it watches from the relist's version.
            await loop.run_in_executor(None, _create, custom, namespace, "r6")
            assert await _next(events) == ("ADDED", "r6")
        finally:
            stale.stop()
            kube.close()

    asyncio.run(scenario())
