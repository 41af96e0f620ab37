"""Creating TaskBatches: the items read one at a time and checked as they arrive (their
form, their number, the payloads' sizes, each item's options), large payloads and large
lists of items offloaded to object storage, the parent link inside a task, and waiting for a
batch from inside its parent.

Nothing is written before every item has been read and checked. The SDK claims no
idempotency keys for batches and creates no TaskRuns: the operator does both, from the key
and scope written in each item's options and from ``spec.parent``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubetasks._internal.client import Client, Json
from kubetasks._internal.triggering import WAIT_POLL_MAX, _parent_ref, utcnow
from kubetasks.batch import (
    BATCH_TERMINAL_PHASES,
    BatchHandle,
    BatchItem,
    batch_results,
    phase_of,
    read_batch,
)
from kubetasks.context import Context, current_context
from kubetasks.errors import (
    BatchTooLargeError,
    InvalidBatchError,
    KubetasksError,
    NotInTaskError,
    TaskRunCanceledError,
    TaskRunNotFoundError,
)
from kubetasks.handles import Result, read_run
from kubetasks.idempotency_keys import resolve
from kubetasks.options import TriggerOptionsDict, check_dns_label, to_trigger_options
from kubetasks.protocol.payloads import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    Encoded,
    encode_json,
    encode_payload,
)
from kubetasks.protocol.pod import LABEL_TASK
from kubetasks.protocol.storage import batch_items_key, payload_key

ITEM_KEYS = frozenset({"payload", "options"})
ITEM_FORMS = '{"payload": ..., "options": {...}} or batch.item(payload, **options)'
OUTSIDE_A_TASK = "batch_trigger() and then handle.results() (or handle.poll())"


# --- reading and checking the items ----------------------------------------------------------


def _at_item(exc: KubetasksError, index: int) -> KubetasksError:
    """``exc`` with the item's position in front of its message: same class, same
    attributes (``except InvalidDelayError`` still catches it)."""
    cls = type(exc)
    located = cls.__new__(cls, f"item {index}: {exc}")
    located.__dict__.update(exc.__dict__)
    return located


def unpack_item(raw: object, index: int) -> tuple[Any, Mapping[str, Any]]:
    """The payload and options of one item, in either accepted form."""
    options: object
    if isinstance(raw, BatchItem):
        payload, options = raw.payload, raw.options
    elif isinstance(raw, Mapping):
        unknown = sorted(repr(key) for key in raw if key not in ITEM_KEYS)
        if unknown:
            raise InvalidBatchError(
                f"unknown key(s) {', '.join(unknown)}; an item is {ITEM_FORMS}, with trigger "
                'options such as delay or tags inside "options"', index)
        if "payload" not in raw:
            raise InvalidBatchError(
                f'no "payload" key; an item is {ITEM_FORMS} (write {{"payload": None}} for a '
                "run without input)", index)
        payload, options = raw["payload"], raw.get("options")
        if options is None:
            options = {}
    else:
        raise InvalidBatchError(f"expected {ITEM_FORMS}, got {type(raw).__name__}", index)
    if not isinstance(options, Mapping):
        raise InvalidBatchError(
            '"options" must be a mapping of trigger options such as {"delay": "1h", '
            f'"tags": ["vip"]}}, got {type(options).__name__}', index)
    if not all(isinstance(name, str) for name in options):
        raise InvalidBatchError(
            f"option names must be strings such as 'delay', got {sorted(map(repr, options))}",
            index)
    return payload, options


def iterate_items(items: object) -> Iterator[object]:
    """An iterator over ``items``; a clear error for a single item or a non-iterable."""
    if isinstance(items, str | bytes | Mapping | BatchItem) or not isinstance(items, Iterable):
        raise InvalidBatchError(
            f"the items must be a list (or another iterable) of items, each {ITEM_FORMS}; "
            f"got a {type(items).__name__} (for one item pass a list of one: [item])")
    return iter(items)


@dataclass(frozen=True)
class CheckedItem:
    """An item that passed every check: its payload as JSON, its options as the API's
    ``TriggerOptions`` (wire form; empty when none)."""

    encoded: Encoded
    options: Json


class ItemChecker:
    """Checks items as they arrive, so that a bad one stops the reading at once: its form,
    the number of items (at most 1,000), the payloads' total size (at most 10 MiB) and its
    options (as for a single trigger; a delay counts from ``now``; an idempotency key is
    scoped in the caller's context)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.items: list[CheckedItem] = []
        self.total_bytes = 0

    def add(self, raw: object) -> None:
        index = len(self.items)
        if index >= MAX_BATCH_ITEMS:
            raise BatchTooLargeError(index + 1, MAX_BATCH_ITEMS, unit="items")
        payload, options = unpack_item(raw, index)
        try:
            encoded = encode_payload(payload)
        except KubetasksError as exc:
            raise _at_item(exc, index) from None
        total = self.total_bytes + encoded.size
        if total > MAX_BATCH_BYTES:
            raise BatchTooLargeError(total, MAX_BATCH_BYTES, index=index)
        try:
            key = resolve(options["idempotency_key"]) if "idempotency_key" in options else None
            trigger_options = to_trigger_options(cast(TriggerOptionsDict, options), self.now,
                                                 key)
        except KubetasksError as exc:
            raise _at_item(exc, index) from None
        self.total_bytes = total
        self.items.append(CheckedItem(encoded, trigger_options.model_dump(mode="json")))

    def finish(self) -> list[CheckedItem]:
        if not self.items:
            raise InvalidBatchError(
                f"a batch needs at least one item, each {ITEM_FORMS}; got none")
        return self.items


# --- preparing and creating the TaskBatch ----------------------------------------------------


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready to create: every item read and checked, the parent link decided.
    Nothing is uploaded until :meth:`body`."""

    client: Client
    namespace: str
    task_id: str
    items: list[CheckedItem]
    parent: Json | None

    def body(self) -> Json:
        """The TaskBatch to create. Uploads each payload above the client's inline limit
        (the item carries ``payloadRef``), then the list of items when its JSON is above the
        batch inline limit (the spec carries ``itemsRef`` and ``itemCount``)."""
        from kubetasks.api.v1alpha1 import BatchItem as ApiBatchItem
        from kubetasks.api.v1alpha1 import ObjectMeta, TaskBatch, TaskBatchSpec

        client = self.client
        items: list[Json] = []
        for item in self.items:
            fields: Json
            if item.encoded.size <= client.inline_limit:
                fields = {"payload": item.encoded.value}
            else:
                fields = {"payloadRef": client.storage.put(
                    payload_key(self.namespace, self.task_id), item.encoded)}
            if item.options:
                fields["options"] = item.options
            items.append(ApiBatchItem.model_validate(fields).model_dump(mode="json"))
        data, plain = encode_json(items, "the batch's items")
        spec: Json = {"task": self.task_id}
        if len(data) > client.batch_inline_limit:
            spec["itemsRef"] = client.storage.put(
                batch_items_key(self.namespace, self.task_id), Encoded(data, plain))
            spec["itemCount"] = len(items)
        else:
            spec["items"] = items
        if self.parent is not None:
            spec["parent"] = self.parent
        meta = ObjectMeta(generate_name=f"{self.task_id}-b-",
                          labels={LABEL_TASK: self.task_id})
        body: Json = TaskBatch(metadata=meta, spec=TaskBatchSpec.model_validate(spec)
                               ).model_dump(mode="json")
        return body


def _start(client: Client, task_id: str, wait: bool, method: str) -> Json | None:
    """The checks made before any item is read; the batch's ``spec.parent``."""
    ctx = current_context()
    if wait and ctx is None:
        raise NotInTaskError(method, OUTSIDE_A_TASK)
    check_dns_label(task_id, "task id", "send-email")
    return _parent_ref(client, ctx, wait, method)


def prepare_batch(client: Client, task_id: str, items: Iterable[object], *, wait: bool,
                  method: str) -> PreparedBatch:
    """Read and check every item; nothing is written."""
    parent = _start(client, task_id, wait, method)
    checker = ItemChecker(utcnow())
    for raw in iterate_items(items):
        checker.add(raw)
    return PreparedBatch(client, client.namespace, task_id, checker.finish(), parent)


async def prepare_batch_async(client: Client, task_id: str,
                              items: Iterable[object] | AsyncIterable[object], *, wait: bool,
                              method: str) -> PreparedBatch:
    """:func:`prepare_batch` for asyncio; ``items`` may also be an async iterable."""
    if not isinstance(items, AsyncIterable):
        return await asyncio.to_thread(prepare_batch, client, task_id, items, wait=wait,
                                       method=method)
    parent = _start(client, task_id, wait, method)
    checker = ItemChecker(utcnow())
    async for raw in items:
        await asyncio.to_thread(checker.add, raw)
    return PreparedBatch(client, client.namespace, task_id, checker.finish(), parent)


def create_batch(prepared: PreparedBatch, output_type: Any = Any) -> BatchHandle[Any]:
    """Upload what must be offloaded and create the TaskBatch."""
    created = prepared.client.kube.create_object("taskbatches", prepared.namespace,
                                                 prepared.body())
    meta = created["metadata"]
    return BatchHandle(f"{meta.get('namespace') or prepared.namespace}/{meta['name']}",
                       prepared.task_id, len(prepared.items), prepared.client, output_type)


def batch_trigger(client: Client, task_id: str, items: Iterable[object],
                  output_type: Any = Any) -> BatchHandle[Any]:
    prepared = prepare_batch(client, task_id, items, wait=False, method="batch_trigger")
    return create_batch(prepared, output_type)


async def batch_trigger_async(client: Client, task_id: str,
                              items: Iterable[object] | AsyncIterable[object],
                              output_type: Any = Any) -> BatchHandle[Any]:
    prepared = await prepare_batch_async(client, task_id, items, wait=False,
                                         method="batch_trigger_async")
    return await asyncio.to_thread(create_batch, prepared, output_type)


# --- waiting for a batch from inside its parent ----------------------------------------------


def _batch_done(client: Client, ctx: Context, namespace: str, name: str) -> Json | None:
    """The batch when it has ended and the parent may go on; else ``None``.

    As for a single child (``triggering._child_done``): the operator keeps the parent
    Waiting (its queue slot given back) until the batch has ended and the parent got a slot
    again, so the parent goes on only when the batch is over and it is no longer Waiting."""
    obj = read_batch(client, namespace, name)
    if phase_of(obj) not in BATCH_TERMINAL_PHASES:
        return None
    try:
        parent = read_run(client, ctx.run.namespace, ctx.run.name)
    except TaskRunNotFoundError:
        return obj
    if ((parent.get("status") or {}).get("phase")) == "Waiting":
        return None
    return obj


def wait_for_batch(client: Client, ctx: Context, handle: BatchHandle[Any],
                   sleep: Callable[[float], Any] = time.sleep) -> list[Result[Any]]:
    """Poll (0.1 s growing to 1 s) until the batch is over, then one Result per item.
    TaskRunCanceledError as soon as the parent run is asked to stop."""
    interval = 0.1
    while True:
        if ctx.is_cancelled():
            raise TaskRunCanceledError(f"run {ctx.run.id} was asked to stop")
        done = _batch_done(client, ctx, handle.namespace, handle.name)
        if done is not None:
            return batch_results(client, done, handle.output_type)
        sleep(interval)
        interval = min(WAIT_POLL_MAX, interval * 1.5)


def batch_trigger_and_wait(client: Client, task_id: str, items: Iterable[object],
                           output_type: Any = Any,
                           sleep: Callable[[float], Any] = time.sleep) -> list[Result[Any]]:
    prepared = prepare_batch(client, task_id, items, wait=True,
                             method="batch_trigger_and_wait")
    ctx = current_context()
    assert ctx is not None
    handle = create_batch(prepared, output_type)
    return wait_for_batch(client, ctx, handle, sleep)


async def batch_trigger_and_wait_async(client: Client, task_id: str,
                                       items: Iterable[object] | AsyncIterable[object],
                                       output_type: Any = Any) -> list[Result[Any]]:
    prepared = await prepare_batch_async(client, task_id, items, wait=True,
                                         method="batch_trigger_and_wait_async")
    ctx = current_context()
    assert ctx is not None
    handle = await asyncio.to_thread(create_batch, prepared, output_type)
    interval = 0.1
    while True:
        done = await asyncio.to_thread(_batch_done, client, ctx, handle.namespace,
                                       handle.name)
        if done is not None:
            return await asyncio.to_thread(batch_results, client, done, output_type)
        await asyncio.sleep(interval)
        interval = min(WAIT_POLL_MAX, interval * 1.5)
