"""A workload whose every run states its behaviour in its payload, and the invariants it must
keep, judged only from what really ran: the node agent's process records (start and end
times, pod labels, exit codes), never the operator's own counters. Used by the operator's
invariant tests (tests/cluster) and the chaos suite (tests/chaos).

The runs go over three queues (limits 1 and 5; the keyed queue has ten concurrency keys,
limited to 2 runs each like its keyless runs, and a total cap of 12 over all of them; the
namespace may have a cap over every queue) with a mix of short sleeps, flaky runs that
succeed on their second attempt and aborts; optionally some are delayed, and some carry a
payload or return an output too big to go inline (both through object storage). The checks:

- at no instant did running processes exceed a queue limit, a concurrency-key limit (the
  keyless runs of the keyed queue count as one more key), the keyed queue's total cap or the
  namespace's cap;
- every run ended in the phase its behaviour calls for;
- every attempt ran exactly once, attempt numbers are consecutive from 1, and the number of
  processes of a run equals its ``status.attempt``: the attempts its behaviour needs, plus
  one for each attempt a fault took away (the caller names those);
- a retry started no earlier than the retry policy's minimum backoff after the failed
  attempt ended, and a delayed run no earlier than its ``delayUntil``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.protocol.payloads import encode_payload
from kubetasks.protocol.storage import ObjectStore, payload_key
from tests.cluster.helpers import (
    TERMINAL,
    create,
    custom,
    executions,
    make_queue,
    make_run,
    make_task,
    max_overlap,
    wait_all_terminal,
)

LABEL_RUN = "kubetasks.dev/run"
LABEL_QUEUE = "kubetasks.dev/queue"
LABEL_KEY = "kubetasks.dev/concurrency-key"
LABEL_ATTEMPT = "kubetasks.dev/attempt"

TASK = "work"
# Seconds, the Task's retry.minTimeoutSeconds: no retry starts sooner. An int: the API
# server's CEL rule comparing it with maxTimeoutSeconds rejects a 1.0 ("expected int").
MIN_BACKOFF = 1
RETRY = {"maxAttempts": 3, "factor": 2, "minTimeoutSeconds": MIN_BACKOFF,
         "maxTimeoutSeconds": 2}
# Each queue's cap over all its runs: the limit of the unkeyed queues, the keyed queue's
# totalConcurrencyLimit. The keyed queue's concurrencyLimit (KEY_LIMIT) applies to each key.
QUEUE_LIMITS = {"one": 1, "five": 5, "twenty": 12}
KEYED_QUEUE = "twenty"
KEY_LIMIT = 2
# The namespace cap the invariant tests and the chaos suite give the operator for their
# namespace: below the queues' 18 together, so it binds as well.
NAMESPACE_CAP = 14
KEYS = [f"user-{i}" for i in range(10)]
EXIT_ABORT = 65
# Generous: each load takes one to two minutes on a 2-CPU machine; the cap only turns a
# stuck run into a clear failure instead of the suite's timeout.
FINISH_TIMEOUT = 420


@dataclass(frozen=True)
class PlannedRun:
    name: str
    queue: str
    key: str | None
    behaviour: str  # "sleep" | "flaky" | "abort"
    payload: dict[str, Any]
    delay: float = 0.0  # seconds after creation: spec.delayUntil
    offload: bool = False  # the payload goes through object storage (payloadRef)

    @property
    def expected_attempts(self) -> int:
        return 2 if self.behaviour == "flaky" else 1

    @property
    def expected_phase(self) -> tuple[str, str]:
        """(phase, reason of the Succeeded condition)."""
        if self.behaviour == "abort":
            return "Failed", "Aborted"
        return "Completed", "Succeeded"


@dataclass
class Load:
    planned: list[PlannedRun]
    started: float = 0.0
    notes: list[str] = field(default_factory=list)


BIG = 40_000  # characters: above the 32 KiB that a payload or an output may take inline


def plan_workload(rng: random.Random, per_queue: dict[str, int], *,
                  delayed: float = 0.0, big: float = 0.0,
                  sleep: tuple[float, float] = (0.1, 0.5)) -> list[PlannedRun]:
    """Runs spread over the queues, shuffled so that every queue is loaded from the start.

    On the keyed queue four runs in five carry one of ten keys (limit 2 each, so the keys
    alone could fill it) and the rest carry none (a lane of 2 of their own), so that the
    total cap of 12 binds as well as the key limits. A ``delayed`` share waits 2 to 20 s
    before it may start; a ``big`` share has a payload or (half of them) an output above the
    inline limit.
    """
    planned: list[PlannedRun] = []
    for queue, count in per_queue.items():
        for i in range(count):
            roll = rng.random()
            payload: dict[str, Any]
            if roll < 0.10:
                behaviour, payload = "flaky", {"fail_before_attempt": 2, "sleep": 0.1}
            elif roll < 0.14:
                behaviour, payload = "abort", {"exit": EXIT_ABORT}
            else:
                behaviour, payload = "sleep", {"sleep": round(rng.uniform(*sleep), 2)}
            key = None
            if queue == KEYED_QUEUE and rng.random() < 0.8:
                key = rng.choice(KEYS)
            delay = round(rng.uniform(2, 20), 1) if rng.random() < delayed else 0.0
            offload = False
            if behaviour != "abort" and rng.random() < big:
                if rng.random() < 0.5:
                    payload["pad"], offload = "p" * BIG, True
                else:
                    payload["output_bytes"] = BIG
            planned.append(PlannedRun(f"{queue}-{i:03d}", queue, key, behaviour, payload,
                                      delay, offload))
    rng.shuffle(planned)
    return planned


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start_load(api: client.ApiClient, namespace: str, planned: list[PlannedRun], *,
               retry: dict[str, Any] | None = None, store: ObjectStore | None = None,
               created: dict[str, float] | None = None) -> Load:
    """Create the Task, the queues and the runs. ``store`` uploads the offloaded payloads;
    ``created`` receives each delayed run's ``delayUntil`` (epoch seconds)."""
    make_task(api, namespace, TASK, retry=retry or RETRY)
    for queue, limit in QUEUE_LIMITS.items():
        if queue == KEYED_QUEUE:
            make_queue(api, namespace, queue, concurrencyLimit=KEY_LIMIT,
                       totalConcurrencyLimit=limit)
        else:
            make_queue(api, namespace, queue, concurrencyLimit=limit)
    wait_until_quiet(api)
    load = Load(planned, started=time.time())
    for run in planned:
        spec: dict[str, Any] = {"queue": {"name": run.queue}}
        if run.key is not None:
            spec["concurrencyKey"] = run.key
        if run.delay:
            at = time.time() + run.delay
            spec["delayUntil"] = iso(at)
            if created is not None:
                created[run.name] = at
        if run.offload:
            assert store is not None, "offloaded payloads need an object store"
            spec["payloadRef"] = store.put(payload_key(namespace, TASK),
                                           encode_payload(run.payload))
            create(api, namespace, "taskruns", {"kind": "TaskRun", "metadata": {
                "name": run.name}, "spec": {"task": TASK, **spec}})
        else:
            make_run(api, namespace, run.name, TASK, run.payload, **spec)
    load.notes.append(f"{len(planned)} runs created in {time.time() - load.started:.1f} s")
    return load


