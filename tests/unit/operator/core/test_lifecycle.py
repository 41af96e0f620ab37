"""The TaskRun lifecycle decided without any server: state and clock in, actions out."""

from __future__ import annotations

import random
from dataclasses import replace

from kubetasks_operator.core.lifecycle import (
    ATTEMPT_LOST_GRACE,
    CancelChildren,
    CreateJob,
    DeleteJobs,
    PostEvent,
    ReleaseSlot,
    attempt_job_name,
    effective_queue,
    iso,
    reconcile,
    start_attempt,
)
from kubetasks_operator.core.model import (
    AttemptOutcome,
    AttemptRecord,
    AttemptResult,
    Phase,
    QueueConfig,
    Reason,
    RetryPolicy,
    RunView,
    TaskDefaults,
)
from kubetasks_operator.observe import queue_config

T0 = 1_800_000_000.0
TASK = TaskDefaults(task_id="send-email", image="img", entrypoint="app:send")
RNG = random.Random(0)


def run(**kw: object) -> RunView:
    base = RunView(namespace="ns", name="r1", uid="u1", generation=1, created_at=T0,
                   task_id="send-email")
    return replace(base, **kw)  # type: ignore[arg-type]


def condition(decision_status: dict[str, object], type_: str) -> dict[str, object]:
    conditions = decision_status["conditions"]
    assert isinstance(conditions, list)
    return next(c for c in conditions if c["type"] == type_)


def test_unknown_task_fails_with_task_not_found_and_an_event() -> None:
    d = reconcile(run(), None, None, T0, RNG)
    assert d.status["phase"] == "Failed"
    assert condition(d.status, "Succeeded")["reason"] == Reason.TASK_NOT_FOUND
    assert any(isinstance(a, PostEvent) and a.reason == Reason.TASK_NOT_FOUND
               for a in d.actions)
    assert d.wants_slot is None


def test_new_run_is_queued_in_the_task_queue_and_wants_a_slot() -> None:
    task = replace(TASK, queue="emails")
    d = reconcile(run(), task, None, T0 + 1, RNG)
    assert d.status["phase"] == "Queued"
    assert d.status["queue"] == "emails"
    assert d.status["enqueuedTime"] == iso(T0)
    assert d.wants_slot is not None and d.wants_slot.queue == "emails"


def test_default_queue_is_one_per_task() -> None:
    d = reconcile(run(), TASK, None, T0, RNG)
    assert d.status["queue"] == "send-email"


def test_delayed_run_waits_and_wakes_at_its_delay() -> None:
    d = reconcile(run(delay_until=T0 + 60), TASK, None, T0, RNG)
    assert d.status["phase"] == "Delayed"
    assert d.wants_slot is None
    assert d.wake_at == T0 + 60


def test_delay_passing_enqueues_and_ttl_counts_from_enqueue() -> None:
    r = run(delay_until=T0 + 60, ttl_seconds=30, phase=Phase.DELAYED,
            applied_delay_until=T0 + 60)
    d = reconcile(r, TASK, None, T0 + 60.2, RNG)
    assert d.status["phase"] == "Queued"
    assert d.status["enqueuedTime"] == iso(T0 + 60)
    assert d.status["expiresTime"] == iso(T0 + 90)
    assert d.wake_at == T0 + 90


def test_reschedule_while_delayed_moves_the_wakeup() -> None:
    r = run(delay_until=T0 + 300, phase=Phase.DELAYED, applied_delay_until=T0 + 60,
            generation=2, observed_generation=1)
    d = reconcile(r, TASK, None, T0 + 10, RNG)
    assert d.wake_at == T0 + 300
    assert condition(d.status, "Rescheduled")["status"] == "True"


def test_reschedule_after_leaving_delayed_is_refused_with_a_condition() -> None:
    r = run(delay_until=T0 + 300, phase=Phase.QUEUED, applied_delay_until=T0 + 60,
            enqueued_at=T0 + 60, generation=2, observed_generation=1)
    d = reconcile(r, TASK, None, T0 + 70, RNG)
    refused = condition(d.status, "Rescheduled")
    assert refused["status"] == "False"
    assert refused["reason"] == Reason.RESCHEDULE_REFUSED
    assert "only a Delayed run can be rescheduled" in str(refused["message"])
    # and it does not repeat once observed
    again = reconcile(replace(r, observed_generation=2), TASK, None, T0 + 71, RNG)
    assert "conditions" not in again.status


