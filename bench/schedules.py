"""TaskSchedules on the real local control plane: how late a tick's TaskRun is created, and
what schedules cost the operator in memory.

    .venv/bin/python bench/schedules.py [--schedules 1000] [--minutes 3] \
        [--memory-schedules 10000] [--json bench/results/schedules.json]

One fresh ``LocalCluster`` (tuned controller settings) and one ``kubetasks operator``. The
runs the ticks create go to a paused TaskQueue, so they stay Queued: the figures are about
the ticks, not about running tasks.

1. ``raw creates`` (the baseline, operator stopped): this process creates ``--schedules``
   TaskRuns, the same bodies a tick creates, at once from 32 threads (the operator's
   concurrency for ticks). Seconds from the start to each create's answer: the API server's
   floor for that many runs in one second.
2. ``spread``: ``--schedules`` active schedules whose crons spread over the hour
   (``M * * * *`` with M = i mod 60, about 17 ticks a minute), watched for ``--minutes``.
   The common case: many schedules, few due at once.
3. ``burst``: the same number of schedules, all ``* * * * *``, so every one ticks in the same
   second; watched for two ticks.

   For 2 and 3, a tick's lag is the moment this process's watch sees the run (ADDED), minus
   the tick's nominal time (the run's ``kubetasks.dev/schedule-time``): it includes the
   watch's own delivery.
4. ``memory``: operator RSS with no schedules (the baseline, measured at the start, before
   anything else exists), and after a fresh start with ``--memory-schedules`` daily
   schedules (``0 3 * * *``; none is due), once every one has its status written. Also the
   seconds from start to that point.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import memory_mb
from throughput import machine, versions

Json = dict[str, Any]
GROUP, VERSION = "kubetasks.dev", "v1alpha1"
NS = "bench"
THREADS = 32
TARGET_P99_S = 1.0


def percentiles(values: list[float]) -> Json:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {"count": len(values), "p50_s": q(0.5), "p90_s": q(0.9), "p99_s": q(0.99),
            "max_s": round(ordered[-1], 3), "mean_s": round(statistics.fmean(values), 3)}


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def prepare(api: client.ApiClient) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    objs = custom(api)
    objs.create_namespaced_custom_object(GROUP, VERSION, NS, "taskqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskQueue",
        "metadata": {"name": "parked"}, "spec": {"paused": True}})
    objs.create_namespaced_custom_object(GROUP, VERSION, NS, "tasks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task", "metadata": {"name": "tick"},
        "spec": {"image": "local", "entrypoint": "bench.tasks:tick",
                 "queue": {"name": "parked"}}})


def schedule_body(name: str, cron: str) -> Json:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskSchedule",
            "metadata": {"name": name}, "spec": {"task": "tick", "cron": cron}}


def create_all(api: client.ApiClient, plural: str, bodies: list[Json]) -> list[float]:
    """Create every body from THREADS threads at once; seconds from the start to each
    answer."""
    objs = custom(api)
    start = time.monotonic()

    def one(body: Json) -> float:
        objs.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)
        return time.monotonic() - start

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, bodies))


def delete_all(api: client.ApiClient, plural: str) -> None:
    objs = custom(api)
    objs.delete_collection_namespaced_custom_object(GROUP, VERSION, NS, plural)
    deadline = time.monotonic() + 300
    while objs.list_namespaced_custom_object(GROUP, VERSION, NS, plural, limit=1)["items"]:
        if time.monotonic() > deadline:
            raise SystemExit(f"{plural} not deleted after 300 s")
        time.sleep(0.5)


class RunWatch:
    """Stamps the moment each scheduled TaskRun is first seen (ADDED on a watch)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.seen: dict[str, tuple[float, float]] = {}  # name -> (seen at, nominal tick)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RunWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        objs = custom(self.api)
        rv = objs.list_namespaced_custom_object(GROUP, VERSION, NS, "taskruns")[
            "metadata"]["resourceVersion"]
        while not self._stop.is_set():
            w = watch.Watch()
            for event in w.stream(objs.list_namespaced_custom_object, GROUP, VERSION, NS,
                                  "taskruns", resource_version=rv, timeout_seconds=30,
                                  label_selector="kubetasks.dev/schedule"):
                now = time.time()
                obj = event["object"]
                rv = obj["metadata"]["resourceVersion"]
                name = obj["metadata"]["name"]
                if event["type"] == "ADDED" and name not in self.seen:
                    tick = obj["metadata"]["annotations"]["kubetasks.dev/schedule-time"]
                    nominal = dt.datetime.fromisoformat(tick.replace("Z", "+00:00"))
                    self.seen[name] = (now, nominal.timestamp())
                if self._stop.is_set():
                    w.stop()
                    break

    def lags(self, since: float) -> list[float]:
        return [seen - nominal for seen, nominal in self.seen.values() if nominal >= since]


