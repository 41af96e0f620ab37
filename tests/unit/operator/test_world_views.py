"""The World's cached run views: a view is reused until something it is made of changes
(the run, its Jobs and Pods, its waited-on children and batches), and stored objects lose
their managedFields."""

from __future__ import annotations

from typing import Any

from kubetasks_operator.core.model import Phase
from kubetasks_operator.world import World


def run(name: str, uid: str, rv: int, phase: str | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": str(rv),
                     "creationTimestamp": "2027-01-15T08:00:00Z",
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
        "spec": {"task": "echo", **spec},
    }
    if phase:
        obj["status"] = {"phase": phase, "attempt": 1}
    return obj


def job(run_uid: str, rv: int, active: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "p-1", "resourceVersion": str(rv),
                     "labels": {"kubetasks.dev/run-uid": run_uid, "kubetasks.dev/attempt": "1"}},
        "status": {"active": active},
    }


def test_a_view_is_reused_until_its_run_changes() -> None:
    world = World()
    world.put_run(run("p", "u1", 1, "Queued"))
    first = world.view(("ns", "p"))
    assert first is not None and world.view(("ns", "p")) is first
    world.put_run(run("p", "u1", 1, "Queued"))  # same version: a new object, same content
    again = world.view(("ns", "p"))
    assert again is not None and again.phase is Phase.QUEUED
    world.put_run(run("p", "u1", 2, "Executing"))
    changed = world.view(("ns", "p"))
    assert changed is not None and changed.phase is Phase.EXECUTING
    world.put_run(run("p", "u1", 1, "Queued"))  # stale: ignored, the view stays
    assert world.view(("ns", "p")) is changed


def test_jobs_children_and_batches_refresh_the_view_of_their_run() -> None:
    world = World()
    world.put_run(run("p", "u1", 1, "Executing"))
    assert world.view(("ns", "p")).live_attempt is None  # type: ignore[union-attr]
    world.put_job(job("u1", 5))
    assert world.view(("ns", "p")).live_attempt == 1  # type: ignore[union-attr]
    world.drop_job(job("u1", 6))
    assert world.view(("ns", "p")).live_attempt is None  # type: ignore[union-attr]

    world.put_run(run("c", "u2", 7, "Queued", parent={"name": "p", "uid": "u1", "wait": True}))
    assert world.view(("ns", "p")).children_waited == ("c",)  # type: ignore[union-attr]
    world.put_run(run("c", "u2", 8, "Completed",
                      parent={"name": "p", "uid": "u1", "wait": True}))
    assert world.view(("ns", "p")).waiting_on_children == 0  # type: ignore[union-attr]

    batch = {"metadata": {"namespace": "ns", "name": "b", "uid": "ub", "resourceVersion": "9"},
             "spec": {"task": "echo", "items": [{"payload": 1}],
                      "parent": {"name": "p", "uid": "u1", "wait": True}}}
    world.put_batch(batch)
    assert world.view(("ns", "p")).batches_waited == ("b",)  # type: ignore[union-attr]
    world.put_batch({**batch, "metadata": {**batch["metadata"], "resourceVersion": "10"},
                     "status": {"phase": "Completed"}})
    assert world.view(("ns", "p")).waiting_on_children == 0  # type: ignore[union-attr]
    world.drop_run(run("p", "u1", 11))
    assert world.view(("ns", "p")) is None


def test_stored_objects_lose_their_managed_fields() -> None:
    world = World()
    world.put_run(run("p", "u1", 1))
    assert "managedFields" not in world.runs[("ns", "p")]["metadata"]


def test_a_stored_run_keeps_neither_payload_nor_output_nor_kubectls_copy() -> None:
    world = World()
    obj = run("p", "u1", 1, "Completed", payload={"big": "x" * 1000})
    obj["status"]["output"] = {"result": "y" * 1000}
    obj["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "a"}
    world.put_run(obj)
    kept = world.runs[("ns", "p")]
    assert "payload" not in kept["spec"] and kept["spec"]["task"] == "echo"
    assert "output" not in kept["status"] and kept["status"]["phase"] == "Completed"
    assert kept["metadata"]["annotations"] == {"team": "a"}
    assert "managedFields" not in kept["metadata"]


def test_a_relist_drops_the_runs_it_no_longer_shows_but_not_newer_ones() -> None:
    world = World()
    world.put_run(run("kept", "u1", 5, "Queued"))
    world.put_run(run("deleted", "u2", 6, "Queued"))
    world.put_run(run("newer", "u3", 50, "Queued"))  # a write's response after the list
    other = run("elsewhere", "u4", 7, "Queued")
    other["metadata"]["namespace"] = "other"
    world.put_run(other)
    affected = world.relisted("ns", {("ns", "kept")}, list_rv=20)
    assert affected == {("ns", "deleted")}
    assert set(world.runs) == {("ns", "kept"), ("ns", "newer"), ("other", "elsewhere")}
    assert "u2" not in world.run_by_uid
    # all namespaces at once
    assert world.relisted(None, {("ns", "kept"), ("ns", "newer")}, list_rv=20) == {
        ("other", "elsewhere")}


def failed_create(job_uid: str, message: str, kind: str = "Job",
                  reason: str = "FailedCreate") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": f"p-1.{len(message)}"},
            "involvedObject": {"kind": kind, "namespace": "ns", "name": "p-1", "uid": job_uid},
            "reason": reason, "message": message}


def test_a_failed_create_event_reaches_the_view_of_the_jobs_run_and_only_that() -> None:
    world = World()
    world.put_run(run("p", "u1", 1, "Executing"))
    podless = {**job("u1", 5, active=0)}
    podless["metadata"] = {**podless["metadata"], "uid": "j1",
                           "creationTimestamp": "2027-01-15T08:00:05Z"}
    world.put_job(podless)
    view = world.view(("ns", "p"))
    assert view is not None and view.pod_missing_since is not None
    assert view.pod_create_error is None
    # Not the Job's: another kind, another reason, an older Job of the same name.
    assert world.put_job_event(failed_create("j1", "x", kind="ReplicaSet")) == set()
    assert world.put_job_event(failed_create("j1", "x", reason="SuccessfulCreate")) == set()
    assert world.put_job_event(failed_create("j0", "old")) == set()
    refused = 'pods "p-1-x" is forbidden: serviceaccount "nobody" not found'
    assert world.put_job_event(failed_create("j1", refused)) == {("ns", "p")}
    assert world.put_job_event(failed_create("j1", refused)) == set()  # same: no new pass
    view = world.view(("ns", "p"))
    assert view is not None and view.pod_create_error == refused
    # A pod appears: nothing is missing any more.
    world.put_pod({"metadata": {"namespace": "ns", "name": "p-1-x", "resourceVersion": "7",
                                "labels": {"kubetasks.dev/run-uid": "u1",
                                           "kubetasks.dev/attempt": "1"}},
                   "status": {"phase": "Pending"}})
    view = world.view(("ns", "p"))
    assert view is not None and view.pod_missing_since is None
    world.drop_job(podless)
    assert world.pod_errors == {}
