"""What a schedule's runs receive: :class:`ScheduledPayload`. A pydantic model in a module of
its own, so that ``import kubetasks`` does not load pydantic: ``kubetasks.ScheduledPayload``
imports this module on first use."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ScheduledPayload(BaseModel):
    """The payload of every run a schedule triggers. Annotate the task's payload with it and
    the worker hands it over typed (times as aware UTC datetimes).

    >>> from kubetasks import ScheduledPayload, task
    >>> @task(id="nightly-report", cron="0 2 * * *")
    ... def nightly_report(payload: ScheduledPayload, ctx) -> str:
    ...     return f"report for the day before {payload.timestamp:%Y-%m-%d}"
    """

    model_config = ConfigDict(frozen=True)

    type: Literal["DECLARATIVE", "IMPERATIVE"]
    """DECLARATIVE: from ``@task(cron=...)``, applied by ``kubetasks deploy``; IMPERATIVE:
    from ``schedules.create`` (or a TaskSchedule applied by hand)."""
    timestamp: dt.datetime
    """The tick's nominal time (UTC): when it was due, not when the run started."""
    last_timestamp: dt.datetime | None = None
    """The schedule's tick before this one (UTC), whether or not it created a run; None for
    the schedule's first tick."""
    timezone: str = "UTC"
    """The IANA time zone the cron is read in."""
    schedule_id: str
    """``namespace/name`` of the TaskSchedule (what ``schedules.retrieve`` takes)."""
    external_id: str | None = None
    """The schedule's ``external_id``, e.g. the user it runs for."""
    upcoming: list[dt.datetime] = Field(default_factory=list)
    """The next ticks after this one (UTC), up to five."""
