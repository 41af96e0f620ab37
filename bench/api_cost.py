"""API cost: writes to the API server per successful single-attempt run, by component, from
the API server's own accounting. Runs on the real local control plane with the node agent.

    .venv/bin/python bench/api_cost.py [--runs 200] [--queue-limit 5] [--job-ttl 5] \
        [--json bench/results/api_cost.json]

Three workloads, one after the other, each in its own namespace and its own time window:

- ``direct``: N runs of a trivial task (the worker only writes the success termination
  message) triggered one by one with ``kubetasks.tasks.trigger``, on the task's own queue
  (no limit: all are admitted at once);
- ``queued``: the same on a TaskQueue with ``concurrencyLimit`` 5, so most runs wait first;
- ``raw_jobs``: N ``batch/v1`` Jobs of the same pod created directly (what Kubernetes itself
  costs for the same work, without kubetasks).

Each window lasts until every run is Completed (every Job complete), every Job and Pod is gone
again (``ttlSecondsAfterFinished`` = ``--job-ttl`` for both, so the clean-up is counted too)
and ``--settle`` more seconds passed for stragglers.

Attribution: the API server's audit log (``ControlPlane(audit=True)``: one line per create,
update, patch, delete at Metadata level) gives each write's user and User-Agent. The control
plane components have their own identities (the controller manager one per controller); the
SDK (``kubetasks-sdk``), the operator (``kubetasks-operator``, and ``kopf/...`` for Kopf's
own calls) and this script (``kubetasks-bench``) share the admin credentials and are told
apart by User-Agent. Writes in the workload's namespace are the per-run cost; writes elsewhere
in the window (node heartbeats, leases) are background, shown apart.

Cross-checks: the audit totals by verb and resource against the difference of the API
server's ``apiserver_request_total`` (``/metrics``, all clients) over the same window, and the
operator's audited writes against its own ``kubetasks_api_writes_total``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

import kubetasks
from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess

GROUP, VERSION = "kubetasks.dev", "v1alpha1"
WORKER = [sys.executable, "-c",
          "import os; open(os.environ['KUBETASKS_TERMINATION_MESSAGE_PATH'], 'w')"
          ".write('{\"ok\": true, \"output\": null}')"]
BENCH_AGENT = "kubetasks-bench"
COMPONENTS = ("SDK", "operator", "bench client", "controller manager", "scheduler",
              "node agent", "API server", "other")
VARIANTS = ("direct", "queued", "raw_jobs")
TITLES = {"direct": "direct", "queued": "queue limit", "raw_jobs": "raw Jobs"}
WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "APPLY": "patch",
               "DELETE": "delete", "DELETECOLLECTION": "deletecollection"}

Json = dict[str, Any]


# --- attribution (pure) ------------------------------------------------------------------


def component_of(event: Json) -> tuple[str, str]:
    """(component, detail) of an audit event: who sent the request."""
    user = (event.get("user") or {}).get("username", "")
    agent = event.get("userAgent", "")
    if user == "system:kube-scheduler":
        return "scheduler", ""
    if user == "system:kube-controller-manager":
        return "controller manager", "(own identity)"
    if user.startswith("system:serviceaccount:kube-system:"):
        return "controller manager", user.rsplit(":", 1)[1]
    if user.startswith("system:node:"):
        return "node agent", ""
    if user.startswith("system:apiserver"):
        return "API server", ""
    if agent.startswith("kubetasks-sdk"):
        return "SDK", ""
    if agent.startswith("kubetasks-operator"):
        return "operator", ""
    if agent.startswith("kopf/"):
        return "operator", "Kopf"
    if agent.startswith(BENCH_AGENT):
        return "bench client", ""
    return "other", f"{user} {agent.split(' ')[0]}"


def resource_key(group: str, resource: str, subresource: str) -> str:
    """``jobs.batch``, ``pods/status``, ``taskruns.kubetasks.dev/status`` (kubectl's style)."""
    name = f"{resource}.{group}" if group else resource
    return f"{name}/{subresource}" if subresource else name


def request_key(event: Json) -> str:
    ref = event.get("objectRef") or {}
    return f"{event.get('verb', '?')} " + resource_key(
        ref.get("apiGroup", ""), ref.get("resource", "?"), ref.get("subresource", ""))


def stamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def read_audit(path: Path, start: float, end: float) -> list[Json]:
    """Write events of the audit log whose request arrived in [start, end]."""
    events = []
    with path.open() as lines:
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete":
                continue
            if start <= stamp(event["requestReceivedTimestamp"]) <= end:
                events.append(event)
    return events


@dataclass
class Tally:
    """Writes by component, by component detail, and by request (verb + resource)."""

    by_request: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_detail: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    failed: Counter[str] = field(default_factory=Counter)

    def add(self, event: Json) -> None:
        component, detail = component_of(event)
        key = request_key(event)
        self.by_request[component][key] += 1
        if detail:
            self.by_detail[component][detail] += 1
        code = int((event.get("responseStatus") or {}).get("code", 0))
        if not 200 <= code < 300:
            self.failed[f"{component}: {key} -> {code}"] += 1

    def total(self, component: str) -> int:
        return sum(self.by_request[component].values())


def tally(events: list[Json], namespace: str | None) -> tuple[Tally, Tally]:
    """(writes in the namespace, writes elsewhere)."""
    inside, outside = Tally(), Tally()
    for event in events:
        ns = (event.get("objectRef") or {}).get("namespace")
        (inside if ns == namespace else outside).add(event)
    return inside, outside


def audit_by_request(events: list[Json]) -> Counter[str]:
    return Counter(request_key(e) for e in events)


def parse_counter(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of a counter (``<family>_total``) by their sorted labels."""
    samples: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name == family + "_total":
                samples[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def apiserver_writes(before: str, after: str) -> Counter[str]:
    """Write requests in the window from ``apiserver_request_total``, by verb and resource
    (the audit log's names)."""
    first = parse_counter(before, "apiserver_request")
    diff: Counter[str] = Counter()
    for labels, value in parse_counter(after, "apiserver_request").items():
        d = dict(labels)
        verb = WRITE_VERBS.get(d.get("verb", ""))
        if verb is None:
            continue
        delta = round(value - first.get(labels, 0.0))
        if delta:
            key = f"{verb} " + resource_key(d.get("group", ""), d.get("resource", ""),
                                            d.get("subresource", ""))
            diff[key] += delta
    return diff


def operator_writes(before: str, after: str) -> Counter[str]:
    first = parse_counter(before, "kubetasks_api_writes")
    diff: Counter[str] = Counter()
    for labels, value in parse_counter(after, "kubetasks_api_writes").items():
        d = dict(labels)
        delta = round(value - first.get(labels, 0.0))
        if delta:
            diff[f"{d.get('verb')} {d.get('resource')}"] += delta
    return diff


# --- the cluster side ----------------------------------------------------------------------


class Bench:
    def __init__(self, local: LocalCluster, op: OperatorProcess, args: argparse.Namespace
                 ) -> None:
        self.local, self.op, self.args = local, op, args
        kubeconfig = str(local.control_plane.kubeconfig)
        self.api = config.new_client_from_config(kubeconfig)  # type: ignore[no-untyped-call]
        self.api.user_agent = BENCH_AGENT
        # Plain JSON in, JSON or models out: typed as Any.
        self.core: Any = client.CoreV1Api(self.api)
        self.batch: Any = client.BatchV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)

    def apiserver_metrics(self) -> str:
        return self.local.control_plane.kubectl("get", "--raw", "/metrics")

    def operator_metrics(self) -> str:
        with urllib.request.urlopen(self.op.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})
        while not self.core.list_namespaced_service_account(name).items:
            time.sleep(0.1)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, name, "tasks", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task", "metadata": {"name": "noop"},
            "spec": {"image": "local", "entrypoint": "bench:noop"}})

    def wait(self, what: str, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"{what}: not done after {timeout:.0f} s")
            time.sleep(0.5)

    def runs_completed(self, namespace: str) -> bool:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                          "taskruns")["items"]
        phases = Counter((r.get("status") or {}).get("phase") for r in items)
        bad = {p: n for p, n in phases.items() if p in ("Failed", "Crashed", "TimedOut",
                                                         "Expired", "Canceled")}
        if bad:
            raise SystemExit(f"{namespace}: runs ended badly: {bad}")
        return bool(len(items) == self.args.runs and phases["Completed"] == self.args.runs)

    def watch_jobs(self, namespace: str, succeeded: set[str], failed: set[str]) -> None:
        """Note each Job that succeeds or fails (a watch: finished Jobs go away ``--job-ttl``
        seconds later, too soon for polling on a busy machine)."""
        version = self.batch.list_namespaced_job(namespace).metadata.resource_version
        stream: Any = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(self.batch.list_namespaced_job, namespace,
                                       resource_version=version, timeout_seconds=900):
                status = event["object"].status
                if status is not None and status.failed:
                    failed.add(event["object"].metadata.name)
                elif status is not None and status.succeeded == 1:
                    succeeded.add(event["object"].metadata.name)
        except Exception:  # the cluster going away at the end
            if len(succeeded) + len(failed) < self.args.runs:
                raise

    def jobs_completed(self, namespace: str, succeeded: set[str], failed: set[str]) -> bool:
        if failed:
            raise SystemExit(f"{namespace}: Jobs failed: {sorted(failed)}")
        return bool(len(succeeded) == self.args.runs)

    def gone(self, namespace: str) -> bool:
        return (not self.batch.list_namespaced_job(namespace, limit=1).items
                and not self.core.list_namespaced_pod(namespace, limit=1).items)

    def raw_job(self, namespace: str, i: int) -> Json:
        labels = {"app": "api-cost"}
        return {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"job-{i}", "namespace": namespace, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": self.args.job_ttl,
                "template": {"metadata": {"labels": labels}, "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "task", "image": "local", "command": WORKER,
                                    "terminationMessagePolicy": "FallbackToLogsOnError"}],
                }},
            },
        }

    def variant(self, name: str) -> Json:
        namespace = f"api-cost-{name.replace('_', '-')}"
        self.namespace(namespace)
        if name == "queued":
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                        "taskqueues", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskQueue",
                "metadata": {"name": "limited"},
                "spec": {"concurrencyLimit": self.args.queue_limit}})
        kubetasks.configure(kubeconfig=self.local.control_plane.kubeconfig,
                            namespace=namespace)
        time.sleep(3)  # the namespace's own set-up writes (and the queue's first status)
        start = time.time()
        api_before, op_before = self.apiserver_metrics(), self.operator_metrics()
        if name == "raw_jobs":
            succeeded: set[str] = set()
            failed: set[str] = set()
            threading.Thread(target=self.watch_jobs, args=(namespace, succeeded, failed),
                             daemon=True).start()
            time.sleep(1)  # the watch is listening
            for i in range(self.args.runs):
                self.batch.create_namespaced_job(namespace, self.raw_job(namespace, i),
                                                 _preload_content=False)
            self.wait(namespace, lambda: self.jobs_completed(namespace, succeeded, failed),
                      600)
        else:
            options: Any = {"queue": "limited"} if name == "queued" else {}
            for i in range(self.args.runs):
                kubetasks.tasks.trigger("noop", {"i": i}, **options)
            self.wait(namespace, lambda: self.runs_completed(namespace), 600)
        completed = time.time()
        self.wait(f"{namespace} clean-up", lambda: self.gone(namespace),
                  self.args.job_ttl + 300)
        time.sleep(self.args.settle)
        api_after, op_after = self.apiserver_metrics(), self.operator_metrics()
        end = time.time()
        # The API server writes an audit line when it answers; the last answers are in.
        events = read_audit(self.local.control_plane.audit_log, start, end)
        inside, outside = tally(events, namespace)
        return summarise(name, self.args.runs, inside, outside, events,
                         apiserver_writes(api_before, api_after),
                         operator_writes(op_before, op_after),
                         completed - start, end - start)


