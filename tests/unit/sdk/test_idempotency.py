"""Idempotency keys: scopes, the names derived from them, and when a run releases its key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubetasks import InvalidOptionError, idempotency_keys
from kubetasks._internal.client import Client
from kubetasks._internal.triggering import prepare
from kubetasks.context import AttemptInfo, Context, RunInfo, TaskInfo, running
from kubetasks.idempotency_keys import (
    IdempotencyKey,
    generation_of,
    key_released,
    resolve,
    run_name,
)

NOW = dt.datetime(2030, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def context(uid: str = "uid-parent", attempt: int = 1) -> Context:
    run = RunInfo(id="ns/parent", name="parent", namespace="ns", uid=uid)
    return Context(run, AttemptInfo(attempt), TaskInfo("parent", "m:f"))


def test_outside_a_task_every_scope_is_global() -> None:
    for scope in ("run", "attempt", "global"):
        assert idempotency_keys.create("k", scope=scope) == IdempotencyKey("k", "global")
    assert resolve("k") == IdempotencyKey("k", "global")


def test_inside_a_task_keys_are_run_scoped_by_default_also_plain_strings() -> None:
    with running(context()):
        assert idempotency_keys.create("k") == IdempotencyKey("k", "run", "uid-parent")
        assert resolve("k") == IdempotencyKey("k", "run", "uid-parent")
        assert idempotency_keys.create("k", scope="attempt") == IdempotencyKey(
            "k", "attempt", "uid-parent", 1)
        assert idempotency_keys.create("k", scope="global") == IdempotencyKey("k", "global")


def test_run_scope_survives_a_retry_and_attempt_scope_does_not() -> None:
    with running(context(attempt=1)):
        run_1, attempt_1 = (idempotency_keys.create("k"),
                            idempotency_keys.create("k", scope="attempt"))
    with running(context(attempt=2)):
        run_2, attempt_2 = (idempotency_keys.create("k"),
                            idempotency_keys.create("k", scope="attempt"))
    with running(context(uid="other-parent")):
        other = idempotency_keys.create("k")
    assert run_1.digest("t") == run_2.digest("t")
    assert attempt_1.digest("t") != attempt_2.digest("t")
    assert other.digest("t") != run_1.digest("t")
    assert run_1.digest("t") != run_1.digest("other-task")
    assert IdempotencyKey("k", "global").digest("t") != run_1.digest("t")


def test_key_parts_and_bad_keys() -> None:
    assert idempotency_keys.create(["user", "42"]).key == "user-42"
    with pytest.raises(InvalidOptionError, match="1 to 256"):
        idempotency_keys.create("x" * 257)
    with pytest.raises(InvalidOptionError, match="scope"):
        idempotency_keys.create("k", scope="team")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="must be a string"):
        resolve(42)  # type: ignore[arg-type]


def test_names_are_deterministic_valid_and_one_per_generation() -> None:
    digest = IdempotencyKey("k", "global").digest("send-email")
    assert run_name("send-email", digest, 0) == f"send-email-ik-{digest[:16]}"
    assert run_name("send-email", digest, 3) == f"send-email-ik-{digest[:16]}-r3"
    long_task = "t" * 63
    assert len(run_name(long_task, digest, 99)) <= 253


def run(phase: str | None, created: dt.datetime = NOW, ttl: int | None = 3600,
        generation: str | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if generation is not None:
        meta["labels"] = {"kubetasks.dev/idempotency-generation": generation}
    if deleting:
        meta["deletionTimestamp"] = created.isoformat()
    spec: dict[str, Any] = {"idempotencyKey": "k"}
    if ttl is not None:
        spec["idempotencyKeyTTLSeconds"] = ttl
    return {"metadata": meta, "spec": spec, "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize("phase", ["Failed", "Crashed", "TimedOut", "Expired", "Canceled"])
def test_runs_that_did_not_complete_release_their_key(phase: str) -> None:
    assert key_released(run(phase), NOW)


@pytest.mark.parametrize("phase", [None, "Pending", "Delayed", "Queued", "Executing",
                                   "Waiting", "Retrying", "Completed"])
def test_live_and_completed_runs_hold_their_key_until_its_ttl(phase: str | None) -> None:
    assert not key_released(run(phase), NOW + dt.timedelta(seconds=3599))
    assert key_released(run(phase), NOW + dt.timedelta(seconds=3600))


def test_a_run_being_deleted_releases_its_key_and_generations_are_read_from_labels() -> None:
    assert key_released(run("Completed", deleting=True), NOW)
    assert generation_of(run("Completed", generation="4")) == 4
    assert generation_of(run("Completed")) == 0


def test_a_child_names_its_parent_and_the_attempt_that_triggered_it() -> None:
    """The operator scopes "attempt" keys of batch items with spec.parent.attempt; single
    triggers write it too, so both kinds of child say which attempt made them."""
    client = Client(FakeNamespace("ns"), inline_limit=1024)  # type: ignore[arg-type]
    with running(context(attempt=3)):
        prepared, key = prepare(client, "t", {"a": 1}, {"idempotency_key": "k"}, wait=True,
                                method="trigger_and_wait")
    assert prepared.spec_fields["parent"] == {"name": "parent", "uid": "uid-parent",
                                              "wait": True, "attempt": 3}
    assert key == IdempotencyKey("k", "run", "uid-parent")


class FakeNamespace:
    """Just enough of KubeApi for prepare(): it reads the namespace and writes nothing."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
