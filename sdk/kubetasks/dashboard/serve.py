"""Serving the dashboard: a store fed by watches of the namespaces shown, and uvicorn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.app import create_app
from kubetasks.dashboard.cache import Store, Watcher

WATCHED = ("taskruns", "taskqueues", "taskbatches", "tasks")


def serve(namespaces: Sequence[str], *, host: str = "127.0.0.1", port: int = 8484,
          kubeconfig: Path | None = None) -> None:
    """Watch ``namespaces`` and serve the pages until interrupted (prints the URL first)."""
    import uvicorn

    kube = KubeApi.from_environment(kubeconfig=kubeconfig)
    store = Store()
    watchers = [Watcher(kube, store, plural, ns).start()
                for ns in namespaces for plural in WATCHED]
    for watcher in watchers:
        watcher.synced.wait(30)
    print(f"kubetasks dashboard on http://{host}:{port}/ ({', '.join(namespaces)})",
          flush=True)
    try:
        uvicorn.run(create_app(store, kube), host=host, port=port, log_level="warning",
                    access_log=False)
    finally:
        for watcher in watchers:
            watcher.stop()
