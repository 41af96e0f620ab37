"""What a running task knows about itself: its run, attempt and task, tags, metadata, a
logger, and whether it has been asked to stop. The worker sets it; task code receives it as
``ctx`` and the SDK finds it with :func:`current_context` (so that ``trigger_and_wait``
knows its parent)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """The run being executed."""

    id: str
    """``namespace/name``, the same id ``RunHandle.id`` and ``runs.retrieve`` use."""
    name: str
    namespace: str
    uid: str
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    created_at: dt.datetime | None = None
    parent_id: str | None = None
    """Id of the run that triggered this one from inside its task, if any."""


@dataclass(frozen=True)
class AttemptInfo:
    """The current attempt: attempt 1 is the first, a retry is 2, and so on."""

    number: int
    pod: str | None = None


@dataclass(frozen=True)
class TaskInfo:
    """The deployed task: its id and the function it runs."""

    id: str
    entrypoint: str


class Context:
    """The second argument of every task function.

    >>> from kubetasks import Context, task
    >>> @task(id="hello")
    ... def hello(payload: dict, ctx: Context) -> str:
    ...     ctx.logger.info("run %s, attempt %d", ctx.run.id, ctx.attempt.number)
    ...     return f"hello {payload['name']}"
    """

    def __init__(self, run: RunInfo, attempt: AttemptInfo, task: TaskInfo,
                 logger: logging.Logger | None = None,
                 cancelled: threading.Event | None = None) -> None:
        self.run = run
        self.attempt = attempt
        self.task = task
        self.logger = logger or logging.getLogger(f"kubetasks.task.{task.id}")
        self.cancelled = cancelled or threading.Event()
        """Set when the pod was asked to stop (cancel, max duration, node drain)."""

    @property
    def tags(self) -> list[str]:
        return self.run.tags

    @property
    def metadata(self) -> dict[str, Any]:
        return self.run.metadata

    def is_cancelled(self) -> bool:
        """True once the pod was asked to stop; long loops can check it between steps."""
        return self.cancelled.is_set()

    def __repr__(self) -> str:
        return (f"Context(run={self.run.id!r}, attempt={self.attempt.number}, "
                f"task={self.task.id!r})")


_current: ContextVar[Context | None] = ContextVar("kubetasks_context", default=None)
# The worker runs one task per process; threads the task starts do not inherit the
# ContextVar, so the process-wide value is the fallback.
_process_context: Context | None = None


def current_context() -> Context | None:
    """The context of the task running here, or ``None`` outside a task."""
    return _current.get() or _process_context


@contextlib.contextmanager
def running(ctx: Context, *, process_wide: bool = False) -> Iterator[Context]:
    """Make ``ctx`` the current context for the duration of the block."""
    global _process_context
    token = _current.set(ctx)
    previous = _process_context
    if process_wide:
        _process_context = ctx
    try:
        yield ctx
    finally:
        _current.reset(token)
        if process_wide:
            _process_context = previous
