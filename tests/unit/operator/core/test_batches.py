"""The pure TaskBatch core: which items still need a run, counts, phase, and when the status
is written."""

from __future__ import annotations

from typing import Any

import pytest

from kubetasks_operator.children import child_run, item_key, parse_items
from kubetasks_operator.core.batches import (
    STATUS_INTERVAL,
    BatchView,
    ItemRun,
    counts,
    decide_batch,
    status_interval,
)

NOW = 1_000_000.0
ISO = "2001-09-09T01:46:40.000000Z"


def view(total: int = 3, **kw: Any) -> BatchView:
    return BatchView(namespace="ns", name="b", uid="u", generation=1, total=total, **kw)


def runs(**phases: str | None) -> dict[int, ItemRun]:
    return {int(k[1:]): ItemRun(f"b-{k[1:]}", phase) for k, phase in phases.items()}


def test_a_new_batch_creates_every_item_and_reports_running() -> None:
    decision = decide_batch(view(3), NOW, ISO)
    assert decision.create == (0, 1, 2)
    assert decision.status["phase"] == "Running"
    assert decision.status["created"] == 0
    assert decision.status["counts"]["pending"] == 3


def test_items_that_have_a_run_are_not_created_again() -> None:
    decision = decide_batch(view(4, runs=runs(i0="Queued", i2=None)), NOW, ISO)
    assert decision.create == (1, 3)
    assert decision.status["created"] == 1  # a prefix: item 1 has no run yet


def test_items_below_the_recorded_prefix_are_never_created_again_even_if_deleted() -> None:
    decision = decide_batch(view(3, recorded_created=2, runs=runs(i1="Completed")), NOW, ISO)
    assert decision.create == (2,)
    tally = decision.status["counts"]
    assert tally["missing"] == 1 and tally["completed"] == 1 and tally["pending"] == 1


def test_a_recorded_keyed_run_counts_as_created_and_missing_once_deleted() -> None:
    decision = decide_batch(view(2, recorded_keyed={1: "t-ik-x"}, keyed=frozenset({1}),
                                 runs=runs(i0="Completed")), NOW, ISO)
    assert decision.create == ()
    assert decision.status["created"] == 2
    assert decision.status["counts"]["missing"] == 1
    assert decision.status["phase"] == "PartiallyFailed"


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ({"i0": "Completed", "i1": "Completed"}, "Completed"),
        ({"i0": "Completed", "i1": "Failed"}, "PartiallyFailed"),
        ({"i0": "Completed", "i1": "Expired"}, "PartiallyFailed"),
        ({"i0": "Completed", "i1": "Executing"}, "Running"),
        ({"i0": "Completed"}, "Running"),
    ],
)
def test_phase_follows_the_runs(phases: dict[str, str], expected: str) -> None:
    decision = decide_batch(view(2, runs=runs(**phases)), NOW, ISO)
    assert decision.status["phase"] == expected


def test_counts_map_every_run_phase() -> None:
    tally = counts(view(8, runs=runs(i0="Delayed", i1="Queued", i2="Retrying", i3="Waiting",
                                     i4="TimedOut", i5="Crashed", i6="Canceled",
                                     i7="Expired")))
    assert tally == {"pending": 1, "queued": 2, "running": 1, "completed": 0, "failed": 2,
                     "canceled": 1, "expired": 1, "missing": 0}


def test_cancel_stops_the_fan_out_and_cancels_only_own_unfinished_runs() -> None:
    item_runs = {
        0: ItemRun("b-0", "Executing"),
        1: ItemRun("b-1", "Completed"),
        2: ItemRun("other", "Executing", ours=False),
        3: ItemRun("b-3", "Queued", cancel_requested=True),
    }
    decision = decide_batch(view(6, cancel=True, runs=item_runs), NOW, ISO)
    assert decision.create == ()
    assert decision.cancel == ("b-0",)
    assert decision.status["phase"] == "Running"
    assert decision.status["counts"]["canceled"] == 2  # items 4 and 5, never created


def test_a_canceled_batch_ends_when_its_own_runs_have_ended() -> None:
    item_runs = {0: ItemRun("b-0", "Canceled"), 1: ItemRun("other", "Executing", ours=False)}
    decision = decide_batch(view(3, cancel=True, runs=item_runs), NOW, ISO)
    assert decision.status["phase"] == "Canceled"


def test_unreadable_items_fail_the_batch_with_a_condition() -> None:
    decision = decide_batch(view(3, items_ready=False, items_error="bad JSON"), NOW, ISO)
    assert decision.create == ()
    assert decision.status["phase"] == "Failed"
    assert decision.status["conditions"][0]["message"] == "bad JSON"


def test_items_not_read_yet_keep_the_batch_pending_without_creating() -> None:
    decision = decide_batch(view(3, items_ready=False), NOW, ISO)
    assert decision.create == ()
    assert decision.status["phase"] == "Pending"


def test_a_terminal_batch_is_left_alone() -> None:
    decision = decide_batch(view(1, phase="Completed"), NOW, ISO)
    assert decision.create == () and decision.status == {}


