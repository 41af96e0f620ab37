"""Batch triggers: many runs of one task from one call, and managing them by batch id.

``my_task.batch_trigger(items)`` (or ``tasks.batch_trigger(task_id, items)``) creates one
``TaskBatch``; the operator creates a run per item. Each item is Trigger.dev's shape, a
mapping ``{"payload": ..., "options": {...}}`` with the options ``trigger()`` takes, or
:func:`item` (the same, with keyword options that type checkers can check). A batch has 1 to
1,000 items whose payloads together are at most 10 MiB.

A batch id is ``namespace/name`` of its TaskBatch (what ``BatchHandle.id`` gives); functions
here also accept a bare name (in the client's namespace), a ``BatchHandle`` or a ``Batch``.
Every function has an ``*_async`` counterpart that runs the API calls in a thread.

>>> from kubetasks import batch
>>> handle = send_email.batch_trigger([
...     {"payload": {"to": "a@example.com"}},
...     batch.item({"to": "b@example.com"}, delay="1h", tags="vip"),
... ])                                                       # doctest: +SKIP
>>> batch.poll(handle.id, timeout=600).counts["completed"]   # doctest: +SKIP
2
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Unpack

from kubetasks._internal.client import Client, Json, default_client
from kubetasks.errors import (
    ApiError,
    BatchNotFoundError,
    BatchPollTimeoutError,
    TaskRunNotFoundError,
)
from kubetasks.handles import (
    DEFAULT_POLL_INTERVAL,
    Addressed,
    Result,
    Run,
    RunError,
    parse_time,
    read_run,
    split_id,
)
from kubetasks.options import TriggerOptionsDict, check_option_names
from kubetasks.protocol.pod import LABEL_BATCH, LABEL_BATCH_INDEX, label_value

PayloadT = TypeVar("PayloadT")
OutputT = TypeVar("OutputT")

BATCH_TERMINAL_PHASES = frozenset({"Completed", "PartiallyFailed", "Canceled", "Failed"})
"""Phases a batch never leaves. Failed: its items could not be read, so no run was made."""
COUNT_NAMES = ("pending", "queued", "running", "completed", "failed", "canceled", "expired",
               "missing")
MISSING = "Missing"
"""The ``status`` of a :class:`Result` whose item has no run to read."""


def _no_options() -> TriggerOptionsDict:
    return {}


@dataclass(frozen=True)
class BatchItem(Generic[PayloadT]):
    """One item of a batch trigger: a payload and the trigger options of its run. Made by
    :func:`item`; a mapping ``{"payload": ..., "options": {...}}`` means the same."""

    payload: PayloadT
    options: TriggerOptionsDict = field(default_factory=_no_options)


BatchItemInput = BatchItem[PayloadT] | Mapping[str, Any]
"""What batch triggers take per item: :func:`item`'s result or ``{"payload", "options"}``."""


def item(payload: PayloadT, **options: Unpack[TriggerOptionsDict]) -> BatchItem[PayloadT]:
    """A batch item: the payload of one run and the options ``trigger()`` takes (delay, ttl,
    idempotency_key, queue, tags, ...). The option names are checked here; their values when
    the batch is triggered (a delay counts from then).

    >>> from kubetasks import batch
    >>> batch.item({"to": "a@example.com"}, delay="1h", tags=["vip"])
    BatchItem(payload={'to': 'a@example.com'}, options={'delay': '1h', 'tags': ['vip']})
    """
    check_option_names(options)
    return BatchItem(payload, options)


# --- a batch as it stands --------------------------------------------------------------------


def _keyed_runs(status: Json) -> dict[int, str]:
    keyed: dict[int, str] = {}
    for index, name in (status.get("keyedRuns") or {}).items():
        try:
            keyed[int(index)] = str(name)
        except ValueError:
            continue
    return keyed


