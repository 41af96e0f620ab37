"""Translate Kubernetes objects (plain JSON dicts) into the decision core's values: a TaskRun
into a RunView, a Task into TaskDefaults, a TaskQueue into QueueConfig, and an attempt's Job
and Pod into an AttemptResult. Pure functions."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from kubetasks.protocol.pod import (
    EXIT_ABORT,
    EXIT_SIGKILL,
    EXIT_SUCCESS,
    LABEL_ATTEMPT,
    LABEL_SCHEDULE_TYPE,
    decode_termination_message,
)
from kubetasks_operator.core.model import (
    AttemptOutcome,
    AttemptRecord,
    AttemptResult,
    Phase,
    QueueConfig,
    RetryPolicy,
    RunView,
    TaskDefaults,
)
from kubetasks_operator.core.schedules import DEFAULT_STARTING_DEADLINE, ScheduleState

Json = dict[str, Any]


def parse_time(value: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_time(value)


@functools.lru_cache(maxsize=16384)
def _parse_time(value: str) -> float | None:
    # The API server's date-time check is looser than Python's parser: it also passes a
    # lower-case "t" and "z" (read here), and any character before the fraction, offsets
    # such as +99:99 and the year 0 (unreadable: None; see RunView.invalid_delay).
    try:
        return dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        return None


def _int(value: object, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def task_defaults(obj: Json) -> TaskDefaults:
    spec = obj.get("spec") or {}
    queue = spec.get("queue") or {}
    retry = spec.get("retry") or {}
    defaults = RetryPolicy()
    return TaskDefaults(
        task_id=obj["metadata"]["name"],
        image=spec.get("image", ""),
        entrypoint=spec.get("entrypoint", ""),
        queue=queue.get("name"),
        queue_limit=_int(queue.get("concurrencyLimit")),
        retry=RetryPolicy(
            max_attempts=_int(retry.get("maxAttempts"), defaults.max_attempts) or 1,
            factor=float(retry.get("factor", defaults.factor)),
            min_timeout=float(retry.get("minTimeoutSeconds", defaults.min_timeout)),
            max_timeout=float(retry.get("maxTimeoutSeconds", defaults.max_timeout)),
            randomize=bool(retry.get("randomize", defaults.randomize)),
        ),
        ttl_seconds=_int(spec.get("ttlSeconds")),
        max_duration_seconds=_int(spec.get("maxDurationSeconds")),
        machine=spec.get("machine"),
    )


def queue_config(obj: Json) -> QueueConfig:
    spec = obj.get("spec") or {}
    limit = _int(spec.get("concurrencyLimit"))
    total = _int(spec.get("totalConcurrencyLimit"))
    key_limit = _int(spec.get("concurrencyKeyLimit"))
    if key_limit is not None:
        # Stored before concurrencyKeyLimit was retired (the API refuses it in new writes):
        # keep its meaning, never looser. It was the per-key limit inside concurrencyLimit,
        # which capped the whole queue; the runs without a key now share the key limit too.
        return QueueConfig(
            name=obj["metadata"]["name"], concurrency_limit=key_limit,
            total_limit=total if total is not None else limit,
            paused=bool(spec.get("paused", False)), legacy_key_limit=True,
        )
    return QueueConfig(
        name=obj["metadata"]["name"],
        concurrency_limit=limit,
        total_limit=total,
        paused=bool(spec.get("paused", False)),
    )


def attempt_number(obj: Json) -> int | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get(LABEL_ATTEMPT, ""))
    except ValueError:
        return None


def pod_is_live(pod: Json) -> bool:
    """A pod whose process may still run: not Succeeded or Failed yet."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def job_is_live(job: Json, pods: Iterable[Json]) -> bool:
    """A Job still counts while any of its pods runs, or until it has a finished pod or a
    finished condition. With ``backoffLimit: 0`` a finished pod is the attempt's end: the
    Job starts no other, so the slot is free before the Job controller (which syncs in
    batches) marks the Job finished."""
    pods = list(pods)
    if any(pod_is_live(p) for p in pods):
        return True
    if pods:
        return False
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return _job_finished(job) is None


def _job_finished(job: Json) -> tuple[str, str] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"], cond.get("reason") or ""
    return None


def _job_deadline_exceeded(job: Json | None) -> bool:
    if job is None:
        return False
    return any(
        c.get("reason") == "DeadlineExceeded" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _terminated(pod: Json) -> Json:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("terminated")
        if state:
            return dict(state)
    return {}


def attempt_result(number: int, job: Json | None, pods: list[Json]) -> AttemptResult | None:
    """How attempt ``number`` ended, or ``None`` while it has not ended."""
    finished_pods = [p for p in pods if not pod_is_live(p)]
    if any(pod_is_live(p) for p in pods):
        return None
    if finished_pods:
        pod = max(finished_pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))
        return _result_from_pod(number, job, pod)
    if job is not None:
        finished = _job_finished(job)
        if finished is None:
            return None
        kind, reason = finished
        if kind == "Complete":
            # Complete without a pod left to read: the output is gone with it.
            return AttemptResult(number, AttemptOutcome.SUCCEEDED, reason="Completed")
        outcome = AttemptOutcome.TIMED_OUT if reason == "DeadlineExceeded" else (
            AttemptOutcome.CRASHED)
        return AttemptResult(number, outcome, reason=reason or "JobFailed",
                             message=f"Job {job['metadata']['name']} failed ({reason})")
    return None


