"""Schedules: a task triggered on a cron, declared in code or created at run time.

Declarative: ``@task(id=..., cron="0 2 * * *")``, or ``cron=schedule("0 2 * * *",
timezone="Europe/Paris")``. ``kubetasks deploy`` applies it as the TaskSchedule named after
the task, and deletes it once the code no longer declares it.

Imperative: :func:`create` makes a TaskSchedule for any task, for instance one per user
(``external_id``); with a ``deduplication_key`` a second ``create`` updates the schedule of
that key instead of adding one. The other functions manage schedules by id: ``namespace/name``
(:attr:`Schedule.id`) or a bare name in the configured namespace. Every function has an
``*_async`` counterpart that runs the API calls in a thread.

Each tick creates one run of the task, whose payload is a :class:`ScheduledPayload`. Missed
ticks are not backfilled: after an outage at most the latest one runs, and only within the
schedule's ``starting_deadline`` (300 s by default).

>>> from kubetasks import schedules
>>> s = schedules.create("send-report", "0 9 * * MON-FRI", timezone="Europe/Paris",
...                      external_id="user-42", deduplication_key="user-42-report")
... # doctest: +SKIP
>>> s.description, s.next_run                       # doctest: +SKIP
('At 09:00, Monday through Friday', datetime.datetime(2030, 1, 7, 8, 0, tzinfo=...UTC))
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import typing
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Unpack

from kubetasks._internal import scheduling
from kubetasks._internal.client import Json, default_client
from kubetasks._internal.threads import iterate_in_threads
from kubetasks.errors import InvalidOptionError, InvalidScheduleError, ScheduleNotFoundError
from kubetasks.handles import parse_time, split_id
from kubetasks.options import (
    ONE_YEAR,
    Duration,
    ScheduleChangesDict,
    ScheduleOptionsDict,
    to_schedule_fields,
    whole_seconds,
)
from kubetasks.protocol import cron as crons
from kubetasks.protocol.pod import LABEL_SCHEDULE_TYPE, SCHEDULE_DECLARATIVE

if TYPE_CHECKING:
    from kubetasks.api.v1alpha1 import ConcurrencyPolicy
    from kubetasks.scheduled_payload import ScheduledPayload

ScheduleType = Literal["DECLARATIVE", "IMPERATIVE"]
SCHEDULE_TYPES: tuple[ScheduleType, ...] = typing.get_args(ScheduleType)
DEFAULT_STARTING_DEADLINE = 300
"""Seconds a tick may come late and still run, when the schedule does not say."""

# This module defines ``list`` (``schedules.list``): the classes below are declared before
# it, so their ``list[...]`` annotations are the built-in list.


# --- declared in code ------------------------------------------------------------------------


@dataclass(frozen=True)
class CronSchedule:
    """A task's declarative schedule, for ``@task(cron=...)``: made by :func:`schedule`, or
    from a plain cron string (read in UTC). Checked when it is made."""

    cron: str
    timezone: str | None = None
    concurrency_policy: ConcurrencyPolicy | None = None
    starting_deadline_seconds: int | None = None

    def __post_init__(self) -> None:
        fields = to_schedule_fields({
            "cron": self.cron, "timezone": self.timezone,
            "concurrency_policy": self.concurrency_policy,
            "starting_deadline": self.starting_deadline_seconds,
        })
        object.__setattr__(self, "cron", fields["cron"])  # normalized: single spaces

    @property
    def description(self) -> str:
        """The cron in English: ``"At 02:00, every day"``."""
        return crons.describe(self.cron)


def schedule(cron: str, timezone: str | None = None, *,
             concurrency_policy: ConcurrencyPolicy | None = None,
             starting_deadline: Duration | None = None) -> CronSchedule:
    """A declarative schedule for ``@task(cron=...)``: the cron (five fields) read in an
    IANA time zone (UTC by default; daylight saving time is followed), what a tick does
    while the previous run is unfinished, and how late a missed tick may still run.

    >>> from kubetasks import schedule, task
    >>> @task(id="nightly-report", cron=schedule("0 2 * * *", timezone="Europe/Paris"))
    ... def nightly_report(payload, ctx) -> None: ...
    >>> nightly_report.schedule.description
    'At 02:00, every day'
    """
    seconds = None if starting_deadline is None else whole_seconds(
        starting_deadline, "starting_deadline", minimum=1, maximum=ONE_YEAR)
    return CronSchedule(cron, timezone, concurrency_policy, seconds)


def as_cron_schedule(value: str | CronSchedule) -> CronSchedule:
    """``@task(cron=...)``'s value as a :class:`CronSchedule`."""
    if isinstance(value, CronSchedule):
        return value
    if isinstance(value, str):
        return CronSchedule(value)
    raise InvalidScheduleError(
        f"cron must be a cron string such as '0 2 * * *' or kubetasks.schedule('0 2 * * *', "
        f"timezone='Europe/Paris'), got {value!r}")


