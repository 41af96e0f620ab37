"""The dashboard's runs page with many runs in the namespace, on the real local control plane.

    .venv/bin/python bench/dashboard.py [--runs 10000] [--requests 40] \
        [--json bench/results/dashboard.json]

One fresh ``LocalCluster``; ``--runs`` TaskRuns are created in one namespace (no operator:
they stay as created), then the dashboard's store watches them and uvicorn serves the pages
on localhost. Timed, each over ``--requests`` requests (p50, p99, max), from the request to
the last byte of the answer:

- ``cached``: ``/runs`` (first page), ``/runs?status=...&tag=...`` (a filter) and
  ``/runs?page=100``, as the dashboard serves them: from the watch-fed store;
- ``per_user``: the first page and the filter as the chart's dashboard serves them
  (``--per-user``): each request carries a ServiceAccount's bearer token, checked by a
  TokenReview and a SubjectAccessReview (each answer kept 10 s, so the timed requests include
  the fresh reviews when they expire);
- ``baseline``: the same first page built the way a dashboard without a cache would: list
  every run of the namespace from the API server (pages of 500), then filter, sort and
  render.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn
from kubernetes import client, config

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.app import create_app
from kubetasks.dashboard.auth import ClusterAuth
from kubetasks.dashboard.cache import Store, Watcher
from kubetasks.dashboard.views import run_page
from kubetasks.devcluster.local import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import machine

NS = "bench"
TARGET_MS = 300.0


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_runs(api: client.ApiClient, count: int) -> None:
    objs = client.CustomObjectsApi(api)
    phases = ["Completed", "Failed", "Queued", "Executing"]

    def one(i: int) -> None:
        objs.create_namespaced_custom_object("kubetasks.dev", "v1alpha1", NS, "taskruns", {
            "apiVersion": "kubetasks.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": f"run-{i:05d}", "labels": {"bench": phases[i % 4]}},
            "spec": {"task": f"task-{i % 10}", "payload": {"i": i, "text": "x" * 200},
                     "tags": [f"t{i % 7}"]}})

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(count)))


def timed_get(url: str, token: str | None = None) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    began = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
        response.read()
    return time.perf_counter() - began


def serve(app: Any) -> tuple[str, uvicorn.Server]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def viewer_token(local: LocalCluster, api: client.ApiClient) -> str:
    """A ServiceAccount that may read the runs of the namespace, and a token of it."""
    client.CoreV1Api(api).create_namespaced_service_account(NS, {"metadata": {"name": "viewer"}})
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(NS, {"metadata": {"name": "viewer"}, "rules": [
        {"apiGroups": ["kubetasks.dev"], "resources": ["taskruns"],
         "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding(NS, {
        "metadata": {"name": "viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": NS}]})
    token: str = local.control_plane.kubectl("create", "token", "viewer", "-n", NS).strip()
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine(), "runs": args.runs,
                              "requests": args.requests, "target_ms": TARGET_MS}
    with LocalCluster() as local:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(local.control_plane.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        began = time.monotonic()
        create_runs(api, args.runs)
        result["create_s"] = round(time.monotonic() - began, 1)
        kube = KubeApi.from_environment(kubeconfig=local.control_plane.kubeconfig)
        store = Store()
        began = time.monotonic()
        watcher = Watcher(kube, store, "taskruns", NS).start()
        assert watcher.synced.wait(300)
        result["store_sync_s"] = round(time.monotonic() - began, 1)
        base, server = serve(create_app(store))
        cases = {"first page": "/runs", "filtered": "/runs?status=Failed&tag=t3",
                 "page 100": "/runs?page=100"}
        result["cached"] = {}
        for name, path in cases.items():
            timed_get(base + path)  # warm-up
            result["cached"][name] = stats([timed_get(base + path)
                                            for _ in range(args.requests)])
            print(f"cached {name}: {result['cached'][name]}")

        token = viewer_token(local, api)
        per_user, per_user_server = serve(create_app(store, auth=ClusterAuth(kube)))
        result["per_user"] = {}
        for name in ("first page", "filtered"):
            timed_get(per_user + cases[name], token)  # warm-up
            timings = []
            for _ in range(args.requests):
                timings.append(timed_get(per_user + cases[name], token))
                time.sleep(0.25)  # spread over time, so cached reviews expire (10 s)
            result["per_user"][name] = stats(timings)
            print(f"per user {name}: {result['per_user'][name]}")
        per_user_server.should_exit = True

        def uncached() -> float:
            began = time.perf_counter()
            runs = list(kube.list_objects("taskruns", NS, page_size=500))
            run_page(runs, {}, 1, time.time())
            return time.perf_counter() - began

        result["baseline"] = {"first page (list from the API server)": stats(
            [uncached() for _ in range(max(5, args.requests // 4))])}
        print(f"baseline: {result['baseline']}")
        server.should_exit = True
        watcher.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
