"""What the decision core knows about the world: plain, immutable values built by the
adapters from TaskRuns, Tasks, TaskQueues, Jobs and Pods. No clients, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    DELAYED = "Delayed"
    QUEUED = "Queued"
    EXECUTING = "Executing"
    WAITING = "Waiting"
    RETRYING = "Retrying"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    EXPIRED = "Expired"
    TIMED_OUT = "TimedOut"
    CRASHED = "Crashed"


TERMINAL = frozenset(
    {Phase.COMPLETED, Phase.FAILED, Phase.CANCELED, Phase.EXPIRED, Phase.TIMED_OUT,
     Phase.CRASHED}
)
# Phases in which a run may hold a queue slot.
SLOT_PHASES = frozenset({Phase.EXECUTING})


class Reason:
    """Reasons on the ``Succeeded`` condition and on Events (CamelCase, stable)."""

    TASK_NOT_FOUND = "TaskNotFound"
    INVALID_DELAY = "InvalidDelay"
    INVALID_QUEUE = "InvalidQueue"
    DELAYED = "Delayed"
    QUEUED = "Queued"
    QUEUE_PAUSED = "QueuePaused"
    EXECUTING = "Executing"
    WAITING = "WaitingForChildren"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "AttemptsExhausted"
    ABORTED = "Aborted"
    CANCELED = "Canceled"
    EXPIRED = "TTLExpired"
    TIMED_OUT = "MaxDurationExceeded"
    CRASHED = "Crashed"
    ATTEMPT_LOST = "AttemptLost"
    POD_NOT_CREATED = "PodNotCreated"
    RESCHEDULE_REFUSED = "RescheduleRefused"
    RESCHEDULED = "Rescheduled"


class AttemptOutcome(StrEnum):
    """How one attempt ended, as read from its Job and Pod."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # the task raised: retryable
    ABORTED = "Aborted"  # the task raised AbortTaskRunError: no retry
    TIMED_OUT = "TimedOut"  # activeDeadlineSeconds (max duration)
    OOM_KILLED = "OOMKilled"  # crashed: retryable
    CRASHED = "Crashed"  # killed by a signal, lost pod, node failure: retryable
    CANCELED = "Canceled"  # we deleted it


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Trigger.dev's defaults: 3 attempts, factor 2, 1 s .. 10 s, randomized."""

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0
    max_timeout: float = 10.0
    randomize: bool = True


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    """The parts of a ``Task`` that runs inherit."""

    task_id: str
    image: str
    entrypoint: str
    queue: str | None = None
    queue_limit: int | None = None
    retry: RetryPolicy = RetryPolicy()
    ttl_seconds: int | None = None
    max_duration_seconds: int | None = None
    machine: str | None = None


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue's limits. ``concurrency_limit`` applies to each concurrency key on its own (the
    runs without a key share one more lane of that size), as Trigger.dev's concurrencyKey
    makes one queue per key value; ``total_limit`` caps all runs of the queue together."""

    name: str
    concurrency_limit: int | None = None  # per key (and for the keyless runs); None: none
    total_limit: int | None = None  # every key of the queue together; None: no cap
    paused: bool = False
    # The TaskQueue still sets the retired concurrencyKeyLimit (read with its old meaning).
    legacy_key_limit: bool = False


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What an attempt's Job and Pod say once it has ended."""

    number: int
    outcome: AttemptOutcome
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: object = None
    has_output: bool = False
    output_ref: dict[str, object] | None = None
    error: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    number: int
    job: str
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    """One TaskRun with what is known about its attempts, as the core sees it."""

    namespace: str
    name: str
    uid: str
    generation: int
    created_at: float
    task_id: str
    # spec
    cancel: bool = False
    delay_until: float | None = None
    invalid_delay: str | None = None  # spec.delayUntil when it is not a readable time
    ttl_seconds: int | None = None
    queue_name: str | None = None
    queue_limit: int | None = None
    concurrency_key: str | None = None
    priority: int = 0
    max_attempts: int | None = None
    max_duration_seconds: int | None = None
    machine: str | None = None
    waits_for_parent: str | None = None  # uid of the parent that waits on this run
    # status (as last written)
    phase: Phase = Phase.PENDING
    attempt: int = 0
    attempts: tuple[AttemptRecord, ...] = ()
    status_queue: str | None = None
    enqueued_at: float | None = None
    expires_at: float | None = None
    started_at: float | None = None
    next_attempt_at: float | None = None
    applied_delay_until: float | None = None  # the delayUntil the status was computed from
    observed_generation: int = 0
    # observations of attempts
    live_attempt: int | None = None  # attempt whose Job or Pod is still running
    unrecorded_attempt: int | None = None  # a Job newer than status.attempt (adopt it)
    ended_attempt: AttemptResult | None = None  # result of the current attempt, if ended
    job_exists_for: frozenset[int] = frozenset()  # attempt numbers with a Job present
    # The current attempt's Job exists, has not finished and no pod of it was ever seen:
    # since when (the Job's creation), and the Job controller's last FailedCreate message.
    pod_missing_since: float | None = None
    pod_create_error: str | None = None
    waiting_on_children: int = 0  # children and batches with parent.wait not yet ended
    children_waited: tuple[str, ...] = field(default=())  # names of those child runs
    batches_waited: tuple[str, ...] = field(default=())  # names of those TaskBatches

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL
