"""Concurrency keys as the spec defines them, and the explicit caps, judged from what really
ran (the node agent's process records), never from the operator's counters.

- a queue's limit applies to each concurrency key on its own (the spec's example: every free
  user gets a queue with a limit of 1);
- a TaskQueue's ``totalConcurrencyLimit`` caps all keys of the queue together;
- the operator's namespace cap bounds every queue of a namespace together;
- under a cap, keys still take turns: a key that arrives late with one run is served at the
  next free slot, not after a busy key's backlog;
- a TaskQueue stored with the retired ``concurrencyKeyLimit`` keeps its old meaning.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from kubetasks import queue, tasks
from kubetasks._internal.client import Client
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from tests.cluster.helpers import (
    create,
    custom,
    executions,
    make_queue,
    make_run,
    make_task,
    max_overlap,
    ts,
    wait_all_terminal,
    wait_for,
    wait_until,
)
from tests.workload import iso

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]

RUN = "kubetasks.dev/run"


def intervals(done: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    return [(e["time"], e["end"]) for e in done]


def by_run_prefix(done: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Executions grouped by their run name's first part (``alice-0`` -> ``alice``)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in done:
        groups[e["labels"][RUN].split("-")[0]].append(e)
    return groups


def test_the_specs_example_one_run_per_user_and_users_side_by_side(
    sdk: Client, namespace: str, node_agent: NodeAgentProcess
) -> None:
    # The spec's concurrencyKey example, as a user writes it: queue "free-users" with a
    # limit of 1, the user id as the key; three users with two runs of 2 s each.
    free_users = queue("free-users", concurrency_limit=1)
    handles = {
        user: [tasks.trigger("behave", {"sleep": 2.0}, queue=free_users,
                             concurrency_key=user) for _ in range(2)]
        for user in ("alice", "bob", "carol")
    }
    for user_handles in handles.values():
        for handle in user_handles:
            assert handle.poll(timeout=90).status == "Completed"
    done = executions(node_agent, namespace)
    assert len(done) == 6
    # Three at once (one per user), never two of one user.
    assert max_overlap(intervals(done)) == 3
    by_user = defaultdict(list)
    for user, user_handles in handles.items():
        ids = {h.name for h in user_handles}
        by_user[user] = [e for e in done if e["labels"][RUN] in ids]
    for user, mine in by_user.items():
        assert len(mine) == 2, user
        assert max_overlap(intervals(mine)) == 1, f"{user} ran two runs at once"


def test_the_total_cap_bounds_all_keys_of_a_queue(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "users"})
    make_queue(kube_api, namespace, "users", concurrencyLimit=2, totalConcurrencyLimit=3)
    for user in ("a", "b", "c", "d"):
        for i in range(3):
            make_run(kube_api, namespace, f"{user}-{i}", "echo", {"sleep": 1.0},
                     concurrencyKey=f"user-{user}")
    runs = wait_all_terminal(kube_api, namespace, timeout=120)
    assert {r["status"]["phase"] for r in runs} == {"Completed"}
    done = executions(node_agent, namespace)
    assert len(done) == 12
    assert max_overlap(intervals(done)) == 3  # the cap, reached and never passed
    for user, mine in by_run_prefix(done).items():
        assert max_overlap(intervals(mine)) <= 2, f"key user-{user} passed its limit"


def test_the_namespace_cap_bounds_every_queue_of_the_namespace(
    kube_api: client.ApiClient, capped_namespace: Callable[[int], str],
    node_agent: NodeAgentProcess,
) -> None:
    namespace = capped_namespace(3)
    make_task(kube_api, namespace, "echo")
    # All due at one moment, so that both queues wait when the cap first binds.
    due = iso(time.time() + 5)
    for name in ("left", "right"):
        make_queue(kube_api, namespace, name, concurrencyLimit=5)
        for i in range(4):
            make_run(kube_api, namespace, f"{name}-{i}", "echo", {"sleep": 1.0},
                     queue={"name": name}, delayUntil=due)
    runs = wait_all_terminal(kube_api, namespace, timeout=120)
    assert {r["status"]["phase"] for r in runs} == {"Completed"}
    done = executions(node_agent, namespace)
    assert len(done) == 8
    assert max_overlap(intervals(done)) == 3
    groups = by_run_prefix(done)
    # Queues take turns under the cap: both were served at once, not one after the other.
    first_three = sorted(done, key=lambda e: e["time"])[:3]
    assert {e["labels"][RUN].split("-")[0] for e in first_three} == {"left", "right"}
    assert len(groups["left"]) == len(groups["right"]) == 4
    # The operator shows the cap and the namespace's use on every TaskQueue.
    status = custom(kube_api).get_namespaced_custom_object(
        "kubetasks.dev", "v1alpha1", namespace, "taskqueues", "left").get("status") or {}
    assert status.get("namespaceConcurrencyLimit") == 3


def test_under_a_cap_a_late_key_with_one_run_starts_at_the_next_free_slot(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    make_task(kube_api, namespace, "echo", queue={"name": "shared"})
    make_queue(kube_api, namespace, "shared", concurrencyLimit=10, totalConcurrencyLimit=2)
    for i in range(12):
        make_run(kube_api, namespace, f"busy-{i:02d}", "echo", {"sleep": 1.5},
                 concurrencyKey="busy")
    # Once the busy key fills the cap and has a backlog, a new key arrives with one run.
    deadline = time.monotonic() + 60
    while len([e for e in executions(node_agent, namespace) if e["end"] is None]) < 2:
        assert time.monotonic() < deadline, "the busy key never filled the cap"
        time.sleep(0.1)
    make_run(kube_api, namespace, "late-0", "echo", {"sleep": 0.1}, concurrencyKey="late")
    wait_for(kube_api, namespace, "late-0", ["Queued", "Executing", "Completed"])
    known = time.time()  # the operator holds the late run from here on
    runs = {r["metadata"]["name"]: r for r in wait_all_terminal(kube_api, namespace,
                                                                 timeout=120)}
    # When each run was given its slot: the operator's start of its attempt (the process
    # starts a pod's path later, so grants are compared, not process starts).
    granted = {name: ts(run["status"]["startedTime"]) for name, run in runs.items()}
    late = granted.pop("late-0")
    # Between the moment the operator knew the late run and its grant, no busy run took a
    # freed slot: the late key was served at the first turnover.
    jumped = sorted(name for name, at in granted.items() if known < at < late)
    assert not jumped, f"busy runs granted before the late key's one run: {jumped}"
    assert sum(1 for at in granted.values() if at > late) >= 5, (
        "the test proved nothing: the busy key's backlog was gone before the late run came")
    assert max_overlap(intervals(executions(node_agent, namespace))) == 2


def test_a_taskqueue_stored_with_the_retired_key_limit_keeps_its_old_meaning(
    kube_api: client.ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    # Such a queue can only exist from before the field was retired: store one by lifting
    # the CEL rule for a moment, as an older CRD would have accepted it.
    legacy = {"concurrencyLimit": 2, "concurrencyKeyLimit": 1}
    with retired_field_allowed(kube_api, namespace):
        make_queue(kube_api, namespace, "legacy", **legacy)
    # Ratcheting: with the rule back, the queue can still be changed while the retired field
    # stays as it is.
    queues = custom(kube_api)
    for paused in (True, False):
        queues.patch_namespaced_custom_object("kubetasks.dev", "v1alpha1", namespace,
                                              "taskqueues", "legacy", {"spec": {"paused": paused}})
    make_task(kube_api, namespace, "echo", queue={"name": "legacy"})
    for user in ("a", "b", "c"):
        for i in range(2):
            make_run(kube_api, namespace, f"{user}-{i}", "echo", {"sleep": 1.0},
                     concurrencyKey=f"user-{user}")
    runs = wait_all_terminal(kube_api, namespace, timeout=120)
    assert {r["status"]["phase"] for r in runs} == {"Completed"}
    done = executions(node_agent, namespace)
    # The old meaning, never looser: 2 over the queue, 1 per key.
    assert max_overlap(intervals(done)) == 2
    for user, mine in by_run_prefix(done).items():
        assert max_overlap(intervals(mine)) == 1, f"key user-{user} ran two at once"
    status = queues.get_namespaced_custom_object(
        "kubetasks.dev", "v1alpha1", namespace, "taskqueues", "legacy").get("status") or {}
    (deprecated,) = [c for c in status.get("conditions") or [] if c["type"] == "Deprecated"]
    assert deprecated["reason"] == "ConcurrencyKeyLimit"
    assert "{concurrencyLimit: 1, totalConcurrencyLimit: 2}" in deprecated["message"]


@contextlib.contextmanager
def retired_field_allowed(kube_api: client.ApiClient, namespace: str) -> Iterator[None]:
    """The TaskQueue CRD without the rule that refuses concurrencyKeyLimit, then as before."""
    crds = client.ApiextensionsV1Api(kube_api)
    name = "taskqueues.kubetasks.dev"
    original = crds.read_custom_resource_definition(name)
    lifted = crds.read_custom_resource_definition(name)
    spec_schema = lifted.spec.versions[0].schema.open_apiv3_schema.properties["spec"]
    spec_schema.properties["concurrencyKeyLimit"].x_kubernetes_validations = None
    crds.replace_custom_resource_definition(name, lifted)
    probe = {"kind": "TaskQueue", "metadata": {"name": "probe"},
             "spec": {"concurrencyKeyLimit": 1}}

    def accepted() -> bool:
        try:
            create(kube_api, namespace, "taskqueues", probe)
        except client.ApiException as exc:
            assert exc.status == 422, exc.body
            return False
        custom(kube_api).delete_namespaced_custom_object(
            "kubetasks.dev", "v1alpha1", namespace, "taskqueues", "probe")
        return True

    try:
        wait_until(accepted, 30, "the API server to serve the CRD without the rule")
        yield
    finally:
        current = crds.read_custom_resource_definition(name)
        original.metadata.resource_version = current.metadata.resource_version
        crds.replace_custom_resource_definition(name, original)
        wait_until(lambda: not accepted(), 30, "the rule to be back")