def per_run(count: int, runs: int) -> float:
    return round(count / runs, 3)


def summarise(name: str, runs: int, inside: Tally, outside: Tally, events: list[Json],
              metrics: Counter[str], op_metrics: Counter[str], busy: float,
              window: float) -> Json:
    components: Json = {}
    for component in COMPONENTS:
        total = inside.total(component)
        if not total:
            continue
        components[component] = {
            "writes": total,
            "per_run": per_run(total, runs),
            "by_request": {k: per_run(v, runs)
                           for k, v in sorted(inside.by_request[component].items())},
            "by_detail": {k: per_run(v, runs)
                          for k, v in sorted(inside.by_detail[component].items())},
        }
    operator = inside.by_request["operator"]
    queue_status = sum(v for k, v in operator.items() if "taskqueues" in k)
    audited = audit_by_request(events)
    mismatch = {k: {"audit": audited[k], "metrics": metrics[k]}
                for k in sorted(set(audited) | set(metrics)) if audited[k] != metrics[k]}
    op_audit = Counter({k.replace(".kubetasks.dev", "").replace(".batch", ""): v
                        for k, v in operator.items()})
    op_audit.update({k.replace(".kubetasks.dev", "").replace(".batch", ""): v
                     for k, v in outside.by_request["operator"].items()})
    return {
        "variant": name,
        "runs": runs,
        "seconds_until_all_done": round(busy, 1),
        "window_seconds": round(window, 1),
        "writes_per_run": sum(c["per_run"] for c in components.values()),
        "components": components,
        "operator_per_run_excluding_queue_status": per_run(sum(operator.values())
                                                            - queue_status, runs),
        "operator_queue_status_writes": queue_status,
        "non_2xx": dict(inside.failed + outside.failed),
        "background_outside_namespace": {
            c: dict(sorted(outside.by_request[c].items()))
            for c in COMPONENTS if outside.total(c)},
        "cross_check_apiserver_request_total": {
            "audit_writes": sum(audited.values()),
            "metrics_writes": sum(metrics.values()),
            "differences": mismatch,
        },
        "cross_check_operator_metrics": {
            "audit": dict(sorted(op_audit.items())),
            "kubetasks_api_writes_total": dict(sorted(op_metrics.items())),
        },
    }


