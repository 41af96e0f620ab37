"""The TaskRun lifecycle as pure functions: a run's view, its Task and queue, and the clock
in; the status to write, the actions to take and when to look again out.

    create ─► Delayed ─► Queued ─(slot)─► Executing ─► Completed
                 │         │ ttl              │ ├─► Retrying ─(backoff)─► Queued-like
                 ▼         ▼                  │ └─► Failed / TimedOut / Crashed
              Canceled   Expired              └─► Waiting (children) ─(slot)─► Executing
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Any

from kubetasks_operator.core.backoff import retry_delay
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

MAX_ATTEMPT_RECORDS = 20
# A started attempt whose Job never shows up in this long is taken as lost.
ATTEMPT_LOST_GRACE = 60.0
# An attempt whose Job has no pod and whose pod the Job controller failed to create
# (FailedCreate: a missing ServiceAccount, a pod spec the API refuses, a full quota) ends
# after this long from the Job's creation; the Job controller retries meanwhile (1 s, 2 s,
# 4 s .. 60 s apart), so a passing cause (a quota freed, an API hiccup) is waited out.
POD_CREATE_TIMEOUT = 60.0


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateJob:
    attempt: int


@dataclass(frozen=True, slots=True)
class DeleteJobs:
    """Delete every Job of the run (cancel). ``foreground``: each Job is removed only once
    its pods are gone, so a Job that is gone has no pod left that could still run."""

    foreground: bool = False


@dataclass(frozen=True, slots=True)
class CancelChildren:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelBatches:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReleaseSlot:
    pass


@dataclass(frozen=True, slots=True)
class PostEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = CreateJob | DeleteJobs | CancelChildren | CancelBatches | ReleaseSlot | PostEvent


@dataclass(frozen=True, slots=True)
class SlotRequest:
    queue: str
    concurrency_key: str | None
    score: float  # lower starts first: enqueue time minus priority


@dataclass
class Decision:
    status: dict[str, Any] = field(default_factory=dict)  # merge patch of .status
    actions: list[Action] = field(default_factory=list)
    wants_slot: SlotRequest | None = None
    wake_at: float | None = None

    def wake(self, at: float | None) -> None:
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at


def iso(t: float) -> str:
    """RFC 3339 with microseconds, as Kubernetes prints them."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- resolution ----------------------------------------------------------------------------


def resolve_queue(run: RunView, task: TaskDefaults | None) -> str:
    """The run's queue: its own, else its Task's, else one queue per task."""
    if run.queue_name:
        return run.queue_name
    if task is not None and task.queue:
        return task.queue
    return run.task_id


def effective_queue(
    run: RunView, task: TaskDefaults | None, declared: QueueConfig | None
) -> QueueConfig:
    """The limits that apply. The per-key limit (``concurrencyLimit``): a TaskQueue object
    wins, then the run's own, then the Task's. The queue's total cap and the paused flag come
    only from a TaskQueue."""
    name = resolve_queue(run, task)
    if declared is not None and declared.concurrency_limit is not None:
        return declared
    limit = run.queue_limit
    if limit is None and task is not None and task.queue in (None, name):
        limit = task.queue_limit
    return QueueConfig(
        name=name,
        concurrency_limit=limit,
        total_limit=declared.total_limit if declared else None,
        paused=declared.paused if declared else False,
        legacy_key_limit=declared.legacy_key_limit if declared else False,
    )


def _limit_zero(config: QueueConfig) -> str | None:
    """Why no run of this queue can ever start (a limit of 0), or None."""
    if config.concurrency_limit == 0:
        field = "concurrencyKeyLimit" if config.legacy_key_limit else "concurrencyLimit"
        return (f"queue {config.name!r} has {field} 0, so no run can ever start; set a limit "
                "of at least 1 (or pause the queue with spec.paused instead)")
    if config.total_limit == 0:
        if config.legacy_key_limit:
            return (f"queue {config.name!r} has concurrencyLimit 0, so no run can ever start; "
                    "set a limit of at least 1 (or pause the queue with spec.paused instead)")
        return (f"queue {config.name!r} has totalConcurrencyLimit 0, so no run can ever "
                "start; set it to at least 1, or leave it out for no cap over the queue's "
                "keys (pause the queue with spec.paused instead)")
    return None


