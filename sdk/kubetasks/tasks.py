"""Defining tasks (``@task``) and triggering them.

A task is a function ``(payload, ctx) -> output``, sync or async, decorated with
:func:`task`; the decorator returns a typed :class:`Task` whose methods trigger it.
Code that does not import the task triggers it by id with this module's functions:
``tasks.trigger``, ``tasks.trigger_and_poll`` and ``tasks.batch_trigger``.

Every method has an ``*_async`` counterpart. The async forms run the blocking API calls in
a thread (``asyncio.to_thread``); their waits are asyncio sleeps, so they can be cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import typing
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar, Unpack, overload

from kubetasks._internal import batching, triggering
from kubetasks._internal.client import Client, default_client
from kubetasks.batch import BatchHandle, BatchItemInput
from kubetasks.context import Context, current_context
from kubetasks.errors import InvalidOptionError, NotInTaskError, TaskDefinitionError
from kubetasks.handles import DEFAULT_POLL_INTERVAL, Result, Run, RunHandle, poll_run
from kubetasks.options import (
    ONE_YEAR,
    Duration,
    Queue,
    RetryOptions,
    TriggerOptionsDict,
    whole_seconds,
)
from kubetasks.schedules import CronSchedule, as_cron_schedule

if typing.TYPE_CHECKING:
    from kubetasks.api.v1alpha1 import Machine

PayloadT = TypeVar("PayloadT")
OutputT = TypeVar("OutputT")
T = TypeVar("T")

_TASK_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

TaskFunction = Callable[[Any, Context], Any]


class Task(Generic[PayloadT, OutputT]):
    """A task: its id, settings and function, and the methods that trigger it.

    >>> from kubetasks import task
    >>> @task(id="send-email", max_duration=300)
    ... def send_email(payload: dict, ctx) -> dict:
    ...     return {"sent": payload["to"]}
    >>> send_email.id
    'send-email'
    """

    def __init__(
        self,
        id: str,
        fn: Callable[[PayloadT, Context], OutputT | Awaitable[OutputT]],
        *,
        queue: Queue | None = None,
        retry: RetryOptions | None = None,
        machine: Machine | None = None,
        max_duration: Duration | None = None,
        ttl: Duration | None = None,
        cron: str | CronSchedule | None = None,
    ) -> None:
        if not isinstance(id, str) or len(id) > 63 or not _TASK_ID.match(id):
            raise TaskDefinitionError(
                f"task id {id!r} must be a DNS label: 1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, e.g. 'send-email'")
        if queue is not None and not isinstance(queue, Queue):
            raise TaskDefinitionError(
                f"queue of task {id!r} must be kubetasks.queue(name, concurrency_limit=...), "
                f"got {queue!r}")
        if retry is not None and not isinstance(retry, RetryOptions):
            raise TaskDefinitionError(
                f"retry of task {id!r} must be kubetasks.RetryOptions(...), got {retry!r}")
        from kubetasks.api.v1alpha1 import Machine as MachinePreset

        machines = typing.get_args(MachinePreset)
        if machine is not None and machine not in machines:
            raise TaskDefinitionError(
                f"machine {machine!r} of task {id!r} is not a machine preset; use one of "
                f"{', '.join(machines)}")
        try:
            self.max_duration_seconds = (
                None if max_duration is None
                else whole_seconds(max_duration, "max_duration", minimum=1, maximum=ONE_YEAR))
            self.ttl_seconds = (None if ttl is None
                                else whole_seconds(ttl, "ttl", minimum=0, maximum=ONE_YEAR))
            # The declarative schedule, which `kubetasks deploy` applies.
            self.schedule = None if cron is None else as_cron_schedule(cron)
        except InvalidOptionError as exc:
            raise TaskDefinitionError(f"task {id!r}: {exc}") from None
        self.id = id
        self.fn = fn
        self.queue = queue
        self.retry = retry
        self.machine = machine
        self.is_async = inspect.iscoroutinefunction(fn)
        self.payload_type, self.output_type = _types_of(fn)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self.__qualname__ = getattr(fn, "__qualname__", id)
        self.__name__ = getattr(fn, "__name__", id)

    @property
    def entrypoint(self) -> str:
        """``module:function`` of the task's function, what a Task's spec names."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def __repr__(self) -> str:
        return f"<Task {self.id!r} {self.entrypoint}>"

    def _client(self) -> Client:
        return default_client()

    # --- triggering ------------------------------------------------------------------------

    def trigger(self, payload: PayloadT,
                **options: Unpack[TriggerOptionsDict]) -> RunHandle[OutputT]:
        """Create a run of this task and return at once with its handle.

        >>> handle = send_email.trigger({"to": "a@example.com"}, delay="1h", tags="vip")
        ... # doctest: +SKIP
        """
        return triggering.trigger(self._client(), self.id, payload, options, self.output_type)

    async def trigger_async(self, payload: PayloadT,
                            **options: Unpack[TriggerOptionsDict]) -> RunHandle[OutputT]:
        """:meth:`trigger` with the API calls in a thread."""
        return await asyncio.to_thread(lambda: self.trigger(payload, **options))

    def trigger_and_wait(self, payload: PayloadT,
                         **options: Unpack[TriggerOptionsDict]) -> Result[OutputT]:
        """Inside a running task: create a child run linked to this run, wait until it has
        ended, and return its :class:`Result`. While it waits, this run gives its queue slot
        back (it is Waiting). Outside a task: NotInTaskError.

        >>> result = resize.trigger_and_wait({"url": url})   # doctest: +SKIP
        >>> thumbnail = result.unwrap()                      # doctest: +SKIP
        """
        if current_context() is None:
            raise NotInTaskError("trigger_and_wait")
        return triggering.trigger_and_wait(self._client(), self.id, payload, options,
                                           self.output_type)

    async def trigger_and_wait_async(self, payload: PayloadT,
                                     **options: Unpack[TriggerOptionsDict]
                                     ) -> Result[OutputT]:
        """:meth:`trigger_and_wait` for async tasks (cancellable while it waits)."""
        if current_context() is None:
            raise NotInTaskError("trigger_and_wait_async")
        return await triggering.trigger_and_wait_async(self._client(), self.id, payload,
                                                       options, self.output_type)

    def batch_trigger(self, items: Iterable[BatchItemInput[PayloadT]]
                      ) -> BatchHandle[OutputT]:
        """Create one run per item (1 to 1,000 items, payloads together at most 10 MiB) as a
        single TaskBatch, and return at once with its handle. Each item is
        ``{"payload": ..., "options": {...}}`` (the options of :meth:`trigger`) or
        ``batch.item(payload, **options)``; ``items`` may be any iterable, read once. Every
        item is checked before anything is written.

        >>> from kubetasks import batch
        >>> handle = send_email.batch_trigger([
        ...     {"payload": {"to": "a@example.com"}},
        ...     {"payload": {"to": "b@example.com"}, "options": {"delay": "1h"}},
        ...     batch.item({"to": "c@example.com"}, tags="vip"),
        ... ])                                               # doctest: +SKIP
        >>> handle.run_count                                 # doctest: +SKIP
        3
        """
        return batching.batch_trigger(self._client(), self.id, items, self.output_type)

    async def batch_trigger_async(
        self, items: Iterable[BatchItemInput[PayloadT]] | AsyncIterable[BatchItemInput[PayloadT]]
    ) -> BatchHandle[OutputT]:
        """:meth:`batch_trigger` with the API calls in a thread; ``items`` may also be an
        async iterable."""
        return await batching.batch_trigger_async(self._client(), self.id, items,
                                                  self.output_type)

    def batch_trigger_and_wait(self, items: Iterable[BatchItemInput[PayloadT]]
                               ) -> list[Result[OutputT]]:
        """Inside a running task: :meth:`batch_trigger` with the batch linked to this run,
        wait until every run of it has ended, and return one :class:`Result` per item, in
        item order. While it waits, this run gives its queue slot back (it is Waiting).
        Outside a task: NotInTaskError.

        >>> results = resize.batch_trigger_and_wait(
        ...     [{"payload": {"url": u}} for u in urls])         # doctest: +SKIP
        >>> thumbnails = [r.unwrap() for r in results if r.ok]   # doctest: +SKIP
        """
        if current_context() is None:
            raise NotInTaskError("batch_trigger_and_wait", batching.OUTSIDE_A_TASK)
        return batching.batch_trigger_and_wait(self._client(), self.id, items,
                                               self.output_type)

    async def batch_trigger_and_wait_async(
        self, items: Iterable[BatchItemInput[PayloadT]] | AsyncIterable[BatchItemInput[PayloadT]]
    ) -> list[Result[OutputT]]:
        """:meth:`batch_trigger_and_wait` for async tasks (cancellable while it waits);
        ``items`` may also be an async iterable."""
        if current_context() is None:
            raise NotInTaskError("batch_trigger_and_wait_async", batching.OUTSIDE_A_TASK)
        return await batching.batch_trigger_and_wait_async(self._client(), self.id, items,
                                                           self.output_type)


