"""Batch fan-out: how long from one ``batch_trigger`` call until all of its runs exist, side by
side with the SDK creating the same number of TaskRuns one by one, in the same run, on the
real local control plane with the operator.

    .venv/bin/python bench/batch_fanout.py [--items 1000] [--rounds 3] \
        [--json bench/results/batch_fanout.json]

Both sides trigger the same task with the same payloads and a one-hour delay (the runs are
created and become Delayed; nothing executes, so the figure is the fan-out alone). Each side
runs in its own namespace; a watch on TaskRuns stamps each run's ADDED event, and the time
reported is from the first SDK call until the last run appeared. Rounds alternate sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

import kubetasks
from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess
from kubetasks.protocol.storage import StorageSettings

GROUP, VERSION = "kubetasks.dev", "v1alpha1"
WORKER = [sys.executable, "-c", "pass"]


class Arrivals:
    """Stamps the ADDED event of every TaskRun in a namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.times: list[float] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:  # the cluster going away at the end
            if not self._stop.is_set():
                raise

    def _watch(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                      "taskruns", limit=1)
        version = listed["metadata"]["resourceVersion"]
        self._ready.set()
        stream = watch.Watch()
        for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION,
                                   self.namespace, "taskruns", resource_version=version,
                                   timeout_seconds=600, _preload_content=True):
            if event["type"] == "ADDED":
                self.times.append(time.monotonic())
            if self._stop.is_set():
                stream.stop()

    def wait(self, count: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.namespace}: only {len(self.times)} of {count} runs "
                                 f"appeared in {timeout} s")
            time.sleep(0.01)
        return self.times[count - 1]


def one_by_one(sdk: kubetasks.Client, items: int) -> None:
    for i in range(items):
        kubetasks.tasks.trigger("noop", {"i": i}, delay="1h")


def batched(sdk: kubetasks.Client, items: int) -> None:
    kubetasks.tasks.batch_trigger(
        "noop", [{"payload": {"i": i}, "options": {"delay": "1h"}} for i in range(items)])


def measure(api: client.ApiClient, sdk: kubetasks.Client, namespace: str, items: int,
            how: Any) -> dict[str, float]:
    with Arrivals(api, namespace) as arrivals:
        started = time.monotonic()
        how(sdk, items)
        returned = time.monotonic()
        last = arrivals.wait(items, timeout=600)
    return {"call_returned_s": round(returned - started, 3),
            "all_exist_s": round(last - started, 3)}


def settle(custom: client.CustomObjectsApi, namespace: str, count: int) -> None:
    """Wait until the operator has looked at every run (all Delayed), so rounds do not
    overlap."""
    deadline = time.monotonic() + 300
    while True:
        runs = custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                    "taskruns")["items"]
        if sum(1 for r in runs if (r.get("status") or {}).get("phase") == "Delayed") >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{namespace}: runs not Delayed after 300 s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    results: dict[str, list[dict[str, float]]] = {"one_by_one": [], "batch_trigger": []}
    with LocalCluster(controller_settings=ControllerSettings.tuned()) as local:
        env = {**local.env(), "KUBETASKS_WORKER_COMMAND": " ".join(WORKER)}
        op = OperatorProcess(local.workdir / "operator", env).start()
        try:
            for key, value in local.s3.env().items():
                os.environ[key] = value
            api = config.new_client_from_config(str(local.control_plane.kubeconfig))
            core = client.CoreV1Api(api)
            custom = client.CustomObjectsApi(api)
            for round_ in range(args.rounds):
                for side, how in (("one_by_one", one_by_one), ("batch_trigger", batched)):
                    namespace = f"bench-{side.replace('_', '-')}-{round_}"
                    core.create_namespace({"metadata": {"name": namespace}})
                    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tasks", {
                        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task",
                        "metadata": {"name": "noop"},
                        "spec": {"image": "local", "entrypoint": "bench:noop"}})
                    sdk = kubetasks.configure(
                        kubeconfig=local.control_plane.kubeconfig, namespace=namespace,
                        storage=StorageSettings(bucket=local.s3.bucket,
                                                endpoint=local.s3.endpoint,
                                                region=local.s3.region))
                    figures = measure(api, sdk, namespace, args.items, how)
                    settle(custom, namespace, args.items)
                    results[side].append(figures)
                    print(f"round {round_ + 1} {side:<14} call returned after "
                          f"{figures['call_returned_s']:7.2f} s, all {args.items} runs exist "
                          f"after {figures['all_exist_s']:7.2f} s", flush=True)
        finally:
            op.stop()

    def median(side: str, field: str) -> float:
        return round(statistics.median(r[field] for r in results[side]), 3)

    single, batch = median("one_by_one", "all_exist_s"), median("batch_trigger", "all_exist_s")
    summary = {
        "items": args.items,
        "rounds": args.rounds,
        "one_by_one_all_exist_s": single,
        "batch_trigger_all_exist_s": batch,
        "batch_trigger_call_returned_s": median("batch_trigger", "call_returned_s"),
        "speedup_one_by_one_over_batch": round(single / batch, 2),
        "rounds_detail": results,
    }
    print()
    print(f"{'':<34}{'median s':>10}{'runs/s':>10}")
    print(f"{'SDK trigger() one by one':<34}{single:>10.2f}{args.items / single:>10.0f}")
    print(f"{'batch_trigger() (operator fan-out)':<34}{batch:>10.2f}{args.items / batch:>10.0f}")
    print(f"batch_trigger() call itself returned after "
          f"{summary['batch_trigger_call_returned_s']:.2f} s (one API request)")
    print(f"ratio one-by-one / batch: {summary['speedup_one_by_one_over_batch']}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