def retry_policy(run: RunView, task: TaskDefaults | None) -> RetryPolicy:
    policy = task.retry if task is not None else RetryPolicy()
    if run.max_attempts is not None:
        policy = RetryPolicy(
            max_attempts=run.max_attempts, factor=policy.factor,
            min_timeout=policy.min_timeout, max_timeout=policy.max_timeout,
            randomize=policy.randomize,
        )
    return policy


def ttl_seconds(run: RunView, task: TaskDefaults | None) -> int:
    if run.ttl_seconds is not None:
        return run.ttl_seconds
    if task is not None and task.ttl_seconds is not None:
        return task.ttl_seconds
    return 0


def slot_score(run: RunView) -> float:
    base = run.enqueued_at if run.enqueued_at is not None else run.created_at
    return base - run.priority


# --- conditions ----------------------------------------------------------------------------


def with_condition(
    run: RunView,
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: float,
    existing: tuple[dict[str, Any], ...],
) -> list[dict[str, Any]]:
    """Set one condition by type; keep lastTransitionTime when the status did not change."""
    current = list(conditions) if conditions is not None else [dict(c) for c in existing]
    previous = next((c for c in current if c.get("type") == type_), None)
    entry = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": (
            previous["lastTransitionTime"]
            if previous and previous.get("status") == status and previous.get(
                "lastTransitionTime")
            else iso(now).split(".")[0] + "Z"
        ),
        "observedGeneration": run.generation,
    }
    current = [c for c in current if c.get("type") != type_] + [entry]
    return current


class _Builder:
    """Accumulates one decision for one run."""

    def __init__(self, run: RunView, now: float, rng: random.Random | None = None) -> None:
        self.run = run
        self.now = now
        self.rng = rng or random.Random(0)
        self.decision = Decision()
        self._conditions: list[dict[str, Any]] | None = None

    def set(self, **fields: Any) -> None:
        self.decision.status.update(fields)

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        current = self._conditions if self._conditions is not None else self.run_conditions
        same = next((c for c in current if c.get("type") == type_), None)
        if same is not None and (same.get("status"), same.get("reason"),
                                 same.get("message")) == (status, reason, message[:32768]):
            return  # unchanged: writing it again would only cost a write and an event
        self._conditions = with_condition(
            self.run, self._conditions, type_, status, reason, message, self.now,
            self.run_conditions,
        )
        self.decision.status["conditions"] = self._conditions

    run_conditions: tuple[dict[str, Any], ...] = ()

    def phase(self, phase: Phase, reason: str, message: str) -> None:
        self.set(phase=phase.value)
        status = (
            "True" if phase is Phase.COMPLETED
            else "False" if phase in (Phase.FAILED, Phase.CANCELED, Phase.EXPIRED,
                                      Phase.TIMED_OUT, Phase.CRASHED)
            else "Unknown"
        )
        self.condition("Succeeded", status, reason, message)

    def wake(self, at: float | None) -> None:
        self.decision.wake(at)

    def act(self, action: Action) -> None:
        self.decision.actions.append(action)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.act(PostEvent(type_, reason, message))

    def observe(self) -> None:
        if self.run.observed_generation != self.run.generation:
            self.set(observedGeneration=self.run.generation)


# --- the lifecycle -------------------------------------------------------------------------


