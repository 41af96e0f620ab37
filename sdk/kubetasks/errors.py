"""The errors the SDK and the worker raise. Each message says what to change."""

from __future__ import annotations

from typing import Any


class KubetasksError(Exception):
    """Base of every error raised by the kubetasks SDK."""


# --- definitions and options -----------------------------------------------------------------


class TaskDefinitionError(KubetasksError, ValueError):
    """A ``@task(...)`` declaration is invalid (bad id, duplicate id, bad retry options)."""


class InvalidOptionError(KubetasksError, ValueError):
    """A trigger option has a value the API would not accept."""


class InvalidDelayError(InvalidOptionError):
    """``delay`` is neither a duration, an ISO 8601 timestamp nor an aware datetime."""

    def __init__(self, value: object, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        super().__init__(
            f"invalid delay {value!r}{detail}; use a duration such as '1h52m18s' or '88s', an "
            "ISO 8601 timestamp such as '2030-12-01T00:00:00Z', a timezone-aware datetime or "
            "a timedelta"
        )
        self.value = value


class InvalidDurationError(InvalidOptionError):
    """A duration option (ttl, max_duration, idempotency_key_ttl, ...) cannot be read."""

    def __init__(self, option: str, value: object, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        super().__init__(
            f"invalid {option} {value!r}{detail}; use a duration such as '1h', '10m', "
            "'1h52m18s' or '88s', a number of seconds, or a timedelta"
        )
        self.option = option
        self.value = value


class InvalidScheduleError(InvalidOptionError):
    """A schedule's cron expression or time zone is not one kubetasks accepts."""


# --- sizes ---------------------------------------------------------------------------------


class TooLargeError(KubetasksError, ValueError):
    """A value is larger than kubetasks accepts; ``size`` and ``limit`` are in bytes."""

    what = "value"
    advice = "make it smaller"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"{self.what} is {size:,} bytes, above the limit of {limit:,} bytes; {self.advice}"
        )
        self.size = size
        self.limit = limit


class PayloadTooLargeError(TooLargeError):
    """The payload's JSON is above 10 MiB."""

    what = "the payload (as JSON)"
    advice = (
        "upload large data to your own storage and pass its URL or key in the payload instead"
    )


class OutputTooLargeError(TooLargeError):
    """The task's return value, as JSON, is above 100 MiB."""

    what = "the task's output (as JSON)"
    advice = "store large results in your own storage and return their URL or key instead"


class BatchTooLargeError(TooLargeError):
    """A batch has more than 1,000 items, or its payloads together are above 10 MiB.
    ``unit`` says which: ``"items"`` or ``"bytes"`` (``size`` and ``limit`` count it)."""

    what = "the batch's payloads together (as JSON)"
    advice = "split the items over several batches or pass references instead of data"

    def __init__(self, size: int, limit: int, *, unit: str = "bytes",
                 index: int | None = None) -> None:
        if unit == "items":
            message = (
                f"a batch may have at most {limit:,} items, and item {size:,} arrived; split "
                f"the items over several batches of at most {limit:,}")
        else:
            upto = "" if index is None else f" by item {index} (counting from 0)"
            message = (
                f"{self.what} reached {size:,} bytes{upto}, above the limit of {limit:,} "
                f"bytes; {self.advice}")
        KubetasksError.__init__(self, message)
        self.size = size
        self.limit = limit
        self.unit = unit
        self.index = index


class MetadataTooLargeError(TooLargeError):
    """The run's metadata, as JSON, is above its inline limit."""

    what = "the run's metadata (as JSON)"
    advice = "keep metadata to small keys and values; put data in the payload instead"


class PayloadNotSerializableError(KubetasksError, TypeError):
    """A payload or output cannot be turned into JSON."""


class InvalidPayloadError(KubetasksError, ValueError):
    """The run's payload does not fit the task's payload type (its annotation); retrying
    cannot help, so the run fails at once."""


# --- storage ----------------------------------------------------------------------------------


class StorageNotConfiguredError(KubetasksError):
    """A payload or output must go to S3, but no bucket is configured."""


class MissingDependencyError(KubetasksError):
    """A feature needs a package the plain ``pip install kubetasks`` leaves out; the message
    names the extra to install (``kubetasks[s3]``, ``kubetasks[operator]``,
    ``kubetasks[local]``)."""


class PayloadIntegrityError(KubetasksError):
    """A downloaded payload or output does not match the size or SHA-256 recorded for it."""


# --- runs -------------------------------------------------------------------------------------


class TaskRunNotFoundError(KubetasksError, LookupError):
    """No TaskRun has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r}; check the id (namespace/name, as RunHandle.id gives it) and "
            "the namespace kubetasks is configured for"
        )
        self.run_id = run_id


class RunNotDelayedError(KubetasksError):
    """``runs.reschedule`` was called on a run that is no longer Delayed."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"run {run_id} is {status}, not Delayed: only a delayed run can be rescheduled; "
            "trigger a new run (or runs.replay it) with the delay you want instead"
        )
        self.run_id = run_id
        self.status = status