def test_queued_run_expires_after_ttl_if_never_started() -> None:
    r = run(phase=Phase.QUEUED, enqueued_at=T0, expires_at=T0 + 10)
    d = reconcile(r, TASK, None, T0 + 10, RNG)
    assert d.status["phase"] == "Expired"
    assert d.wants_slot is None


def test_ttl_zero_never_expires() -> None:
    d = reconcile(run(ttl_seconds=0), TASK, None, T0, RNG)
    assert d.status["expiresTime"] is None


def test_queue_limit_zero_fails_with_a_clear_reason() -> None:
    d = reconcile(run(queue_name="q", queue_limit=0), TASK, None, T0, RNG)
    assert d.status["phase"] == "Failed"
    assert "concurrencyLimit 0" in str(condition(d.status, "Succeeded")["message"])


def test_a_taskqueue_object_overrides_the_runs_limit() -> None:
    d = reconcile(run(queue_name="q", queue_limit=0), TASK,
                  QueueConfig("q", concurrency_limit=3), T0, RNG)
    assert d.status["phase"] == "Queued"


def test_a_total_cap_of_zero_fails_with_a_clear_reason() -> None:
    d = reconcile(run(queue_name="q"), TASK, QueueConfig("q", 5, total_limit=0), T0, RNG)
    assert d.status["phase"] == "Failed"
    message = str(condition(d.status, "Succeeded")["message"])
    assert "totalConcurrencyLimit 0" in message and "at least 1" in message


def test_the_runs_limit_applies_per_key_and_the_taskqueue_adds_its_cap() -> None:
    # The TaskQueue sets only a cap: the per-key limit still comes from the run.
    declared = QueueConfig("q", total_limit=10, paused=True)
    view = run(queue_name="q", queue_limit=1, concurrency_key="user-1")
    config = effective_queue(view, TASK, declared)
    assert (config.concurrency_limit, config.total_limit, config.paused) == (1, 10, True)


def test_a_stored_concurrency_key_limit_keeps_its_old_meaning() -> None:
    legacy = queue_config({"metadata": {"name": "users"},
                           "spec": {"concurrencyLimit": 100, "concurrencyKeyLimit": 1}})
    assert (legacy.concurrency_limit, legacy.total_limit, legacy.legacy_key_limit) == (
        1, 100, True)
    alone = queue_config({"metadata": {"name": "users"}, "spec": {"concurrencyKeyLimit": 2}})
    assert (alone.concurrency_limit, alone.total_limit) == (2, None)
    new = queue_config({"metadata": {"name": "users"},
                        "spec": {"concurrencyLimit": 1, "totalConcurrencyLimit": 100}})
    assert (new.concurrency_limit, new.total_limit, new.legacy_key_limit) == (1, 100, False)
    zero = reconcile(run(queue_name="users"), TASK, queue_config(
        {"metadata": {"name": "users"}, "spec": {"concurrencyLimit": 0,
                                                 "concurrencyKeyLimit": 1}}), T0, RNG)
    assert "has concurrencyLimit 0" in str(condition(zero.status, "Succeeded")["message"])


def test_start_merges_admission_and_creates_attempt_one() -> None:
    admitted = reconcile(run(), TASK, None, T0, RNG)
    d = start_attempt(run(), TASK, admitted, T0 + 0.5)
    assert CreateJob(1) in d.actions
    assert d.status["phase"] == "Executing"
    assert d.status["attempt"] == 1
    assert d.status["queue"] == "send-email"  # admission fields kept: one write
    assert d.status["attempts"][-1]["job"] == "r1-1"


def executing(**kw: object) -> RunView:
    base = run(phase=Phase.EXECUTING, attempt=1, enqueued_at=T0, started_at=T0,
               attempts=(AttemptRecord(1, "r1-1", started_at=T0),),
               job_exists_for=frozenset({1}), live_attempt=1)
    return replace(base, **kw)  # type: ignore[arg-type]


def ended(outcome: AttemptOutcome, n: int = 1, **kw: object) -> AttemptResult:
    return AttemptResult(number=n, outcome=outcome, finished_at=T0 + 5, **kw)  # type: ignore[arg-type]