def _item_count(obj: Json) -> int:
    """Number of items: what the SDK wrote in the spec, else what the status says."""
    spec = obj.get("spec") or {}
    if isinstance(spec.get("items"), list):
        return len(spec["items"])
    if isinstance(spec.get("itemCount"), int):
        return int(spec["itemCount"])
    return int((obj.get("status") or {}).get("total") or 0)


@dataclass(frozen=True)
class Batch:
    """A batch as ``batch.retrieve`` found it: its phase, how far the fan-out got, and how
    many of its runs are in each state.

    ``run_names`` has one entry per item, in item order: the name of the item's run (the run
    its idempotency key gave it, or ``<batch>-<index>``), or ``None`` while the item has no
    run yet.

    >>> b = batch.retrieve(handle.id)      # doctest: +SKIP
    >>> b.status, b.counts["completed"]    # doctest: +SKIP
    ('Running', 40)
    """

    id: str
    name: str
    namespace: str
    task_id: str
    status: str
    """The phase: Pending, Running, then Completed, PartiallyFailed, Canceled or Failed (the
    items could not be read)."""
    total: int
    """Number of items."""
    created: int
    """Items 0 .. created-1 all got their run."""
    counts: dict[str, int]
    """Runs per state: pending, queued, running, completed, failed, canceled, expired and
    missing (created, then deleted before they ended)."""
    reused: int
    """Items whose idempotency key returned an existing run instead of creating one."""
    run_names: list[str | None]
    parent_id: str | None
    created_at: dt.datetime | None
    raw: Json = field(repr=False, compare=False)

    @property
    def is_finished(self) -> bool:
        """The batch has ended (every run of it ended, or it failed) and will not change."""
        return self.status in BATCH_TERMINAL_PHASES

    @classmethod
    def from_object(cls, obj: Json, default_namespace: str,
                    existing: Collection[int] = ()) -> Batch:
        """The batch of a TaskBatch object. ``existing``: items whose plain run
        (``<batch>-<index>``) was seen, beyond those the status counts as created."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        name = str(meta.get("name", ""))
        namespace = meta.get("namespace") or default_namespace
        total = _item_count(obj)
        created = int(status.get("created") or 0)
        keyed = _keyed_runs(status)
        run_names: list[str | None] = []
        for index in range(total):
            if index in keyed:
                run_names.append(keyed[index])
            elif index < created or index in existing:
                run_names.append(f"{name}-{index}")
            else:
                run_names.append(None)
        raw_counts = status.get("counts") or {}
        parent = spec.get("parent") or {}
        return Batch(
            id=f"{namespace}/{name}",
            name=name,
            namespace=namespace,
            task_id=str(spec.get("task", "")),
            status=status.get("phase") or "Pending",
            total=total,
            created=created,
            counts={count: int(raw_counts.get(count) or 0) for count in COUNT_NAMES},
            reused=int(status.get("reused") or 0),
            run_names=run_names,
            parent_id=f"{namespace}/{parent['name']}" if parent.get("name") else None,
            created_at=parse_time(meta.get("creationTimestamp")),
            raw=obj,
        )

    def failure_message(self) -> str | None:
        """Why the batch failed (its items could not be read), from its conditions."""
        for cond in (self.raw.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "False" and cond.get("message"):
                return str(cond["message"])
        return None


# --- reading, polling, canceling -------------------------------------------------------------


def split_batch_id(batch_id: BatchRef, default_namespace: str) -> tuple[str, str]:
    """(namespace, name) of a batch id, a bare name, a handle or a batch.

    >>> split_batch_id("jobs/send-email-b-x7k2p", "default")
    ('jobs', 'send-email-b-x7k2p')
    >>> split_batch_id("send-email-b-x7k2p", "default")
    ('default', 'send-email-b-x7k2p')
    """
    if isinstance(batch_id, BatchHandle | Batch):
        batch_id = batch_id.id
    return split_id(batch_id, default_namespace, BatchNotFoundError)


def read_batch(client: Client, namespace: str, name: str) -> Json:
    """The TaskBatch object; BatchNotFoundError when there is none."""
    try:
        return client.kube.get_object("taskbatches", namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            raise BatchNotFoundError(f"{namespace}/{name}") from None
        raise


def retrieve_batch(client: Client, batch_id: BatchRef) -> Batch:
    namespace, name = split_batch_id(batch_id, client.namespace)
    return Batch.from_object(read_batch(client, namespace, name), client.namespace)


def phase_of(obj: Json) -> str:
    """The phase of a TaskBatch object; Pending before the operator wrote one."""
    return str((obj.get("status") or {}).get("phase") or "Pending")


def poll_batch(client: Client, batch_id: BatchRef,
               poll_interval: float = DEFAULT_POLL_INTERVAL, timeout: float | None = None,
               sleep: Callable[[float], Any] = time.sleep) -> Batch:
    """Read the batch until it has ended; the interval starts short and grows to
    ``poll_interval``. BatchPollTimeoutError after ``timeout`` seconds."""
    namespace, name = split_batch_id(batch_id, client.namespace)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = min(0.1, poll_interval)
    while True:
        obj = read_batch(client, namespace, name)
        if phase_of(obj) in BATCH_TERMINAL_PHASES:
            return Batch.from_object(obj, client.namespace)
        if deadline is not None and time.monotonic() >= deadline:
            raise BatchPollTimeoutError(f"{namespace}/{name}", phase_of(obj), timeout or 0)
        sleep(interval)
        interval = min(poll_interval, interval * 1.5)


async def poll_batch_async(client: Client, batch_id: BatchRef,
                           poll_interval: float = DEFAULT_POLL_INTERVAL,
                           timeout: float | None = None) -> Batch:
    """:func:`poll_batch` for asyncio: API calls in a thread, sleeps cancellable."""
    namespace, name = split_batch_id(batch_id, client.namespace)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = min(0.1, poll_interval)
    while True:
        obj = await asyncio.to_thread(read_batch, client, namespace, name)
        if phase_of(obj) in BATCH_TERMINAL_PHASES:
            return Batch.from_object(obj, client.namespace)
        if deadline is not None and time.monotonic() >= deadline:
            raise BatchPollTimeoutError(f"{namespace}/{name}", phase_of(obj), timeout or 0)
        await asyncio.sleep(interval)
        interval = min(poll_interval, interval * 1.5)


def cancel_batch(client: Client, batch_id: BatchRef) -> None:
    """Ask the operator to cancel the batch (``spec.cancel: true``): it creates no more runs
    and cancels the unfinished runs it created. A no-op once the batch ended."""
    namespace, name = split_batch_id(batch_id, client.namespace)
    try:
        client.kube.merge_patch("taskbatches", namespace, name, {"spec": {"cancel": True}})
    except ApiError as exc:
        if exc.status == 404:
            raise BatchNotFoundError(f"{namespace}/{name}") from None
        raise


def _index_of(run: Json) -> int | None:
    ref = (run.get("spec") or {}).get("batch") or {}
    index = ref.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    label = ((run.get("metadata") or {}).get("labels") or {}).get(LABEL_BATCH_INDEX)
    return int(label) if isinstance(label, str) and label.isdigit() else None


def item_runs(client: Client, obj: Json) -> list[Json | None]:
    """The TaskRun of each item of the batch ``obj``, in item order; ``None`` where the item
    has no run (not created yet, or deleted). One paged list of the batch's runs (by label),
    plus a GET per run that an idempotency key gave an item and the list did not hold (a
    run reused from an earlier trigger belongs to that trigger, not to this batch)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or client.namespace
    name = str(meta.get("name", ""))
    keyed = _keyed_runs(obj.get("status") or {})
    by_index: dict[int, Json] = {}
    by_name: dict[str, Json] = {}
    for run in client.kube.list_objects("taskruns", namespace,
                                        label_selector=f"{LABEL_BATCH}={label_value(name)}"):
        if ((run.get("spec") or {}).get("batch") or {}).get("name") != name:
            continue  # a hashed label value shared by another batch's name
        run_name = str((run.get("metadata") or {}).get("name", ""))
        by_name[run_name] = run
        index = _index_of(run)
        if index is not None and (index not in by_index or run_name == f"{name}-{index}"):
            by_index[index] = run
    found: list[Json | None] = []
    for index in range(_item_count(obj)):
        if index not in keyed:
            found.append(by_index.get(index))
            continue
        run_name = keyed[index]
        if run_name not in by_name:
            try:
                by_name[run_name] = read_run(client, namespace, run_name)
            except TaskRunNotFoundError:
                found.append(None)
                continue
        found.append(by_name[run_name])
    return found


