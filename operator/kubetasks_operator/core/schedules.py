"""TaskSchedules, decided purely: a schedule, what the operator knows of its runs, and the
clock in; the run to create for a due tick, the runs to cancel, the status and the next
wake-up out.

The rules (README, "Schedules"):

- One run per tick, named ``<schedule>-<yyyymmddhhmm>`` after the tick's nominal UTC time, so
  a tick handled twice (an operator restarted between creating the run and writing
  ``lastScheduleTime``) creates nothing the second time.
- No backfill. When several ticks passed unhandled (the operator was down), only the latest
  may still run, and only if it is at most ``startingDeadlineSeconds`` late; the others are
  counted as missed. ``lastScheduleTime`` moves past all of them either way.
- Ticks while the schedule is inactive are never caught up: ticks count from ``activeSince``,
  the moment the operator saw the schedule active (its creation, or a reactivation).
- ``concurrencyPolicy``: Allow creates the run whatever else runs; Forbid skips the tick while
  a run of the schedule is unfinished; Replace cancels the unfinished runs and creates the new
  one.
- A tick whose Task does not exist creates no run (the run could only fail); the schedule
  says TaskNotFound.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetasks.errors import InvalidScheduleError
from kubetasks.protocol import cron

DEFAULT_STARTING_DEADLINE = 300  # seconds; the CRD field's documented default
MISSED_COUNT_LIMIT = 100  # missed ticks counted at most (the message says "at least")
UTC = dt.UTC

READY = "Ready"
SKIPPED = "Skipped"

# Reasons of the Ready condition
SCHEDULED = "Scheduled"
INVALID_SCHEDULE = "InvalidSchedule"
TASK_NOT_FOUND = "TaskNotFound"
INACTIVE = "Inactive"
# Reasons of the Skipped condition (status True: the latest tick created no run)
RAN = "Ran"
FORBID = "ConcurrencyPolicyForbid"
MISSED_DEADLINE = "MissedStartingDeadline"


@dataclass(frozen=True)
class ScheduleState:
    """A TaskSchedule and what the operator knows around it, as plain values."""

    namespace: str
    name: str
    task: str
    cron: str
    timezone: str | None
    active: bool
    created: float
    generation: int = 1
    concurrency_policy: str = "Allow"
    starting_deadline_seconds: int = DEFAULT_STARTING_DEADLINE
    schedule_type: str = "IMPERATIVE"
    external_id: str | None = None
    run_options: Mapping[str, Any] = field(default_factory=dict)
    """Spec fields copied to every run (queue, concurrencyKey, ttlSeconds, ...)."""
    status: Mapping[str, Any] = field(default_factory=dict)
    """The status as stored (camelCase)."""
    task_exists: bool = True
    unfinished_runs: tuple[str, ...] = ()
    """This schedule's runs that are not finished, by name."""


@dataclass(frozen=True)
class TickRun:
    """The TaskRun of one tick."""

    name: str
    nominal: float
    spec: dict[str, Any]
    annotation: str
    """The nominal time as RFC 3339, for ``kubetasks.dev/schedule-time``."""


@dataclass(frozen=True)
class ScheduleDecision:
    create: TickRun | None = None
    cancel: tuple[str, ...] = ()
    status: dict[str, Any] = field(default_factory=dict)
    """Merge patch of the status; empty when nothing changed."""
    wake_at: float | None = None
    missed: int = 0
    """Ticks passed over without a run by this decision (late, forbidden or task missing)."""
    event: tuple[str, str, str] | None = None
    """(type, reason, message) of an Event to post on the schedule."""


def run_name(schedule: str, nominal: float) -> str:
    """``<schedule>-<yyyymmddhhmm>`` (UTC): at most 76 characters for a 63-character name."""
    return f"{schedule}-{_utc(nominal).strftime('%Y%m%d%H%M')}"


def rfc3339(moment: float | dt.datetime) -> str:
    when = _utc(moment) if isinstance(moment, float | int) else moment.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, UTC)


