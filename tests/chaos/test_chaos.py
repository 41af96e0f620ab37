"""Chaos: a workload of queues, concurrency keys, retries, delays and offloaded payloads and
outputs, hit while it runs by every fault kubetasks promises to survive:

- the operator SIGKILLed five times at random moments (and started again);
- Redis restarted (its data lost) and, once, FLUSHALLed;
- the S3 server stopped for 30 s (SIGSTOP: it accepts connections and answers nothing, as a
  hung object store does; moto keeps no data across a real restart), with probe runs in a
  namespace of their own that must use S3 during the outage: some upload an output too big to
  go inline, some read an offloaded payload. Each must wait the outage out and complete in its
  first attempt;
- the API server restarted;
- the node agent SIGKILLed, which kills every pod process on the node (a node failure), and
  started again;
- a running Job deleted by hand.

Then, judged from the node agent's records of what really ran (tests/workload.py): no run
lost (every run ends, in the phase its behaviour calls for), no attempt executed twice, no
queue or key limit exceeded at any instant, no delayed run started early, and the operator
recovered without a restart loop (the same process since its last deliberate restart, alive
and healthy). An attempt that a fault took away (the node failure, the deleted Job) may be
followed by one more; that is the only slack.

The default size (200 runs) runs in CI; ``--chaos-full`` runs 500. The seed is printed and
``KUBETASKS_TEST_SEED`` replays it; the counts are printed (``-s``).
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from kubernetes import client

from kubetasks.devcluster.local import LocalCluster, OperatorProcess
from kubetasks.devcluster.nodeagent import REASON_RESTARTED
from kubetasks.protocol.payloads import encode_payload
from kubetasks.protocol.storage import ObjectStore, StorageSettings, payload_key
from tests.cluster.helpers import (
    create,
    create_namespace,
    executions,
    make_run,
    make_task,
    wait_all_terminal,
)
from tests.workload import (
    BIG,
    LABEL_ATTEMPT,
    LABEL_RUN,
    NAMESPACE_CAP,
    TASK,
    Load,
    check_invariants,
    iso,
    plan_workload,
    seeded,
    start_load,
    unfinished,
)

pytestmark = pytest.mark.cluster

NAMESPACE = "chaos"
SIZES = {
    "reduced": {"one": 60, "five": 50, "twenty": 90},
    "full": {"one": 120, "five": 130, "twenty": 250},
}
# More attempts than the workload's flaky runs need (2): a run hit by the node failure and by
# the Job deletion still has one to spare, so every run's expected phase stays the same.
RETRY = {"maxAttempts": 5, "factor": 2, "minTimeoutSeconds": 1, "maxTimeoutSeconds": 2}
S3_STOPPED_SECONDS = 30.0
FINISH_TIMEOUT = 900
PROBES = "chaos-s3"  # the runs that must use S3 while it is stopped
UPLOAD_PROBES = 3  # each sleeps UPLOAD_AFTER s, then uploads an output too big to go inline
UPLOAD_AFTER = 4.0
READ_PROBES = 2  # each starts READ_AFTER s into the outage and reads an offloaded payload
READ_AFTER = 5.0
S3_WAITED = "object storage failed to"  # the worker's log line when it retries S3


class Chaos:
    """The faults, and what they did (for the checks and the report)."""

    def __init__(self, cluster: LocalCluster, operator: OperatorProcess, api: client.ApiClient,
                 rng: random.Random, store: ObjectStore) -> None:
        self.cluster, self.operator, self.api, self.rng = cluster, operator, api, rng
        self.store = store
        self.probes: list[str] = []
        self.deleted_attempts: set[tuple[str, int]] = set()
        self.counts: Counter[str] = Counter()
        self.operator_pid = self._pid()

    def _pid(self) -> int:
        assert self.operator.process is not None and self.operator.process.pid is not None
        return self.operator.process.pid

    def operator_kill(self) -> None:
        self.operator.kill()
        time.sleep(self.rng.uniform(0.0, 1.5))
        self.operator.start(timeout=120)
        self.operator_pid = self._pid()
        self.counts["operator SIGKILL"] += 1

    def redis_restart(self) -> None:
        self.cluster.redis.restart()
        self.counts["Redis restart"] += 1

    def redis_flushall(self) -> None:
        with redis.Redis.from_url(self.cluster.redis.url) as conn:
            conn.flushall()
        self.counts["Redis FLUSHALL"] += 1

    def s3_stop(self) -> None:
        """An outage no attempt meets proves nothing: probe runs are started so that they
        use S3 during it (see the module's docstring)."""
        for i in range(UPLOAD_PROBES):
            name = f"upload-{i}"
            make_run(self.api, PROBES, name, TASK, {"sleep": UPLOAD_AFTER, "output_bytes": BIG})
            self.probes.append(name)
        deadline = time.monotonic() + 60
        while len(executions(self.cluster.node_agent, PROBES)) < UPLOAD_PROBES:
            assert time.monotonic() < deadline, "the upload probes did not start in 60 s"
            time.sleep(0.1)
        for i in range(READ_PROBES):
            name = f"read-{i}"
            ref = self.store.put(payload_key(PROBES, TASK),
                                 encode_payload({"pad": "p" * BIG, "output": {"read": i}}))
            at = time.time() + READ_AFTER
            create(self.api, PROBES, "taskruns", {"kind": "TaskRun", "metadata": {"name": name},
                                                  "spec": {"task": TASK, "payloadRef": ref,
                                                           "delayUntil": iso(at)}})
            self.probes.append(name)
        self.cluster.s3.pause()
        try:
            time.sleep(S3_STOPPED_SECONDS)
        finally:
            self.cluster.s3.resume()
        self.counts["S3 stopped 30 s"] += 1
        # Before the next fault: a probe the node failure hit would need a second attempt.
        wait_all_terminal(self.api, PROBES, 120)

    def check_probes(self) -> int:
        """Every probe completed in its first attempt, and its worker waited out the outage
        (said so in its log). Returns how many waited."""
        runs = {r["metadata"]["name"]: r for r in wait_all_terminal(self.api, PROBES, 300)}
        assert set(runs) == set(self.probes), (sorted(runs), self.probes)
        for name, run in runs.items():
            status = run.get("status") or {}
            assert status.get("phase") == "Completed" and status.get("attempt") == 1, (
                name, status)
            if name.startswith("upload"):
                assert status.get("outputRef"), (name, status)
            else:
                assert status.get("output") == {"read": int(name.rsplit("-", 1)[1])}, status
        ran = executions(self.cluster.node_agent, PROBES)
        assert len(ran) == len(self.probes), ran
        logs = sorted((self.cluster.node_agent.workdir / "pods" / PROBES).glob("*/*.log"))
        waited = [log.parent.name for log in logs if S3_WAITED in log.read_text(
            errors="replace")]
        assert len(logs) == len(self.probes) and len(waited) == len(self.probes), (
            f"probes whose worker did not wait for S3: {sorted(set(runs) - set(waited))}")
        return len(waited)

    def apiserver_restart(self) -> None:
        self.cluster.control_plane.restart_apiserver()
        self.counts["API server restart"] += 1

    def _running_processes(self) -> int:
        open_: set[tuple[str, int]] = set()
        for record in self.cluster.node_agent.records():
            if record["namespace"] != NAMESPACE:
                continue
            key = (record["uid"], record["pid"])
            if record["event"] == "start":
                open_.add(key)
            else:
                open_.discard(key)
        return len(open_)

    def node_failure(self) -> None:
        """Once pods run on the node: a node failure that kills nothing proves nothing."""
        deadline = time.monotonic() + 30
        while (running := self._running_processes()) == 0:
            assert time.monotonic() < deadline, (
                f"no pod process ran in 30 s; runs by phase: {self.phases()}")
            time.sleep(0.1)
        self.cluster.node_agent.kill()
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.cluster.node_agent.start()
        self.counts["node agent SIGKILL"] += 1
        self.counts["pod processes running at the node failure"] += running

    def delete_running_job(self) -> None:
        batch = client.BatchV1Api(self.api)
        deadline = time.monotonic() + 30
        while True:
            jobs = [j for j in batch.list_namespaced_job(
                        NAMESPACE, label_selector=LABEL_RUN).items
                    if (j.status.active or 0) > 0 and not j.metadata.deletion_timestamp]
            if jobs:
                break
            assert time.monotonic() < deadline, "no running Job to delete in 30 s"
            time.sleep(0.2)
        job = self.rng.choice(jobs)
        labels = job.metadata.labels
        self.deleted_attempts.add((labels[LABEL_RUN], int(labels[LABEL_ATTEMPT])))
        batch.delete_namespaced_job(job.metadata.name, NAMESPACE,
                                    propagation_policy="Background")
        self.counts["Job deleted by hand"] += 1

    def phases(self) -> dict[str, int]:
        runs = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            "kubetasks.dev", "v1alpha1", NAMESPACE, "taskruns")["items"]
        return dict(Counter(str((r.get("status") or {}).get("phase")) for r in runs))

    def disrupted(self, execution: dict[str, Any]) -> bool:
        """An attempt a fault took away: its process died with the node agent, or its Job
        was deleted by hand."""
        labels = execution["labels"]
        return (execution.get("reason") == REASON_RESTARTED
                or (labels[LABEL_RUN], int(labels[LABEL_ATTEMPT])) in self.deleted_attempts)

    def check_operator(self, after: str) -> None:
        """The operator is the process last started on purpose, and alive: no fault made it
        exit or restart by itself."""
        assert self.operator.alive(), f"the operator died after {after}"
        assert self._pid() == self.operator_pid, f"the operator restarted after {after}"