def unfinished(api: client.ApiClient, namespace: str) -> int:
    runs = custom(api).list_namespaced_custom_object(
        "kubetasks.dev", "v1alpha1", namespace, "taskruns")["items"]
    return sum(1 for r in runs if (r.get("status") or {}).get("phase") not in TERMINAL)


def wait_until_quiet(api: client.ApiClient, timeout: float = 180) -> None:
    """Let the namespaces of earlier tests finish deleting (hundreds of runs, Jobs and pods
    each) so that their garbage collection does not compete with the load measured here."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(ns.status.phase == "Terminating" for ns in core.list_namespace().items):
            return
        time.sleep(1)
    print("\n(earlier namespaces are still being deleted; measuring anyway)")


def disturb_during_load(
    api: client.ApiClient, namespace: str, rng: random.Random, load: Load,
    actions: list[tuple[str, tuple[float, float], Callable[[], None]]],
) -> None:
    """Run each action once a random share (within its range) of the runs has finished, so
    that it hits the load at a random moment however fast this machine is."""
    total = len(load.planned)
    deadline = time.monotonic() + FINISH_TIMEOUT
    for what, share_range, action in actions:
        share = rng.uniform(*share_range)
        while (left := unfinished(api, namespace)) > total * (1 - share):
            assert time.monotonic() < deadline, f"{left} runs still unfinished before {what}"
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 0.5))
        left = unfinished(api, namespace)
        assert left > 0, f"the load finished before {what}: the test disturbed nothing"
        began = time.time()
        action()
        load.notes.append(f"{what} at +{began - load.started:.1f} s with {left}/{total} runs "
                          f"unfinished (took {time.time() - began:.1f} s)")


def condition_reason(run: dict[str, Any]) -> str | None:
    for cond in (run.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Succeeded":
            return str(cond.get("reason"))
    return None


def check_invariants(
    api: client.ApiClient, agent: NodeAgentProcess, namespace: str, load: Load, label: str,
    *, disrupted: Callable[[dict[str, Any]], bool] | None = None,
    delay_until: dict[str, float] | None = None, finish_timeout: float = FINISH_TIMEOUT,
    namespace_cap: int | None = None,
) -> dict[str, int]:
    """Wait until every run has finished, then check the invariants above. ``disrupted``
    tells the attempts (process records) that a fault took away: each may be followed by one
    more attempt than the run's behaviour needs; ``namespace_cap`` is the operator's cap for
    this namespace, if it has one. Returns counts for the report."""
    disrupted = disrupted or (lambda _: False)
    runs = {r["metadata"]["name"]: r for r in wait_all_terminal(api, namespace,
                                                                  finish_timeout)}
    finished = max(
        (e["end"] for e in executions(agent, namespace) if e["end"] is not None),
        default=time.time(),
    )
    wall = finished - load.started
    planned = {p.name: p for p in load.planned}
    assert set(runs) == set(planned)
    done = executions(agent, namespace)

    # Every process has ended: a run is terminal only after its pod reported the end.
    still_running = [e["pod"] for e in done if e["end"] is None]
    assert not still_running, f"processes without an end: {still_running[:10]}"

    # Limits, from real process intervals.
    by_queue: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_key: dict[tuple[str, str | None], list[tuple[float, float]]] = defaultdict(list)
    for e in done:
        interval = (e["time"], e["end"])
        queue = e["labels"][LABEL_QUEUE]
        by_queue[queue].append(interval)
        if queue == KEYED_QUEUE:  # its keyless runs share a lane of the key limit
            by_key[(queue, e["labels"].get(LABEL_KEY))].append(interval)
    queue_peaks = {q: max_overlap(by_queue[q]) for q in QUEUE_LIMITS}
    key_peaks = {k: max_overlap(v) for k, v in by_key.items()}
    namespace_peak = max_overlap((e["time"], e["end"]) for e in done)
    for queue, limit in QUEUE_LIMITS.items():
        assert queue_peaks[queue] <= limit, (
            f"queue {queue!r}: {queue_peaks[queue]} processes ran at once, limit {limit}")
    for (queue, key), peak in key_peaks.items():
        assert peak <= KEY_LIMIT, (
            f"key {key!r} of queue {queue!r}: {peak} processes ran at once, "
            f"limit {KEY_LIMIT}")
    if namespace_cap is not None:
        assert namespace_peak <= namespace_cap, (
            f"namespace {namespace}: {namespace_peak} processes ran at once, "
            f"cap {namespace_cap}")

    # Each (run, attempt) ran exactly once, in the queue and under the key it was given.
    per_attempt = Counter((e["labels"][LABEL_RUN], int(e["labels"][LABEL_ATTEMPT]))
                          for e in done)
    repeated = {k: n for k, n in per_attempt.items() if n > 1}
    assert not repeated, f"attempts that ran more than once: {repeated}"
    attempts_of: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for e in done:
        attempts_of[e["labels"][LABEL_RUN]][int(e["labels"][LABEL_ATTEMPT])] = e
        plan = planned[e["labels"][LABEL_RUN]]
        assert e["labels"][LABEL_QUEUE] == plan.queue
        assert e["labels"].get(LABEL_KEY) == plan.key

    wrong: list[str] = []
    lost_attempts = 0
    for name, plan in planned.items():
        status = runs[name].get("status") or {}
        ran = attempts_of.get(name, {})
        numbers = sorted(ran)
        lost = [n for n in numbers if disrupted(ran[n])]
        lost_attempts += len(lost)
        got = (status.get("phase"), condition_reason(runs[name]))
        if got != plan.expected_phase:
            wrong.append(f"{name} ({plan.behaviour}) ended {got}, "
                         f"expected {plan.expected_phase}")
        if numbers != list(range(1, len(numbers) + 1)):
            wrong.append(f"{name}: attempts that ran are not consecutive: {numbers}")
        if len(numbers) != status.get("attempt"):
            wrong.append(f"{name}: {len(numbers)} processes ran, status.attempt is "
                         f"{status.get('attempt')}")
        if not lost and len(numbers) != plan.expected_attempts:
            wrong.append(f"{name} ({plan.behaviour}): {len(numbers)} attempts ran, "
                         f"expected {plan.expected_attempts}")
        # With faults, the count follows from the attempts: every attempt but the last must
        # have failed by design (a flaky run's first) or been taken by a fault (checked
        # below), and the last must end as the behaviour says (the exit code, below).
        if not numbers:
            continue
        if delay_until and name in delay_until and ran[numbers[0]]["time"] < delay_until[name]:
            early = delay_until[name] - ran[numbers[0]]["time"]
            wrong.append(f"{name}: started {early:.3f} s before its delayUntil")
        if "output_bytes" in plan.payload and not status.get("outputRef"):
            wrong.append(f"{name}: a big output but no status.outputRef")
        expected_exit = EXIT_ABORT if plan.behaviour == "abort" else 0
        if ran[numbers[-1]].get("exitCode") != expected_exit:
            wrong.append(f"{name}: last attempt exited {ran[numbers[-1]].get('exitCode')}, "
                         f"expected {expected_exit}")
        for n in numbers[1:]:
            by_design = (plan.behaviour == "flaky" and n - 1 < plan.expected_attempts
                         and ran[n - 1].get("exitCode") == 1)
            if not by_design and not disrupted(ran[n - 1]):
                wrong.append(f"{name} ({plan.behaviour}): attempt {n - 1} was retried but "
                             f"exited {ran[n - 1].get('exitCode')} and no fault took it")
            gap = ran[n]["time"] - ran[n - 1]["end"]
            if gap < MIN_BACKOFF:
                wrong.append(f"{name}: attempt {n} started {gap:.3f} s after attempt {n - 1} "
                             f"ended, less than the minimum backoff {MIN_BACKOFF} s")
    assert not wrong, f"{len(wrong)} problems:\n  " + "\n  ".join(wrong[:30])

    behaviours = Counter(p.behaviour for p in load.planned)
    busiest_key = max(key_peaks.values(), default=0)
    print(
        f"\n[{label}] {len(planned)} runs ({dict(behaviours)}), {len(done)} processes, "
        f"wall {wall:.1f} s, {len(planned) / wall:.1f} runs/s, "
        f"{len(done) / wall:.1f} processes/s; peak concurrency per queue "
        + ", ".join(f"{q} {queue_peaks[q]}/{QUEUE_LIMITS[q]}" for q in QUEUE_LIMITS)
        + f"; peak per key {busiest_key}/{KEY_LIMIT} over {len(key_peaks)} keys"
        + f"; namespace peak {namespace_peak}/{namespace_cap or '-'}"
    )
    for note in load.notes:
        print(f"[{label}] {note}")
    phases = Counter(str((runs[name].get("status") or {}).get("phase")) for name in planned)
    return {"runs": len(planned), "processes": len(done), "lost_attempts": lost_attempts,
            "repeated_attempts": len(repeated), "queue_limit_exceeded": sum(
                queue_peaks[q] > lim for q, lim in QUEUE_LIMITS.items()),
            "namespace_peak": namespace_peak,
            **{f"phase_{k}": v for k, v in phases.items()}}


def seeded(label: str) -> random.Random:
    """A random source whose seed is printed; KUBETASKS_TEST_SEED=<seed> replays a run."""
    seed = int(os.environ.get("KUBETASKS_TEST_SEED") or random.randrange(1 << 32))
    print(f"\n[{label}] random seed {seed}")
    return random.Random(seed)