def decide_schedule(state: ScheduleState, now: float) -> ScheduleDecision:
    """What to do about one schedule at ``now``."""
    stored = state.status
    patch: dict[str, Any] = {}
    conditions = _Conditions(stored.get("conditions") or [], now, state.generation)

    expression: str | None = None
    invalid = ""
    try:
        expression = cron.validate_cron(state.cron)
        cron.zone(state.timezone)
    except InvalidScheduleError as error:
        invalid = str(error)
    if expression is not None and not invalid:
        _put(patch, stored, "description", cron.describe(expression))
        _put(patch, stored, "timezone", state.timezone or cron.DEFAULT_TIMEZONE)

    # Inactive first, valid or not: its ticks are never caught up, so once it is fixed and
    # activated again, ticks count from then.
    if not state.active:
        message = "spec.active is false: ticks create no run"
        conditions.set(READY, "False", INACTIVE,
                       f"{message}; and the schedule is invalid: {invalid}" if invalid
                       else message)
        _put(patch, stored, "activeSince", None)
        _put(patch, stored, "nextScheduleTime", None)
        _put(patch, stored, "upcoming", None)
        return _finish(state, patch, conditions, wake_at=None)
    if expression is None or invalid:
        conditions.set(READY, "False", INVALID_SCHEDULE, invalid)
        _put(patch, stored, "nextScheduleTime", None)
        _put(patch, stored, "upcoming", None)
        return _finish(state, patch, conditions, wake_at=None)

    active_since = parse_time(stored.get("activeSince"))
    if active_since is None:
        # Seen inactive before: reactivated now. Otherwise active since its creation.
        was_inactive = conditions.reason(READY) == INACTIVE
        active_since = now if was_inactive else state.created
        _put(patch, stored, "activeSince", rfc3339(active_since))
    last = parse_time(stored.get("lastScheduleTime"))
    floor = max(t for t in (last, active_since) if t is not None)

    due = cron.ticks_between(expression, state.timezone, _utc(floor), _utc(now),
                             MISSED_COUNT_LIMIT + 1)
    upcoming = cron.ticks_after(expression, state.timezone, _utc(now), cron.UPCOMING)
    _put(patch, stored, "nextScheduleTime", rfc3339(upcoming[0]))
    _put(patch, stored, "upcoming", [rfc3339(t) for t in upcoming])
    wake_at = upcoming[0].timestamp()

    if not state.task_exists:
        conditions.set(READY, "False", TASK_NOT_FOUND,
                       f"no Task {state.task!r} in namespace {state.namespace!r}: ticks create "
                       "no run until it is deployed (kubetasks deploy)")
    else:
        conditions.set(READY, "True", SCHEDULED, f"next tick at {rfc3339(upcoming[0])}")

    if not due:
        return _finish(state, patch, conditions, wake_at=wake_at)

    latest = due[-1].timestamp()
    passed_over = len(due) - 1  # older ticks that never get a run
    _put(patch, stored, "lastScheduleTime", rfc3339(latest))
    event: tuple[str, str, str] | None = None
    if passed_over:
        more = "at least " if len(due) > MISSED_COUNT_LIMIT else ""
        event = ("Warning", "MissedTicks",
                 f"{more}{passed_over} tick(s) before {rfc3339(latest)} passed while the "
                 "operator could not act; they are not run (no backfill)")

    lateness = now - latest
    tick_run = run_name(state.name, latest)
    # A run of this tick that exists already was created in time by an earlier decision whose
    # status write was lost: the tick ran, however late this decision comes.
    if lateness > state.starting_deadline_seconds and tick_run not in state.unfinished_runs:
        conditions.set(SKIPPED, "True", MISSED_DEADLINE,
                       f"the tick at {rfc3339(latest)} came {lateness:.0f} s late, past "
                       f"startingDeadlineSeconds ({state.starting_deadline_seconds}); no run")
        return _finish(state, patch, conditions, wake_at=wake_at, missed=len(due),
                       event=event)
    if not state.task_exists:
        conditions.set(SKIPPED, "True", TASK_NOT_FOUND,
                       f"the tick at {rfc3339(latest)} created no run: no Task "
                       f"{state.task!r}")
        return _finish(state, patch, conditions, wake_at=wake_at, missed=len(due),
                       event=event)
    others = tuple(run for run in state.unfinished_runs if run != tick_run)
    if others and state.concurrency_policy == "Forbid":
        conditions.set(SKIPPED, "True", FORBID,
                       f"the tick at {rfc3339(latest)} created no run: {others[0]} has not "
                       "finished (concurrencyPolicy Forbid)")
        return _finish(state, patch, conditions, wake_at=wake_at, missed=len(due),
                       event=event)

    cancel = others if state.concurrency_policy == "Replace" else ()
    conditions.set(SKIPPED, "False", RAN, f"the tick at {rfc3339(latest)} created {tick_run}")
    _put(patch, stored, "lastRun", tick_run)
    run = TickRun(
        name=tick_run,
        nominal=latest,
        # No tick lies between the latest due one and now, so the ticks after it are the
        # ones after now.
        spec=_run_spec(state, expression, latest, upcoming),
        annotation=rfc3339(latest),
    )
    return _finish(state, patch, conditions, wake_at=wake_at, missed=passed_over, event=event,
                   create=run, cancel=cancel)


