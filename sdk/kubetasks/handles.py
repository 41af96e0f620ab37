"""What triggers give back: a :class:`RunHandle` to a run, the :class:`Run` as it stands, and
the :class:`Result` of a run that ended. Also the run-id format and polling.

A run id is ``namespace/name`` of its TaskRun: unambiguous across namespaces and the same
wherever it is printed. Functions that take a run id also accept a bare name (in the
client's namespace), a ``RunHandle`` or a ``Run``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kubetasks._internal.client import Client, Json, default_client
from kubetasks.errors import (
    ApiError,
    RunPollTimeoutError,
    TaskRunFailedError,
    TaskRunNotFoundError,
)
from kubetasks.protocol.payloads import decode_json, validate_as

OutputT = TypeVar("OutputT")

TERMINAL_PHASES = frozenset({"Completed", "Failed", "Canceled", "Expired", "TimedOut",
                             "Crashed"})
"""Phases a run never leaves."""
DEFAULT_POLL_INTERVAL = 1.0


def parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def split_run_id(run_id: RunRef, default_namespace: str) -> tuple[str, str]:
    """(namespace, name) of a run id, a bare name, a handle or a run.

    >>> split_run_id("jobs/send-email-x7k2p", "default")
    ('jobs', 'send-email-x7k2p')
    >>> split_run_id("send-email-x7k2p", "default")
    ('default', 'send-email-x7k2p')
    """
    if isinstance(run_id, RunHandle | Run):
        run_id = run_id.id
    return split_id(run_id, default_namespace, TaskRunNotFoundError)


def split_id(value: object, default_namespace: str,
             not_found: Callable[[str], Exception]) -> tuple[str, str]:
    """(namespace, name) of ``namespace/name`` or a bare name; ``not_found(text)`` is raised
    for anything else."""
    if not isinstance(value, str) or not value or value.count("/") > 1:
        raise not_found(str(value))
    namespace, _, name = value.rpartition("/")
    if not name:
        raise not_found(value)
    return (namespace or default_namespace), name


def run_id_of(obj: Json) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


@dataclass(frozen=True)
class RunError:
    """Why a run did not complete: the task's exception, or what ended the run."""

    type: str | None
    message: str | None
    stack: str | None = None

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.type else str(self.message)


@dataclass(frozen=True)
class RunAttempt:
    """One attempt of a run (one pod)."""

    number: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    exit_code: int | None
    reason: str | None
    message: str | None


def _succeeded_message(status: Json) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Succeeded":
            return str(cond.get("message") or "") or None
    return None


