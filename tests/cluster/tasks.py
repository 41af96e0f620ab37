"""Tasks that cluster tests run through the real worker (``kubetasks worker``).

``run`` does what its payload says, so each operator test states its runs' behaviour in their
payloads; every Task that ``helpers.make_task`` creates points at it:

    {"sleep": 0.5}                      sleep, then succeed
    {"output": {...}}                   succeed with this output (default {"attempt": n})
    {"exit": 65}                        raise AbortTaskRunError: fail at once, exit 65
    {"fail_before_attempt": 2}          raise Flaky (exit 1) on attempts before 2, then succeed
    {"kill_self_before_attempt": 2}     SIGKILL itself (a crash) on attempts before 2
    {"output_bytes": 40000}             succeed with an output of that many characters

The other tasks exercise the SDK (see test_sdk_*.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kubetasks import AbortTaskRunError, Context, ScheduledPayload, idempotency_keys, task


class Flaky(Exception):
    """A failure that a retry cures."""


class ExitCode(Exception):
    """The payload asked for a failure with an exit code other than the abort code."""


@task(id="behave")
def run(payload: dict[str, Any], ctx: Context) -> Any:
    attempt = ctx.attempt.number
    time.sleep(float(payload.get("sleep", 0)))
    if attempt < int(payload.get("kill_self_before_attempt", 0)):
        os.kill(os.getpid(), signal.SIGKILL)
    if attempt < int(payload.get("fail_before_attempt", 0)):
        raise Flaky(f"attempt {attempt}")
    code = int(payload.get("exit", 0))
    if code == 65:
        raise AbortTaskRunError(f"payload asked to abort (exit {code})")
    if code:
        raise ExitCode(f"exit {code}")
    if "output_bytes" in payload:
        return {"attempt": attempt, "pad": "o" * int(payload["output_bytes"])}
    return payload.get("output", {"attempt": attempt})


# --- SDK tests -------------------------------------------------------------------------------


class Order(BaseModel):
    id: str
    amount: int


class Receipt(BaseModel):
    order_id: str
    total: int
    attempt: int


@task(id="receipt")
def receipt(payload: Order, ctx: Context) -> Receipt:
    """Typed payload and output: pydantic models on both sides."""
    return Receipt(order_id=payload.id, total=payload.amount * 2, attempt=ctx.attempt.number)


@task(id="blob")
def blob(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Returns a large output: {"size": n} characters, or the payload's own length."""
    text = payload.get("text", "")
    size = int(payload.get("size", 0))
    return {"echo_length": len(text), "data": "x" * size, "tags": ctx.tags,
            "metadata": ctx.metadata}


@task(id="parent")
def parent(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Triggers ``child`` and waits for it; on attempts before ``fail_before_attempt`` it
    fails after the child finished (the retry must not trigger the child again)."""
    key = idempotency_keys.create("the-child")
    result = child.trigger_and_wait({"value": payload.get("value", 1),
                                     "sleep": payload.get("child_sleep", 0)},
                                    idempotency_key=key)
    if ctx.attempt.number < int(payload.get("fail_before_attempt", 0)):
        raise Flaky(f"parent attempt {ctx.attempt.number} fails after its child")
    return {"child": result.unwrap(), "child_id": result.id, "ok": result.ok}


@task(id="child")
def child(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    time.sleep(float(payload.get("sleep", 0)))
    if payload.get("fail"):
        raise AbortTaskRunError("the child was told to fail")
    return {"doubled": int(payload["value"]) * 2, "parent": ctx.run.parent_id}


@task(id="async-parent")
async def async_parent(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """An async task that waits for a child through the async API."""
    result = await child.trigger_and_wait_async({"value": payload["value"],
                                                 "fail": payload.get("child_fail", False)})
    return {"ok": result.ok, "output": result.output,
            "error_type": result.error.type if result.error else None}


@task(id="cancellable")
def cancellable(payload: dict[str, Any], ctx: Context) -> None:
    """Sleeps until SIGTERM, then records that it saw the cancellation (in a file named by
    the payload) before it exits."""
    marker = Path(payload["marker"])
    try:
        time.sleep(600)
    finally:
        marker.write_text(f"cancelled={ctx.is_cancelled()}")


@task(id="async-cancellable")
async def async_cancellable(payload: dict[str, Any], ctx: Context) -> None:
    marker = Path(payload["marker"])
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        marker.write_text(f"cancelled={ctx.is_cancelled()}")
        raise


@task(id="batch-parent")
def batch_parent(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Batch-triggers ``child`` for each value and waits for all; values listed in ``fail``
    make their child fail. Keys scoped to this run: a retried parent gets the same children
    back instead of triggering them again."""
    fail = set(payload.get("fail", []))
    items = [{"payload": {"value": v, "fail": v in fail, "sleep": payload.get("sleep", 0)},
              "options": {"idempotency_key": f"item-{n}"}}
             for n, v in enumerate(payload["values"])]
    results = child.batch_trigger_and_wait(items)
    if ctx.attempt.number < int(payload.get("fail_before_attempt", 0)):
        raise Flaky(f"batch parent attempt {ctx.attempt.number} fails after its batch")
    return {"results": [{"ok": r.ok, "output": r.output, "status": r.status, "id": r.id}
                        for r in results]}


# --- CLI tests -------------------------------------------------------------------------------


@task(id="say")
def say(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Prints each of ``payload["lines"]`` on stdout (the attempt's log), ``sleep`` seconds
    apart, and returns how many it printed."""
    lines = list(payload.get("lines", []))
    for index, line in enumerate(lines):
        if index:
            time.sleep(float(payload.get("sleep", 0)))
        print(line, flush=True)
    return {"printed": len(lines)}


@task(id="tick")
def tick(payload: ScheduledPayload, ctx: Context) -> dict[str, Any]:
    """A schedule's task: sleeps as long as the run's metadata says, returns its payload as
    the worker typed it."""
    time.sleep(float(ctx.metadata.get("sleep", 0)))
    return {**payload.model_dump(mode="json"), "typed": type(payload).__name__,
            "aware": payload.timestamp.tzinfo is not None}


@task(id="needs-file")
def needs_file(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Fails (printing why) until the file ``payload["path"]`` exists: a fault fixed outside
    the task, after which a replay succeeds."""
    path = Path(payload["path"])
    print(f"looking for {path}", flush=True)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    return {"found": str(path)}
