"""Operator at scale: memory, CPU and start-up time with many TaskRuns present, on the real
local control plane.

    .venv/bin/python bench/scale.py [--runs 10000] [--terminal 0.7] [--idle 30] \
        [--json bench/results/scale.json]

Three operator starts in one run, each a fresh ``kubetasks operator`` process:

1. ``empty``: no TaskRuns at all (the baseline).
2. ``cold``: with the operator down, ``--runs`` TaskRuns are created: a ``--terminal`` share
   finished (Completed, or Failed after 3 attempts; their status written through the status
   subresource as the operator writes it), the rest unfinished in a paused TaskQueue (two
   thirds due now, so they become Queued and stay so; one third delayed by a day). The
   unfinished runs have no status yet: the operator must admit each one (one status write
   per run) after it has rebuilt its picture from the API.
3. ``restart``: the operator is stopped and started again over the same runs, all of which
   now have their status: the rebuild alone, as after a crash or an upgrade.

For each start: seconds until ``/healthz`` answers 200 and until the log says "kubetasks
operator ready: N runs" (both from the process's spawn); for ``cold``, until every
unfinished run's status is written (a watch stamps each Queued/Delayed write). Then the
operator is left idle for ``--idle`` seconds (one slot repair falls into 30 s). Memory is
``VmRSS`` (now) and ``VmHWM`` (peak) from ``/proc/<pid>/status``; CPU is user+system seconds
from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config, watch

from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess

GROUP, VERSION = "kubetasks.dev", "v1alpha1"
NS = "bench-scale"
TASK = "work"
QUEUE = "held"
KEYS = 50
WORKER = [sys.executable, "-c", "pass"]
CREATE_THREADS = 16
READY_LINE = re.compile(r"kubetasks operator ready: (\d+) runs")
TICK = os.sysconf("SC_CLK_TCK")
RSS_TARGET_MB = 200.0
REBUILD_TARGET_S = 30.0


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def whole(t: float) -> str:
    return iso(t).split(".")[0] + "Z"


# --- the process -----------------------------------------------------------------------------


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB (10^6 bytes)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return {"rss_mb": out["VmRSS"], "peak_rss_mb": out["VmHWM"]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class ReadyLine:
    """Stamps the moment the operator's log says it is ready (polls the log file)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.at: float | None = None
        self.runs: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ReadyLine:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.log_path.exists():
                found = READY_LINE.search(self.log_path.read_text(errors="replace"))
                if found:
                    self.at, self.runs = time.monotonic(), int(found.group(1))
                    return
            time.sleep(0.02)

    def wait(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.at is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"no ready line in {self.log_path} after {timeout} s")
            time.sleep(0.02)
        return self.at


class Admissions:
    """Stamps each unfinished run's first Queued/Delayed status (a watch from a given
    resourceVersion)."""

    def __init__(self, api: client.ApiClient, resource_version: str, expected: int) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.resource_version = resource_version
        self.expected = expected
        self.seen: set[str] = set()
        self.last: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Admissions:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            stream = cast(Any, watch).Watch()
            for event in stream.stream(self.custom.list_namespaced_custom_object, GROUP,
                                       VERSION, NS, "taskruns",
                                       resource_version=self.resource_version,
                                       timeout_seconds=600):
                phase = (event["object"].get("status") or {}).get("phase")
                if phase in ("Queued", "Delayed"):
                    name = event["object"]["metadata"]["name"]
                    if name not in self.seen:
                        self.seen.add(name)
                        if len(self.seen) == self.expected:
                            self.last = time.monotonic()
                if self._stop.is_set() or self.last is not None:
                    stream.stop()
        except Exception:  # the cluster going away at the end
            if not self._stop.is_set():
                raise

    def wait(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.last is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.seen)} of {self.expected} unfinished runs "
                                 f"admitted after {timeout} s")
            time.sleep(0.05)
        return self.last


