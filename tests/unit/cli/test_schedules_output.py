"""What ``kubetasks schedules`` prints, without a cluster: a schedule as data (-o json /
yaml), the list's table, and ``get``'s details (the cron in English, the next ticks in UTC
and in the schedule's time zone, the latest tick, the operator's conditions)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from kubetasks.cli.output import schedule_data, schedule_details, schedules_table
from kubetasks.schedules import Schedule
from tests.unit.cli.test_output import text_of

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def schedule(name: str = "report-x7k2p", labels: dict[str, str] | None = None,
             status: dict[str, Any] | None = None, **spec: Any) -> Schedule:
    return Schedule.from_object({
        "metadata": {"name": name, "namespace": "jobs", "labels": labels or {},
                     "creationTimestamp": "2029-12-31T12:00:00Z"},
        "spec": {"task": "report", "cron": "0 14 * * *", **spec},
        "status": status or {},
    }, "default", NOW)


def test_schedule_data_has_every_field_as_json_values() -> None:
    data = schedule_data(schedule(timezone="Europe/Paris", externalID="user-42"))
    json.dumps(data)
    assert data["id"] == "jobs/report-x7k2p" and data["type"] == "IMPERATIVE"
    assert data["next_run"] == "2030-01-01T13:00:00+00:00"  # 14:00 in Paris, winter time
    assert len(data["upcoming"]) == 5 and data["external_id"] == "user-42"
    assert data["description"] == "At 14:00, every day"
    assert "raw" not in data


def test_the_table_lists_cron_timezone_active_next_and_last_run() -> None:
    rows = [schedule(timezone="Europe/Paris",
                     status={"lastRun": "report-x7k2p-202912311300"}),
            schedule("nightly", labels={"kubetasks.dev/schedule-type": "declarative"},
                     cron="0 2 * * *", active=False)]
    lines = [line.split() for line in text_of(schedules_table(rows, NOW)).splitlines()
             if line.strip()]
    assert lines[0] == ["NAME", "TASK", "TYPE", "CRON", "TIMEZONE", "ACTIVE", "NEXT",
                        "LAST", "RUN"]
    assert lines[1] == ["report-x7k2p", "report", "imperative", "0", "14", "*", "*", "*",
                        "Europe/Paris", "yes", "in", "1h", "report-x7k2p-202912311300"]
    assert lines[2] == ["nightly", "report", "declarative", "0", "2", "*", "*", "*", "UTC",
                        "no", "-", "-"]


def test_details_show_the_next_ticks_in_both_zones_and_the_conditions() -> None:
    text = text_of(schedule_details(schedule(
        timezone="America/New_York", concurrencyPolicy="Forbid", deduplicationKey="k-1",
        ttlSeconds=600, tags=["a", "b"],
        status={"lastScheduleTime": "2029-12-31T19:00:00Z",
                "lastRun": "report-x7k2p-202912311900",
                "conditions": [{"type": "Skipped", "status": "True",
                                "reason": "ConcurrencyPolicyForbid",
                                "message": "the tick created no run: x has not finished",
                                "lastTransitionTime": "2029-12-31T19:00:01Z"}]}), NOW))
    for expected in ("jobs/report-x7k2p", "0 14 * * *  (At 14:00, every day)",
                     "America/New_York", "Forbid", "k-1", "600 s", "a, b",
                     "jobs/report-x7k2p-202912311900", "2029-12-31 19:00:00 UTC (17h ago)",
                     "Next runs", "2030-01-01 19:00 UTC  2030-01-01 14:00 EST "
                     "(America/New_York)  in 7h",
                     "Conditions", "ConcurrencyPolicyForbid", "x has not finished"):
        assert expected in text, expected
    assert text.count(" EST (America/New_York)") == 5
    inactive = text_of(schedule_details(schedule(active=False), NOW))
    assert "Next runs: none while inactive" in inactive and "none yet" in inactive
