"""TaskSchedules decided purely, with injected time: one run per tick, named after the tick;
no backfill; DST, month ends; concurrency policies; inactive periods; an idempotent status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetasks.protocol import cron
from kubetasks_operator.core.schedules import (
    FORBID,
    INACTIVE,
    INVALID_SCHEDULE,
    MISSED_DEADLINE,
    RAN,
    READY,
    SCHEDULED,
    SKIPPED,
    TASK_NOT_FOUND,
    ScheduleDecision,
    ScheduleState,
    TickRun,
    decide_schedule,
    parse_time,
    rfc3339,
    run_name,
)

NS = "ns"
PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def iso(*args: int) -> str:
    return rfc3339(ts(*args))


CREATED = ts(2026, 1, 10, 1, 59, 30)
TICK = ts(2026, 1, 10, 2)  # the first tick of "0 2 * * *" after CREATED
DAY = 86400.0


def schedule(**changes: Any) -> ScheduleState:
    base = ScheduleState(namespace=NS, name="nightly", task="report", cron="0 2 * * *",
                         timezone=None, active=True, created=CREATED)
    return replace(base, **changes)


def applied(state: ScheduleState, decision: ScheduleDecision, *,
            finish_runs: bool = False) -> ScheduleState:
    """The state once the decision is carried out: the status merge-patched, the cancelled
    runs gone, the created run unfinished (or every run finished)."""
    status = dict(state.status)
    for key, value in decision.status.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    runs = [run for run in state.unfinished_runs if run not in decision.cancel]
    if decision.create is not None and decision.create.name not in runs:
        runs.append(decision.create.name)
    return replace(state, status=status, unfinished_runs=() if finish_runs else tuple(runs))


def settled(state: ScheduleState, now: float) -> ScheduleState:
    """The state after a decision at ``now`` was carried out."""
    return applied(state, decide_schedule(state, now))


def condition(status: dict[str, Any] | Any, type_: str) -> dict[str, Any] | None:
    for item in status.get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return None


def operate(state: ScheduleState, start: float, end: float, step: float = 600.0,
            ) -> tuple[list[TickRun], ScheduleState]:
    """An operator deciding at each wake-up and at least every ``step`` seconds; each run
    finishes before the next decision."""
    runs: list[TickRun] = []
    now = start
    while now <= end:
        decision = decide_schedule(state, now)
        if decision.create is not None:
            runs.append(decision.create)
        state = applied(state, decision, finish_runs=True)
        following = now + step
        if decision.wake_at is not None:
            assert decision.wake_at > now
            following = min(following, decision.wake_at)
        now = following
    return runs, state


def names(runs: list[TickRun]) -> list[str]:
    return [run.name for run in runs]


def wall(runs: list[TickRun], tz: str) -> list[str]:
    return [datetime.fromtimestamp(run.nominal, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")
            for run in runs]


# --- the first tick and the steady state -----------------------------------------------------


def test_before_the_first_tick_the_status_says_when_it_comes() -> None:
    now = CREATED + 5
    decision = decide_schedule(schedule(), now)
    assert decision.create is None and decision.cancel == () and decision.event is None
    assert decision.wake_at == TICK
    status = decision.status
    assert status["activeSince"] == "2026-01-10T01:59:30Z"
    assert status["nextScheduleTime"] == "2026-01-10T02:00:00Z"
    assert status["upcoming"] == [iso(2026, 1, day, 2) for day in range(10, 15)]
    assert status["description"] == "At 02:00, every day"
    assert status["timezone"] == "UTC"
    assert status["observedGeneration"] == 1
    assert "lastScheduleTime" not in status and "lastRun" not in status
    assert condition(status, READY) == {
        "type": READY, "status": "True", "reason": SCHEDULED,
        "message": "next tick at 2026-01-10T02:00:00Z",
        "lastTransitionTime": rfc3339(now), "observedGeneration": 1}
    assert condition(status, SKIPPED) is None


def test_the_first_tick_creates_one_run_without_a_last_timestamp() -> None:
    state = settled(schedule(), CREATED + 5)
    now = TICK + 0.25
    decision = decide_schedule(state, now)
    assert decision.create == TickRun(
        name="nightly-202601100200",
        nominal=TICK,
        annotation="2026-01-10T02:00:00Z",
        spec={"task": "report", "payload": {
            "type": "IMPERATIVE",
            "timestamp": "2026-01-10T02:00:00Z",
            "last_timestamp": None,
            "timezone": "UTC",
            "schedule_id": "ns/nightly",
            "external_id": None,
            "upcoming": [iso(2026, 1, day, 2) for day in range(11, 16)],
        }},
    )
    assert decision.cancel == () and decision.event is None and decision.missed == 0
    assert decision.wake_at == TICK + DAY
    assert decision.status["lastScheduleTime"] == "2026-01-10T02:00:00Z"
    assert decision.status["lastRun"] == "nightly-202601100200"
    assert decision.status["nextScheduleTime"] == "2026-01-11T02:00:00Z"
    skipped = condition(decision.status, SKIPPED)
    assert skipped is not None
    assert (skipped["status"], skipped["reason"]) == ("False", RAN)
    assert skipped["message"] == "the tick at 2026-01-10T02:00:00Z created nightly-202601100200"


def test_the_second_tick_carries_the_first_as_last_timestamp() -> None:
    state = settled(settled(schedule(), CREATED + 5), TICK + 1)
    decision = decide_schedule(state, TICK + DAY + 1)
    assert decision.create is not None
    assert decision.create.name == "nightly-202601110200"
    assert decision.create.spec["payload"]["last_timestamp"] == "2026-01-10T02:00:00Z"
    assert decision.create.spec["payload"]["timestamp"] == "2026-01-11T02:00:00Z"


def test_every_tick_once_over_days_of_decisions() -> None:
    runs, state = operate(schedule(), CREATED, CREATED + 5 * DAY, step=97.0)
    assert names(runs) == [f"nightly-2026011{d}0200" for d in range(0, 5)]
    assert state.status["lastScheduleTime"] == "2026-01-14T02:00:00Z"


@pytest.mark.parametrize("late", [0.0, 1.0, 10.0, 299.0, 5000.0])
def test_a_status_that_has_the_tick_creates_nothing(late: float) -> None:
    state = schedule(status={"activeSince": rfc3339(CREATED),
                             "lastScheduleTime": "2026-01-10T02:00:00Z"})
    decision = decide_schedule(state, TICK + late)
    assert decision.create is None
    assert "lastScheduleTime" not in decision.status
    assert condition(decision.status, SKIPPED) is None


def test_deciding_at_every_second_around_a_tick_creates_one_run() -> None:
    state = settled(schedule(), CREATED)
    created: list[str] = []
    for second in range(-5, 120):
        decision = decide_schedule(state, TICK + second + 0.5)
        if decision.create is not None:
            created.append(decision.create.name)
        state = applied(state, decision)
    assert created == ["nightly-202601100200"]


# --- run names and payloads ----------------------------------------------------------------


@pytest.mark.parametrize(("expression", "tz", "now", "name"), [
    ("0 2 * * *", None, ts(2026, 1, 15, 2, 0, 1), "nightly-202601150200"),
    ("0 2 * * *", PARIS, ts(2026, 1, 15, 1, 0, 1), "nightly-202601150100"),  # CET
    ("0 2 * * *", PARIS, ts(2026, 7, 15, 0, 0, 1), "nightly-202607150000"),  # CEST
    ("0 2 * * *", NEW_YORK, ts(2026, 1, 15, 7, 2), "nightly-202601150700"),
    ("59 23 31 12 *", None, ts(2026, 12, 31, 23, 59, 59), "nightly-202612312359"),
    ("*/5 * * * *", None, ts(2026, 3, 1, 0, 5, 30), "nightly-202603010005"),
])
def test_the_run_is_named_after_the_nominal_utc_time(expression: str, tz: str | None,
                                                     now: float, name: str) -> None:
    state = schedule(cron=expression, timezone=tz, created=now - 3600,
                     status={"activeSince": rfc3339(now - 3600),
                             "lastScheduleTime": rfc3339(now - 3600)})
    first = decide_schedule(state, now)
    later = decide_schedule(state, now + 30)
    assert first.create is not None and later.create is not None
    assert first.create.name == later.create.name == name


def test_the_longest_schedule_name_gives_a_76_character_run_name() -> None:
    name = "s" * 63
    assert run_name(name, TICK) == f"{name}-202601100200"
    assert len(run_name(name, TICK)) == 76


@pytest.mark.parametrize(("expression", "tz", "tick"), [
    ("0 2 * * *", None, TICK),
    # The upcoming ticks cross a DST change.
    ("0 2 * * *", PARIS, ts(2026, 3, 27, 1)),
    ("*/30 * * * *", PARIS, ts(2026, 10, 25, 0, 30)),
    ("30 1 * * *", NEW_YORK, ts(2026, 10, 31, 5, 30)),
])
def test_a_tick_builds_the_same_run_whenever_it_is_decided(expression: str, tz: str | None,
                                                           tick: float) -> None:
    created = tick - 7200
    state = schedule(cron=expression, timezone=tz, created=created,
                     run_options={"queue": "reports"},
                     status={"activeSince": rfc3339(created)})
    state = settled(state, tick - 1)
    decisions = [decide_schedule(state, tick + late) for late in (0.0, 0.001, 1.0, 299.0, 300.0)]
    assert all(d.create is not None for d in decisions)
    assert all(d.create == decisions[0].create for d in decisions)
    first = decisions[0].create
    assert first is not None and first.nominal == tick
    upcoming = first.spec["payload"]["upcoming"]
    assert upcoming == [rfc3339(t) for t in
                        (x.timestamp() for x in cron.ticks_after(
                            expression, tz, datetime.fromtimestamp(tick, UTC), 5))]


def test_run_options_type_and_external_id_reach_the_run() -> None:
    options = {"queue": "reports", "concurrencyKey": "tenant-1", "ttlSeconds": 600,
               "maxAttempts": 2, "tags": ["nightly"], "metadata": {"k": "v"},
               "machine": "small-1x"}
    state = settled(schedule(run_options=options, schedule_type="DECLARATIVE",
                             external_id="user-7", timezone=PARIS), CREATED)
    decision = decide_schedule(state, ts(2026, 1, 11, 1, 0, 1))  # 02:00 CET
    assert decision.create is not None
    spec = decision.create.spec
    assert {k: spec[k] for k in options} == options
    assert spec["task"] == "report"
    payload = spec["payload"]
    assert payload["type"] == "DECLARATIVE"
    assert payload["external_id"] == "user-7"
    assert payload["timezone"] == PARIS
    assert payload["schedule_id"] == "ns/nightly"
    assert state.status["timezone"] == PARIS


# --- DST --------------------------------------------------------------------------------------


def test_spring_forward_in_paris_the_gap_tick_runs_once_at_03_00() -> None:
    state = schedule(cron="30 2 * * *", timezone=PARIS, created=ts(2026, 3, 27, 12))
    runs, _ = operate(state, ts(2026, 3, 27, 12), ts(2026, 3, 31), step=300.0)
    assert wall(runs, PARIS) == ["2026-03-28 02:30 CET", "2026-03-29 03:00 CEST",
                                 "2026-03-30 02:30 CEST"]
    assert names(runs) == ["nightly-202603280130", "nightly-202603290100",
                           "nightly-202603300030"]


def test_spring_forward_in_paris_decided_at_the_gap_tick() -> None:
    state = schedule(cron="30 2 * * *", timezone=PARIS, created=ts(2026, 3, 27, 12),
                     status={"activeSince": iso(2026, 3, 27, 12),
                             "lastScheduleTime": iso(2026, 3, 28, 1, 30)})
    before = decide_schedule(state, ts(2026, 3, 29, 0, 59, 59))
    assert before.create is None
    assert before.wake_at == ts(2026, 3, 29, 1)
    decision = decide_schedule(state, ts(2026, 3, 29, 1, 0, 0) + 0.5)
    assert decision.create is not None
    assert decision.create.name == "nightly-202603290100"
    assert decision.wake_at == ts(2026, 3, 30, 0, 30)
    again = decide_schedule(applied(state, decision), ts(2026, 3, 29, 2))
    assert again.create is None


def test_spring_forward_in_new_york() -> None:
    state = schedule(cron="30 2 * * *", timezone=NEW_YORK, created=ts(2026, 3, 6, 12))
    runs, _ = operate(state, ts(2026, 3, 6, 12), ts(2026, 3, 9, 12), step=300.0)
    assert wall(runs, NEW_YORK) == ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT",
                                    "2026-03-09 02:30 EDT"]


@pytest.mark.parametrize(("expression", "tz", "start", "expected"), [
    ("30 2 * * *", PARIS, ts(2026, 10, 24, 12),
     ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]),
    ("30 1 * * *", NEW_YORK, ts(2026, 10, 31, 12),
     ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]),
])
def test_fall_back_a_fixed_hour_tick_runs_once(expression: str, tz: str, start: float,
                                               expected: list[str]) -> None:
    state = schedule(cron=expression, timezone=tz, created=start)
    runs, _ = operate(state, start, start + 2 * DAY, step=240.0)
    assert wall(runs, tz) == expected


def test_fall_back_every_thirty_minutes_runs_in_both_passes() -> None:
    start = ts(2026, 10, 24, 23, 50)
    state = schedule(cron="*/30 * * * *", timezone=PARIS, created=start)
    runs, _ = operate(state, start, ts(2026, 10, 25, 2, 10), step=120.0)
    assert wall(runs, PARIS) == ["2026-10-25 02:00 CEST", "2026-10-25 02:30 CEST",
                                 "2026-10-25 02:00 CET", "2026-10-25 02:30 CET",
                                 "2026-10-25 03:00 CET"]
    assert names(runs) == ["nightly-202610250000", "nightly-202610250030",
                           "nightly-202610250100", "nightly-202610250130",
                           "nightly-202610250200"]


def test_fall_back_every_minute_runs_once_per_real_minute() -> None:
    # New York repeats 01:00-02:00 on 1 November 2026 (05:00-07:00 UTC).
    start = ts(2026, 11, 1, 4, 30)
    state = schedule(cron="* * * * *", timezone=NEW_YORK, created=start)
    runs, _ = operate(state, start, ts(2026, 11, 1, 7, 30), step=600.0)
    assert [run.nominal for run in runs] == [start + 60 * m for m in range(1, 181)]
    assert sum(1 for w in wall(runs, NEW_YORK) if w.startswith("2026-11-01 01:")) == 120


def test_fall_back_an_operator_back_in_the_second_pass_catches_the_first_pass_tick() -> None:
    # Down from before 02:30 CEST until 02:10 CET: the tick (00:30 UTC) is 40 minutes late.
    state = schedule(cron="30 2 * * *", timezone=PARIS, created=ts(2026, 10, 1),
                     starting_deadline_seconds=3600,
                     status={"activeSince": iso(2026, 10, 1),
                             "lastScheduleTime": iso(2026, 10, 24, 0, 30)})
    decision = decide_schedule(state, ts(2026, 10, 25, 1, 10))
    assert decision.create is not None
    assert decision.create.name == "nightly-202610250030"
    assert decision.status["lastScheduleTime"] == "2026-10-25T00:30:00Z"
    assert decision.wake_at == ts(2026, 10, 26, 1, 30)


# --- month ends ---------------------------------------------------------------------------------


def test_day_31_runs_only_in_months_that_have_one() -> None:
    state = schedule(cron="0 0 31 * *", created=ts(2026, 1, 1))
    runs, _ = operate(state, ts(2026, 1, 1), ts(2026, 12, 31, 12), step=10 * DAY)
    assert names(runs) == [f"nightly-2026{m}310000" for m in
                           ("01", "03", "05", "07", "08", "10", "12")]


def test_l_runs_on_the_last_day_including_29_february_2028() -> None:
    state = schedule(cron="0 0 L * *", created=ts(2027, 12, 15))
    runs, _ = operate(state, ts(2027, 12, 15), ts(2028, 4, 1), step=10 * DAY)
    assert names(runs) == ["nightly-202712310000", "nightly-202801310000",
                           "nightly-202802290000", "nightly-202803310000"]


def test_l_in_paris_is_the_local_last_day() -> None:
    state = schedule(cron="0 0 L * *", timezone=PARIS, created=ts(2028, 2, 1))
    runs, _ = operate(state, ts(2028, 2, 1), ts(2028, 3, 15), step=10 * DAY)
    assert wall(runs, PARIS) == ["2028-02-29 00:00 CET"]
    assert names(runs) == ["nightly-202802282300"]


def test_last_friday() -> None:
    state = schedule(cron="0 9 * * 5L", created=ts(2026, 1, 1))
    runs, _ = operate(state, ts(2026, 1, 1), ts(2026, 4, 1), step=10 * DAY)
    assert names(runs) == ["nightly-202601300900", "nightly-202602270900",
                           "nightly-202603270900"]


# --- concurrency policies ---------------------------------------------------------------------


def due_state(**changes: Any) -> ScheduleState:
    """A schedule whose 2026-01-11 02:00 tick is due; the day before ran."""
    state = schedule(status={"activeSince": rfc3339(CREATED),
                             "lastScheduleTime": "2026-01-10T02:00:00Z",
                             "lastRun": "nightly-202601100200"})
    return replace(state, **changes)


NEXT = TICK + DAY  # 2026-01-11 02:00
OWN = "nightly-202601110200"


def test_allow_creates_whatever_else_runs() -> None:
    state = due_state(unfinished_runs=("nightly-202601100200", "manual-run"))
    decision = decide_schedule(state, NEXT + 1)
    assert decision.create is not None and decision.create.name == OWN
    assert decision.cancel == ()


def test_forbid_skips_while_another_run_is_unfinished() -> None:
    state = due_state(concurrency_policy="Forbid", unfinished_runs=("nightly-202601100200",))
    decision = decide_schedule(state, NEXT + 1)
    assert decision.create is None and decision.cancel == ()
    assert decision.missed == 1
    assert decision.wake_at == NEXT + DAY
    assert decision.status["lastScheduleTime"] == "2026-01-11T02:00:00Z"
    assert "lastRun" not in decision.status
    skipped = condition(decision.status, SKIPPED)
    assert skipped is not None
    assert (skipped["status"], skipped["reason"]) == ("True", FORBID)
    assert "nightly-202601100200 has not finished" in skipped["message"]
    assert "concurrencyPolicy Forbid" in skipped["message"]
    ready = condition(decision.status, READY)
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", SCHEDULED)
    # The tick is over: the run finishing later does not bring it back.
    later = applied(state, decision, finish_runs=True)
    assert decide_schedule(later, NEXT + 60).create is None


def test_forbid_creates_when_nothing_is_unfinished() -> None:
    decision = decide_schedule(due_state(concurrency_policy="Forbid"), NEXT + 1)
    assert decision.create is not None and decision.create.name == OWN


def test_replace_cancels_the_unfinished_runs_and_creates() -> None:
    state = due_state(concurrency_policy="Replace",
                      unfinished_runs=("nightly-202601100200", "nightly-202601090200"))
    decision = decide_schedule(state, NEXT + 1)
    assert decision.create is not None and decision.create.name == OWN
    assert decision.cancel == ("nightly-202601100200", "nightly-202601090200")


def test_replace_with_nothing_unfinished_cancels_nothing() -> None:
    decision = decide_schedule(due_state(concurrency_policy="Replace"), NEXT + 1)
    assert decision.create is not None and decision.cancel == ()


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_the_ticks_own_run_neither_blocks_nor_is_cancelled(policy: str) -> None:
    # The operator created the run, then stopped before writing lastScheduleTime.
    state = due_state(concurrency_policy=policy, unfinished_runs=("other", OWN))
    decision = decide_schedule(state, NEXT + 30)
    if policy == "Forbid":
        assert decision.create is None  # "other" still blocks
    else:
        assert decision.create is not None and decision.create.name == OWN
    assert OWN not in decision.cancel
    alone = decide_schedule(replace(state, unfinished_runs=(OWN,)), NEXT + 30)
    assert alone.create is not None and alone.create.name == OWN
    assert alone.cancel == ()


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_a_tick_whose_run_exists_is_not_missed_however_late_the_decision(policy: str) -> None:
    # The run was created on time, then the status write was lost (the operator was killed,
    # or the patch failed); the next decision comes after the deadline.
    state = due_state(concurrency_policy=policy, unfinished_runs=(OWN,))
    decision = decide_schedule(state, NEXT + 900)
    assert decision.create is not None and decision.create.name == OWN  # a no-op create
    assert decision.cancel == ()
    assert decision.missed == 0
    assert decision.status["lastRun"] == OWN
    assert decision.status["lastScheduleTime"] == "2026-01-11T02:00:00Z"
    skipped = condition(decision.status, SKIPPED)
    assert skipped is not None and (skipped["status"], skipped["reason"]) == ("False", RAN)
    # Without its run, the same late tick is skipped.
    late = decide_schedule(replace(state, unfinished_runs=()), NEXT + 900)
    assert late.create is None and late.missed == 1


def test_forbid_then_a_free_tick_runs_again() -> None:
    state = due_state(concurrency_policy="Forbid", unfinished_runs=("nightly-202601100200",))
    skipped = decide_schedule(state, NEXT + 1)
    state = applied(state, skipped, finish_runs=True)
    decision = decide_schedule(state, NEXT + DAY + 1)
    assert decision.create is not None and decision.create.name == "nightly-202601120200"
    ran = condition(decision.status, SKIPPED)
    assert ran is not None and (ran["status"], ran["reason"]) == ("False", RAN)
    assert ran["lastTransitionTime"] == rfc3339(NEXT + DAY + 1)


# --- missed ticks -------------------------------------------------------------------------------


def minutely(**changes: Any) -> ScheduleState:
    """Every minute; the last tick handled was 09:00."""
    return schedule(cron="* * * * *", created=ts(2026, 1, 10),
                    status={"activeSince": iso(2026, 1, 10),
                            "lastScheduleTime": iso(2026, 1, 10, 9)}, **changes)


def test_three_hours_down_creates_only_the_latest_tick() -> None:
    now = ts(2026, 1, 10, 12, 0, 20)
    decision = decide_schedule(minutely(), now)
    assert decision.create is not None
    assert decision.create.name == "nightly-202601101200"
    assert decision.create.nominal == ts(2026, 1, 10, 12)
    assert decision.status["lastScheduleTime"] == "2026-01-10T12:00:00Z"
    assert decision.event is not None
    kind, reason, message = decision.event
    assert (kind, reason) == ("Warning", "MissedTicks")
    assert message.startswith("at least 100 tick(s) before 2026-01-10T12:00:00Z")
    assert "no backfill" in message
    assert decision.missed == 100
    assert decision.wake_at == ts(2026, 1, 10, 12, 1)


def test_three_hours_down_and_past_the_deadline_creates_nothing() -> None:
    now = ts(2026, 1, 10, 12, 0, 30)
    decision = decide_schedule(minutely(starting_deadline_seconds=10), now)
    assert decision.create is None
    assert decision.status["lastScheduleTime"] == "2026-01-10T12:00:00Z"
    assert decision.event is not None and decision.event[1] == "MissedTicks"
    assert decision.missed == 101
    skipped = condition(decision.status, SKIPPED)
    assert skipped is not None
    assert (skipped["status"], skipped["reason"]) == ("True", MISSED_DEADLINE)
    assert "came 30 s late, past startingDeadlineSeconds (10)" in skipped["message"]


@pytest.mark.parametrize("deadline", [None, 10])
def test_never_a_burst_after_an_outage(deadline: int | None) -> None:
    state = minutely() if deadline is None else minutely(starting_deadline_seconds=deadline)
    back = ts(2026, 1, 10, 12, 0, 30)
    created: list[str] = []
    events = 0
    for second in range(0, 95):
        decision = decide_schedule(state, back + second)
        if decision.create is not None:
            created.append(decision.create.name)
        events += decision.event is not None
        state = applied(state, decision, finish_runs=True)
    catch_up = ["nightly-202601101200"] if deadline is None else []
    assert created == [*catch_up, "nightly-202601101201", "nightly-202601101202"]
    assert events == 1


def test_an_hourly_schedule_down_three_hours_counts_exactly() -> None:
    state = schedule(cron="0 * * * *", created=ts(2026, 1, 10),
                     status={"activeSince": iso(2026, 1, 10),
                             "lastScheduleTime": iso(2026, 1, 10, 9)})
    within = decide_schedule(state, ts(2026, 1, 10, 12, 4))
    assert within.create is not None and within.create.name == "nightly-202601101200"
    assert within.missed == 2
    assert within.event is not None
    assert within.event[2].startswith("2 tick(s) before 2026-01-10T12:00:00Z passed")
    past = decide_schedule(state, ts(2026, 1, 10, 12, 6))  # 360 s late, default 300
    assert past.create is None
    assert past.missed == 3
    assert past.status["lastScheduleTime"] == "2026-01-10T12:00:00Z"


def test_one_late_tick_is_not_a_missed_tick() -> None:
    decision = decide_schedule(due_state(), NEXT + 200)
    assert decision.create is not None
    assert decision.event is None and decision.missed == 0


@pytest.mark.parametrize(("deadline", "late", "creates"), [
    (300, 300.0, True),
    (300, 300.5, False),
    (1, 0.9, True),
    (1, 2.0, False),
    (3600, 3599.0, True),
    (3600, 3601.0, False),
    (86400 * 2, 86399.0, True),
])
def test_starting_deadline_seconds(deadline: int, late: float, creates: bool) -> None:
    state = schedule(cron="0 2 * * 1", created=ts(2026, 1, 1),  # Mondays
                     starting_deadline_seconds=deadline,
                     status={"activeSince": iso(2026, 1, 1),
                             "lastScheduleTime": iso(2026, 1, 5, 2)})
    tick = ts(2026, 1, 12, 2)
    decision = decide_schedule(state, tick + late)
    assert (decision.create is not None) == creates
    assert decision.status["lastScheduleTime"] == "2026-01-12T02:00:00Z"
    if not creates:
        skipped = condition(decision.status, SKIPPED)
        assert skipped is not None and skipped["reason"] == MISSED_DEADLINE
        assert decision.missed == 1


# --- inactive and reactivated ------------------------------------------------------------------


def test_an_inactive_schedule_creates_nothing_and_clears_its_times() -> None:
    state = replace(settled(settled(schedule(), CREATED), TICK + 1), active=False)
    now = NEXT + 5  # a tick is due
    decision = decide_schedule(state, now)
    assert decision.create is None and decision.cancel == () and decision.wake_at is None
    assert decision.status["activeSince"] is None
    assert decision.status["nextScheduleTime"] is None
    assert decision.status["upcoming"] is None
    assert "lastScheduleTime" not in decision.status
    ready = condition(decision.status, READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", INACTIVE)
    assert ready["lastTransitionTime"] == rfc3339(now)
    assert "spec.active is false" in ready["message"]
    after = applied(state, decision)
    assert decide_schedule(after, now + 3600).status == {}


def test_ticks_while_inactive_are_not_caught_up() -> None:
    runs, state = operate(schedule(), CREATED, ts(2026, 1, 11, 12))
    assert names(runs) == ["nightly-202601100200", "nightly-202601110200"]
    state = replace(state, active=False)
    runs, state = operate(state, ts(2026, 1, 11, 12), ts(2026, 1, 15, 2, 1))
    assert runs == []
    assert condition(state.status, READY)["reason"] == INACTIVE  # type: ignore[index]
    # Reactivated a minute after a tick, well within the deadline: that tick is not run.
    state = replace(state, active=True)
    back = ts(2026, 1, 15, 2, 1)
    decision = decide_schedule(state, back)
    assert decision.create is None and decision.event is None
    assert decision.status["activeSince"] == "2026-01-15T02:01:00Z"
    assert "lastScheduleTime" not in decision.status
    assert decision.wake_at == ts(2026, 1, 16, 2)
    runs, _ = operate(applied(state, decision), back, ts(2026, 1, 17))
    assert names(runs) == ["nightly-202601160200"]


def test_a_schedule_created_inactive_starts_at_its_activation() -> None:
    state = settled(schedule(active=False), CREATED)
    assert "activeSince" not in state.status
    state = replace(state, active=True)
    decision = decide_schedule(state, TICK + 60)
    assert decision.create is None
    assert decision.status["activeSince"] == rfc3339(TICK + 60)


def test_a_schedule_never_seen_inactive_catches_up_its_latest_tick() -> None:
    state = settled(settled(schedule(), CREATED), TICK + 1)
    decision = decide_schedule(state, NEXT + 180)  # the operator was down across the tick
    assert decision.create is not None and decision.create.name == OWN
    assert decision.event is None


def test_a_new_schedule_first_seen_late_runs_its_latest_tick_once() -> None:
    state = schedule(cron="*/5 * * * *", created=ts(2026, 1, 10, 1))
    decision = decide_schedule(state, ts(2026, 1, 10, 1, 11))
    assert decision.create is not None and decision.create.name == "nightly-202601100110"
    assert decision.status["activeSince"] == "2026-01-10T01:00:00Z"
    assert decision.event is not None
    assert decision.event[2].startswith("1 tick(s) before 2026-01-10T01:10:00Z")


# --- invalid schedules, missing tasks -----------------------------------------------------------


@pytest.mark.parametrize(("expression", "tz", "says"), [
    ("0 0 30 2 *", None, "Bad day-of-month"),
    ("@daily", None, "macros"),
    ("0 0 2 * * *", None, "6 field(s), not 5"),
    ("61 * * * *", None, "Bad minute"),
    ("0 2 * * *", "Mars/Olympus", "'Mars/Olympus' is not an IANA time zone name"),
])
def test_an_invalid_schedule_says_so_and_never_wakes(expression: str, tz: str | None,
                                                     says: str) -> None:
    state = settled(schedule(), CREATED)  # was valid: next and upcoming are set
    state = replace(state, cron=expression, timezone=tz, generation=2)
    now = NEXT + 1
    decision = decide_schedule(state, now)
    assert decision.create is None and decision.cancel == ()
    assert decision.wake_at is None and decision.event is None
    assert decision.status["nextScheduleTime"] is None
    assert decision.status["upcoming"] is None
    assert decision.status["observedGeneration"] == 2
    ready = condition(decision.status, READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", INVALID_SCHEDULE)
    assert says in ready["message"]
    assert ready["observedGeneration"] == 2
    assert decide_schedule(applied(state, decision), now + 60).status == {}


def test_an_invalid_inactive_schedule_is_inactive_and_not_caught_up_once_fixed() -> None:
    state = settled(settled(schedule(), CREATED), TICK + 1)
    state = settled(replace(state, cron="0 0 30 2 *", active=False, generation=2), TICK + 60)
    ready = condition(state.status, READY)
    assert ready is not None and ready["reason"] == INACTIVE
    assert "Bad day-of-month" in ready["message"]
    assert "activeSince" not in state.status
    # Fixed and activated a minute after a tick that fell while it was inactive: not run.
    fixed = replace(state, cron="0 2 * * *", active=True, generation=3)
    decision = decide_schedule(fixed, NEXT + 60)
    assert decision.create is None
    assert decision.status["activeSince"] == rfc3339(NEXT + 60)


def test_a_missing_task_is_reported_before_its_tick() -> None:
    decision = decide_schedule(schedule(task_exists=False), CREATED + 5)
    assert decision.create is None
    assert decision.wake_at == TICK
    ready = condition(decision.status, READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", TASK_NOT_FOUND)
    assert "no Task 'report' in namespace 'ns'" in ready["message"]


def test_a_tick_of_a_missing_task_creates_no_run() -> None:
    state = due_state(task_exists=False)
    decision = decide_schedule(state, NEXT + 1)
    assert decision.create is None
    assert decision.missed == 1
    assert decision.status["lastScheduleTime"] == "2026-01-11T02:00:00Z"
    skipped = condition(decision.status, SKIPPED)
    assert skipped is not None
    assert (skipped["status"], skipped["reason"]) == ("True", TASK_NOT_FOUND)
    # Deployed later: the next tick runs, the missed one does not.
    state = replace(applied(state, decision), task_exists=True)
    arrived = decide_schedule(state, NEXT + 3600)
    assert arrived.create is None
    ready = condition(arrived.status, READY)
    assert ready is not None and ready["reason"] == SCHEDULED
    assert decide_schedule(applied(state, arrived), NEXT + DAY).create is not None


# --- wake-ups, idempotence, conditions ----------------------------------------------------------


@pytest.mark.parametrize(("expression", "tz", "now", "wake"), [
    ("0 2 * * *", None, TICK - 1, TICK),
    ("0 2 * * *", None, TICK, TICK + DAY),
    ("*/15 * * * *", None, ts(2026, 1, 10, 10, 14, 59), ts(2026, 1, 10, 10, 15)),
    ("0 2 * * *", PARIS, ts(2026, 6, 30, 12), ts(2026, 7, 1, 0)),
    ("0 2 * * *", PARIS, ts(2026, 3, 28, 12), ts(2026, 3, 29, 1)),  # in the gap: 03:00 CEST
    ("30 2 * * *", PARIS, ts(2026, 3, 28, 12), ts(2026, 3, 29, 1)),
    ("0 0 L * *", None, ts(2028, 2, 2), ts(2028, 2, 29)),
])
def test_wake_at_is_the_next_tick(expression: str, tz: str | None, now: float,
                                  wake: float) -> None:
    state = settled(schedule(cron=expression, timezone=tz, created=now - 1), now - 1)
    decision = decide_schedule(state, now)
    assert decision.wake_at == wake
    stored = applied(state, decision).status
    assert parse_time(stored["nextScheduleTime"]) == wake
    assert stored["upcoming"][0] == stored["nextScheduleTime"]
    assert len(stored["upcoming"]) == 5


SCENARIOS: dict[str, tuple[ScheduleState, float]] = {
    "new": (schedule(), CREATED + 5),
    "due": (due_state(), NEXT + 1),
    "forbidden": (due_state(concurrency_policy="Forbid", unfinished_runs=("x",)), NEXT + 1),
    "replaced": (due_state(concurrency_policy="Replace", unfinished_runs=("x",)), NEXT + 1),
    "late": (due_state(), NEXT + 301),
    "outage": (minutely(), ts(2026, 1, 10, 12, 0, 20)),
    "inactive": (due_state(active=False), NEXT + 1),
    "no task": (due_state(task_exists=False), NEXT + 1),
    "invalid": (due_state(cron="0 0 30 2 *"), NEXT + 1),
    "paris gap": (schedule(cron="30 2 * * *", timezone=PARIS, created=ts(2026, 3, 28, 12)),
                  ts(2026, 3, 29, 1, 0, 1)),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_deciding_again_changes_nothing(scenario: str) -> None:
    state, now = SCENARIOS[scenario]
    first = decide_schedule(state, now)
    assert first.status  # something to write the first time
    state = applied(state, first)
    for later in (now, now + 0.5, now + 20):
        again = decide_schedule(state, later)
        assert again.status == {}
        assert again.create is None and again.cancel == () and again.event is None
        assert again.missed == 0
        assert again.wake_at == first.wake_at


def test_conditions_keep_their_transition_time_while_their_status_holds() -> None:
    state = settled(schedule(), CREATED)
    ready_since = condition(state.status, READY)["lastTransitionTime"]  # type: ignore[index]
    assert ready_since == rfc3339(CREATED)
    state = settled(state, TICK + 1)
    ran_since = condition(state.status, SKIPPED)["lastTransitionTime"]  # type: ignore[index]
    decision = decide_schedule(state, NEXT + 1)
    ready = condition(decision.status, READY)
    skipped = condition(decision.status, SKIPPED)
    assert ready is not None and skipped is not None
    assert ready["message"] == "next tick at 2026-01-12T02:00:00Z"  # the message moved on
    assert ready["lastTransitionTime"] == ready_since
    assert skipped["message"].endswith("created nightly-202601110200")
    assert skipped["lastTransitionTime"] == ran_since
    # A status change moves it.
    state = replace(applied(state, decision), task_exists=False)
    missing = decide_schedule(state, NEXT + 60)
    ready = condition(missing.status, READY)
    assert ready is not None and ready["lastTransitionTime"] == rfc3339(NEXT + 60)


def test_conditions_are_not_written_when_unchanged() -> None:
    state = settled(schedule(), CREATED)
    assert "conditions" not in decide_schedule(state, CREATED + 10).status


def test_a_new_generation_is_observed_without_moving_transition_times() -> None:
    state = settled(schedule(), CREATED)
    assert state.status["observedGeneration"] == 1
    assert decide_schedule(state, CREATED + 10).status == {}
    bumped = replace(state, generation=4, run_options={"queue": "other"})
    decision = decide_schedule(bumped, CREATED + 10)
    assert decision.status["observedGeneration"] == 4
    ready = condition(decision.status, READY)
    assert ready is not None
    assert ready["observedGeneration"] == 4
    assert ready["lastTransitionTime"] == rfc3339(CREATED)


# --- properties -----------------------------------------------------------------------------

MINUTES = ["0", "30", "*/15", "*", "5,35", "59"]
HOURS = ["*", "2", "1-3", "*/2", "0,12"]
DAYS_OF_MONTH = ["*", "*", "L", "1", "31"]
DAYS_OF_WEEK = ["*", "*", "MON-FRI", "5L"]
ZONES = ["UTC", PARIS, NEW_YORK, "Australia/Sydney"]
BASES = [ts(2026, 3, 29, 1), ts(2026, 10, 25, 1), ts(2026, 3, 8, 7), ts(2026, 11, 1, 6),
         ts(2026, 4, 5, 3), ts(2026, 6, 15, 12)]
crons = st.builds(lambda *f: " ".join(f), *(st.sampled_from(f) for f in (
    MINUTES, HOURS, DAYS_OF_MONTH, ["*"], DAYS_OF_WEEK)))


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


@settings(max_examples=200, deadline=None)
@given(expression=crons, tz=st.sampled_from(ZONES), base=st.sampled_from(BASES),
       shift=st.floats(min_value=-6 * 3600, max_value=6 * 3600, allow_nan=False),
       outage=st.floats(min_value=0, max_value=3 * DAY, allow_nan=False),
       deadline=st.integers(min_value=1, max_value=7200),
       policy=st.sampled_from(["Allow", "Forbid", "Replace"]))
def test_after_any_outage_at_most_the_latest_tick_runs(
        expression: str, tz: str, base: float, shift: float, outage: float, deadline: int,
        policy: str) -> None:
    last_tick = cron.previous_tick(expression, tz, _utc(base + shift), inclusive=True)
    assert last_tick is not None
    last = last_tick.timestamp()
    now = last + outage
    state = schedule(cron=expression, timezone=tz, created=last - DAY,
                     starting_deadline_seconds=deadline, concurrency_policy=policy,
                     status={"activeSince": rfc3339(last - DAY),
                             "lastScheduleTime": rfc3339(last)})
    decision = decide_schedule(state, now)

    # The latest tick <= now, found by walking forward from the last one handled.
    latest: float | None = None
    following = cron.next_tick(expression, tz, _utc(last))
    if following.timestamp() <= now:
        found = cron.previous_tick(expression, tz, _utc(now), inclusive=True)
        assert found is not None
        assert found >= following
        assert cron.next_tick(expression, tz, found).timestamp() > now
        latest = found.timestamp()

    assert decision.wake_at == cron.next_tick(expression, tz, _utc(now)).timestamp()
    if latest is None:
        assert decision.create is None
        assert "lastScheduleTime" not in decision.status
        return
    assert decision.status["lastScheduleTime"] == rfc3339(latest)
    if now - latest <= deadline:
        assert decision.create is not None
        assert decision.create.nominal == latest
        assert decision.create.name == run_name("nightly", latest)
        assert decision.create.spec["payload"]["timestamp"] == rfc3339(latest)
    else:
        assert decision.create is None
        assert decision.missed >= 1
    assert applied(state, decision).status.get("lastScheduleTime") == rfc3339(latest)
    assert decide_schedule(applied(state, decision), now).create is None


@settings(max_examples=40, deadline=None)
@given(expression=crons, tz=st.sampled_from(ZONES), base=st.sampled_from(BASES),
       steps=st.lists(st.floats(min_value=1, max_value=5400, allow_nan=False),
                      min_size=1, max_size=40))
def test_an_operator_deciding_at_random_moments_runs_each_tick_at_most_once(
        expression: str, tz: str, base: float, steps: list[float]) -> None:
    start = base - 3 * 3600
    state = schedule(cron=expression, timezone=tz, created=start,
                     starting_deadline_seconds=7200)
    now = start
    created: list[float] = []
    for step in steps:
        before, now = now, now + step
        decision = decide_schedule(state, now)
        # Every gap is under the deadline: the latest tick since the last decision runs.
        seen = cron.ticks_between(expression, tz, _utc(before), _utc(now), 10_000)
        if seen:
            assert decision.create is not None
            assert decision.create.nominal == seen[-1].timestamp()
            assert decision.missed == len(seen) - 1
            created.append(decision.create.nominal)
        else:
            assert decision.create is None
        state = applied(state, decision, finish_runs=True)
    assert created == sorted(set(created))  # each tick once, in order
