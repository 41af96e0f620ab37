"""Cron expressions and time zones of TaskSchedules (``kubetasks.protocol.cron``): what is
accepted, the ticks across DST changes and month ends, descriptions and a tick's payload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetasks.errors import InvalidScheduleError
from kubetasks.protocol import cron

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"

# 2026's changes: Paris springs forward on 29 March at 02:00 CET (01:00 UTC) and falls back
# on 25 October at 03:00 CEST (01:00 UTC); New York on 8 March at 02:00 EST (07:00 UTC) and
# 1 November at 02:00 EDT (06:00 UTC).


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def wall(ticks: list[datetime], tz: str) -> list[str]:
    """Ticks as wall-clock times with the zone's abbreviation (which tells the passes of a
    repeated hour apart)."""
    return [t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z") for t in ticks]


def days(ticks: list[datetime]) -> list[str]:
    return [t.strftime("%Y-%m-%d %a") for t in ticks]


# --- validate_cron --------------------------------------------------------------------------


@pytest.mark.parametrize("expression", [
    "0 2 * * *",
    "*/15 9-17 * * MON-FRI",
    "0 0 1,15 * *",
    "0 0 * JAN-MAR SUN",
    "0 2 * jan mon",
    "0 0 L * *",
    "0 0 LW * *",
    "0 0 * * 5L",
    "0 0 * * 5#2",
    "0 0 29 2 *",
    "59 23 31 12 7",
])
def test_good_expressions_are_returned_as_given(expression: str) -> None:
    assert cron.validate_cron(expression) == expression


@pytest.mark.parametrize("raw", ["  0 2 * * *", "0 2 * * *\n", "0  2\t*  * *", "\t0 2 * * * "])
def test_whitespace_is_normalised_to_single_spaces(raw: str) -> None:
    assert cron.validate_cron(raw) == "0 2 * * *"
    assert cron.normalize_cron(raw) == "0 2 * * *"


@pytest.mark.parametrize(("expression", "says"), [
    ("60 * * * *", "Bad minute"),
    ("* 24 * * *", "Bad hour"),
    ("0 0 0 * *", "Bad day-of-month"),
    ("0 0 32 * *", "Bad day-of-month"),
    ("0 0 * 13 *", "Bad month"),
    ("0 0 * * 8", "Bad day-of-week"),
    ("*/0 * * * *", "Bad minute"),
    ("5-1 * * * *", "Bad minute"),
    ("0 0 * * MON#6", "Bad day-of-week"),
    ("0 0 ? * *", "Bad day-of-month"),
    ("0 0 * * FOO", "Bad day-of-week"),
    # A day that no month of the expression has: a pattern check passes it, cronsim does not.
    ("0 0 30 2 *", "Bad day-of-month"),
    ("0 0 31 4,6 *", "Bad day-of-month"),
])
def test_bad_fields_are_named_and_the_message_says_what_to_write(expression: str,
                                                                 says: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        cron.validate_cron(expression)
    message = str(raised.value)
    assert says in message
    assert repr(expression) in message
    assert "five fields: minute hour day-of-month month day-of-week" in message
    assert "'0 2 * * *'" in message


@pytest.mark.parametrize(("expression", "count"), [
    ("0 2 * *", 4),
    ("0 0 2 * * *", 6),  # cronsim would read a seconds field; the CRD allows five fields
    ("0 0 2 * * * 2026", 7),
    ("0", 1),
])
def test_only_five_fields(expression: str, count: int) -> None:
    with pytest.raises(InvalidScheduleError, match=r"five fields") as raised:
        cron.validate_cron(expression)
    assert "field" in str(raised.value)
    if count == 6:
        assert "6 field(s), not 5" in str(raised.value)


@pytest.mark.parametrize("macro", ["@daily", "@hourly", "@reboot", "@every 5m", " @weekly"])
def test_macros_are_refused_with_the_five_field_form_suggested(macro: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        cron.validate_cron(macro)
    assert "macros such as @daily are not supported" in str(raised.value)
    assert "five fields" in str(raised.value)


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_empty_cron(blank: str) -> None:
    with pytest.raises(InvalidScheduleError, match="cron is empty; use five fields"):
        cron.validate_cron(blank)


def test_too_long_cron_says_the_limit() -> None:
    long = ",".join(str(m) for m in range(40)) + " * * * *"
    assert len(long) > cron.MAX_CRON_LENGTH
    with pytest.raises(InvalidScheduleError, match=f"cron is {len(long)} characters, above the "
                       "limit of 100"):
        cron.validate_cron(long)
    assert cron.validate_cron(",".join(str(m) for m in range(32)) + " * * * *")


@pytest.mark.parametrize("value", [None, 5, ["0", "2", "*", "*", "*"]])
def test_a_cron_that_is_not_a_string(value: object) -> None:
    with pytest.raises(InvalidScheduleError, match="cron must be a string"):
        cron.validate_cron(value)  # type: ignore[arg-type]


# --- time zones -----------------------------------------------------------------------------


def test_timezone_defaults_to_utc() -> None:
    assert cron.validate_timezone(None) == "UTC"
    assert cron.zone(None) == ZoneInfo("UTC")


@pytest.mark.parametrize("name", ["UTC", PARIS, NEW_YORK, "Asia/Kolkata", "Etc/UTC"])
def test_iana_names_are_accepted(name: str) -> None:
    assert cron.validate_timezone(name) == name
    assert cron.zone(name) == ZoneInfo(name)


@pytest.mark.parametrize("name", ["Europe/Pariss", "europe/paris", "Mars/Olympus", "",
                                  "+02:00", "../../etc/passwd", 3])
def test_unknown_time_zones_are_refused_with_examples(name: object) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        cron.validate_timezone(name)  # type: ignore[arg-type]
    message = str(raised.value)
    assert repr(name) in message
    assert "is not an IANA time zone name" in message
    assert "'Europe/Paris'" in message
    assert "timezones()" in message
    with pytest.raises(InvalidScheduleError):
        cron.zone(name)  # type: ignore[arg-type]


def test_timezones_are_sorted_unique_and_loadable() -> None:
    names = cron.timezones()
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)
    assert len(names) >= 500
    assert {"UTC", PARIS, NEW_YORK, "Asia/Tokyo", "Australia/Sydney"} <= set(names)
    assert all(name == name.strip() and name for name in names)
    for name in names:
        ZoneInfo(name)  # each one is in the time zone database


# --- ticks_after, next_tick, previous_tick, ticks_between ------------------------------------


def test_ticks_after_are_strictly_after_and_in_utc() -> None:
    ticks = cron.ticks_after("0 * * * *", None, utc(2026, 1, 1, 10, 0), 3)
    assert ticks == [utc(2026, 1, 1, 11), utc(2026, 1, 1, 12), utc(2026, 1, 1, 13)]
    assert all(t.tzinfo is UTC for t in ticks)
    # From within a second, and from a zone other than UTC: the same instants.
    just_before = utc(2026, 1, 1, 10, 59, 59) + timedelta(microseconds=999_999)
    assert cron.next_tick("0 * * * *", None, just_before) == utc(2026, 1, 1, 11)
    paris_noon = datetime(2026, 1, 1, 11, 0, tzinfo=ZoneInfo(PARIS))  # 10:00 UTC
    assert cron.ticks_after("0 * * * *", None, paris_noon, 1) == [utc(2026, 1, 1, 11)]


def test_ticks_read_the_cron_in_the_schedule_time_zone() -> None:
    # 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
    assert cron.next_tick("0 2 * * *", PARIS, utc(2026, 1, 15)) == utc(2026, 1, 15, 1)
    assert cron.next_tick("0 2 * * *", PARIS, utc(2026, 7, 14, 12)) == utc(2026, 7, 15, 0)
    assert cron.next_tick("0 2 * * *", NEW_YORK, utc(2026, 1, 15)) == utc(2026, 1, 15, 7)


def test_previous_tick_is_exclusive_unless_asked() -> None:
    tick = utc(2026, 1, 1, 11)
    assert cron.previous_tick("0 * * * *", None, tick) == utc(2026, 1, 1, 10)
    assert cron.previous_tick("0 * * * *", None, tick, inclusive=True) == tick
    later = tick + timedelta(seconds=1)
    assert cron.previous_tick("0 * * * *", None, later) == tick
    assert cron.previous_tick("0 * * * *", None, tick + timedelta(microseconds=1)) == tick
    assert cron.previous_tick("0 0 29 2 *", None, tick) == utc(2024, 2, 29)


def test_ticks_between_excludes_the_start_includes_the_end() -> None:
    ticks = cron.ticks_between("*/15 * * * *", None, utc(2026, 1, 1, 10), utc(2026, 1, 1, 11),
                               100)
    assert ticks == [utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 45),
                     utc(2026, 1, 1, 11)]


def test_ticks_between_keeps_the_latest_when_limited() -> None:
    ticks = cron.ticks_between("* * * * *", None, utc(2026, 1, 1), utc(2026, 1, 2), 3)
    assert ticks == [utc(2026, 1, 1, 23, 58), utc(2026, 1, 1, 23, 59), utc(2026, 1, 2)]


def test_ticks_between_an_empty_or_reversed_window() -> None:
    moment = utc(2026, 1, 1, 10, 0, 30)
    assert cron.ticks_between("* * * * *", None, moment, moment, 10) == []
    assert cron.ticks_between("* * * * *", None, moment, moment - timedelta(hours=1), 10) == []
    assert cron.ticks_between("0 * * * *", None, utc(2026, 1, 1, 10, 1), utc(2026, 1, 1, 10, 59),
                              10) == []


# --- DST ------------------------------------------------------------------------------------


def test_spring_forward_in_paris_a_tick_in_the_gap_fires_once_right_after_it() -> None:
    ticks = cron.ticks_between("30 2 * * *", PARIS, utc(2026, 3, 27), utc(2026, 3, 31), 10)
    assert wall(ticks, PARIS) == ["2026-03-27 02:30 CET", "2026-03-28 02:30 CET",
                                  "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"]
    gap_tick = utc(2026, 3, 29, 1)
    assert ticks[2] == gap_tick
    # Every way of asking agrees.
    assert cron.next_tick("30 2 * * *", PARIS, utc(2026, 3, 28, 12)) == gap_tick
    assert cron.previous_tick("30 2 * * *", PARIS, gap_tick, inclusive=True) == gap_tick
    assert cron.previous_tick("30 2 * * *", PARIS, utc(2026, 3, 29, 2)) == gap_tick
    assert cron.previous_tick("30 2 * * *", PARIS, gap_tick) == utc(2026, 3, 28, 1, 30)
    assert cron.next_tick("30 2 * * *", PARIS, gap_tick) == utc(2026, 3, 30, 0, 30)


def test_spring_forward_several_ticks_in_the_gap_fire_once() -> None:
    ticks = cron.ticks_between("0,30 2 * * *", PARIS, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12),
                               10)
    assert wall(ticks, PARIS) == ["2026-03-29 03:00 CEST", "2026-03-30 02:00 CEST",
                                  "2026-03-30 02:30 CEST"]


def test_spring_forward_in_new_york() -> None:
    ticks = cron.ticks_between("30 2 * * *", NEW_YORK, utc(2026, 3, 7), utc(2026, 3, 10), 10)
    assert wall(ticks, NEW_YORK) == ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT",
                                     "2026-03-09 02:30 EDT"]


def test_spring_forward_a_wildcard_minute_follows_the_clock() -> None:
    # Documented: with * in the minute field the skipped hour has no tick at all.
    ticks = cron.ticks_between("*/30 2 * * *", PARIS, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12),
                               10)
    assert wall(ticks, PARIS) == ["2026-03-30 02:00 CEST", "2026-03-30 02:30 CEST"]


def test_spring_forward_hourly_ticks_skip_the_missing_hour() -> None:
    ticks = cron.ticks_between("0 * * * *", PARIS, utc(2026, 3, 28, 23, 30),
                               utc(2026, 3, 29, 2, 30), 10)
    assert wall(ticks, PARIS) == ["2026-03-29 01:00 CET", "2026-03-29 03:00 CEST",
                                  "2026-03-29 04:00 CEST"]


def test_fall_back_in_paris_a_fixed_hour_tick_fires_once_at_its_first_pass() -> None:
    ticks = cron.ticks_between("30 2 * * *", PARIS, utc(2026, 10, 24), utc(2026, 10, 27), 10)
    assert wall(ticks, PARIS) == ["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST",
                                  "2026-10-26 02:30 CET"]
    assert ticks[1] == utc(2026, 10, 25, 0, 30)


def test_fall_back_in_new_york_a_fixed_hour_tick_fires_once() -> None:
    ticks = cron.ticks_between("30 1 * * *", NEW_YORK, utc(2026, 10, 31), utc(2026, 11, 3), 10)
    assert wall(ticks, NEW_YORK) == ["2026-10-31 01:30 EDT", "2026-11-01 01:30 EDT",
                                     "2026-11-02 01:30 EST"]


@pytest.mark.parametrize(("tz", "start", "passes"), [
    (PARIS, utc(2026, 10, 24, 23, 59), ["2026-10-25 02:00 CEST", "2026-10-25 02:30 CEST",
                                        "2026-10-25 02:00 CET", "2026-10-25 02:30 CET"]),
    (NEW_YORK, utc(2026, 11, 1, 4, 59), ["2026-11-01 01:00 EDT", "2026-11-01 01:30 EDT",
                                         "2026-11-01 01:00 EST", "2026-11-01 01:30 EST"]),
])
def test_fall_back_every_thirty_minutes_fires_in_both_passes(tz: str, start: datetime,
                                                            passes: list[str]) -> None:
    ticks = cron.ticks_after("*/30 * * * *", tz, start, 6)
    assert wall(ticks[:4], tz) == passes
    # Half an hour apart in real time throughout, and distinct instants.
    assert {b - a for a, b in pairwise(ticks)} == {timedelta(minutes=30)}
    until = ticks[-1]
    assert cron.ticks_between("*/30 * * * *", tz, start, until, 10) == ticks


@pytest.mark.parametrize("minutes_into_the_repeated_hour", [0, 10, 29, 30, 45, 59])
def test_fall_back_previous_tick_seen_from_the_second_pass(
        minutes_into_the_repeated_hour: int) -> None:
    # 01:00-02:00 UTC on 25 October is 02:00-03:00 CET, the second pass. The latest
    # ``30 2 * * *`` tick is the first pass's 02:30 CEST (00:30 UTC) whatever the wall
    # clock says; stepping back in wall-clock time alone would find the day before.
    before = utc(2026, 10, 25, 1) + timedelta(minutes=minutes_into_the_repeated_hour)
    today = utc(2026, 10, 25, 0, 30)
    assert cron.previous_tick("30 2 * * *", PARIS, before) == today
    assert cron.previous_tick("30 2 * * *", PARIS, before, inclusive=True) == today
    assert cron.ticks_between("30 2 * * *", PARIS, utc(2026, 10, 24, 12), before, 10) == [today]


def test_fall_back_previous_tick_at_a_second_pass_tick() -> None:
    second_pass = utc(2026, 10, 25, 1, 30)  # 02:30 CET
    assert cron.previous_tick("*/30 * * * *", PARIS, second_pass, inclusive=True) == second_pass
    assert cron.previous_tick("*/30 * * * *", PARIS, second_pass) == utc(2026, 10, 25, 1)
    assert cron.previous_tick("*/30 * * * *", PARIS,
                              second_pass + timedelta(seconds=1)) == second_pass


# --- month ends, L, nth weekday, day OR ------------------------------------------------------


def test_day_31_skips_the_months_without_one() -> None:
    ticks = cron.ticks_after("0 0 31 * *", None, utc(2026, 1, 1), 8)
    assert [t.strftime("%Y-%m-%d") for t in ticks] == [
        "2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31", "2026-08-31", "2026-10-31",
        "2026-12-31", "2027-01-31"]


def test_l_is_the_last_day_of_each_month_including_a_leap_february() -> None:
    ticks = cron.ticks_after("0 0 L * *", None, utc(2027, 12, 15), 5)
    assert [t.strftime("%Y-%m-%d") for t in ticks] == [
        "2027-12-31", "2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30"]
    feb = cron.ticks_after("0 0 L 2 *", None, utc(2026, 1, 1), 3)
    assert [t.strftime("%Y-%m-%d") for t in feb] == ["2026-02-28", "2027-02-28", "2028-02-29"]
    assert cron.previous_tick("0 0 L * *", None, utc(2028, 3, 1)) == utc(2028, 2, 29)


def test_l_in_a_time_zone_is_the_local_last_day() -> None:
    # Midnight after the last day of February 2028 in Paris is 29 Feb 23:00 UTC.
    assert cron.next_tick("0 0 L * *", PARIS, utc(2028, 2, 15)) == utc(2028, 2, 28, 23)


def test_lw_is_the_last_weekday() -> None:
    ticks = cron.ticks_after("0 0 LW * *", None, utc(2026, 5, 1), 3)
    assert days(ticks) == ["2026-05-29 Fri", "2026-06-30 Tue", "2026-07-31 Fri"]


def test_5l_is_the_last_friday() -> None:
    ticks = cron.ticks_after("0 0 * * 5L", None, utc(2026, 1, 1), 4)
    assert days(ticks) == ["2026-01-30 Fri", "2026-02-27 Fri", "2026-03-27 Fri",
                           "2026-04-24 Fri"]


def test_5_hash_2_is_the_second_friday() -> None:
    ticks = cron.ticks_after("0 0 * * 5#2", None, utc(2026, 1, 1), 4)
    assert days(ticks) == ["2026-01-09 Fri", "2026-02-13 Fri", "2026-03-13 Fri",
                           "2026-04-10 Fri"]


def test_both_day_fields_restricted_means_either() -> None:
    # April 2026: Fridays 3, 10, 17, 24 and the 13th, a Monday.
    ticks = cron.ticks_after("0 9 13 * FRI", None, utc(2026, 4, 1), 5)
    assert days(ticks) == ["2026-04-03 Fri", "2026-04-10 Fri", "2026-04-13 Mon",
                           "2026-04-17 Fri", "2026-04-24 Fri"]
    # The classic surprise: "the first Monday" written this way is days 1-7 or any Monday.
    first_monday = cron.ticks_after("0 9 1-7 * MON", None, utc(2026, 2, 1), 9)
    assert days(first_monday)[-2:] == ["2026-02-09 Mon", "2026-02-16 Mon"]
    assert len(first_monday) == 9


def test_one_day_field_restricted_means_that_one() -> None:
    assert days(cron.ticks_after("0 9 13 * *", None, utc(2026, 2, 1), 3)) == [
        "2026-02-13 Fri", "2026-03-13 Fri", "2026-04-13 Mon"]
    assert days(cron.ticks_after("0 9 * * FRI", None, utc(2026, 4, 11), 2)) == [
        "2026-04-17 Fri", "2026-04-24 Fri"]


def test_sunday_is_0_or_7() -> None:
    assert cron.ticks_after("0 9 * * 0", None, utc(2026, 2, 1), 3) == cron.ticks_after(
        "0 9 * * 7", None, utc(2026, 2, 1), 3) == cron.ticks_after(
        "0 9 * * SUN", None, utc(2026, 2, 1), 3)


# --- describe, scheduled_payload -------------------------------------------------------------


@pytest.mark.parametrize(("expression", "english"), [
    ("0 2 * * *", "At 02:00, every day"),
    ("0  2 *   * *", "At 02:00, every day"),
    ("0 14 * * *", "At 14:00, every day"),
    ("0 0 L * *", "At 00:00, on the last day of the month"),
    ("0 0 * * 5L", "At 00:00, on the last Friday of the month"),
    ("0 0 * * 5#2", "At 00:00, on the second Friday of the month"),
    ("*/15 9-17 * * MON-FRI", "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"),
])
def test_describe_in_english_on_a_24_hour_clock(expression: str, english: str) -> None:
    assert cron.describe(expression) == english


def test_scheduled_payload_shape() -> None:
    paris = ZoneInfo(PARIS)
    payload = cron.scheduled_payload(
        schedule="ns/nightly",
        schedule_type="DECLARATIVE",
        timestamp=datetime(2026, 7, 1, 2, 0, tzinfo=paris),
        last_timestamp=utc(2026, 6, 30, 0),
        timezone=PARIS,
        external_id="user-7",
        upcoming=[utc(2026, 7, 2, 0), datetime(2026, 7, 3, 2, 0, tzinfo=paris)],
    )
    assert payload == {
        "type": "DECLARATIVE",
        "timestamp": "2026-07-01T00:00:00Z",
        "last_timestamp": "2026-06-30T00:00:00Z",
        "timezone": PARIS,
        "schedule_id": "ns/nightly",
        "external_id": "user-7",
        "upcoming": ["2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z"],
    }


def test_scheduled_payload_of_a_first_tick_in_utc() -> None:
    payload = cron.scheduled_payload(
        schedule="ns/s", schedule_type="IMPERATIVE", timestamp=utc(2026, 1, 1),
        last_timestamp=None, timezone=None, external_id=None, upcoming=[])
    assert payload["last_timestamp"] is None
    assert payload["timezone"] == "UTC"
    assert payload["external_id"] is None
    assert payload["upcoming"] == []


# --- properties -----------------------------------------------------------------------------

MINUTES = ["0", "30", "*/15", "*/30", "5,35", "0-59/20", "*", "59"]
HOURS = ["*", "2", "1-3", "*/2", "0,12", "2,3", "1"]
DAYS_OF_MONTH = ["*", "*", "L", "1", "15", "31"]
DAYS_OF_WEEK = ["*", "*", "MON-FRI", "0", "5L"]
ZONES = ["UTC", PARIS, NEW_YORK, "America/Santiago", "Australia/Sydney", "Asia/Kolkata"]
# Instants near the 2026 DST changes of those zones, and a plain one.
CHANGES = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),
           utc(2026, 4, 5, 3), utc(2026, 9, 6, 4), utc(2026, 4, 4, 16), utc(2026, 10, 3, 16),
           utc(2026, 6, 15, 12)]

crons = st.builds(lambda *f: " ".join(f), *(st.sampled_from(f) for f in (
    MINUTES, HOURS, DAYS_OF_MONTH, ["*"], DAYS_OF_WEEK)))
instants = st.builds(lambda base, s: base + timedelta(seconds=s), st.sampled_from(CHANGES),
                     st.floats(min_value=-4 * 3600, max_value=4 * 3600, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(expression=crons, tz=st.sampled_from(ZONES), moment=instants)
def test_previous_and_next_tick_agree_with_each_other(expression: str, tz: str,
                                                      moment: datetime) -> None:
    """Nothing lies between the previous tick and the next one, from any instant."""
    before = cron.previous_tick(expression, tz, moment)
    upto = cron.previous_tick(expression, tz, moment, inclusive=True)
    after = cron.next_tick(expression, tz, moment)
    assert before is not None and upto is not None
    assert before < moment < after
    assert upto <= moment < after
    assert cron.next_tick(expression, tz, upto) == after
    assert cron.next_tick(expression, tz, before) >= moment
    assert upto in (before, moment)


@settings(max_examples=150, deadline=None)
@given(expression=crons, tz=st.sampled_from(ZONES), start=instants,
       hours=st.floats(min_value=0, max_value=8, allow_nan=False))
def test_ticks_between_is_the_forward_walk(expression: str, tz: str, start: datetime,
                                           hours: float) -> None:
    until = start + timedelta(hours=hours)
    walked: list[datetime] = []
    tick = cron.next_tick(expression, tz, start)
    while tick <= until:
        walked.append(tick)
        tick = cron.next_tick(expression, tz, tick)
    assert cron.ticks_between(expression, tz, start, until, 10_000) == walked
    assert len(set(walked)) == len(walked)