# --- a schedule as it stands -----------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleCondition:
    """One of the operator's conditions on a schedule: ``Ready`` (reasons ``Scheduled``,
    ``InvalidSchedule``, ``TaskNotFound``, ``Inactive``) or ``Skipped`` (why the latest tick
    created no run)."""

    type: str
    status: str
    reason: str | None
    message: str | None
    last_transition_time: dt.datetime | None


@dataclass(frozen=True)
class Schedule:
    """A schedule as ``schedules.retrieve`` found it.

    ``next_run`` and ``upcoming`` are computed from the cron and the time zone, the way the
    operator ticks (empty while inactive); ``last_schedule_time`` and ``last_run_id`` are the
    operator's record of the latest tick.

    >>> s = schedules.retrieve("jobs/nightly-report")     # doctest: +SKIP
    >>> s.cron, s.timezone, s.active                      # doctest: +SKIP
    ('0 2 * * *', 'Europe/Paris', True)
    """

    id: str
    name: str
    namespace: str
    task_id: str
    type: ScheduleType
    """DECLARATIVE (``@task(cron=...)``, owned by ``kubetasks deploy``) or IMPERATIVE."""
    cron: str
    timezone: str
    description: str
    """The cron in English: "At 02:00, every day"."""
    active: bool
    external_id: str | None
    deduplication_key: str | None
    concurrency_policy: str
    """Allow, Forbid or Replace."""
    starting_deadline_seconds: int
    next_run: dt.datetime | None
    upcoming: list[dt.datetime]
    """The next five ticks (UTC)."""
    last_schedule_time: dt.datetime | None
    """The nominal time of the latest tick the operator handled (ran, skipped or missed)."""
    last_run_id: str | None
    """``namespace/name`` of the run of the latest tick that created one."""
    conditions: list[ScheduleCondition]
    queue: str | None
    concurrency_key: str | None
    ttl_seconds: int | None
    max_attempts: int | None
    max_duration_seconds: int | None
    machine: str | None
    tags: list[str]
    metadata: dict[str, Any]
    created_at: dt.datetime | None
    raw: Json = field(repr=False, compare=False)

    def condition(self, type_: str) -> ScheduleCondition | None:
        """The condition of this type (``Ready``, ``Skipped``), if the operator set it."""
        return next((c for c in self.conditions if c.type == type_), None)

    @classmethod
    def from_object(cls, obj: Json, default_namespace: str, now: dt.datetime) -> Schedule:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        namespace = meta.get("namespace") or default_namespace
        name = str(meta.get("name", ""))
        active = spec.get("active", True) is not False
        expression = str(spec.get("cron", ""))
        upcoming = _upcoming(expression, spec.get("timezone"), status, active, now)
        labels = meta.get("labels") or {}
        return Schedule(
            id=f"{namespace}/{name}",
            name=name,
            namespace=namespace,
            task_id=str(spec.get("task", "")),
            type=("DECLARATIVE" if labels.get(LABEL_SCHEDULE_TYPE) == SCHEDULE_DECLARATIVE
                  else "IMPERATIVE"),
            cron=expression,
            timezone=spec.get("timezone") or crons.DEFAULT_TIMEZONE,
            description=status.get("description") or crons.describe(expression),
            active=active,
            external_id=spec.get("externalID"),
            deduplication_key=spec.get("deduplicationKey"),
            concurrency_policy=spec.get("concurrencyPolicy") or "Allow",
            starting_deadline_seconds=int(spec.get("startingDeadlineSeconds")
                                          or DEFAULT_STARTING_DEADLINE),
            next_run=upcoming[0] if upcoming else None,
            upcoming=upcoming,
            last_schedule_time=parse_time(status.get("lastScheduleTime")),
            last_run_id=f"{namespace}/{status['lastRun']}" if status.get("lastRun") else None,
            conditions=[
                ScheduleCondition(str(c.get("type", "")), str(c.get("status", "")),
                                  c.get("reason"), c.get("message"),
                                  parse_time(c.get("lastTransitionTime")))
                for c in status.get("conditions") or []
            ],
            queue=(spec.get("queue") or {}).get("name"),
            concurrency_key=spec.get("concurrencyKey"),
            ttl_seconds=spec.get("ttlSeconds"),
            max_attempts=spec.get("maxAttempts"),
            max_duration_seconds=spec.get("maxDurationSeconds"),
            machine=spec.get("machine"),
            tags=[str(tag) for tag in spec.get("tags") or []],
            metadata=dict(spec.get("metadata") or {}),
            created_at=parse_time(meta.get("creationTimestamp")),
            raw=obj,
        )


