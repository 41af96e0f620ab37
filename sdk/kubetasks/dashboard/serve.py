"""Serving the dashboard: a store fed by watches of the namespaces shown, and uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.app import create_app
from kubetasks.dashboard.cache import Store, Watcher

WATCHED = ("taskruns", "taskqueues", "taskbatches", "tasks")
DEFAULT_PORT = 8484


def _watch(kube: KubeApi, namespaces: Sequence[str]) -> tuple[Store, list[Watcher]]:
    store = Store()
    watchers = [Watcher(kube, store, plural, ns).start()
                for ns in namespaces for plural in WATCHED]
    for watcher in watchers:
        watcher.synced.wait(30)
    return store, watchers


def serve(namespaces: Sequence[str], *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          kubeconfig: Path | None = None) -> None:
    """Watch ``namespaces`` and serve the pages until interrupted (prints the URL first).
    Acts as the kubeconfig's user."""
    import uvicorn

    kube = KubeApi.from_environment(kubeconfig=kubeconfig)
    store, watchers = _watch(kube, namespaces)
    print(f"kubetasks dashboard on http://{host}:{port}/ ({', '.join(namespaces)})",
          flush=True)
    try:
        # No access log: URLs and headers stay out of the logs.
        uvicorn.run(create_app(store, kube), host=host, port=port, log_level="warning",
                    access_log=False)
    finally:
        for watcher in watchers:
            watcher.stop()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def start_in_background(namespaces: Sequence[str], *, kubeconfig: Path | None = None,
                        host: str = "127.0.0.1", port: int = DEFAULT_PORT
                        ) -> tuple[str, Callable[[], None]]:
    """The dashboard in a thread of this process (``kubetasks dev``): its URL and a function
    that stops it. Takes the next free port from ``port`` on."""
    import uvicorn

    kube = KubeApi.from_environment(kubeconfig=kubeconfig)
    store, watchers = _watch(kube, namespaces)
    while not _port_free(host, port):
        port += 1
    server = uvicorn.Server(uvicorn.Config(create_app(store, kube), host=host, port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="kubetasks-dashboard")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)
        for watcher in watchers:
            watcher.stop()

    return f"http://{host}:{port}/", stop