def test_success_completes_with_output_and_releases_the_slot() -> None:
    r = executing(live_attempt=None,
                  ended_attempt=ended(AttemptOutcome.SUCCEEDED, output={"ok": 1},
                                      has_output=True, exit_code=0))
    d = reconcile(r, TASK, None, T0 + 6, RNG)
    assert d.status["phase"] == "Completed"
    assert d.status["output"] == {"ok": 1}
    assert ReleaseSlot() in d.actions
    assert not any(isinstance(a, PostEvent) for a in d.actions)  # no event for success


def test_slot_is_kept_until_the_pod_is_really_gone() -> None:
    r = executing(live_attempt=1, ended_attempt=ended(AttemptOutcome.SUCCEEDED))
    d = reconcile(r, TASK, None, T0 + 6, RNG)
    assert ReleaseSlot() not in d.actions


def test_failure_retries_with_backoff_until_max_attempts() -> None:
    r = executing(live_attempt=None, ended_attempt=ended(AttemptOutcome.FAILED, exit_code=1))
    d = reconcile(r, TASK, None, T0 + 6, RNG)
    assert d.status["phase"] == "Retrying"
    assert d.wake_at is not None and T0 + 7 <= d.wake_at <= T0 + 8
    last = replace(r, attempt=3, ended_attempt=ended(AttemptOutcome.FAILED, n=3),
                   attempts=(AttemptRecord(3, "r1-3", started_at=T0),))
    d3 = reconcile(last, TASK, None, T0 + 6, RNG)
    assert d3.status["phase"] == "Failed"


def test_run_max_attempts_overrides_the_task() -> None:
    task = replace(TASK, retry=RetryPolicy(max_attempts=5))
    r = executing(live_attempt=None, max_attempts=1,
                  ended_attempt=ended(AttemptOutcome.FAILED))
    assert reconcile(r, task, None, T0 + 6, RNG).status["phase"] == "Failed"


def test_abort_fails_at_once() -> None:
    r = executing(live_attempt=None, ended_attempt=ended(AttemptOutcome.ABORTED))
    d = reconcile(r, TASK, None, T0 + 6, RNG)
    assert d.status["phase"] == "Failed"
    assert condition(d.status, "Succeeded")["reason"] == Reason.ABORTED


def test_max_duration_ends_timed_out_without_retry() -> None:
    r = executing(live_attempt=None, ended_attempt=ended(AttemptOutcome.TIMED_OUT))
    assert reconcile(r, TASK, None, T0 + 6, RNG).status["phase"] == "TimedOut"


def test_oom_kill_is_a_crash_that_retries_and_ends_crashed() -> None:
    r = executing(live_attempt=None, ended_attempt=ended(AttemptOutcome.OOM_KILLED))
    assert reconcile(r, TASK, None, T0 + 6, RNG).status["phase"] == "Retrying"
    last = replace(r, attempt=3, ended_attempt=ended(AttemptOutcome.OOM_KILLED, n=3))
    assert reconcile(last, TASK, None, T0 + 6, RNG).status["phase"] == "Crashed"


def test_retrying_run_wants_a_slot_only_after_backoff() -> None:
    r = run(phase=Phase.RETRYING, attempt=1, enqueued_at=T0, next_attempt_at=T0 + 5)
    assert reconcile(r, TASK, None, T0 + 4, RNG).wants_slot is None
    assert reconcile(r, TASK, None, T0 + 5, RNG).wants_slot is not None
    d = start_attempt(r, TASK, reconcile(r, TASK, None, T0 + 5, RNG), T0 + 5)
    assert CreateJob(2) in d.actions


def test_retrying_run_gives_back_the_slot_once_its_failed_job_is_gone() -> None:
    # The pod ended before its Job did: the run turned Retrying while keeping its slot.
    r = executing(live_attempt=1, ended_attempt=ended(AttemptOutcome.FAILED, exit_code=1))
    d = reconcile(r, TASK, None, T0 + 6, RNG)
    assert d.status["phase"] == "Retrying" and ReleaseSlot() not in d.actions
    retrying = run(phase=Phase.RETRYING, attempt=1, enqueued_at=T0, next_attempt_at=T0 + 8,
                   job_exists_for=frozenset({1}))
    assert ReleaseSlot() not in reconcile(replace(retrying, live_attempt=1), TASK, None,
                                          T0 + 7, RNG).actions
    assert ReleaseSlot() in reconcile(retrying, TASK, None, T0 + 7, RNG).actions