def _result_from_pod(number: int, job: Json | None, pod: Json) -> AttemptResult:
    status = pod.get("status") or {}
    terminated = _terminated(pod)
    exit_code = _int(terminated.get("exitCode"))
    term_reason = terminated.get("reason") or ""
    pod_reason = status.get("reason") or ""
    message = terminated.get("message")
    payload = decode_termination_message(message)
    started = parse_time(terminated.get("startedAt"))
    finished = parse_time(terminated.get("finishedAt"))

    if status.get("phase") == "Succeeded" and exit_code in (EXIT_SUCCESS, None):
        outcome = AttemptOutcome.SUCCEEDED
    elif pod_reason == "DeadlineExceeded" or _job_deadline_exceeded(job):
        outcome = AttemptOutcome.TIMED_OUT
    elif exit_code == EXIT_ABORT:
        outcome = AttemptOutcome.ABORTED
    elif term_reason == "OOMKilled":
        outcome = AttemptOutcome.OOM_KILLED
    elif exit_code is None or exit_code == EXIT_SIGKILL or exit_code > 128 or pod_reason:
        outcome = AttemptOutcome.CRASHED
    else:
        outcome = AttemptOutcome.FAILED

    reason = pod_reason or term_reason or outcome.value
    output: object = None
    has_output = False
    output_ref = None
    error = None
    if payload is not None:
        if payload.get("ok"):
            if isinstance(payload.get("outputRef"), dict):
                output_ref = payload["outputRef"]
            elif "output" in payload:
                output, has_output = payload["output"], True
        elif isinstance(payload.get("error"), dict):
            err = payload["error"]
            error = {k: str(err[k])[:32768] for k in ("type", "message", "stack") if k in err}
    human = None
    if error is not None:
        human = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    elif payload is None and message:
        human = message
    elif status.get("message"):
        human = str(status["message"])
    return AttemptResult(
        number=number, outcome=outcome, exit_code=exit_code, reason=reason[:128],
        message=(human or None) and human[:4096], started_at=started, finished_at=finished,
        output=output, has_output=has_output, output_ref=output_ref, error=error,
    )


def _records(status: Json) -> tuple[AttemptRecord, ...]:
    out = []
    for entry in status.get("attempts") or []:
        out.append(AttemptRecord(
            number=int(entry.get("number", 0)),
            job=str(entry.get("job", "")),
            started_at=parse_time(entry.get("startedTime")),
            finished_at=parse_time(entry.get("finishedTime")),
            exit_code=_int(entry.get("exitCode")),
            reason=entry.get("reason"),
            message=entry.get("message"),
        ))
    return tuple(out)


def run_view(
    run: Json,
    jobs: Mapping[int, Json],
    pods: Mapping[int, list[Json]],
    children: Iterable[Json] = (),
    batches: Iterable[Json] = (),
    pod_errors: Mapping[str, str] | None = None,
) -> RunView:
    """A TaskRun with its Jobs and Pods (by attempt number), the child runs and TaskBatches
    that name it as a waiting parent, and the Job controller's last FailedCreate message of
    each Job (by Job uid)."""
    meta = run["metadata"]
    spec = run.get("spec") or {}
    status = run.get("status") or {}
    queue = spec.get("queue") or {}
    attempt = _int(status.get("attempt"), 0) or 0
    numbers = set(jobs) | set(pods)
    unrecorded = _unrecorded_attempt(numbers, attempt)
    current = unrecorded or attempt
    ended = None
    if current and current in numbers:
        ended = attempt_result(current, jobs.get(current), pods.get(current, []))
    missing_since, create_error = _pod_missing(jobs.get(current), pods.get(current),
                                               pod_errors or {})
    waiting = _not_ended(children, _TERMINAL_NAMES)
    waited_batches = _not_ended(batches, _TERMINAL_BATCH_NAMES)
    phase_name = status.get("phase") or "Pending"
    return RunView(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=_int(meta.get("generation"), 1) or 1,
        created_at=parse_time(meta.get("creationTimestamp")) or 0.0,
        task_id=spec.get("task", ""),
        cancel=bool(spec.get("cancel", False)),
        delay_until=parse_time(spec.get("delayUntil")),
        invalid_delay=(spec["delayUntil"] if spec.get("delayUntil")
                       and parse_time(spec["delayUntil"]) is None else None),
        ttl_seconds=_int(spec.get("ttlSeconds")),
        queue_name=queue.get("name"),
        queue_limit=_int(queue.get("concurrencyLimit")),
        concurrency_key=spec.get("concurrencyKey"),
        priority=_int(spec.get("priority"), 0) or 0,
        max_attempts=_int(spec.get("maxAttempts")),
        max_duration_seconds=_int(spec.get("maxDurationSeconds")),
        machine=spec.get("machine"),
        waits_for_parent=((spec.get("parent") or {}).get("uid")
                          if (spec.get("parent") or {}).get("wait") else None),
        phase=Phase(phase_name) if phase_name in _PHASE_NAMES else Phase.PENDING,
        attempt=attempt,
        attempts=_records(status),
        status_queue=status.get("queue"),
        enqueued_at=parse_time(status.get("enqueuedTime")),
        expires_at=parse_time(status.get("expiresTime")),
        started_at=parse_time(status.get("startedTime")),
        next_attempt_at=parse_time(status.get("nextAttemptTime")),
        applied_delay_until=parse_time(status.get("delayUntil")),
        observed_generation=_int(status.get("observedGeneration"), 0) or 0,
        live_attempt=_live_attempt(jobs, pods, numbers),
        unrecorded_attempt=unrecorded,
        ended_attempt=ended,
        job_exists_for=frozenset(jobs),
        pod_missing_since=missing_since,
        pod_create_error=create_error,
        waiting_on_children=len(waiting) + len(waited_batches),
        children_waited=tuple(sorted(c["metadata"]["name"] for c in waiting)),
        batches_waited=tuple(sorted(b["metadata"]["name"] for b in waited_batches)),
    )