def batch_runs(client: Client, batch_id: BatchRef, output_type: Any = Any) -> list[Run[Any]]:
    """The runs of the batch's items that have one, in item order."""
    namespace, name = split_batch_id(batch_id, client.namespace)
    obj = read_batch(client, namespace, name)
    return [Run.from_object(run, client, output_type)
            for run in item_runs(client, obj) if run is not None]


def _missing_result(batch: Batch, index: int) -> Result[Any]:
    """The result of an item that has no run to read."""
    name = batch.run_names[index]
    if name is not None:
        status = MISSING
        why = f"its run {name} was deleted before it could be read"
    elif batch.is_finished:
        status = batch.status if batch.status in ("Canceled", "Failed") else MISSING
        why = f"the batch ended {batch.status} before creating it"
        reason = batch.failure_message() if batch.status == "Failed" else None
        if reason:
            why += f" ({reason})"
    else:
        status = MISSING
        why = f"the batch is {batch.status} and has not created it yet"
    run_id = f"{batch.namespace}/{name or f'{batch.name}-{index}'}"
    return Result(False, run_id, batch.task_id, status, None,
                  RunError(status, f"item {index} of batch {batch.id} has no run: {why}"))


def batch_results(client: Client, obj: Json, output_type: Any = Any) -> list[Result[Any]]:
    """One :class:`Result` per item of the batch ``obj``, in item order. An item without a
    run (the batch was canceled or failed before creating it, or its run was deleted) gets
    ``Result(ok=False)`` whose error says so; its ``id`` is the name its run has or would
    have had."""
    runs = item_runs(client, obj)
    existing = [index for index, run in enumerate(runs) if run is not None]
    batch = Batch.from_object(obj, client.namespace, existing)
    return [
        _missing_result(batch, index) if run is None
        else Result.from_run(Run.from_object(run, client, output_type, presign=False))
        for index, run in enumerate(runs)
    ]


