"""Defining tasks: ids, settings, types from annotations, the registry, and the calls that
are refused before any I/O (waiting outside a task)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from kubetasks import (
    Context,
    NotInTaskError,
    RetryOptions,
    Task,
    TaskDefinitionError,
    queue,
    task,
)
from kubetasks.tasks import registered


class In(BaseModel):
    n: int


class Out(BaseModel):
    doubled: int


@task(id="unit-double", queue=queue("unit", concurrency_limit=2),
      retry=RetryOptions(max_attempts=2), machine="micro", max_duration="5m", ttl="10m")
def double(payload: In, ctx: Context) -> Out:
    return Out(doubled=payload.n * 2)


@task(id="unit-async")
async def async_task(payload: dict[str, int], ctx: Context) -> list[int]:
    return [payload["a"]]


def test_the_decorator_returns_a_typed_task_with_its_settings() -> None:
    assert isinstance(double, Task)
    assert double.id == "unit-double"
    assert double.payload_type is In and double.output_type is Out
    assert double.queue == queue("unit", concurrency_limit=2)
    assert double.max_duration_seconds == 300 and double.ttl_seconds == 600
    assert double.entrypoint == "tests.unit.sdk.test_tasks:double"
    assert not double.is_async
    assert async_task.is_async
    assert async_task.payload_type == dict[str, int]
    assert async_task.output_type == list[int]
    assert registered()["unit-double"] is double
    assert double.fn(In(n=2), None) == Out(doubled=4)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_id", ["Send_Email", "", "-x", "x" * 64, "a.b"])
def test_task_ids_must_be_dns_labels(bad_id: str) -> None:
    with pytest.raises(TaskDefinitionError, match="must be a DNS label"):
        task(id=bad_id)


def test_bad_settings_fail_at_the_decorator() -> None:
    with pytest.raises(TaskDefinitionError, match="max_duration"):
        task(id="x", max_duration="forever")
    with pytest.raises(TaskDefinitionError, match="queue"):
        task(id="x", queue="emails")  # type: ignore[arg-type]


def test_task_functions_take_payload_and_ctx() -> None:
    with pytest.raises(TaskDefinitionError, match=r"takes 1 parameter\(s\); it must take"):
        @task(id="one-arg")
        def one_arg(payload: Any) -> None: ...  # type: ignore[arg-type]


def test_two_functions_cannot_share_an_id() -> None:
    with pytest.raises(TaskDefinitionError, match="give each task its own id"):
        @task(id="unit-double")
        def other(payload: Any, ctx: Context) -> None: ...


def test_trigger_and_wait_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(NotInTaskError, match=r"trigger_and_wait\(\) only works inside a "
                                              r"running task"):
        double.trigger_and_wait(In(n=1))


async def test_trigger_and_wait_async_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(NotInTaskError, match=r"tasks\.trigger_and_poll"):
        await double.trigger_and_wait_async(In(n=1))


def test_batch_trigger_and_wait_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(NotInTaskError, match=r"batch_trigger_and_wait\(\) only works inside "
                                              r"a running task.*batch_trigger\(\) and then"):
        double.batch_trigger_and_wait([{"payload": In(n=1)}])


async def test_batch_trigger_and_wait_async_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(NotInTaskError, match=r"batch_trigger_and_wait_async\(\)"):
        await double.batch_trigger_and_wait_async([{"payload": In(n=1)}])