def _types_of(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """The payload type (first parameter) and output type (return) from annotations;
    ``Any`` where there is none."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to untyped
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TaskDefinitionError(
            f"task function {getattr(fn, '__qualname__', fn)!r} takes {len(params)} "
            "parameter(s); it must take (payload, ctx)")
    payload_type = hints.get(params[0].name, Any)
    output_type = hints.get("return", Any)
    if output_type is type(None):
        output_type = None
    return payload_type, output_type


# --- the decorator and the registry ----------------------------------------------------------

_registry: dict[str, Task[Any, Any]] = {}
_registry_lock = threading.Lock()


def register(new: Task[Any, Any]) -> None:
    """Remember the task by id; two different functions may not share an id."""
    with _registry_lock:
        existing = _registry.get(new.id)
        if existing is not None and existing.entrypoint != new.entrypoint:
            raise TaskDefinitionError(
                f"task id {new.id!r} is used by {existing.entrypoint} and {new.entrypoint}; "
                "give each task its own id")
        _registry[new.id] = new


def registered() -> dict[str, Task[Any, Any]]:
    """Every task defined in this process, by id."""
    with _registry_lock:
        return dict(_registry)


class TaskDecorator:
    """What ``@task(...)`` returns: applied to a function, it makes the Task."""

    def __init__(self, id: str, *, queue: Queue | None, retry: RetryOptions | None,
                 machine: Machine | None, max_duration: Duration | None,
                 ttl: Duration | None, cron: str | CronSchedule | None) -> None:
        self.id = id
        self.queue = queue
        self.retry = retry
        self.machine: Machine | None = machine
        self.max_duration = max_duration
        self.ttl = ttl
        self.cron = cron
        # Check the settings now, at the decorator, not when the function arrives.
        self._make(_check_only)

    def _make(self, fn: Callable[[Any, Context], Any]) -> Task[Any, Any]:
        return Task(self.id, fn, queue=self.queue, retry=self.retry, machine=self.machine,
                    max_duration=self.max_duration, ttl=self.ttl, cron=self.cron)

    @overload
    def __call__(
        self, fn: Callable[[PayloadT, Context], Coroutine[Any, Any, OutputT]]
    ) -> Task[PayloadT, OutputT]: ...

    @overload
    def __call__(self, fn: Callable[[PayloadT, Context], OutputT]) -> Task[PayloadT, OutputT]:
        ...

    def __call__(self, fn: Callable[[Any, Context], Any]) -> Task[Any, Any]:
        defined = self._make(fn)
        register(defined)
        return defined


def task(
    id: str,
    *,
    queue: Queue | None = None,
    retry: RetryOptions | None = None,
    machine: Machine | None = None,
    max_duration: Duration | None = None,
    ttl: Duration | None = None,
    cron: str | CronSchedule | None = None,
) -> TaskDecorator:
    """Define a task from a function ``(payload, ctx) -> output`` (sync or async). The
    payload and output types come from the annotations (pydantic models or JSON types).

    ``cron`` runs it on a schedule once ``kubetasks deploy`` applied it: a cron string (UTC)
    or :func:`kubetasks.schedule` (a time zone, a concurrency policy); its payload is then a
    :class:`kubetasks.ScheduledPayload`. The cron and time zone are checked here.

    >>> from kubetasks import RetryOptions, queue, task
    >>> @task(id="send-email", queue=queue("emails", concurrency_limit=5),
    ...       retry=RetryOptions(max_attempts=3, factor=2, min_timeout=1, max_timeout=10),
    ...       machine="small-1x", max_duration=300, ttl="10m")
    ... async def send_email(payload: dict, ctx) -> dict:
    ...     return {"sent": True}
    >>> from kubetasks import ScheduledPayload, schedule
    >>> @task(id="nightly-report", cron=schedule("0 2 * * *", timezone="Europe/Paris"))
    ... def nightly_report(payload: ScheduledPayload, ctx) -> None: ...
    """
    return TaskDecorator(id, queue=queue, retry=retry, machine=machine,
                         max_duration=max_duration, ttl=ttl, cron=cron)


def _check_only(payload: Any, ctx: Context) -> None:
    """Stand-in function for checking a decorator's settings."""


# --- triggering by id (no import of the task needed) -----------------------------------------


@overload
def trigger(task_id: str, payload: Any, *, output_type: type[T],
            **options: Unpack[TriggerOptionsDict]) -> RunHandle[T]: ...


@overload
def trigger(task_id: str, payload: Any, *, output_type: None = None,
            **options: Unpack[TriggerOptionsDict]) -> RunHandle[Any]: ...


def trigger(task_id: str, payload: Any, *, output_type: Any = None,
            **options: Unpack[TriggerOptionsDict]) -> RunHandle[Any]:
    """Trigger a task by id, from code that does not import it; returns at once.
    ``output_type`` types the handle's output (e.g. a pydantic model).

    >>> from kubetasks import tasks
    >>> handle = tasks.trigger("send-email", {"to": "a@example.com"}, ttl="1h")
    ... # doctest: +SKIP
    """
    return triggering.trigger(default_client(), task_id, payload, options,
                              Any if output_type is None else output_type)


async def trigger_async(task_id: str, payload: Any, *, output_type: Any = None,
                        **options: Unpack[TriggerOptionsDict]) -> RunHandle[Any]:
    """:func:`trigger` with the API calls in a thread."""
    return await asyncio.to_thread(
        lambda: trigger(task_id, payload, output_type=output_type, **options))


@overload
def trigger_and_poll(task_id: str, payload: Any, *, output_type: type[T],
                     poll_interval: float = ..., timeout: float | None = ...,
                     **options: Unpack[TriggerOptionsDict]) -> Run[T]: ...


@overload
def trigger_and_poll(task_id: str, payload: Any, *, output_type: None = None,
                     poll_interval: float = ..., timeout: float | None = ...,
                     **options: Unpack[TriggerOptionsDict]) -> Run[Any]: ...


def trigger_and_poll(task_id: str, payload: Any, *, output_type: Any = None,
                     poll_interval: float = DEFAULT_POLL_INTERVAL,
                     timeout: float | None = None,
                     **options: Unpack[TriggerOptionsDict]) -> Run[Any]:
    """Trigger a task by id and poll until the run has ended; the final :class:`Run`.
    RunPollTimeoutError after ``timeout`` seconds (the run goes on).

    >>> run = tasks.trigger_and_poll("send-email", {"to": "a@x.org"}, timeout=60)
    ... # doctest: +SKIP
    """
    client = default_client()
    handle = triggering.trigger(client, task_id, payload, options,
                                Any if output_type is None else output_type)
    return poll_run(client, handle.id, poll_interval, timeout, handle.output_type)


async def trigger_and_poll_async(task_id: str, payload: Any, *, output_type: Any = None,
                                 poll_interval: float = DEFAULT_POLL_INTERVAL,
                                 timeout: float | None = None,
                                 **options: Unpack[TriggerOptionsDict]) -> Run[Any]:
    """:func:`trigger_and_poll` for asyncio (cancellable while it polls)."""
    handle = await trigger_async(task_id, payload, output_type=output_type, **options)
    return await handle.poll_async(poll_interval, timeout)


@overload
def batch_trigger(task_id: str, items: Iterable[BatchItemInput[Any]], *,
                  output_type: type[T]) -> BatchHandle[T]: ...


@overload
def batch_trigger(task_id: str, items: Iterable[BatchItemInput[Any]], *,
                  output_type: None = None) -> BatchHandle[Any]: ...


def batch_trigger(task_id: str, items: Iterable[BatchItemInput[Any]], *,
                  output_type: Any = None) -> BatchHandle[Any]:
    """Batch-trigger a task by id, from code that does not import it; returns at once with
    the batch's handle. Items as for :meth:`Task.batch_trigger`.

    >>> from kubetasks import tasks
    >>> handle = tasks.batch_trigger("send-email", [
    ...     {"payload": {"to": "a@example.com"}},
    ...     {"payload": {"to": "b@example.com"}, "options": {"ttl": "1h"}},
    ... ])                                                  # doctest: +SKIP
    """
    return batching.batch_trigger(default_client(), task_id, items,
                                  Any if output_type is None else output_type)


async def batch_trigger_async(
    task_id: str,
    items: Iterable[BatchItemInput[Any]] | AsyncIterable[BatchItemInput[Any]],
    *,
    output_type: Any = None,
) -> BatchHandle[Any]:
    """:func:`batch_trigger` with the API calls in a thread; ``items`` may also be an async
    iterable."""
    return await batching.batch_trigger_async(default_client(), task_id, items,
                                              Any if output_type is None else output_type)
