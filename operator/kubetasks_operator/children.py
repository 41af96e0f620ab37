"""The TaskRun of one batch item, and the idempotency digest of a keyed item: pure functions
of the TaskBatch and the item (the Job builder's counterpart for batches)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from kubetasks.api.v1alpha1 import API_VERSION, BatchItem
from kubetasks.protocol.idempotency import IdempotencyKey, Scope
from kubetasks.protocol.pod import LABEL_BATCH, LABEL_BATCH_INDEX, LABEL_TASK, label_value

Json = dict[str, Any]
MAX_ITEMS = 1000
_ITEMS = TypeAdapter(list[BatchItem])


def item_key(batch: Json, item: Json) -> IdempotencyKey | None:
    """The item's idempotency key with its scope made concrete. As in the SDK, a key without
    a scope is scoped to the parent run when the batch has one, else global; outside a run
    every scope is global."""
    options = item.get("options") or {}
    key = options.get("idempotencyKey")
    if not key:
        return None
    parent = (batch.get("spec") or {}).get("parent") or {}
    scope: Scope = options.get("idempotencyKeyScope") or ("run" if parent else "global")
    if not parent.get("uid") or scope == "global":
        return IdempotencyKey(str(key), "global")
    if scope == "attempt":
        return IdempotencyKey(str(key), "attempt", parent["uid"], parent.get("attempt") or 0)
    return IdempotencyKey(str(key), "run", parent["uid"])


def child_run(batch: Json, index: int, item: Json, name: str,
              extra_labels: dict[str, str] | None = None) -> Json:
    """The TaskRun for item ``index``: the item's payload and options, linked to the batch
    (spec.batch, labels, owner reference) and to the batch's parent run, if any. The batch,
    not each run, is what a waiting parent waits on, so ``parent.wait`` is false here."""
    meta, spec = batch["metadata"], batch.get("spec") or {}
    task = spec["task"]
    run_spec: Json = dict(item.get("options") or {})
    run_spec["task"] = task
    if item.get("payloadRef") is not None:
        run_spec["payloadRef"] = item["payloadRef"]
    else:
        run_spec["payload"] = item.get("payload")
    run_spec["batch"] = {"name": meta["name"], "index": index}
    parent = spec.get("parent")
    if parent:
        run_spec["parent"] = {**parent, "wait": False}
    labels = {
        LABEL_TASK: task,
        LABEL_BATCH: label_value(meta["name"]),
        LABEL_BATCH_INDEX: str(index),
        **(extra_labels or {}),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "TaskRun",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "TaskBatch", "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": False,
            }],
        },
        "spec": run_spec,
    }


def is_item_run(run: Json, batch: str, index: int) -> bool:
    """``run`` was created by batch ``batch`` for item ``index``."""
    ref = (run.get("spec") or {}).get("batch") or {}
    return bool(ref.get("name") == batch and ref.get("index") == index)


def parse_items(raw: Any, expected: int) -> list[Json]:
    """The items of an ``itemsRef`` document, checked as the API server checks inline items
    (an uploaded list bypasses its validation). ValueError says what is wrong."""
    if not isinstance(raw, list):
        raise ValueError(f"the uploaded items are a JSON {type(raw).__name__}, not an array")
    if len(raw) != expected:
        raise ValueError(f"the uploaded list has {len(raw)} items but spec.itemCount is "
                         f"{expected}")
    if not 1 <= len(raw) <= MAX_ITEMS:
        raise ValueError(f"a batch holds 1 to {MAX_ITEMS} items, not {len(raw)}")
    try:
        items = _ITEMS.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"item {where}: {first['msg']} ({exc.error_count()} error(s) in all)"
                         ) from None
    return [item.model_dump(mode="json") for item in items]