def wait_results(client: Client, batch_id: BatchRef,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, timeout: float | None = None,
                 output_type: Any = Any) -> list[Result[Any]]:
    finished = poll_batch(client, batch_id, poll_interval, timeout)
    return batch_results(client, finished.raw, output_type)


# --- the handle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchHandle(Addressed, Generic[OutputT]):
    """A triggered batch. ``id`` is ``namespace/name`` of its TaskBatch; ``run_count`` the
    number of items (each gets one run).

    >>> handle = send_email.batch_trigger([{"payload": p} for p in payloads])  # doctest: +SKIP
    >>> results = handle.results(timeout=600)                                # doctest: +SKIP
    >>> [r.ok for r in results]                                              # doctest: +SKIP
    [True, True, False]
    """

    id: str
    task_id: str
    run_count: int
    client: Client | None = field(default=None, repr=False, compare=False)
    output_type: Any = field(default=Any, repr=False, compare=False)

    def retrieve(self) -> Batch:
        """The batch as it stands now."""
        return retrieve_batch(self._client(), self.id)

    async def retrieve_async(self) -> Batch:
        """:meth:`retrieve` in a thread."""
        return await asyncio.to_thread(self.retrieve)

    def poll(self, poll_interval: float = DEFAULT_POLL_INTERVAL,
             timeout: float | None = None) -> Batch:
        """Wait (polling) until the batch has ended: every run of it ended, or it was
        canceled or failed. BatchPollTimeoutError after ``timeout`` seconds."""
        return poll_batch(self._client(), self.id, poll_interval, timeout)

    async def poll_async(self, poll_interval: float = DEFAULT_POLL_INTERVAL,
                         timeout: float | None = None) -> Batch:
        """:meth:`poll` for asyncio (cancellable while it polls)."""
        return await poll_batch_async(self._client(), self.id, poll_interval, timeout)

    def runs(self) -> list[Run[OutputT]]:
        """The runs of the items created so far, in item order (including runs that an
        item's idempotency key reused from an earlier trigger)."""
        return batch_runs(self._client(), self.id, self.output_type)

    async def runs_async(self) -> list[Run[OutputT]]:
        """:meth:`runs` in a thread."""
        return await asyncio.to_thread(self.runs)

    def results(self, poll_interval: float = DEFAULT_POLL_INTERVAL,
                timeout: float | None = None) -> list[Result[OutputT]]:
        """Wait (polling, like :meth:`poll`) until the batch has ended, then one
        :class:`Result` per item, in item order. Unlike ``batch_trigger_and_wait`` it does
        not make a parent run wait (it keeps its queue slot)."""
        return wait_results(self._client(), self.id, poll_interval, timeout,
                            self.output_type)

    async def results_async(self, poll_interval: float = DEFAULT_POLL_INTERVAL,
                            timeout: float | None = None) -> list[Result[OutputT]]:
        """:meth:`results` for asyncio (cancellable while it polls)."""
        client = self._client()
        finished = await poll_batch_async(client, self.id, poll_interval, timeout)
        return await asyncio.to_thread(batch_results, client, finished.raw, self.output_type)

    def cancel(self) -> None:
        """Cancel the batch: no more runs are created and its unfinished runs are canceled
        (runs reused through an idempotency key belong to their own trigger and go on)."""
        cancel_batch(self._client(), self.id)

    async def cancel_async(self) -> None:
        await asyncio.to_thread(self.cancel)