# --- report --------------------------------------------------------------------------------


def table(results: dict[str, Json], queue_limit: int) -> str:
    titles = [TITLES[v] + (f" {queue_limit}" if v == "queued" else "") for v in results]
    width = max(40, *(len(k) + 4 for r in results.values() for c in r["components"].values()
                      for k in c["by_request"]))
    lines = [f"{'writes per run':<{width}}" + "".join(f"{t:>14}" for t in titles)]

    def row(label: str, values: list[float | None]) -> str:
        cells = "".join(f"{'-' if v is None else f'{v:.2f}':>14}" for v in values)
        return f"{label:<{width}}{cells}"

    for component in COMPONENTS:
        present = [r["components"].get(component) for r in results.values()]
        if not any(present):
            continue
        lines.append(row(component, [c["per_run"] if c else None for c in present]))
        keys = sorted({k for c in present if c for k in c["by_request"]})
        for key in keys:
            lines.append(row("  " + key, [c["by_request"].get(key, 0.0) if c else None
                                          for c in present]))
        details = sorted({k for c in present if c for k in c["by_detail"]})
        if component == "controller manager":
            for key in details:
                lines.append(row("  by " + key, [c["by_detail"].get(key, 0.0) if c else None
                                                 for c in present]))
    lines.append(row("total", [r["writes_per_run"] for r in results.values()]))
    lines.append(row("seconds until all done", [r["seconds_until_all_done"]
                                                for r in results.values()]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--queue-limit", type=int, default=5)
    parser.add_argument("--job-ttl", type=int, default=5,
                        help="ttlSecondsAfterFinished of the Jobs (kubetasks' and the raw)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait for stragglers after everything is gone")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", type=Path, default=Path("bench/results/api_cost.json"))
    args = parser.parse_args()

    results: dict[str, Json] = {}
    with LocalCluster(controller_settings=ControllerSettings.tuned(), audit=True) as local:
        env = {**local.env(), "KUBETASKS_WORKER_COMMAND": shlex.join(WORKER),
               "KUBETASKS_JOB_TTL_SECONDS": str(args.job_ttl)}
        op = OperatorProcess(local.workdir / "operator", env).start()
        try:
            bench = Bench(local, op, args)
            for name in args.variants.split(","):
                results[name] = bench.variant(name)
                r = results[name]
                print(f"{name}: {args.runs} runs done in {r['seconds_until_all_done']} s, "
                      f"{r['writes_per_run']:.2f} writes/run", flush=True)
        finally:
            op.stop()

    print()
    print(table(results, args.queue_limit))
    print()
    for name, r in results.items():
        if name == "raw_jobs":
            continue
        print(f"{name}: operator writes/run without TaskQueue status "
              f"{r['operator_per_run_excluding_queue_status']:.2f} (target <= 4); "
              f"TaskQueue status patches in the window: {r['operator_queue_status_writes']}")
    for name, r in results.items():
        check = r["cross_check_apiserver_request_total"]
        background = sum(sum(v.values()) for v in r["background_outside_namespace"].values())
        print(f"{name}: audit {check['audit_writes']} writes, apiserver_request_total "
              f"{check['metrics_writes']} ({len(check['differences'])} keys differ); "
              f"{background} background writes outside the namespace in "
              f"{r['window_seconds']} s; non-2xx: {r['non_2xx'] or 'none'}")
        for key, counts in check["differences"].items():
            print(f"    {key}: audit {counts['audit']}, metrics {counts['metrics']}")
        ops = r["cross_check_operator_metrics"]
        if name != "raw_jobs":
            agree = "agree" if ops["audit"] == ops["kubetasks_api_writes_total"] else "DIFFER"
            print(f"    operator: audited writes and its kubetasks_api_writes_total {agree}: "
                  f"{ops['audit']} / {ops['kubetasks_api_writes_total']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": args.runs, "queue_limit": args.queue_limit,
                                         "job_ttl_seconds": args.job_ttl,
                                         "variants": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