def reconcile(
    run: RunView,
    task: TaskDefaults | None,
    queue: QueueConfig | None,
    now: float,
    rng: random.Random,
    conditions: tuple[dict[str, Any], ...] = (),
    pod_create_timeout: float = POD_CREATE_TIMEOUT,
) -> Decision:
    """Decide what to do with one run now. Idempotent: the same inputs give the same
    decision, and a decision already applied yields an empty one."""
    b = _Builder(run, now, rng)
    b.run_conditions = conditions

    if run.terminal:
        _settle_terminal(b)
        return b.decision
    b.observe()
    if run.cancel:
        _cancel(b)
        return b.decision
    if run.invalid_delay is not None and run.phase in (Phase.PENDING, Phase.DELAYED):
        b.phase(Phase.FAILED, Reason.INVALID_DELAY,
                f"spec.delayUntil {run.invalid_delay!r} is not a time kubetasks can read; "
                "trigger again with an RFC 3339 time such as 2030-12-01T00:00:00Z")
        b.set(finishedTime=iso(now))
        b.event("Warning", Reason.INVALID_DELAY, f"unreadable delayUntil {run.invalid_delay!r}")
        return b.decision
    # Without its Task a run cannot start an attempt (the Task holds the image); a running
    # attempt may still finish.
    if task is None and run.phase not in (Phase.EXECUTING, Phase.WAITING):
        b.phase(Phase.FAILED, Reason.TASK_NOT_FOUND,
                f"no Task {run.task_id!r} in namespace {run.namespace}; deploy it "
                "(`kubetasks deploy`) and trigger again")
        b.set(finishedTime=iso(now))
        b.event("Warning", Reason.TASK_NOT_FOUND,
                f"Task {run.task_id!r} does not exist in namespace {run.namespace}")
        return b.decision

    config = effective_queue(run, task, queue)
    blocked = _limit_zero(config)
    if blocked is not None and run.attempt == 0:
        b.phase(Phase.FAILED, Reason.INVALID_QUEUE, blocked)
        b.set(finishedTime=iso(now), queue=config.name)
        b.event("Warning", Reason.INVALID_QUEUE, blocked)
        return b.decision

    _refuse_late_reschedule(b)
    if run.unrecorded_attempt is not None:
        _adopt(b, run.unrecorded_attempt)

    phase = b.run.phase
    if phase is Phase.PENDING:
        _admit(b, task, config)
    elif phase is Phase.DELAYED:
        _delayed(b, task, config)
    elif phase is Phase.QUEUED:
        _queued(b, config)
    elif phase is Phase.RETRYING:
        _retrying(b, config)
    elif phase is Phase.EXECUTING:
        _executing(b, task, pod_create_timeout)
    elif phase is Phase.WAITING:
        _waiting(b, task, config)
    return b.decision


def _adopt(b: _Builder, number: int) -> None:
    """A Job for attempt ``number`` exists but the status never said so: take it as the
    current attempt instead of starting another one."""
    run = b.run
    started = b.now
    records = _records_as_status(run)
    if not any(r["number"] == number for r in records):
        records.append({"number": number, "job": attempt_job_name(run.name, number),
                        "startedTime": iso(started)})
    records = records[-MAX_ATTEMPT_RECORDS:]
    b.phase(Phase.EXECUTING, Reason.EXECUTING, f"attempt {number} found running (adopted)")
    b.set(attempt=number, attempts=records, nextAttemptTime=None)
    if run.started_at is None:
        b.set(startedTime=iso(started))
    b.run = replace(
        run, phase=Phase.EXECUTING, attempt=number, unrecorded_attempt=None,
        started_at=run.started_at or started,
        attempts=(*[a for a in run.attempts if a.number != number],
                  AttemptRecord(number, attempt_job_name(run.name, number), started)),
    )


def _settle_terminal(b: _Builder) -> None:
    run = b.run
    if run.live_attempt is None:
        b.act(ReleaseSlot())
    elif run.phase is Phase.CANCELED and run.job_exists_for:
        b.act(DeleteJobs())


def _cancel(b: _Builder) -> None:
    run = b.run
    if run.job_exists_for:
        b.act(DeleteJobs())
    if run.children_waited:
        b.act(CancelChildren(run.children_waited))
    if run.batches_waited:
        b.act(CancelBatches(run.batches_waited))
    if run.live_attempt is None:
        b.act(ReleaseSlot())
    b.phase(Phase.CANCELED, Reason.CANCELED, "canceled by request (spec.cancel)")
    b.set(finishedTime=iso(b.now), nextAttemptTime=None)
    b.event("Normal", Reason.CANCELED, "run canceled")