def _upcoming(expression: str, timezone: str | None, status: Json, active: bool,
              now: dt.datetime) -> builtins.list[dt.datetime]:
    """The next ticks after ``now``; the operator's record when the cron cannot be read."""
    if not active:
        return []
    try:
        return crons.ticks_after(expression, timezone, now, crons.UPCOMING)
    except Exception:  # written by hand past the API's checks: the operator says why
        found = (parse_time(value) for value in status.get("upcoming") or [])
        return [moment for moment in found if moment is not None]


ScheduleRef = str | Schedule
"""A schedule id (``namespace/name`` or a bare name) or a Schedule."""


def split_schedule_id(schedule_id: ScheduleRef, default_namespace: str) -> tuple[str, str]:
    """(namespace, name) of a schedule id, a bare name or a schedule.

    >>> split_schedule_id("jobs/nightly-report", "default")
    ('jobs', 'nightly-report')
    """
    if isinstance(schedule_id, Schedule):
        schedule_id = schedule_id.id
    return split_id(schedule_id, default_namespace,
                    lambda text: ScheduleNotFoundError(text, default_namespace))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the API ---------------------------------------------------------------------------------


def create(task: str, cron: str, *, deduplication_key: str | None = None,
           **options: Unpack[ScheduleOptionsDict]) -> Schedule:
    """Create a schedule that triggers ``task`` on ``cron`` (five fields, read in
    ``timezone``, UTC by default). Every option is checked before anything is written.
    With ``deduplication_key``, a schedule made earlier with that key is updated to exactly
    what this call asks for (so creating it at every start-up keeps one schedule).

    >>> s = schedules.create("send-report", "0 9 * * MON-FRI", timezone="Europe/Paris",
    ...                      external_id="user-42", deduplication_key="user-42-report",
    ...                      concurrency_policy="Forbid", tags=["reports"])
    ... # doctest: +SKIP
    """
    client = default_client()
    obj, _ = scheduling.create_schedule(client, task, cron, deduplication_key, options)
    return Schedule.from_object(obj, client.namespace, _now())


async def create_async(task: str, cron: str, *, deduplication_key: str | None = None,
                       **options: Unpack[ScheduleOptionsDict]) -> Schedule:
    """:func:`create` in a thread."""
    return await asyncio.to_thread(
        lambda: create(task, cron, deduplication_key=deduplication_key, **options))


def retrieve(schedule_id: ScheduleRef) -> Schedule:
    """The schedule as it stands: cron, time zone, description, the next ticks, the latest
    tick and its run, the operator's conditions.

    >>> s = schedules.retrieve("jobs/send-report-x7k2p")     # doctest: +SKIP
    """
    client = default_client()
    namespace, name = split_schedule_id(schedule_id, client.namespace)
    return Schedule.from_object(scheduling.read_schedule(client, namespace, name),
                                client.namespace, _now())


async def retrieve_async(schedule_id: ScheduleRef) -> Schedule:
    """:func:`retrieve` in a thread."""
    return await asyncio.to_thread(retrieve, schedule_id)


def update(schedule_id: ScheduleRef, **changes: Unpack[ScheduleChangesDict]) -> Schedule:
    """Change some fields of an imperative schedule: the task, the cron or any option of
    :func:`create` (``None`` unsets an option). Schedules declared in code change only
    through the code and ``kubetasks deploy``: ScheduleConflictError.

    >>> schedules.update(s.id, cron="0 8 * * MON-FRI", external_id=None)   # doctest: +SKIP
    """
    client = default_client()
    namespace, name = split_schedule_id(schedule_id, client.namespace)
    obj = scheduling.update_schedule(client, namespace, name, changes)
    return Schedule.from_object(obj, client.namespace, _now())


async def update_async(schedule_id: ScheduleRef,
                       **changes: Unpack[ScheduleChangesDict]) -> Schedule:
    """:func:`update` in a thread."""
    return await asyncio.to_thread(lambda: update(schedule_id, **changes))


def delete(schedule_id: ScheduleRef) -> None:
    """Delete an imperative schedule; the runs it created stay. A schedule declared in code
    goes away when the code no longer declares it and ``kubetasks deploy`` runs.

    >>> schedules.delete(s.id)     # doctest: +SKIP
    """
    client = default_client()
    namespace, name = split_schedule_id(schedule_id, client.namespace)
    scheduling.delete_schedule(client, namespace, name)