BatchRef = str | BatchHandle[Any] | Batch
"""A batch id (``namespace/name`` or a bare name), a BatchHandle or a Batch."""


# --- by id -----------------------------------------------------------------------------------


def retrieve(batch_id: BatchRef) -> Batch:
    """The batch as it stands: phase, number of items, runs created, runs per state.

    >>> b = batch.retrieve("jobs/send-email-b-x7k2p")     # doctest: +SKIP
    """
    return retrieve_batch(default_client(), batch_id)


async def retrieve_async(batch_id: BatchRef) -> Batch:
    """:func:`retrieve` in a thread."""
    return await asyncio.to_thread(retrieve, batch_id)


def poll(batch_id: BatchRef, *, poll_interval: float = DEFAULT_POLL_INTERVAL,
         timeout: float | None = None) -> Batch:
    """Wait (polling) until the batch has ended; BatchPollTimeoutError after ``timeout`` s.

    >>> b = batch.poll(handle.id, timeout=600)     # doctest: +SKIP
    """
    return poll_batch(default_client(), batch_id, poll_interval, timeout)


async def poll_async(batch_id: BatchRef, *, poll_interval: float = DEFAULT_POLL_INTERVAL,
                     timeout: float | None = None) -> Batch:
    """:func:`poll` for asyncio (cancellable while it polls)."""
    return await poll_batch_async(default_client(), batch_id, poll_interval, timeout)


def cancel(batch_id: BatchRef) -> None:
    """Cancel a batch: it creates no more runs and its unfinished runs end Canceled. Canceling
    a batch that has ended changes nothing.

    >>> batch.cancel("jobs/send-email-b-x7k2p")     # doctest: +SKIP
    """
    cancel_batch(default_client(), batch_id)


async def cancel_async(batch_id: BatchRef) -> None:
    await asyncio.to_thread(cancel, batch_id)


__all__ = [
    "Batch", "BatchHandle", "BatchItem", "cancel", "cancel_async", "item", "poll",
    "poll_async", "retrieve", "retrieve_async",
]