def _delay_moved(run: RunView) -> bool:
    a, b = run.delay_until, run.applied_delay_until
    if a is None or b is None:
        return a is not b
    return abs(a - b) > 1e-3


def _refuse_late_reschedule(b: _Builder) -> None:
    run = b.run
    moved = _delay_moved(run)
    late = run.phase not in (Phase.PENDING, Phase.DELAYED)
    if moved and late and run.observed_generation != run.generation:
        b.condition(
            "Rescheduled", "False", Reason.RESCHEDULE_REFUSED,
            f"spec.delayUntil changed while the run is {run.phase.value}; only a Delayed "
            "run can be rescheduled. Trigger a new run to run it at another time",
        )
        b.event("Warning", Reason.RESCHEDULE_REFUSED,
                f"delayUntil changed after the run left Delayed ({run.phase.value})")


def _enqueue(b: _Builder, task: TaskDefaults | None, config: QueueConfig) -> None:
    run = b.run
    # A delayed run is enqueued at its delay; otherwise at its trigger time. The TTL
    # counts from there, even if the operator was down.
    enqueued = max(run.created_at, run.delay_until or 0.0)
    ttl = ttl_seconds(run, task)
    b.phase(Phase.QUEUED, Reason.QUEUED, f"waiting for a slot in queue {config.name!r}")
    b.set(queue=config.name, enqueuedTime=iso(enqueued),
          expiresTime=iso(enqueued + ttl) if ttl > 0 else None)
    if run.delay_until is not None:
        b.set(delayUntil=iso(run.delay_until))
    if run.concurrency_key is not None:
        b.set(concurrencyKey=run.concurrency_key)
    b.run = replace(run, phase=Phase.QUEUED, enqueued_at=enqueued,
                    expires_at=enqueued + ttl if ttl > 0 else None)
    _queued(b, config)


def _admit(b: _Builder, task: TaskDefaults | None, config: QueueConfig) -> None:
    run = b.run
    if run.delay_until is not None and run.delay_until > b.now:
        b.phase(Phase.DELAYED, Reason.DELAYED, f"delayed until {iso(run.delay_until)}")
        b.set(queue=config.name, delayUntil=iso(run.delay_until))
        b.wake(run.delay_until)
        return
    _enqueue(b, task, config)


def _delayed(b: _Builder, task: TaskDefaults | None, config: QueueConfig) -> None:
    run = b.run
    if run.delay_until is not None and run.delay_until > b.now:
        if _delay_moved(run):
            b.set(delayUntil=iso(run.delay_until))
            b.condition("Rescheduled", "True", Reason.RESCHEDULED,
                        f"delay moved to {iso(run.delay_until)}")
            b.set(phase=Phase.DELAYED.value)
            b.condition("Succeeded", "Unknown", Reason.DELAYED,
                        f"delayed until {iso(run.delay_until)}")
            b.event("Normal", Reason.RESCHEDULED, f"delayed until {iso(run.delay_until)}")
        b.wake(run.delay_until)
        return
    _enqueue(b, task, config)


def _queued(b: _Builder, config: QueueConfig) -> None:
    run = b.run
    if run.attempt == 0 and run.expires_at is not None and b.now >= run.expires_at:
        b.phase(Phase.EXPIRED, Reason.EXPIRED,
                f"not started within its TTL (expired at {iso(run.expires_at)})")
        b.set(finishedTime=iso(b.now))
        b.event("Warning", Reason.EXPIRED, "run expired before it could start")
        return
    if config.paused:
        b.condition("Succeeded", "Unknown", Reason.QUEUE_PAUSED,
                    f"queue {config.name!r} is paused")
    b.decision.wants_slot = SlotRequest(config.name, run.concurrency_key, slot_score(run))
    if run.attempt == 0:
        b.wake(run.expires_at)