def _run_spec(state: ScheduleState, expression: str, nominal: float,
              upcoming: list[dt.datetime]) -> dict[str, Any]:
    """The TaskRun spec of a tick; depends on the tick only, not on when it is built."""
    when = _utc(nominal)
    previous = cron.previous_tick(expression, state.timezone, when)
    if previous is not None and previous.timestamp() < state.created:
        previous = None
    payload = cron.scheduled_payload(
        schedule=f"{state.namespace}/{state.name}",
        schedule_type=state.schedule_type,
        timestamp=when,
        last_timestamp=previous,
        timezone=state.timezone,
        external_id=state.external_id,
        upcoming=upcoming,
    )
    return {"task": state.task, "payload": payload, **state.run_options}


def _put(patch: dict[str, Any], stored: Mapping[str, Any], key: str, value: Any) -> None:
    if stored.get(key) != value:
        patch[key] = value


def _finish(
    state: ScheduleState,
    patch: dict[str, Any],
    conditions: _Conditions,
    *,
    wake_at: float | None,
    missed: int = 0,
    event: tuple[str, str, str] | None = None,
    create: TickRun | None = None,
    cancel: tuple[str, ...] = (),
) -> ScheduleDecision:
    if conditions.changed:
        patch["conditions"] = conditions.items
    if state.status.get("observedGeneration") != state.generation:
        patch["observedGeneration"] = state.generation
    return ScheduleDecision(create=create, cancel=cancel, status=patch, wake_at=wake_at,
                            missed=missed, event=event)


class _Conditions:
    """The status conditions, set by type; ``lastTransitionTime`` moves only when the status
    does."""

    def __init__(self, stored: Sequence[Mapping[str, Any]], now: float, generation: int
                 ) -> None:
        self.items = [dict(c) for c in stored]
        self.now = now
        self.generation = generation
        self.changed = False

    def reason(self, type_: str) -> str | None:
        for item in self.items:
            if item.get("type") == type_:
                reason = item.get("reason")
                return reason if isinstance(reason, str) else None
        return None

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        previous = next((c for c in self.items if c.get("type") == type_), None)
        if (previous is not None and previous.get("status") == status
                and previous.get("reason") == reason and previous.get("message") == message
                and previous.get("observedGeneration") == self.generation):
            return
        moved = previous is None or previous.get("status") != status
        entry = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:32768],
            "lastTransitionTime": (rfc3339(self.now) if moved or previous is None
                                   else previous.get("lastTransitionTime")
                                   or rfc3339(self.now)),
            "observedGeneration": self.generation,
        }
        self.items = [c for c in self.items if c.get("type") != type_] + [entry]
        self.changed = True
