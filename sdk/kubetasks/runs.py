"""Managing runs by id: retrieve, list, cancel, reschedule, replay, poll.

Run ids are ``namespace/name`` (what ``RunHandle.id`` gives); a bare name means a run in the
configured namespace. Every function has an ``*_async`` counterpart that runs the API calls
in a thread.

>>> from kubetasks import runs
>>> run = runs.retrieve("jobs/send-email-x7k2p")     # doctest: +SKIP
>>> run.status                                       # doctest: +SKIP
'Completed'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar, overload

from kubetasks._internal import triggering
from kubetasks._internal.client import default_client
from kubetasks._internal.threads import iterate_in_threads
from kubetasks.batch import BatchRef, split_batch_id
from kubetasks.handles import (
    DEFAULT_POLL_INTERVAL,
    Run,
    RunHandle,
    RunRef,
    cancel_run,
    poll_run,
    poll_run_async,
    retrieve_run,
)
from kubetasks.options import Delay
from kubetasks.protocol.pod import LABEL_BATCH, LABEL_SCHEDULE, label_value
from kubetasks.schedules import ScheduleRef, split_schedule_id

T = TypeVar("T")


@overload
def retrieve(run_id: RunRef, *, output_type: type[T]) -> Run[T]: ...


@overload
def retrieve(run_id: RunRef, *, output_type: None = None) -> Run[Any]: ...


def retrieve(run_id: RunRef, *, output_type: Any = None) -> Run[Any]:
    """The run as it stands: status, payload, output, error, attempts, times, tags, and
    presigned URLs of an offloaded payload or output.

    >>> run = runs.retrieve(handle.id)     # doctest: +SKIP
    """
    return retrieve_run(default_client(), run_id, Any if output_type is None else output_type)


async def retrieve_async(run_id: RunRef, *, output_type: Any = None) -> Run[Any]:
    """:func:`retrieve` in a thread."""
    return await asyncio.to_thread(lambda: retrieve(run_id, output_type=output_type))


def _matches(obj: dict[str, Any], statuses: frozenset[str] | None, task: str | None,
             tag: str | None, batch: str | None, queue: str | None) -> bool:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if statuses is not None and (status.get("phase") or "Pending") not in statuses:
        return False
    if task is not None and spec.get("task") != task:
        return False
    if tag is not None and tag not in (spec.get("tags") or []):
        return False
    if batch is not None and (spec.get("batch") or {}).get("name") != batch:
        return False
    run_queue = status.get("queue") or (spec.get("queue") or {}).get("name") or spec.get("task")
    return queue is None or run_queue == queue


def list(
    *,
    status: str | Iterable[str] | None = None,
    task: str | None = None,
    tag: str | None = None,
    batch: BatchRef | None = None,
    schedule: ScheduleRef | None = None,
    queue: str | None = None,
    limit: int | None = None,
    namespace: str | None = None,
    page_size: int = 250,
) -> Iterator[Run[Any]]:
    """Runs of the namespace that match every filter given, fetched a page at a time (the
    API's continue tokens) as you iterate, in the API's order (by name). ``status`` is a
    phase or several; ``limit`` caps how many are returned.

    ``batch`` (a batch id or name, or its handle) lists the runs the batch created, selected
    by label on the server; a batch id's namespace is used when ``namespace`` is not given.
    A run that an item's idempotency key reused from an earlier trigger belongs to that
    trigger and is not listed here; ``BatchHandle.runs()`` gives every item's run.
    ``schedule`` (a schedule id or name, or a Schedule) lists the runs its ticks created,
    selected by label on the server, like ``batch``.

    >>> failed = list(runs.list(status=["Failed", "Crashed"], task="send-email", limit=20))
    ... # doctest: +SKIP
    >>> of_batch = list(runs.list(batch=handle.id))      # doctest: +SKIP
    >>> of_schedule = list(runs.list(schedule="jobs/nightly-report"))   # doctest: +SKIP
    """
    client = default_client()
    batch_name = None
    selectors = []
    if batch is not None:
        batch_namespace, batch_name = split_batch_id(batch, namespace or client.namespace)
        namespace = namespace or batch_namespace
        selectors.append(f"{LABEL_BATCH}={label_value(batch_name)}")
    if schedule is not None:
        schedule_namespace, schedule_name = split_schedule_id(
            schedule, namespace or client.namespace)
        namespace = namespace or schedule_namespace
        selectors.append(f"{LABEL_SCHEDULE}={label_value(schedule_name)}")
    selector = ",".join(selectors) or None
    if namespace is not None:
        client = client.in_namespace(namespace)
    statuses = None
    if status is not None:
        statuses = frozenset([status] if isinstance(status, str) else status)
    if limit is not None and limit <= 0:
        return
    found = 0
    for obj in client.kube.list_objects("taskruns", client.namespace, label_selector=selector,
                                        page_size=page_size):
        if not _matches(obj, statuses, task, tag, batch_name, queue):
            continue
        yield Run.from_object(obj, client)
        found += 1
        if limit is not None and found >= limit:
            return


async def list_async(**filters: Any) -> AsyncIterator[Run[Any]]:
    """:func:`list` for asyncio: each page is fetched in a thread."""
    async for item in iterate_in_threads(list(**filters)):
        yield item


def cancel(run_id: RunRef) -> None:
    """Cancel a run: its pod is stopped and it ends Canceled, as do the children it waits
    on. Canceling a run that has ended changes nothing.

    >>> runs.cancel("jobs/send-email-x7k2p")     # doctest: +SKIP
    """
    cancel_run(default_client(), run_id)


async def cancel_async(run_id: RunRef) -> None:
    await asyncio.to_thread(cancel, run_id)


def reschedule(run_id: RunRef, *, delay: Delay) -> Run[Any]:
    """Move the start of a Delayed run; ``delay`` takes the trigger option's forms. A run
    that left Delayed raises RunNotDelayedError.

    >>> runs.reschedule(handle.id, delay="2h")     # doctest: +SKIP
    """
    return triggering.reschedule(default_client(), run_id, delay)


async def reschedule_async(run_id: RunRef, *, delay: Delay) -> Run[Any]:
    return await asyncio.to_thread(lambda: reschedule(run_id, delay=delay))


def replay(run_id: RunRef) -> RunHandle[Any]:
    """A new run of the same task with the same payload and options (without the delay,
    the idempotency key and the parent).

    >>> again = runs.replay("jobs/send-email-x7k2p")     # doctest: +SKIP
    """
    return triggering.replay(default_client(), run_id)


async def replay_async(run_id: RunRef) -> RunHandle[Any]:
    return await asyncio.to_thread(replay, run_id)


def poll(run_id: RunRef, *, poll_interval: float = DEFAULT_POLL_INTERVAL,
         timeout: float | None = None) -> Run[Any]:
    """Wait (polling) until the run has ended; RunPollTimeoutError after ``timeout`` s.

    >>> run = runs.poll(handle.id, timeout=120)     # doctest: +SKIP
    """
    return poll_run(default_client(), run_id, poll_interval, timeout)


async def poll_async(run_id: RunRef, *, poll_interval: float = DEFAULT_POLL_INTERVAL,
                     timeout: float | None = None) -> Run[Any]:
    return await poll_run_async(default_client(), run_id, poll_interval, timeout)


__all__ = [
    "cancel", "cancel_async", "list", "list_async", "poll", "poll_async", "replay",
    "replay_async", "reschedule", "reschedule_async", "retrieve", "retrieve_async",
]
