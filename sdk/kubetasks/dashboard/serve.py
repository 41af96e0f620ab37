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

WATCHED = ("taskruns", "taskqueues", "taskbatches", "tasks", "taskschedules")
DEFAULT_PORT = 8484


def _watch(kube: KubeApi, namespaces: Sequence[str]) -> tuple[Store, list[Watcher]]:
    store = Store()
    watchers = [Watcher(kube, store, plural, ns).start()
                for ns in namespaces for plural in WATCHED]
    for watcher in watchers:
        watcher.synced.wait(30)
    return store, watchers


def serve(namespaces: Sequence[str], *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          kubeconfig: Path | None = None, per_user: bool = False) -> None:
    """Watch ``namespaces`` and serve the pages until interrupted (prints the URL first).
    Acts as the kubeconfig's user; with ``per_user`` (in a cluster, behind an authenticating
    proxy) with the rights of each person's bearer token (``auth.ClusterAuth``)."""
    import uvicorn

    from kubetasks.dashboard.auth import ClusterAuth

    kube = KubeApi.from_environment(kubeconfig=kubeconfig)
    store, watchers = _watch(kube, namespaces)
    app = create_app(store, auth=ClusterAuth(kube)) if per_user else create_app(store, kube)
    # No access log: URLs and headers stay out of the logs. Open event streams are cut 1 s
    # after a stop, which would otherwise wait for every browser tab to go away.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True, name="kubetasks-dashboard")
    thread.start()
    try:
        while not server.started:  # the URL is printed once it answers
            if not thread.is_alive():
                raise SystemExit(f"the dashboard could not listen on {host}:{port}")
            time.sleep(0.05)
        print(f"kubetasks dashboard on http://{host}:{port}/ ({', '.join(namespaces)}"
              f"{'; each person acts with their own token' if per_user else ''})",
              flush=True)
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(5)
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
                                           log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
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