def _retrying(b: _Builder, config: QueueConfig) -> None:
    run = b.run
    if run.next_attempt_at is not None and run.next_attempt_at > b.now:
        if run.live_attempt is None:
            # The failed attempt's pod ended before its Job said so, so the slot was kept
            # when the run turned Retrying: give it back now, not after the backoff.
            b.act(ReleaseSlot())
        b.wake(run.next_attempt_at)
        return
    b.decision.wants_slot = SlotRequest(config.name, run.concurrency_key, slot_score(run))


def _executing(b: _Builder, task: TaskDefaults | None, pod_create_timeout: float) -> None:
    run = b.run
    result = run.ended_attempt
    marked = _marked_pod_not_created(run)
    if result is not None and result.number == run.attempt:
        if marked is not None and result.started_at is None and result.exit_code is None:
            # The Job we deleted for want of a pod said Failed on its way out: the cause
            # recorded before the delete says more than "JobFailed".
            result = _pod_not_created_result(run, marked, b.now)
        _attempt_ended(b, task, result)
        return
    if run.waiting_on_children > 0:
        b.phase(Phase.WAITING, Reason.WAITING,
                f"waiting for {_waited(run)}; the queue slot is free meanwhile")
        b.act(ReleaseSlot())
        return
    if marked is not None:
        if run.attempt in run.job_exists_for:
            b.act(DeleteJobs(foreground=True))  # again, after a restart or a failed delete
        elif run.live_attempt is None:
            _attempt_ended(b, task, _pod_not_created_result(run, marked, b.now))
        return
    if run.pod_missing_since is not None and run.pod_create_error is not None:
        _pod_not_created(b, run.pod_missing_since, run.pod_create_error, pod_create_timeout)
        return
    if _condition_reason(b) == Reason.POD_NOT_CREATED and run.pod_missing_since is None:
        # The Job controller did create the pod in the end.
        b.condition("Succeeded", "Unknown", Reason.EXECUTING,
                    f"attempt {run.attempt} running as Job "
                    f"{attempt_job_name(run.name, run.attempt)}")
    if (
        run.live_attempt is None
        and run.attempt not in run.job_exists_for
        and run.attempts
        and run.attempts[-1].started_at is not None
    ):
        started = run.attempts[-1].started_at
        if b.now - started >= ATTEMPT_LOST_GRACE:
            lost = AttemptResult(
                number=run.attempt, outcome=AttemptOutcome.CRASHED,
                reason=Reason.ATTEMPT_LOST,
                message="the attempt's Job disappeared before it reported a result",
                finished_at=b.now,
            )
            _attempt_ended(b, task, lost)
        else:
            b.wake(started + ATTEMPT_LOST_GRACE)


def _condition_reason(b: _Builder) -> str | None:
    current = b._conditions if b._conditions is not None else b.run_conditions
    succeeded = next((c for c in current if c.get("type") == "Succeeded"), None)
    return None if succeeded is None else succeeded.get("reason")


def _marked_pod_not_created(run: RunView) -> AttemptRecord | None:
    """The current attempt's record, if it says its Job is being deleted for want of a
    pod (written before the delete, so a restart carries the delete through)."""
    record = run.attempts[-1] if run.attempts else None
    if (record is not None and record.number == run.attempt
            and record.reason == Reason.POD_NOT_CREATED and record.finished_at is None):
        return record
    return None