async def delete_async(schedule_id: ScheduleRef) -> None:
    """:func:`delete` in a thread."""
    await asyncio.to_thread(delete, schedule_id)


def activate(schedule_id: ScheduleRef) -> Schedule:
    """Let the schedule's ticks create runs again, from the next tick on (the ticks it
    passed while inactive are not caught up).

    >>> schedules.activate(s.id)     # doctest: +SKIP
    """
    return _set_active(schedule_id, True)


async def activate_async(schedule_id: ScheduleRef) -> Schedule:
    """:func:`activate` in a thread."""
    return await asyncio.to_thread(activate, schedule_id)


def deactivate(schedule_id: ScheduleRef) -> Schedule:
    """Stop the schedule's ticks from creating runs until it is activated. Works on
    schedules declared in code too: ``kubetasks deploy`` leaves ``active`` alone.

    >>> schedules.deactivate(s.id)     # doctest: +SKIP
    """
    return _set_active(schedule_id, False)


async def deactivate_async(schedule_id: ScheduleRef) -> Schedule:
    """:func:`deactivate` in a thread."""
    return await asyncio.to_thread(deactivate, schedule_id)


def _set_active(schedule_id: ScheduleRef, active: bool) -> Schedule:
    client = default_client()
    namespace, name = split_schedule_id(schedule_id, client.namespace)
    obj = scheduling.set_active(client, namespace, name, active)
    return Schedule.from_object(obj, client.namespace, _now())


def timezones() -> tuple[str, ...]:
    """Every IANA time zone name a schedule accepts, sorted (``UTC`` included).

    >>> "Europe/Paris" in schedules.timezones()
    True
    """
    return crons.timezones()


async def timezones_async() -> tuple[str, ...]:
    """:func:`timezones` in a thread (the list is read from a file on first use)."""
    return await asyncio.to_thread(timezones)


def _type_selector(value: str) -> str:
    """The label selector of a schedule type (schedules without the label are imperative)."""
    wanted = value.upper() if isinstance(value, str) else value
    if wanted not in SCHEDULE_TYPES:
        raise InvalidOptionError(f"type {value!r} is not a schedule type; use "
                                 "'DECLARATIVE' or 'IMPERATIVE'")
    operator = "=" if wanted == "DECLARATIVE" else "!="
    return f"{LABEL_SCHEDULE_TYPE}{operator}{SCHEDULE_DECLARATIVE}"


def list(
    *,
    task: str | None = None,
    active: bool | None = None,
    type: str | None = None,
    limit: int | None = None,
    namespace: str | None = None,
    page_size: int = 250,
) -> Iterator[Schedule]:
    """Schedules of the namespace that match every filter given, fetched a page at a time as
    you iterate, in the API's order (by name). ``type`` is 'DECLARATIVE' or 'IMPERATIVE';
    ``limit`` caps how many are returned.

    >>> paused = list(schedules.list(task="send-report", active=False))   # doctest: +SKIP
    """
    client = default_client()
    if namespace is not None:
        client = client.in_namespace(namespace)
    selector = None if type is None else _type_selector(type)
    if limit is not None and limit <= 0:
        return
    now = _now()
    found = 0
    for obj in client.kube.list_objects(scheduling.PLURAL, client.namespace,
                                        label_selector=selector, page_size=page_size):
        spec = obj.get("spec") or {}
        if task is not None and spec.get("task") != task:
            continue
        if active is not None and (spec.get("active", True) is not False) != active:
            continue
        yield Schedule.from_object(obj, client.namespace, now)
        found += 1
        if limit is not None and found >= limit:
            return


async def list_async(**filters: Any) -> AsyncIterator[Schedule]:
    """:func:`list` for asyncio: each page is fetched in a thread."""
    async for item in iterate_in_threads(list(**filters)):
        yield item


def __getattr__(name: str) -> Any:
    # ScheduledPayload is a pydantic model: loaded when it is first asked for.
    if name == "ScheduledPayload":
        from kubetasks.scheduled_payload import ScheduledPayload

        return ScheduledPayload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CronSchedule", "Schedule", "ScheduleCondition", "ScheduledPayload", "activate",
    "activate_async", "create", "create_async", "deactivate", "deactivate_async", "delete",
    "delete_async", "list", "list_async", "retrieve", "retrieve_async", "schedule",
    "timezones", "timezones_async", "update", "update_async",
]