SNAPSHOT_HOOK = """\
import os, signal, sys, threading, time, tracemalloc

def _dump(*_):
    path = os.environ["KUBETASKS_BENCH_SNAPSHOT"]
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.replace(path + ".tmp", path)

def _trace_after_imports():
    # Tracing the imports (kubernetes.client's API modules above all) would take minutes.
    name = "kubernetes.client.api.core_v1_api"
    while not hasattr(sys.modules.get(name), "CoreV1Api"):
        time.sleep(0.005)
    tracemalloc.start(4)

if os.environ.get("KUBETASKS_BENCH_SNAPSHOT"):
    signal.signal(signal.SIGUSR1, _dump)
    threading.Thread(target=_trace_after_imports, daemon=True).start()
"""
OWN_CODE = ("kubetasks_operator/", "/kopf/", "/kubernetes/", "/aiohttp/", "/kubetasks/")


def memory_profile_env(workdir: Path) -> dict[str, str]:
    """Environment that makes the operator trace its allocations (4 frames) from the moment
    its Kubernetes client is imported (just before the rebuild) and dump a tracemalloc
    snapshot on SIGUSR1: a ``sitecustomize`` module, no operator change."""
    hook = workdir / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(SNAPSHOT_HOOK)
    return {"PYTHONPATH": str(hook),
            "KUBETASKS_BENCH_SNAPSHOT": str(workdir / "heap.snapshot")}


