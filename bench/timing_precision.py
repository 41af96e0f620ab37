"""Delay and TTL precision: how far from the scheduled instant do delayed runs start and
queued runs expire? Runs on the real local control plane with the node agent.

    .venv/bin/python bench/timing_precision.py [--runs 200] [--json bench/results/timing.json]

Delay: N runs, each due 3..13 s after its own create (spread evenly); for each,
|operator start - delayUntil| (the status's startedTime, when the operator created attempt 1)
and |process start - delayUntil|
(the node agent's record of when the pod's process really started).
TTL: N runs with TTLs spread over 2..8 s in a paused queue (so they can never start); for each,
|finishedTime - expiresTime| (when the operator expired it against when it was due).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess

GROUP, VERSION = "kubetasks.dev", "v1alpha1"
NS = "bench"
WORKER = [sys.executable, "-c",
          "import os; open(os.environ['KUBETASKS_TERMINATION_MESSAGE_PATH'], 'w')"
          ".write('{\"ok\": true, \"output\": null}')"]


def ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def extra_env() -> dict[str, str]:
    """Operator settings from this process's environment (KUBETASKS_WRITE_QPS=... etc.)."""
    import os

    keep = ("KUBETASKS_WRITE_QPS", "KUBETASKS_WRITE_BURST", "KUBETASKS_REPAIR_INTERVAL")
    return {k: os.environ[k] for k in keep if k in os.environ}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


def wait_terminal(api: client.CustomObjectsApi, count: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = api.list_namespaced_custom_object(GROUP, VERSION, NS, "taskruns")["items"]
        done = [r for r in items if (r.get("status") or {}).get("phase") in
                ("Completed", "Expired", "Failed")]
        if len(done) >= count:
            return list(done)
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(done)} of {count} runs finished in {timeout} s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with LocalCluster(controller_settings=ControllerSettings.tuned()) as local:
        env = {**local.env(), "KUBETASKS_WORKER_COMMAND": shlex.join(WORKER), **extra_env()}
        op = OperatorProcess(local.workdir / "operator", env).start()
        try:
            api_client = config.new_client_from_config(str(local.control_plane.kubeconfig))
            core = client.CoreV1Api(api_client)
            custom = client.CustomObjectsApi(api_client)
            core.create_namespace({"metadata": {"name": NS}})
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "tasks", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task",
                "metadata": {"name": "noop"}, "spec": {"image": "local",
                                                       "entrypoint": "bench:noop"}})
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "taskqueues", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskQueue",
                "metadata": {"name": "paused"}, "spec": {"paused": True}})
            # wait for the default ServiceAccount (pods need it)
            while not core.list_namespaced_service_account(NS).items:
                time.sleep(0.1)
            now = time.time()
            for i in range(args.runs):
                # From this run's own create, not from the loop's start: a create that comes
                # after the run's due time would measure the create's delay, not the timer's.
                delay = time.time() + 3 + 10 * i / args.runs
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, "taskruns", {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskRun",
                    "metadata": {"name": f"delay-{i}"},
                    "spec": {"task": "noop", "payload": None, "delayUntil": iso(delay)}})
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, "taskruns", {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskRun",
                    "metadata": {"name": f"ttl-{i}"},
                    "spec": {"task": "noop", "payload": None, "queue": {"name": "paused"},
                             "ttlSeconds": 2 + 6 * i // args.runs}})
            created = time.time() - now
            runs = wait_terminal(custom, 2 * args.runs, timeout=120)
            process_start = {}
            for record in local.node_agent.records():
                if record["event"] == "start" and record["namespace"] == NS:
                    process_start[record["labels"].get("kubetasks.dev/run")] = record["time"]
            operator_delay, process_delay, ttl = [], [], []
            for run in runs:
                name, status = run["metadata"]["name"], run["status"]
                if name.startswith("delay-"):
                    due = ts(run["spec"]["delayUntil"])
                    operator_delay.append(abs(ts(status["startedTime"]) - due))
                    process_delay.append(abs(process_start[name] - due))
                else:
                    ttl.append(abs(ts(status["finishedTime"]) - ts(status["expiresTime"])))
        finally:
            op.stop()
    result = {
        "runs": args.runs,
        "create_seconds": round(created, 2),
        "delay_operator_start": summary(operator_delay),
        "delay_process_start": summary(process_delay),
        "ttl_expiry": summary(ttl),
    }
    print(f"{'measure':<24}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for key in ("delay_operator_start", "delay_process_start", "ttl_expiry"):
        row = result[key]
        assert isinstance(row, dict)
        print(f"{key:<24}{row['n']:>6}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['max_ms']:>10}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