def wait_minute_start(margin: float) -> float:
    """Sleep until ``margin`` seconds into the next minute when too late in this one."""
    now = time.time()
    if now % 60 > 60 - margin:
        time.sleep(60 - now % 60 + 1)
    return time.time()


def next_minute(after: float) -> float:
    return after - after % 60 + 60


def watch_ticks(api: client.ApiClient, names_crons: list[tuple[str, str]], minutes: int,
                expected_per_tick: int | None) -> Json:
    wait_minute_start(margin=40)
    started = time.monotonic()
    bodies = [schedule_body(n, c) for n, c in names_crons]
    create_all(api, "taskschedules", bodies)
    created_s = time.monotonic() - started
    first_tick = next_minute(time.time())
    runs = RunWatch(api).start()
    end = first_tick + (minutes - 1) * 60 + 15
    print(f"  {len(bodies)} schedules created in {created_s:.1f} s; watching "
          f"{minutes} tick(s) from {dt.datetime.fromtimestamp(first_tick, dt.UTC):%H:%M}")
    while time.time() < end:
        time.sleep(1)
        if expected_per_tick and len(runs.seen) >= expected_per_tick * minutes:
            break
    time.sleep(2)
    runs.stop()
    lags = runs.lags(first_tick)
    per_tick: dict[float, list[float]] = {}
    for seen, nominal in runs.seen.values():
        per_tick.setdefault(nominal, []).append(seen - nominal)
    return {"schedules": len(bodies), "create_schedules_s": round(created_s, 1),
            "runs_seen": len(lags), "lag": percentiles(lags),
            "per_tick": [{"tick": dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M"),
                          **percentiles(v)} for t, v in sorted(per_tick.items())]}


def status_done(api: client.ApiClient, count: int, timeout: float) -> float:
    began = time.monotonic()
    objs = custom(api)
    while True:
        items, token = [], None
        while True:
            page = objs.list_namespaced_custom_object(GROUP, VERSION, NS, "taskschedules",
                                                      limit=500, _continue=token)
            items.extend(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                break
        done = sum(1 for s in items if (s.get("status") or {}).get("nextScheduleTime"))
        if done >= count:
            return round(time.monotonic() - began, 1)
        if time.monotonic() - began > timeout:
            raise SystemExit(f"only {done}/{count} schedules have a status after {timeout} s")
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--memory-schedules", type=int, default=10000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n = args.schedules
    result: Json = {"machine": machine(), "command": " ".join(sys.argv)}
    with LocalCluster(controller_settings=ControllerSettings.tuned()) as local:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(local.control_plane.kubeconfig))
        result["versions"] = versions(api)
        prepare(api)
        env = {**local.env(), "KUBETASKS_NAMESPACES": NS}
        op = OperatorProcess(local.workdir / "operator", env).start()
        time.sleep(10)
        assert op.process is not None
        empty = memory_mb(op.process.pid)
        print(f"operator, no schedules: {empty}")

        print("raw creates (operator stopped) ...")
        op.stop()
        run_bodies = [{
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskRun",
            "metadata": {"name": f"raw-{i}", "labels": {"kubetasks.dev/task": "tick"}},
            "spec": {"task": "tick", "payload": {"timestamp": "2030-01-01T00:00:00Z",
                                                 "upcoming": []}}}
            for i in range(n)]
        raw = create_all(api, "taskruns", run_bodies)
        result["raw_creates"] = {"runs": n, "threads": THREADS, **percentiles(raw)}
        print(f"  {result['raw_creates']}")
        delete_all(api, "taskruns")
        op.start()

        print("spread ...")
        result["spread"] = watch_ticks(
            api, [(f"spread-{i}", f"{i % 60} * * * *") for i in range(n)], args.minutes,
            None)
        print(f"  {result['spread']['lag']}")
        delete_all(api, "taskschedules")
        delete_all(api, "taskruns")

        print("burst ...")
        result["burst"] = watch_ticks(api, [(f"burst-{i}", "* * * * *") for i in range(n)],
                                      2, n)
        print(f"  {result['burst']['lag']}")
        op.stop()
        delete_all(api, "taskschedules")
        delete_all(api, "taskruns")

        m = args.memory_schedules
        print(f"memory with {m} schedules ...")
        create_all(api, "taskschedules",
                   [schedule_body(f"daily-{i}", "0 3 * * *") for i in range(m)])
        op.start()
        settled = status_done(api, m, timeout=max(300.0, m * 0.1))
        time.sleep(10)
        assert op.process is not None
        full = memory_mb(op.process.pid)
        result["memory"] = {
            "no_schedules": empty, "schedules": m, "with_schedules": full,
            "all_statuses_written_s": settled,
            "kb_per_schedule": round((full["rss_mb"] - empty["rss_mb"]) * 1000 / m, 2),
        }
        print(f"  {result['memory']}")
        op.stop()
    result["target_p99_s"] = TARGET_P99_S
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