def _live_attempt(jobs: Mapping[int, Json], pods: Mapping[int, list[Json]],
                  numbers: set[int]) -> int | None:
    """The newest attempt whose Job (or, without a Job, one of whose pods) is still live."""
    live = None
    for number in sorted(numbers):
        job = jobs.get(number)
        attempt_pods = pods.get(number, [])
        alive = job_is_live(job, attempt_pods) if job is not None else any(
            pod_is_live(p) for p in attempt_pods)
        if alive:
            live = number
    return live


def _unrecorded_attempt(numbers: set[int], recorded: int) -> int | None:
    """A Job newer than the status says (the operator stopped between creating the Job and
    writing the status) is an unrecorded attempt: the core adopts it, never repeats it."""
    latest = max(numbers, default=0)
    return latest if latest > recorded else None


def _not_ended(objects: Iterable[Json], terminal: AbstractSet[str]) -> list[Json]:
    return [o for o in objects if (o.get("status") or {}).get("phase") not in terminal]


def _pod_missing(job: Json | None, pods: list[Json] | None, pod_errors: Mapping[str, str]
                 ) -> tuple[float | None, str | None]:
    """(since when, FailedCreate message) for a Job that has not finished, is not being
    deleted, and has no pod; (None, None) otherwise."""
    if job is None or pods or _job_finished(job) is not None:
        return None, None
    meta = job.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None, None
    return parse_time(meta.get("creationTimestamp")), pod_errors.get(str(meta.get("uid")))


_PHASE_NAMES = {p.value for p in Phase}
_TERMINAL_NAMES = {"Completed", "Failed", "Canceled", "Expired", "TimedOut", "Crashed"}
_TERMINAL_BATCH_NAMES = {"Completed", "PartiallyFailed", "Canceled", "Failed"}


# Spec fields of a TaskSchedule copied to each tick's run.
SCHEDULE_RUN_FIELDS = ("queue", "concurrencyKey", "ttlSeconds", "maxAttempts",
                       "maxDurationSeconds", "machine", "tags", "metadata")


def schedule_state(obj: Json, task_exists: bool, unfinished_runs: tuple[str, ...]
                   ) -> ScheduleState:
    """A TaskSchedule as the pure tick logic reads it."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    labels = meta.get("labels") or {}
    return ScheduleState(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        task=str(spec.get("task", "")),
        cron=str(spec.get("cron", "")),
        timezone=spec.get("timezone"),
        active=spec.get("active", True) is not False,
        created=parse_time(meta.get("creationTimestamp")) or 0.0,
        generation=int(meta.get("generation") or 1),
        concurrency_policy=str(spec.get("concurrencyPolicy") or "Allow"),
        starting_deadline_seconds=int(spec.get("startingDeadlineSeconds")
                                      or DEFAULT_STARTING_DEADLINE),
        schedule_type=("DECLARATIVE" if labels.get(LABEL_SCHEDULE_TYPE) == "declarative"
                       else "IMPERATIVE"),
        external_id=spec.get("externalID"),
        run_options={k: spec[k] for k in SCHEDULE_RUN_FIELDS if spec.get(k) is not None},
        status=obj.get("status") or {},
        task_exists=task_exists,
        unfinished_runs=unfinished_runs,
    )
