"""The Kopf handlers' contract with the scheduler loop."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from kubetasks_operator import handlers


@pytest.mark.parametrize("handler", [
    handlers.task_event, handlers.taskqueue_event,
    handlers.job_event, handlers.pod_event,
])
def test_watch_handlers_run_in_the_event_loop_not_in_kopfs_thread_pool(
    handler: Callable[..., Any],
) -> None:
    # Kopf runs plain functions in threads; these mutate the World and set the
    # scheduler's asyncio.Event, which only the loop's own thread may do.
    assert inspect.iscoroutinefunction(handler)