class TaskRunFailedError(KubetasksError):
    """``Result.unwrap()`` on a run that did not complete."""

    def __init__(self, run_id: str, status: str, error_type: str | None,
                 message: str | None) -> None:
        what = f"{error_type}: {message}" if error_type else (message or "no error recorded")
        super().__init__(f"run {run_id} ended {status}: {what}")
        self.run_id = run_id
        self.status = status
        self.error_type = error_type
        self.error_message = message


class RunPollTimeoutError(KubetasksError, TimeoutError):
    """A run did not finish within the time a caller was willing to wait."""

    def __init__(self, run_id: str, status: str, timeout: float) -> None:
        super().__init__(
            f"run {run_id} is still {status} after {timeout:g} s; wait longer (timeout=...) or "
            "check its queue with `kubectl get taskqueues`"
        )
        self.run_id = run_id
        self.status = status
        self.timeout = timeout


class InvalidBatchError(KubetasksError, ValueError):
    """The items of a batch trigger cannot be used: there are none, they are not a list (or
    another iterable) of items, or an item is neither ``{"payload": ..., "options": {...}}``
    nor ``batch.item(payload, **options)``. ``index`` is the item's position, from 0."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"item {index}: {message}")
        self.index = index


class BatchNotFoundError(KubetasksError, LookupError):
    """No TaskBatch has this id."""

    def __init__(self, batch_id: str) -> None:
        namespace = batch_id.rpartition("/")[0] or "NAMESPACE"
        super().__init__(
            f"no batch {batch_id!r}; check the id (namespace/name, as BatchHandle.id gives "
            f"it) and the namespace kubetasks is configured for; list the batches with "
            f"`kubectl get taskbatches -n {namespace}`"
        )
        self.batch_id = batch_id


class ScheduleNotFoundError(KubetasksError, LookupError):
    """No TaskSchedule with this name in the namespace."""

    def __init__(self, name: str, namespace: str) -> None:
        super().__init__(
            f"TaskSchedule {name!r} not found in namespace {namespace!r}; list them with "
            "`kubetasks schedules list`"
        )
        self.name = name
        self.namespace = namespace


class ScheduleConflictError(KubetasksError):
    """A schedule cannot be changed this way: it is declared in code (``@task(cron=...)``,
    applied by ``kubetasks deploy``), or the name of a deduplication key's schedule is
    taken by a schedule of another key."""


class BatchPollTimeoutError(KubetasksError, TimeoutError):
    """A batch did not finish within the time a caller was willing to wait."""

    def __init__(self, batch_id: str, status: str, timeout: float) -> None:
        namespace, _, name = batch_id.rpartition("/")
        super().__init__(
            f"batch {batch_id} is still {status} after {timeout:g} s; wait longer "
            f"(timeout=...) or look at its runs with `kubectl get taskruns -n {namespace} -l "
            f"kubetasks.dev/batch={name}`"
        )
        self.batch_id = batch_id
        self.status = status
        self.timeout = timeout


class IdempotencyKeyConflictError(KubetasksError):
    """The name derived from an idempotency key is taken by a run with another key."""


class NotInTaskError(KubetasksError, RuntimeError):
    """A method that only works inside a running task was called elsewhere."""

    def __init__(self, method: str,
                 instead: str = "trigger() and then handle.poll(), or tasks.trigger_and_poll()"
                 ) -> None:
        super().__init__(
            f"{method}() only works inside a running task, where the child can be linked to "
            f"its parent; outside a task use {instead}"
        )


class TaskNotRegisteredError(KubetasksError, LookupError):
    """The worker's entrypoint does not name a task function."""


# --- Kubernetes -------------------------------------------------------------------------------


class KubeConfigError(KubetasksError):
    """No usable Kubernetes configuration was found."""


class ApiError(KubetasksError):
    """The Kubernetes API answered with an error status."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"Kubernetes API error {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.api_message = message
        self.body = body


# --- raised by task code ---------------------------------------------------------------------


class AbortTaskRunError(Exception):
    """Raise inside a task to fail the run at once, without further attempts.

    >>> from kubetasks import AbortTaskRunError, task
    >>> @task(id="charge")
    ... def charge(payload: dict, ctx) -> None:
    ...     if payload.get("amount", 0) <= 0:
    ...         raise AbortTaskRunError("amount must be positive; nothing to retry")
    """


class TaskRunCanceledError(BaseException):
    """Raised inside a synchronous task when its pod is asked to stop (SIGTERM: the run was
    canceled, ran past its max duration, or its node is draining).

    A ``BaseException``, like ``KeyboardInterrupt`` and ``asyncio.CancelledError``, so that
    ``except Exception`` in task code does not swallow it; ``finally`` blocks still run.
    Async tasks get ``asyncio.CancelledError`` instead.
    """