def test_retry_never_revives_an_expired_run() -> None:
    r = run(phase=Phase.EXPIRED, attempt=0)
    d = reconcile(r, TASK, None, T0 + 100, RNG)
    assert "phase" not in d.status and d.wants_slot is None


def test_cancel_deletes_jobs_cancels_waited_children_and_keeps_slot_until_pods_go() -> None:
    r = executing(cancel=True, children_waited=("child-a",), generation=2)
    d = reconcile(r, TASK, None, T0 + 3, RNG)
    assert d.status["phase"] == "Canceled"
    assert DeleteJobs() in d.actions
    assert CancelChildren(("child-a",)) in d.actions
    assert ReleaseSlot() not in d.actions
    gone = replace(r, phase=Phase.CANCELED, live_attempt=None, job_exists_for=frozenset())
    assert ReleaseSlot() in reconcile(gone, TASK, None, T0 + 4, RNG).actions


def test_cancel_of_a_finished_run_changes_nothing() -> None:
    r = run(phase=Phase.COMPLETED, cancel=True)
    d = reconcile(r, TASK, None, T0, RNG)
    assert d.status == {} and DeleteJobs() not in d.actions


def test_waiting_parent_gives_back_its_slot_and_resumes_with_a_slot() -> None:
    r = executing(waiting_on_children=1)
    d = reconcile(r, TASK, None, T0 + 1, RNG)
    assert d.status["phase"] == "Waiting"
    assert ReleaseSlot() in d.actions
    waiting = replace(r, phase=Phase.WAITING, waiting_on_children=0)
    d2 = reconcile(waiting, TASK, None, T0 + 2, RNG)
    assert d2.wants_slot is not None
    d3 = start_attempt(waiting, TASK, d2, T0 + 2)
    assert d3.status["phase"] == "Executing"
    assert not any(isinstance(a, CreateJob) for a in d3.actions)


def test_a_vanished_job_is_a_lost_attempt_only_after_a_grace_period() -> None:
    r = executing(live_attempt=None, job_exists_for=frozenset())
    early = reconcile(r, TASK, None, T0 + 1, RNG)
    assert "phase" not in early.status
    assert early.wake_at == T0 + ATTEMPT_LOST_GRACE
    late = reconcile(r, TASK, None, T0 + ATTEMPT_LOST_GRACE, RNG)
    assert late.status["phase"] == "Retrying"


def test_reconcile_is_idempotent_for_a_settled_run() -> None:
    r = run(phase=Phase.QUEUED, enqueued_at=T0, observed_generation=1)
    d = reconcile(r, TASK, None, T0 + 1, RNG)
    assert d.status == {}


def test_job_names_are_deterministic_and_valid_for_long_runs() -> None:
    assert attempt_job_name("r1", 2) == "r1-2"
    long_a = "a" * 80
    long_b = "a" * 79 + "b"
    assert len(attempt_job_name(long_a, 100)) <= 63
    assert attempt_job_name(long_a, 1) != attempt_job_name(long_b, 1)
    assert attempt_job_name(long_a, 1) == attempt_job_name(long_a, 1)


def test_a_run_waiting_to_retry_fails_if_its_task_was_deleted() -> None:
    r = run(phase=Phase.RETRYING, attempt=1, enqueued_at=T0, next_attempt_at=T0 + 1)
    d = reconcile(r, None, None, T0 + 2, RNG)
    assert d.status["phase"] == "Failed"
    assert condition(d.status, "Succeeded")["reason"] == Reason.TASK_NOT_FOUND


def test_a_run_in_a_paused_queue_writes_its_condition_once() -> None:
    r = run(phase=Phase.QUEUED, enqueued_at=T0, observed_generation=1)
    paused = QueueConfig("send-email", paused=True)
    first = reconcile(r, TASK, paused, T0 + 1, RNG)
    assert condition(first.status, "Succeeded")["reason"] == Reason.QUEUE_PAUSED
    again = reconcile(r, TASK, paused, T0 + 2, RNG, tuple(first.status["conditions"]))
    assert again.status == {}


REFUSED = 'pods "r1-1-x" is forbidden: serviceaccount "nobody" not found'


def podless(**kw: object) -> RunView:
    fields: dict[str, object] = {"live_attempt": 1, "pod_missing_since": T0,
                                 "pod_create_error": REFUSED, "observed_generation": 1, **kw}
    return executing(**fields)