def _pod_not_created(b: _Builder, since: float, error: str, timeout: float) -> None:
    """The Job controller failed to create the current attempt's pod. Until ``timeout``
    after the Job's creation, say why and wait (it retries); then record the cause and delete
    the Job, in the foreground: the attempt ends only once the Job, and with it any pod
    created at the last moment, is gone, so no attempt can ever run beside the next one."""
    run = b.run
    job = attempt_job_name(run.name, run.attempt)
    cause = error[:1024]
    if b.now - since < timeout:
        b.condition(
            "Succeeded", "Unknown", Reason.POD_NOT_CREATED,
            f"attempt {run.attempt}: the Job controller cannot create the pod of Job {job} "
            f"({cause}); the attempt ends at {iso(since + timeout)} if no pod is created "
            "by then. Fix the Task (kubectl describe job shows the same)",
        )
        b.wake(since + timeout)
        return
    records = _records_as_status(run)
    for entry in records:
        if entry["number"] == run.attempt:
            entry["reason"] = Reason.POD_NOT_CREATED
            entry["message"] = error[:4096]
    b.set(attempts=records)
    b.condition(
        "Succeeded", "Unknown", Reason.POD_NOT_CREATED,
        f"attempt {run.attempt}: no pod could be created in {timeout:.0f} s ({cause}); "
        f"deleting Job {job}, then the attempt ends",
    )
    b.act(DeleteJobs(foreground=True))
    b.event("Warning", Reason.POD_NOT_CREATED,
            f"attempt {run.attempt}: Job {job} could not create its pod: {cause}")


def _pod_not_created_result(run: RunView, record: AttemptRecord, now: float
                            ) -> AttemptResult:
    cause = record.message or "the Job controller could not create the pod"
    return AttemptResult(
        number=run.attempt, outcome=AttemptOutcome.FAILED, reason=Reason.POD_NOT_CREATED,
        message=cause, finished_at=now,
        error={"type": Reason.POD_NOT_CREATED,
               "message": f"the attempt's pod could not be created: {cause}"},
    )


def _waited(run: RunView) -> str:
    runs, batches = len(run.children_waited), len(run.batches_waited)
    parts = [f"{runs} child run(s)"] if runs or not batches else []
    if batches:
        parts.append(f"{batches} batch(es)")
    return " and ".join(parts)


def _waiting(b: _Builder, task: TaskDefaults | None, config: QueueConfig) -> None:
    run = b.run
    result = run.ended_attempt
    if result is not None and result.number == run.attempt:
        _attempt_ended(b, task, result)
        return
    if run.waiting_on_children == 0:
        b.decision.wants_slot = SlotRequest(config.name, run.concurrency_key, slot_score(run))


def _attempt_record(run: RunView, result: AttemptResult) -> list[dict[str, Any]]:
    records = _records_as_status(run)[-MAX_ATTEMPT_RECORDS:]
    for entry in records:
        if entry["number"] != result.number:
            continue
        if result.started_at is not None:
            entry["startedTime"] = iso(result.started_at)
        entry["finishedTime"] = iso(result.finished_at or 0.0)
        if result.exit_code is not None:
            entry["exitCode"] = result.exit_code
        entry["reason"] = (result.reason or result.outcome.value)[:128]
        if result.message:
            entry["message"] = result.message[:4096]
    return records


