"""kubetasks: Kubernetes-native background tasks for Python.

>>> from kubetasks import task, tasks, runs, batch, queue, idempotency_keys, RetryOptions
>>> @task(id="send-email", queue=queue("emails", concurrency_limit=5),
...       retry=RetryOptions(max_attempts=3))
... def send_email(payload: dict, ctx) -> dict:
...     return {"sent": payload["to"]}
>>> handle = send_email.trigger({"to": "a@example.com"}, delay="10m")   # doctest: +SKIP
>>> runs.retrieve(handle.id).status                                     # doctest: +SKIP
'Delayed'
"""

from typing import TYPE_CHECKING, Any

from kubetasks import batch, idempotency_keys, runs, schedules, tasks
from kubetasks._internal.client import Client, configure
from kubetasks.batch import Batch, BatchHandle, BatchItem
from kubetasks.context import Context
from kubetasks.errors import (
    AbortTaskRunError,
    ApiError,
    BatchNotFoundError,
    BatchPollTimeoutError,
    BatchTooLargeError,
    IdempotencyKeyConflictError,
    InvalidBatchError,
    InvalidDelayError,
    InvalidDurationError,
    InvalidOptionError,
    InvalidPayloadError,
    InvalidScheduleError,
    KubeConfigError,
    KubetasksError,
    MetadataTooLargeError,
    MissingDependencyError,
    NotInTaskError,
    OutputTooLargeError,
    PayloadIntegrityError,
    PayloadNotSerializableError,
    PayloadTooLargeError,
    RunNotDelayedError,
    RunPollTimeoutError,
    ScheduleConflictError,
    ScheduleNotFoundError,
    StorageNotConfiguredError,
    TaskDefinitionError,
    TaskRunCanceledError,
    TaskRunFailedError,
    TaskRunNotFoundError,
)
from kubetasks.handles import Result, Run, RunAttempt, RunError, RunHandle
from kubetasks.idempotency_keys import IdempotencyKey
from kubetasks.options import Queue, RetryOptions, TriggerOptionsDict, queue
from kubetasks.protocol.storage import StorageSettings
from kubetasks.schedules import CronSchedule, Schedule, ScheduleCondition, schedule
from kubetasks.tasks import Task, task

if TYPE_CHECKING:
    from kubetasks.scheduled_payload import ScheduledPayload

__version__ = "0.1.0"

__all__ = [
    "AbortTaskRunError",
    "ApiError",
    "Batch",
    "BatchHandle",
    "BatchItem",
    "BatchNotFoundError",
    "BatchPollTimeoutError",
    "BatchTooLargeError",
    "Client",
    "Context",
    "CronSchedule",
    "IdempotencyKey",
    "IdempotencyKeyConflictError",
    "InvalidBatchError",
    "InvalidDelayError",
    "InvalidDurationError",
    "InvalidOptionError",
    "InvalidPayloadError",
    "InvalidScheduleError",
    "KubeConfigError",
    "KubetasksError",
    "MetadataTooLargeError",
    "MissingDependencyError",
    "NotInTaskError",
    "OutputTooLargeError",
    "PayloadIntegrityError",
    "PayloadNotSerializableError",
    "PayloadTooLargeError",
    "Queue",
    "Result",
    "RetryOptions",
    "Run",
    "RunAttempt",
    "RunError",
    "RunHandle",
    "RunNotDelayedError",
    "RunPollTimeoutError",
    "Schedule",
    "ScheduleCondition",
    "ScheduleConflictError",
    "ScheduleNotFoundError",
    "ScheduledPayload",
    "StorageNotConfiguredError",
    "StorageSettings",
    "Task",
    "TaskDefinitionError",
    "TaskRunCanceledError",
    "TaskRunFailedError",
    "TaskRunNotFoundError",
    "TriggerOptionsDict",
    "batch",
    "configure",
    "idempotency_keys",
    "queue",
    "runs",
    "schedule",
    "schedules",
    "task",
    "tasks",
]


def __getattr__(name: str) -> Any:
    # ScheduledPayload is a pydantic model: pydantic is loaded when it is first asked for,
    # not by `import kubetasks`.
    if name == "ScheduledPayload":
        from kubetasks.scheduled_payload import ScheduledPayload

        return ScheduledPayload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