@dataclass(frozen=True)
class Run(Generic[OutputT]):
    """A run as ``runs.retrieve`` found it.

    ``payload`` and ``output`` are the inline values; when they were offloaded to object
    storage they are ``None`` and ``payload_presigned_url`` / ``output_presigned_url`` point
    at them (valid for ``KUBETASKS_PRESIGN_EXPIRY`` seconds); ``get_payload()`` and
    ``get_output()`` return the value either way.

    >>> run = runs.retrieve(handle.id)            # doctest: +SKIP
    >>> run.status, run.output                    # doctest: +SKIP
    ('Completed', {'sent': True})
    """

    id: str
    name: str
    namespace: str
    uid: str
    task_id: str
    status: str
    """The phase: Pending, Delayed, Queued, Executing, Waiting, Retrying, Completed, Failed,
    Canceled, Expired, TimedOut or Crashed."""
    payload: Any
    output: OutputT | None
    error: RunError | None
    attempts: list[RunAttempt]
    attempt_count: int
    created_at: dt.datetime | None
    delay_until: dt.datetime | None
    enqueued_at: dt.datetime | None
    expires_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    tags: list[str]
    metadata: dict[str, Any]
    idempotency_key: str | None
    queue: str | None
    concurrency_key: str | None
    parent_id: str | None
    batch_id: str | None
    payload_ref: dict[str, Any] | None
    output_ref: dict[str, Any] | None
    payload_presigned_url: str | None
    output_presigned_url: str | None
    raw: Json = field(repr=False, compare=False)
    client: Client = field(repr=False, compare=False)
    output_type: Any = field(default=Any, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """The run has ended and will not change."""
        return self.status in TERMINAL_PHASES

    @property
    def is_completed(self) -> bool:
        return self.status == "Completed"

    @property
    def is_failed(self) -> bool:
        """Ended without completing (Failed, Crashed, TimedOut, Expired or Canceled)."""
        return self.is_terminal and not self.is_completed

    def get_payload(self) -> Any:
        """The payload, downloaded (and checked) when it was offloaded."""
        if self.payload_ref is None:
            return self.payload
        return decode_json(self.client.storage.get(self.payload_ref), "the payload")

    def get_output(self) -> OutputT | None:
        """The output, downloaded (and checked) when it was offloaded; ``None`` before the
        run completed."""
        if self.output_ref is None:
            return self.output
        value = decode_json(self.client.storage.get(self.output_ref), "the output")
        result: OutputT = validate_as(value, self.output_type)
        return result

    @classmethod
    def from_object(cls, obj: Json, client: Client, output_type: Any = Any,
                    presign: bool = True) -> Run[Any]:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        phase = status.get("phase") or "Pending"
        error = None
        if isinstance(status.get("error"), dict):
            err = status["error"]
            error = RunError(err.get("type"), err.get("message"), err.get("stack"))
        elif phase in TERMINAL_PHASES and phase != "Completed":
            error = RunError(phase, _succeeded_message(status))
        output = status.get("output")
        if output is not None and phase == "Completed":
            output = validate_as(output, output_type)
        payload_ref = spec.get("payloadRef")
        output_ref = status.get("outputRef")
        parent = spec.get("parent") or {}
        batch = spec.get("batch") or {}
        namespace = meta.get("namespace") or client.namespace
        return Run(
            id=f"{namespace}/{meta.get('name')}",
            name=meta.get("name", ""),
            namespace=namespace,
            uid=meta.get("uid", ""),
            task_id=spec.get("task", ""),
            status=phase,
            payload=spec.get("payload") if payload_ref is None else None,
            output=output,
            error=error,
            attempts=[
                RunAttempt(
                    number=int(a.get("number", 0)),
                    started_at=parse_time(a.get("startedTime")),
                    finished_at=parse_time(a.get("finishedTime")),
                    exit_code=a.get("exitCode"),
                    reason=a.get("reason"),
                    message=a.get("message"),
                ) for a in status.get("attempts") or []
            ],
            attempt_count=int(status.get("attempt") or 0),
            created_at=parse_time(meta.get("creationTimestamp")),
            delay_until=parse_time(spec.get("delayUntil")),
            enqueued_at=parse_time(status.get("enqueuedTime")),
            expires_at=parse_time(status.get("expiresTime")),
            started_at=parse_time(status.get("startedTime")),
            finished_at=parse_time(status.get("finishedTime")),
            tags=list(spec.get("tags") or []),
            metadata=dict(spec.get("metadata") or {}),
            idempotency_key=spec.get("idempotencyKey"),
            queue=status.get("queue") or (spec.get("queue") or {}).get("name"),
            concurrency_key=spec.get("concurrencyKey"),
            parent_id=f"{namespace}/{parent['name']}" if parent.get("name") else None,
            batch_id=f"{namespace}/{batch['name']}" if batch.get("name") else None,
            payload_ref=payload_ref,
            output_ref=output_ref,
            payload_presigned_url=(client.storage.presign(payload_ref)
                                   if payload_ref and presign else None),
            output_presigned_url=(client.storage.presign(output_ref)
                                  if output_ref and presign else None),
            raw=obj,
            client=client,
            output_type=output_type,
        )


@dataclass(frozen=True)
class Result(Generic[OutputT]):
    """How a run that was waited for ended: ``ok`` and its ``output``, or its ``error``.

    >>> result = resize_image.trigger_and_wait({"url": url})   # doctest: +SKIP
    >>> thumbnail = result.unwrap()                            # doctest: +SKIP
    """

    ok: bool
    id: str
    task_id: str
    status: str
    output: OutputT | None
    error: RunError | None

    def unwrap(self) -> OutputT:
        """The output; raises :class:`TaskRunFailedError` if the run did not complete."""
        if not self.ok:
            error = self.error or RunError(None, None)
            raise TaskRunFailedError(self.id, self.status, error.type, error.message)
        return self.output  # type: ignore[return-value]

    @classmethod
    def from_run(cls, run: Run[OutputT]) -> Result[OutputT]:
        if run.is_completed:
            return Result(True, run.id, run.task_id, run.status, run.get_output(), None)
        return Result(False, run.id, run.task_id, run.status, None,
                      run.error or RunError(run.status, None))


# --- reading and polling ---------------------------------------------------------------------


def read_run(client: Client, namespace: str, name: str) -> Json:
    """The TaskRun object; TaskRunNotFoundError when there is none."""
    try:
        return client.kube.get_object("taskruns", namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            raise TaskRunNotFoundError(f"{namespace}/{name}") from None
        raise


def retrieve_run(client: Client, run_id: RunRef, output_type: Any = Any) -> Run[Any]:
    namespace, name = split_run_id(run_id, client.namespace)
    return Run.from_object(read_run(client, namespace, name), client, output_type)


def _next_interval(current: float, ceiling: float) -> float:
    return min(ceiling, current * 1.5)


def poll_run(client: Client, run_id: RunRef, poll_interval: float = DEFAULT_POLL_INTERVAL,
             timeout: float | None = None, output_type: Any = Any,
             sleep: Callable[[float], Any] = time.sleep) -> Run[Any]:
    """Read the run until it has ended; the interval starts short and grows to
    ``poll_interval``. RunPollTimeoutError after ``timeout`` seconds."""
    namespace, name = split_run_id(run_id, client.namespace)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = min(0.1, poll_interval)
    while True:
        obj = read_run(client, namespace, name)
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        if phase in TERMINAL_PHASES:
            return Run.from_object(obj, client, output_type)
        if deadline is not None and time.monotonic() >= deadline:
            raise RunPollTimeoutError(f"{namespace}/{name}", phase, timeout or 0)
        sleep(interval)
        interval = _next_interval(interval, poll_interval)


async def poll_run_async(client: Client, run_id: RunRef,
                         poll_interval: float = DEFAULT_POLL_INTERVAL,
                         timeout: float | None = None, output_type: Any = Any) -> Run[Any]:
    """:func:`poll_run` for asyncio: API calls in a thread, sleeps cancellable."""
    namespace, name = split_run_id(run_id, client.namespace)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = min(0.1, poll_interval)
    while True:
        obj = await asyncio.to_thread(read_run, client, namespace, name)
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        if phase in TERMINAL_PHASES:
            return await asyncio.to_thread(Run.from_object, obj, client, output_type)
        if deadline is not None and time.monotonic() >= deadline:
            raise RunPollTimeoutError(f"{namespace}/{name}", phase, timeout or 0)
        await asyncio.sleep(interval)
        interval = _next_interval(interval, poll_interval)


def cancel_run(client: Client, run_id: RunRef) -> None:
    """Ask the operator to cancel the run (``spec.cancel: true``); a no-op once it ended."""
    namespace, name = split_run_id(run_id, client.namespace)
    try:
        client.kube.merge_patch("taskruns", namespace, name, {"spec": {"cancel": True}})
    except ApiError as exc:
        if exc.status == 404:
            raise TaskRunNotFoundError(f"{namespace}/{name}") from None
        raise


class Addressed:
    """What a handle is: ``<namespace>/<name>`` and the client to reach it with (the
    configured default when None)."""

    id: str
    client: Client | None

    @property
    def namespace(self) -> str:
        return self.id.partition("/")[0]

    @property
    def name(self) -> str:
        return self.id.partition("/")[2]

    def _client(self) -> Client:
        return self.client or default_client()


@dataclass(frozen=True)
class RunHandle(Addressed, Generic[OutputT]):
    """A triggered run. ``id`` is ``namespace/name``; ``is_cached`` is True when an
    idempotency key returned an existing run instead of creating one.

    >>> handle = send_email.trigger({"to": "a@example.com"})   # doctest: +SKIP
    >>> handle.poll(timeout=60).output                        # doctest: +SKIP
    """

    id: str
    task_id: str
    is_cached: bool = False
    client: Client | None = field(default=None, repr=False, compare=False)
    output_type: Any = field(default=Any, repr=False, compare=False)

    def retrieve(self) -> Run[OutputT]:
        """The run as it stands now."""
        return retrieve_run(self._client(), self.id, self.output_type)

    async def retrieve_async(self) -> Run[OutputT]:
        """:meth:`retrieve` in a thread."""
        return await asyncio.to_thread(self.retrieve)

    def poll(self, poll_interval: float = DEFAULT_POLL_INTERVAL,
             timeout: float | None = None) -> Run[OutputT]:
        """Wait (polling) until the run has ended; works anywhere, unlike
        ``trigger_and_wait`` it does not make a parent wait."""
        return poll_run(self._client(), self.id, poll_interval, timeout, self.output_type)

    async def poll_async(self, poll_interval: float = DEFAULT_POLL_INTERVAL,
                         timeout: float | None = None) -> Run[OutputT]:
        return await poll_run_async(self._client(), self.id, poll_interval, timeout,
                                    self.output_type)

    def cancel(self) -> None:
        """Cancel the run (it stops if it is running; nothing happens once it ended)."""
        cancel_run(self._client(), self.id)

    async def cancel_async(self) -> None:
        await asyncio.to_thread(self.cancel)


RunRef = str | RunHandle[Any] | Run[Any]
"""A run id (``namespace/name`` or a bare name), a RunHandle or a Run."""