def _attempt_ended(b: _Builder, task: TaskDefaults | None, result: AttemptResult) -> None:
    run = b.run
    b.set(attempts=_attempt_record(run, result))
    if run.live_attempt is None:
        b.act(ReleaseSlot())
    finished = iso(result.finished_at or b.now)
    outcome = result.outcome
    if outcome is AttemptOutcome.SUCCEEDED:
        b.phase(Phase.COMPLETED, Reason.SUCCEEDED, f"attempt {result.number} succeeded")
        b.set(finishedTime=finished, error=None)
        if result.output_ref is not None:
            b.set(outputRef=result.output_ref, output=None)
        elif result.has_output:
            b.set(output=result.output)
        return
    if result.error is not None:
        b.set(error=result.error)
    elif result.message:
        b.set(error={"type": outcome.value, "message": result.message[:32768]})
    if outcome is AttemptOutcome.ABORTED:
        cause = (result.error or {}).get("type") or "AbortTaskRunError"
        b.phase(Phase.FAILED, Reason.ABORTED,
                f"attempt {result.number} aborted ({cause[:128]}): not retried")
        b.set(finishedTime=finished)
        b.event("Warning", Reason.ABORTED, f"attempt {result.number} aborted; no retry")
        return
    if outcome is AttemptOutcome.TIMED_OUT:
        b.phase(Phase.TIMED_OUT, Reason.TIMED_OUT,
                f"attempt {result.number} ran longer than its max duration: not retried")
        b.set(finishedTime=finished)
        b.event("Warning", Reason.TIMED_OUT, f"attempt {result.number} exceeded max duration")
        return
    policy = retry_policy(run, task)
    crashed = outcome in (AttemptOutcome.CRASHED, AttemptOutcome.OOM_KILLED)
    what = (result.reason or outcome.value)
    if result.reason == Reason.POD_NOT_CREATED and result.message:
        what = f"{what}: {result.message[:1024]}"
    if result.number < policy.max_attempts:
        delay = retry_delay(policy, result.number, b.rng)
        b.phase(Phase.RETRYING, Reason.RETRYING,
                f"attempt {result.number} of {policy.max_attempts} ended ({what}); next in "
                f"{delay:.1f} s")
        b.set(nextAttemptTime=iso(b.now + delay))
        b.event("Warning", Reason.RETRYING,
                f"attempt {result.number} ended ({what}); retrying in {delay:.1f} s")
        b.wake(b.now + delay)
        return
    final = Phase.CRASHED if crashed else Phase.FAILED
    reason = Reason.CRASHED if crashed else Reason.FAILED
    b.phase(final, reason,
            f"attempt {result.number} of {policy.max_attempts} ended ({what}); no attempts left")
    b.set(finishedTime=finished, nextAttemptTime=None)
    b.event("Warning", reason, f"run failed after {result.number} attempt(s): {what}")


def start_attempt(
    run: RunView, task: TaskDefaults, decision: Decision, now: float,
    conditions: tuple[dict[str, Any], ...] = (),
) -> Decision:
    """The run got a slot: a new attempt (Queued, Retrying) or a resume (Waiting).

    Merges into ``decision`` (the admission patch, if any) so admission and start are one
    write.
    """
    status = decision.status
    phase = Phase(status.get("phase", run.phase.value))
    b = _Builder(run, now)
    b.run_conditions = conditions
    b.decision = decision
    existing = status.get("conditions")
    b._conditions = list(existing) if existing is not None else None
    if phase is Phase.WAITING:
        b.phase(Phase.EXECUTING, Reason.EXECUTING,
                f"children finished; attempt {run.attempt} continues")
        return b.decision
    number = run.attempt + 1
    job = attempt_job_name(run.name, number)
    records = [
        {k: v for k, v in entry.items()}
        for entry in status.get("attempts", _records_as_status(run))
    ][-(MAX_ATTEMPT_RECORDS - 1):]
    records.append({"number": number, "job": job, "startedTime": iso(now)})
    b.act(CreateJob(number))
    b.phase(Phase.EXECUTING, Reason.EXECUTING, f"attempt {number} running as Job {job}")
    b.set(attempt=number, attempts=records, nextAttemptTime=None)
    if run.started_at is None:
        b.set(startedTime=iso(now))
    b.decision.wants_slot = None
    b.decision.wake_at = None
    return b.decision


def _records_as_status(run: RunView) -> list[dict[str, Any]]:
    out = []
    for rec in run.attempts:
        entry: dict[str, Any] = {"number": rec.number, "job": rec.job}
        if rec.started_at is not None:
            entry["startedTime"] = iso(rec.started_at)
        if rec.finished_at is not None:
            entry["finishedTime"] = iso(rec.finished_at)
        if rec.exit_code is not None:
            entry["exitCode"] = rec.exit_code
        if rec.reason:
            entry["reason"] = rec.reason
        if rec.message:
            entry["message"] = rec.message
        out.append(entry)
    return out


def attempt_job_name(run_name: str, attempt: int) -> str:
    """Job ``<run>-<n>``. Job names must fit a label value (63 characters): a longer run
    name is cut and a hash of the full name keeps it unique."""
    name = f"{run_name}-{attempt}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:10]
    suffix = f"-{digest}-{attempt}"
    return run_name[: 63 - len(suffix)].rstrip("-.") + suffix