def run_faults(chaos: Chaos, load: Load, faults: list[tuple[str, Callable[[], None]]]) -> None:
    """Each fault in turn, 1 to 3 s apart, while the load still runs."""
    total = len(load.planned)
    for what, fault in faults:
        time.sleep(chaos.rng.uniform(1.0, 3.0))
        left = unfinished(chaos.api, NAMESPACE)
        assert left > 0, f"the load finished before {what}: the test disturbed nothing"
        began = time.time()
        try:
            fault()
        except BaseException:
            print("\n".join(["", *load.notes]))
            raise
        load.notes.append(f"{what} at +{began - load.started:.1f} s with {left}/{total} runs "
                          f"unfinished (took {time.time() - began:.1f} s)")
        chaos.check_operator(what)


@pytest.mark.timeout(2400)
def test_no_run_lost_or_run_twice_and_no_limit_exceeded_under_faults(
    request: pytest.FixtureRequest, chaos_cluster: LocalCluster, chaos_api: client.ApiClient,
    chaos_operator: OperatorProcess, monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = "full" if request.config.getoption("--chaos-full") else "reduced"
    rng = seeded(f"chaos, {size}")
    create_namespace(chaos_api, NAMESPACE)
    create_namespace(chaos_api, PROBES)
    make_task(chaos_api, PROBES, TASK, retry=RETRY)
    s3 = chaos_cluster.s3
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = ObjectStore(StorageSettings(bucket=s3.bucket, endpoint=s3.endpoint,
                                        region=s3.region))
    planned = plan_workload(rng, SIZES[size], delayed=0.1, big=0.08, sleep=(0.3, 1.0))
    delay_until: dict[str, float] = {}
    load = start_load(chaos_api, NAMESPACE, planned, retry=RETRY, store=store,
                      created=delay_until)
    chaos = Chaos(chaos_cluster, chaos_operator, chaos_api, rng, store)
    faults: list[tuple[str, Callable[[], None]]] = [
        ("operator SIGKILL 1", chaos.operator_kill),
        ("S3 stopped for 30 s", chaos.s3_stop),
        ("operator SIGKILL 2", chaos.operator_kill),
        ("Redis FLUSHALL", chaos.redis_flushall),
        ("API server restart", chaos.apiserver_restart),
        ("operator SIGKILL 3", chaos.operator_kill),
        ("Redis restart", chaos.redis_restart),
        ("node failure", chaos.node_failure),
        ("operator SIGKILL 4", chaos.operator_kill),
        ("Job deleted by hand", chaos.delete_running_job),
        ("operator SIGKILL 5", chaos.operator_kill),
    ]
    run_faults(chaos, load, faults)

    counts = check_invariants(chaos_api, chaos_cluster.node_agent, NAMESPACE, load,
                              f"chaos {size}", disrupted=chaos.disrupted,
                              delay_until=delay_until, finish_timeout=FINISH_TIMEOUT,
                              namespace_cap=NAMESPACE_CAP)
    probes_waited = chaos.check_probes()
    chaos.check_operator("the load finished")
    health = chaos_operator.metrics_url.replace("/metrics", "/healthz")
    with urllib.request.urlopen(health, timeout=5) as response:
        assert response.status == 200
    pods = chaos_cluster.node_agent.workdir / "pods" / NAMESPACE
    waited_for_s3 = sum(S3_WAITED in log.read_text(errors="replace")
                        for log in pods.glob("*/*.log"))
    behaviours = Counter(p.behaviour for p in planned)
    print(f"\n[chaos {size}] faults: {dict(chaos.counts)}")
    print(f"[chaos {size}] runs: {dict(behaviours)}, delayed {len(delay_until)}, "
          f"offloaded payloads {sum(p.offload for p in planned)}, big outputs "
          f"{sum('output_bytes' in p.payload for p in planned)}; attempts that waited out "
          f"the S3 outage: {waited_for_s3} of the load, {probes_waited} probes (of "
          f"{len(chaos.probes)}: each completed in its first attempt)")
    print(f"[chaos {size}] outcome: {counts}")
    assert counts["repeated_attempts"] == 0 and counts["queue_limit_exceeded"] == 0