def test_a_job_without_a_pod_says_why_and_waits_for_the_job_controller_to_retry() -> None:
    d = reconcile(podless(), TASK, None, T0 + 5, RNG, pod_create_timeout=60)
    cond = condition(d.status, "Succeeded")
    assert (cond["reason"], cond["status"]) == (Reason.POD_NOT_CREATED, "Unknown")
    assert REFUSED in str(cond["message"]) and iso(T0 + 60) in str(cond["message"])
    assert "phase" not in d.status and d.actions == [] and d.wake_at == T0 + 60
    # Without the Job controller's word, a Job without a pod is only slow: nothing is said.
    quiet = reconcile(podless(pod_create_error=None), TASK, None, T0 + 600, RNG)
    assert quiet.status == {} and quiet.actions == []
    # Said once: the same decision again writes nothing.
    said = podless()
    again = reconcile(said, TASK, None, T0 + 6, RNG, tuple(d.status["conditions"]),
                      pod_create_timeout=60)
    assert again.status == {} and again.actions == []


def test_after_the_timeout_the_job_is_deleted_before_the_attempt_ends() -> None:
    d = reconcile(podless(), TASK, None, T0 + 60, RNG, pod_create_timeout=60)
    assert DeleteJobs(foreground=True) in d.actions
    assert "phase" not in d.status  # not ended yet: the Job (and any late pod) may remain
    assert d.status["attempts"][-1]["reason"] == Reason.POD_NOT_CREATED
    assert d.status["attempts"][-1]["message"] == REFUSED
    assert "finishedTime" not in d.status["attempts"][-1]
    assert ReleaseSlot() not in d.actions
    assert any(isinstance(a, PostEvent) and a.reason == Reason.POD_NOT_CREATED
               for a in d.actions)

    marked = executing(attempts=(AttemptRecord(1, "r1-1", started_at=T0,
                                               reason=Reason.POD_NOT_CREATED, message=REFUSED),),
                       live_attempt=None, observed_generation=1)
    # The Job is still there (being deleted, or a restart lost the delete): delete again.
    d = reconcile(marked, TASK, None, T0 + 61, RNG, pod_create_timeout=60)
    assert d.actions == [DeleteJobs(foreground=True)] and "phase" not in d.status
    # A pod created at the last moment still runs: wait for it.
    d = reconcile(replace(marked, job_exists_for=frozenset(), live_attempt=1), TASK, None,
                  T0 + 62, RNG, pod_create_timeout=60)
    assert d.status == {} and d.actions == []
    # Gone: the attempt ends with the Job controller's message and is retried.
    gone = replace(marked, job_exists_for=frozenset())
    d = reconcile(gone, TASK, None, T0 + 62, RNG, pod_create_timeout=60)
    assert d.status["phase"] == "Retrying" and ReleaseSlot() in d.actions
    assert d.status["attempts"][-1]["finishedTime"] == iso(T0 + 62)
    assert d.status["error"]["type"] == Reason.POD_NOT_CREATED
    assert REFUSED in d.status["error"]["message"]
    last = reconcile(replace(gone, max_attempts=1), TASK, None, T0 + 62, RNG)
    assert last.status["phase"] == "Failed"
    assert REFUSED in str(condition(last.status, "Succeeded")["message"])


def test_a_deleted_job_that_reports_failed_still_ends_with_the_pod_cause() -> None:
    marked = executing(attempts=(AttemptRecord(1, "r1-1", started_at=T0,
                                               reason=Reason.POD_NOT_CREATED, message=REFUSED),),
                       live_attempt=None, max_attempts=1,
                       ended_attempt=AttemptResult(1, AttemptOutcome.CRASHED,
                                                   reason="BackoffLimitExceeded"))
    d = reconcile(marked, TASK, None, T0 + 62, RNG)
    assert d.status["phase"] == "Failed"
    assert d.status["attempts"][-1]["reason"] == Reason.POD_NOT_CREATED


def test_a_pod_created_in_the_end_clears_the_reason() -> None:
    said = reconcile(podless(), TASK, None, T0 + 5, RNG, pod_create_timeout=60)
    created = executing(live_attempt=1, observed_generation=1)
    d = reconcile(created, TASK, None, T0 + 8, RNG, tuple(said.status["conditions"]),
                  pod_create_timeout=60)
    assert condition(d.status, "Succeeded")["reason"] == Reason.EXECUTING
    assert d.actions == []