def test_progress_is_throttled_but_a_phase_change_is_not() -> None:
    recorded = {"phase": "Running", "total": 3, "created": 3, "reused": 0,
                "observedGeneration": 1,
                "counts": counts(view(3, runs=runs(i0="Queued", i1="Queued", i2="Queued")))}
    moving = view(3, phase="Running", recorded_created=3, recorded=recorded,
                  runs=runs(i0="Executing", i1="Queued", i2="Queued"))
    throttled = decide_batch(moving, NOW, ISO, last_write=NOW - 0.1)
    assert throttled.status == {}
    assert throttled.wake_at == pytest.approx(NOW - 0.1 + STATUS_INTERVAL)
    assert decide_batch(moving, NOW, ISO, last_write=NOW - STATUS_INTERVAL).status
    done = view(3, phase="Running", recorded_created=3, recorded=recorded,
                runs=runs(i0="Completed", i1="Completed", i2="Completed"))
    assert decide_batch(done, NOW, ISO, last_write=NOW - 0.1).status["phase"] == "Completed"


def test_nothing_is_written_when_nothing_changed() -> None:
    first = decide_batch(view(1, runs=runs(i0="Queued")), NOW, ISO)
    recorded = first.status
    again = decide_batch(view(1, phase="Running", recorded_created=1, recorded=recorded,
                              runs=runs(i0="Queued")), NOW + 5, ISO, last_write=NOW)
    assert again.status == {} and again.create == ()


def test_new_keyed_runs_are_recorded_by_index() -> None:
    item_runs = {0: ItemRun("t-ik-aaaa", "Queued"), 1: ItemRun("kept", "Completed", ours=False)}
    decision = decide_batch(view(2, keyed=frozenset({0, 1}), runs=item_runs), NOW, ISO)
    assert decision.status["keyedRuns"] == {"0": "t-ik-aaaa", "1": "kept"}
    assert decision.status["reused"] == 1


# --- the item runs ----------------------------------------------------------------------------

BATCH = {
    "metadata": {"name": "send-b-x1", "namespace": "ns", "uid": "batch-uid"},
    "spec": {"task": "send", "items": [],
             "parent": {"name": "p", "uid": "parent-uid", "wait": True, "attempt": 2}},
}


def test_child_run_carries_payload_options_batch_link_and_owner() -> None:
    item = {"payload": {"n": 1}, "options": {"tags": ["a"], "delayUntil": ISO}}
    run = child_run(BATCH, 7, item, "send-b-x1-7")
    assert run["metadata"]["name"] == "send-b-x1-7"
    assert run["metadata"]["labels"]["kubetasks.dev/batch-index"] == "7"
    assert run["metadata"]["ownerReferences"][0]["uid"] == "batch-uid"
    assert run["spec"]["payload"] == {"n": 1}
    assert run["spec"]["tags"] == ["a"] and run["spec"]["delayUntil"] == ISO
    assert run["spec"]["batch"] == {"name": "send-b-x1", "index": 7}
    # The batch, not each run, is what the parent waits on.
    assert run["spec"]["parent"] == {"name": "p", "uid": "parent-uid", "wait": False,
                                     "attempt": 2}


def test_child_run_keeps_a_null_payload_and_prefers_a_payload_ref() -> None:
    assert child_run(BATCH, 0, {"payload": None}, "x")["spec"]["payload"] is None
    ref = {"bucket": "bkt", "key": "k", "size": 1, "sha256": "0" * 64}
    spec = child_run(BATCH, 0, {"payloadRef": ref}, "x")["spec"]
    assert spec["payloadRef"] == ref and "payload" not in spec


def test_item_keys_are_scoped_like_the_sdk_scopes_them() -> None:
    keyed = {"options": {"idempotencyKey": "k"}}
    assert item_key(BATCH, keyed) is not None
    assert item_key(BATCH, keyed).scope == "run"  # type: ignore[union-attr]
    orphan = {"metadata": BATCH["metadata"], "spec": {"task": "send"}}
    assert item_key(orphan, keyed).scope == "global"  # type: ignore[union-attr]
    attempt = item_key(BATCH, {"options": {"idempotencyKey": "k",
                                           "idempotencyKeyScope": "attempt"}})
    assert attempt is not None and attempt.attempt == 2 and attempt.parent_uid == "parent-uid"
    assert item_key(BATCH, {"payload": 1}) is None
    # Same key, scope and parent: same digest as the SDK would compute.
    from kubetasks.idempotency_keys import IdempotencyKey

    assert item_key(BATCH, keyed).digest("send") == (  # type: ignore[union-attr]
        IdempotencyKey("k", "run", "parent-uid").digest("send"))


def test_parse_items_checks_what_the_api_server_would_have() -> None:
    assert parse_items([{"payload": 1}], 1) == [{"payload": 1}]
    with pytest.raises(ValueError, match="not an array"):
        parse_items({"payload": 1}, 1)
    with pytest.raises(ValueError, match="itemCount is 2"):
        parse_items([{"payload": 1}], 2)
    with pytest.raises(ValueError, match=r"item 0\.options\.maxAttempts"):
        parse_items([{"payload": 1, "options": {"maxAttempts": 0}}], 1)


def test_big_batches_report_progress_less_often() -> None:
    assert status_interval(3) == STATUS_INTERVAL
    assert status_interval(1000) == 5.0
    recorded = {"phase": "Running", "total": 1000, "created": 10}
    moving = view(1000, phase="Running", recorded_created=10, recorded=recorded)
    assert decide_batch(moving, NOW, ISO, last_write=NOW - 2).status == {}
    assert decide_batch(moving, NOW, ISO, last_write=NOW - 5).status