def heap_profile(pid: int, path: Path) -> dict[str, Any]:
    """Ask the operator for a tracemalloc snapshot; the Python heap it holds, by the
    innermost frame of our code, Kopf's or the clients' that allocated it, and by line."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.2)
    snapshot = tracemalloc.Snapshot.load(str(path))
    by_owner: Counter[str] = Counter()
    by_line: Counter[str] = Counter()
    total = 0
    for trace in snapshot.traces:
        frames = list(trace.traceback)  # oldest first
        total += trace.size
        inner = frames[-1]
        by_line[f"{inner.filename.split('site-packages/')[-1]}:{inner.lineno}"] += trace.size
        owner = next((f for f in reversed(frames)
                      if any(part in f.filename for part in OWN_CODE)), None)
        where = (f"{owner.filename.split('site-packages/')[-1].split('/operator/')[-1]}:"
                 f"{owner.lineno}" if owner else "(other)")
        by_owner[where] += trace.size
    return {
        "traced_mb": round(total / 1e6, 1),
        "by_caller_mb": [(k, round(v / 1e6, 1)) for k, v in by_owner.most_common(15)],
        "by_line_mb": [(k, round(v / 1e6, 1)) for k, v in by_line.most_common(10)],
    }


class Profiler:
    """``py-spy record`` (raw, collapsed stacks) of the operator from its spawn on: a thread
    waits for the process to exist, then attaches."""

    def __init__(self, op: OperatorProcess, out: Path) -> None:
        self.op, self.out = op, out
        self.proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._attach, daemon=True)

    def start(self) -> Profiler:
        self._thread.start()
        return self

    def _attach(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            process = self.op.process
            if process is not None and process.pid is not None:
                self.proc = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
                     "-r", "50", "-f", "raw", "-o", str(self.out), "-p", str(process.pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return
            time.sleep(0.005)

    def stop(self) -> dict[str, list[tuple[str, float]]]:
        """Stop recording; the functions with the most samples: on top of the stack (own),
        and anywhere in it, among the operator's and Kopf's (inclusive)."""
        self._thread.join(5)
        if self.proc is None:
            return {}
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        if not self.out.exists():
            return {}
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [re.sub(r" \(.*/(site-packages|kubetasks_operator)/", r" (\1/", f)
                      for f in stack.split(";")]
            own[frames[-1]] += int(count)
            for frame in set(frames):
                if "kubetasks_operator/" in frame or "kopf/" in frame:
                    inclusive[frame] += int(count)
            total += int(count)
        total = max(1, total)
        return {
            "samples": [("total", float(total))],
            "own": [(name, round(100 * n / total, 1)) for name, n in own.most_common(10)],
            "inclusive": [(name, round(100 * n / total, 1))
                          for name, n in inclusive.most_common(15)],
        }


def measure_start(workdir: Path, env: dict[str, str], expected_runs: int, idle: float,
                  admissions: Admissions | None = None, profile: bool = False
                  ) -> tuple[OperatorProcess, dict[str, Any]]:
    """Start an operator, time its start-up, sample it, leave it idle; it keeps running."""
    if profile:
        env = {**env, **memory_profile_env(workdir)}
    op = OperatorProcess(workdir, env)
    ready_line = ReadyLine(op.log_path).start()
    profiler = Profiler(op, workdir / "py-spy.txt").start() if profile else None
    spawned = time.monotonic()
    try:
        op.start(timeout=300)
    finally:
        ready_line.stop()
    healthy = time.monotonic()
    ready = ready_line.wait(10)
    assert op.process is not None and op.process.pid is not None
    pid = op.process.pid
    figures: dict[str, Any] = {
        "runs_in_ready_line": ready_line.runs,
        "healthz_s": round(healthy - spawned, 2),
        "ready_line_s": round(ready - spawned, 2),
    }
    if ready_line.runs != expected_runs:
        print(f"warning: the operator says {ready_line.runs} runs, expected {expected_runs}",
              flush=True)
    figures["after_ready"] = {**memory_mb(pid), "cpu_s": round(cpu_seconds(pid), 2)}
    if admissions is not None:
        admitted = admissions.wait(600)
        figures["all_admitted_s"] = round(admitted - spawned, 2)
        figures["after_admitted"] = {**memory_mb(pid), "cpu_s": round(cpu_seconds(pid), 2)}
    cpu_before = cpu_seconds(pid)
    samples = []
    end = time.monotonic() + idle
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        samples.append(memory_mb(pid)["rss_mb"])
    figures["idle"] = {
        "seconds": idle,
        "cpu_s": round(cpu_seconds(pid) - cpu_before, 2),
        "rss_max_mb": max(samples, default=0.0),
        **memory_mb(pid),
    }
    figures["cpu_total_s"] = round(cpu_seconds(pid), 2)
    if profiler is not None:
        figures["heap"] = heap = heap_profile(pid, workdir / "heap.snapshot")
        print(f"  tracemalloc: {heap.get('traced_mb')} MB traced; by the innermost frame of "
              "the operator, Kopf, the clients:", flush=True)
        for name, mb in heap.get("by_caller_mb", []):
            print(f"    {mb:7.1f} MB  {name}", flush=True)
        print("  by line:", flush=True)
        for name, mb in heap.get("by_line_mb", []):
            print(f"    {mb:7.1f} MB  {name}", flush=True)
        figures["py_spy"] = spy = profiler.stop()
        print(f"  py-spy from spawn to the end of the idle period, share of samples "
              f"({workdir / 'py-spy.txt'}):", flush=True)
        for kind in ("own", "inclusive"):
            for name, share in spy.get(kind, []):
                print(f"    {kind:<9} {share:5.1f} %  {name}", flush=True)
    return op, figures


# --- the runs --------------------------------------------------------------------------------


def payload(i: int) -> dict[str, Any]:
    return {"i": i, "customer": f"cus_{i:08d}", "note": "resize the uploaded image"}


def terminal_status(name: str, i: int, created: float) -> dict[str, Any]:
    """What the operator writes on a finished run: Completed after one attempt, or (every
    seventh) Failed after three."""
    failed = i % 7 == 0
    attempts = []
    t = created + 0.5
    for number in range(1, (3 if failed else 1) + 1):
        attempts.append({"number": number, "job": f"{name}-{number}", "startedTime": iso(t),
                         "finishedTime": iso(t + 2.0), "exitCode": 1 if failed else 0,
                         "reason": "Failed" if failed else "Succeeded"})
        if failed:
            attempts[-1]["message"] = "ValueError: the image could not be decoded"
        t += 5.0
    finished = t - 3.0
    status: dict[str, Any] = {
        "phase": "Failed" if failed else "Completed",
        "queue": TASK,
        "enqueuedTime": iso(created),
        "startedTime": iso(created + 0.5),
        "finishedTime": iso(finished),
        "attempt": len(attempts),
        "attempts": attempts,
        "observedGeneration": 1,
        "conditions": [{
            "type": "Succeeded",
            "status": "False" if failed else "True",
            "reason": "AttemptsExhausted" if failed else "Succeeded",
            "message": ("attempt 3 of 3 ended (Failed); no attempts left" if failed
                        else "attempt 1 succeeded"),
            "lastTransitionTime": whole(finished),
            "observedGeneration": 1,
        }],
    }
    if failed:
        status["error"] = {"type": "ValueError",
                           "message": "the image could not be decoded"}
    else:
        status["output"] = {"width": 640, "height": 480, "key": f"out/{name}.png"}
    return status


def create_runs(api: client.ApiClient, total: int, terminal: int) -> dict[str, float]:
    custom = client.CustomObjectsApi(api)
    day_ahead = iso(time.time() + 86400)
    open_runs = total - terminal

    def one(i: int) -> None:
        name = f"run-{i:06d}"
        spec: dict[str, Any] = {"task": TASK, "payload": payload(i)}
        if i >= terminal:
            j = i - terminal
            spec["queue"] = {"name": QUEUE}
            spec["concurrencyKey"] = f"tenant-{j % KEYS}"
            if j % 3 == 2:
                spec["delayUntil"] = day_ahead
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskRun",
                "metadata": {"name": name, "labels": {"bench": "scale"}}, "spec": spec}
        created = cast(dict[str, Any], custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, "taskruns", body))
        if i < terminal:
            at = dt.datetime.fromisoformat(
                created["metadata"]["creationTimestamp"].replace("Z", "+00:00")).timestamp()
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, "taskruns", name,
                {"status": terminal_status(name, i, at)})

    started = time.monotonic()
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        for done, _ in enumerate(pool.map(one, range(total)), 1):
            if done % 2000 == 0:
                print(f"  {done}/{total} runs created "
                      f"({done / (time.monotonic() - started):.0f}/s)", flush=True)
    took = time.monotonic() - started
    return {"runs": total, "terminal": terminal, "unfinished": open_runs,
            "seconds": round(took, 1), "writes_per_s": round((total + terminal) / took)}


def setup_namespace(api: client.ApiClient) -> None:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=NS)))
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "tasks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Task", "metadata": {"name": TASK},
        "spec": {"image": "local", "entrypoint": "bench:work"}})
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "taskqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskQueue", "metadata": {"name": QUEUE},
        "spec": {"concurrencyLimit": 10, "paused": True}})


def object_memory(api: client.ApiClient) -> dict[str, float]:
    """Where an operator's memory per run goes, measured in this process: the Python heap
    (tracemalloc) of every TaskRun parsed from one list, as the operator's World keeps them,
    and the part of it that is ``metadata.managedFields``."""
    response = cast(Any, client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NS, "taskruns", _preload_content=False))
    raw: bytes = response.data
    gc.collect()
    tracemalloc.start()
    try:
        items = json.loads(raw)["items"]
        parsed = tracemalloc.get_traced_memory()[0]
        for item in items:
            item["metadata"].pop("managedFields", None)
        gc.collect()
        stripped = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    n = max(1, len(items))
    return {
        "runs": len(items),
        "json_kb_per_run": round(len(raw) / n / 1000, 2),
        "heap_kb_per_run": round(parsed / n / 1000, 2),
        "heap_kb_per_run_without_managed_fields": round(stripped / n / 1000, 2),
        "managed_fields_share": round(1 - stripped / parsed, 3) if parsed else 0.0,
    }


# --- report ----------------------------------------------------------------------------------


def table(results: dict[str, dict[str, Any]]) -> None:
    cols = list(results)

    def row(label: str, values: list[Any]) -> None:
        print(f"{label:<38}" + "".join(f"{'-' if v is None else v:>12}" for v in values))

    def get(col: str, *path: str) -> Any:
        value: Any = results[col]
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    print()
    row("", cols)
    row("runs (the operator's ready line)", [get(c, "runs_in_ready_line") for c in cols])
    row("/healthz 200 after spawn, s", [get(c, "healthz_s") for c in cols])
    row("ready line after spawn, s", [get(c, "ready_line_s") for c in cols])
    row("all unfinished runs admitted, s", [get(c, "all_admitted_s") for c in cols])
    row("RSS at ready, MB", [get(c, "after_ready", "rss_mb") for c in cols])
    row("RSS after admissions, MB", [get(c, "after_admitted", "rss_mb") for c in cols])
    row("RSS after idle, MB", [get(c, "idle", "rss_mb") for c in cols])
    row("peak RSS (VmHWM), MB", [get(c, "idle", "peak_rss_mb") for c in cols])
    row("CPU s until ready", [get(c, "after_ready", "cpu_s") for c in cols])
    row("CPU s until admitted", [get(c, "after_admitted", "cpu_s") for c in cols])
    idle = get(cols[0], "idle", "seconds")
    row(f"CPU s over {idle:g} s idle", [get(c, "idle", "cpu_s") for c in cols])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--terminal", type=float, default=0.7,
                        help="share of the runs that have finished")
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", action="store_true",
                        help="diagnose the cold start: py-spy (raw stacks kept in its workdir) "
                        "and a tracemalloc snapshot after the idle period (its memory and "
                        "time figures are then inflated by the tracing)")
    args = parser.parse_args()
    terminal = round(args.runs * args.terminal)
    unfinished = args.runs - terminal

    results: dict[str, dict[str, Any]] = {}
    with LocalCluster(controller_settings=ControllerSettings.tuned()) as local:
        env = {**local.env(), "KUBETASKS_WORKER_COMMAND": " ".join(WORKER),
               "KUBETASKS_NAMESPACES": NS}
        configuration = client.Configuration()
        config.load_kube_config(str(local.control_plane.kubeconfig),  # type: ignore[no-untyped-call]
                                client_configuration=configuration)
        configuration.connection_pool_maxsize = CREATE_THREADS * 2
        api = client.ApiClient(configuration)
        setup_namespace(api)

        print("empty: starting the operator with no runs", flush=True)
        op, results["empty"] = measure_start(local.workdir / "operator-empty", env, 0,
                                             args.idle)
        op.stop()

        print(f"creating {args.runs} runs ({terminal} finished, {unfinished} unfinished) "
              "with the operator down", flush=True)
        creation = create_runs(api, args.runs, terminal)
        print(f"  created in {creation['seconds']} s ({creation['writes_per_s']} writes/s)",
              flush=True)
        heap = object_memory(api)
        print(f"  one parsed TaskRun: {heap['heap_kb_per_run']} KB of Python heap "
              f"({heap['json_kb_per_run']} KB of JSON); without managedFields "
              f"{heap['heap_kb_per_run_without_managed_fields']} KB", flush=True)
        listed = cast(dict[str, Any], client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, NS, "taskruns", limit=1))
        admissions = Admissions(api, listed["metadata"]["resourceVersion"], unfinished).start()

        print("cold: starting the operator over them", flush=True)
        op, results["cold"] = measure_start(local.workdir / "operator-cold", env, args.runs,
                                            args.idle, admissions, profile=args.profile)
        admissions.stop()
        op.stop()

        print("restart: starting it again (every run has its status)", flush=True)
        op, results["restart"] = measure_start(local.workdir / "operator-restart", env,
                                               args.runs, args.idle)
        op.stop()

    table(results)
    worst_rss = max(r["idle"]["peak_rss_mb"] for r in results.values())
    per_run = {name: round((results[name]["idle"]["rss_mb"] - results["empty"]["idle"]["rss_mb"])
                           * 1000 / max(1, args.runs), 1) for name in ("cold", "restart")}
    print(f"\nRSS above the empty operator, per run: {per_run['cold']} KB (cold), "
          f"{per_run['restart']} KB (restart); one parsed TaskRun holds "
          f"{heap['heap_kb_per_run']} KB of Python heap, "
          f"{heap['managed_fields_share']:.0%} of it metadata.managedFields")
    rebuild = max(results["cold"]["ready_line_s"], results["restart"]["ready_line_s"])
    summary = {
        "runs": args.runs, "terminal": terminal, "unfinished": unfinished,
        "creation": creation,
        "rss_kb_per_run_above_empty": per_run,
        "taskrun_heap": heap,
        "targets": {"rss_mb": RSS_TARGET_MB, "rebuild_s": REBUILD_TARGET_S},
        "peak_rss_mb": worst_rss,
        "rebuild_s": rebuild,
        "rss_ok": worst_rss <= RSS_TARGET_MB,
        "rebuild_ok": rebuild < REBUILD_TARGET_S,
        "starts": results,
    }
    print(f"\npeak RSS {worst_rss} MB (target <= {RSS_TARGET_MB:g}): "
          f"{'ok' if summary['rss_ok'] else 'OVER'}; rebuild {rebuild} s until ready "
          f"(target < {REBUILD_TARGET_S:g}): {'ok' if summary['rebuild_ok'] else 'OVER'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
