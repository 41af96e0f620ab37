"""Cron expressions and time zones of TaskSchedules, shared by the SDK and the operator.

The SDK checks a schedule with these functions before it writes one, and the operator's pure
tick logic (``kubetasks_operator.core.schedules``) computes the ticks with them, so both read
a cron expression the same way. Parsing and iteration are cronsim's; descriptions are
cron-descriptor's. Nothing here does I/O.

Semantics (cronsim follows Debian cron):

- five fields: minute, hour, day of month, month, day of week; ``*``, ``*/n``, ranges,
  lists, month and day names, ``L`` (last day of the month), ``LW`` (last weekday of the
  month), ``5L`` (last Friday) and ``5#2`` (second Friday). Day 0 and 7 are both Sunday.
  When both day fields are restricted, a day matching either one fires (classic cron).
- ticks are wall-clock times in the schedule's time zone. On a spring-forward day a tick in
  the skipped hour (``30 2 * * *`` in Europe/Paris) fires once, at the first instant after
  the gap (03:00). On a fall-back day a tick at a fixed hour in the repeated hour fires once,
  at its first occurrence. An expression whose minute or hour field starts with ``*``
  (``*/30 * * * *``, ``*/15 2 * * *``) follows the clock instead (Debian cron's rule for
  such jobs): it fires in both passes of a repeated hour and not at all in a skipped one.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from kubetasks.errors import InvalidScheduleError

DEFAULT_TIMEZONE = "UTC"
MAX_CRON_LENGTH = 100
UPCOMING = 5
_ONE_SECOND = timedelta(seconds=1)
CRON_HELP = (
    "use five fields: minute hour day-of-month month day-of-week, such as '0 2 * * *' "
    "(02:00 every day) or '*/15 9-17 * * MON-FRI'"
)


# The grammar, field by field, as RE2 patterns: the CRD's CEL rule on spec.cron is
# CRON_PATTERN, and validate_cron checks the same fields after cronsim, so the SDK refuses
# what the API server would (steps above 99, day of week 01, ...) and names the field.
_STEP = r"(/[1-9][0-9]?)?"


def _cron_field(value: str, *extra: str) -> str:
    item = rf"([*]|{value}(-{value})?){_STEP}"
    alternatives = "|".join((item, *extra))
    return rf"({alternatives})(,({alternatives}))*"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
CRON_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("minute", "0-59", _cron_field(r"[0-5]?[0-9]")),
    ("hour", "0-23", _cron_field(r"([01]?[0-9]|2[0-3])")),
    ("day-of-month", "1-31, L, LW", _cron_field(r"(0?[1-9]|[12][0-9]|3[01])", "L", "LW")),
    ("month", "1-12, JAN-DEC", _cron_field(rf"(0?[1-9]|1[0-2]|{_MONTHS})")),
    ("day-of-week", "0-7, SUN-SAT, 5L, 5#2",
     _cron_field(rf"([0-7]|{_DAYS})", rf"([0-7]|{_DAYS})L", rf"([0-7]|{_DAYS})#[1-5]")),
)
"""Each field's name, the values it takes, and its pattern, in order."""
CRON_PATTERN = "^(?i)" + " ".join(pattern for _, _, pattern in CRON_FIELDS) + "$"
"""The whole expression (RE2, case-insensitive): the CRD's rule on spec.cron."""


@functools.cache
def _field_patterns() -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern, re.IGNORECASE) for _, _, pattern in CRON_FIELDS)


def _check_pattern(expression: str, cron: str) -> None:
    """InvalidScheduleError naming the field the API server's pattern would refuse though
    cronsim reads it (``*/100``, day of week ``01``)."""
    for value, (name, takes, _), pattern in zip(cron.split(" "), CRON_FIELDS,
                                                _field_patterns(), strict=True):
        if not pattern.fullmatch(value):
            raise InvalidScheduleError(
                f"cron {expression!r}: the {name} field {value!r} is not valid; it takes "
                f"{takes} as *, */n (n up to 99), a value, a range a-b, or a list of these; "
                f"{CRON_HELP}")


@functools.cache
def timezones() -> tuple[str, ...]:
    """Every IANA time zone name a TaskSchedule accepts, sorted (``UTC`` included)."""
    text = resources.files(__package__).joinpath("timezones.txt").read_text(encoding="utf-8")
    return tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def normalize_cron(expression: str) -> str:
    """The expression with single spaces between its fields and none around it."""
    return " ".join(expression.split())


def validate_cron(expression: str) -> str:
    """The normalized expression, or :class:`InvalidScheduleError` saying what to change."""
    if not isinstance(expression, str):
        raise InvalidScheduleError(f"cron must be a string, not {type(expression).__name__}")
    cron = normalize_cron(expression)
    if not cron:
        raise InvalidScheduleError(f"cron is empty; {CRON_HELP}")
    if len(cron) > MAX_CRON_LENGTH:
        raise InvalidScheduleError(
            f"cron is {len(cron)} characters, above the limit of {MAX_CRON_LENGTH}"
        )
    if cron.startswith("@"):
        raise InvalidScheduleError(
            f"cron {expression!r}: macros such as @daily are not supported; {CRON_HELP}"
        )
    fields = len(cron.split(" "))
    if fields != 5:
        # cronsim also reads six fields (seconds first), which the CRD refuses.
        raise InvalidScheduleError(
            f"cron {expression!r} has {fields} field(s), not 5; {CRON_HELP}"
        )
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        raise InvalidScheduleError(f"cron {expression!r}: {error}; {CRON_HELP}") from None
    _check_pattern(expression, cron)
    return cron


def validate_timezone(name: str | None) -> str:
    """The time zone name (``UTC`` for ``None``), or :class:`InvalidScheduleError`."""
    if name is None:
        return DEFAULT_TIMEZONE
    if not isinstance(name, str) or name not in _zone_set():
        raise InvalidScheduleError(
            f"timezone {name!r} is not an IANA time zone name; use one such as 'UTC', "
            "'Europe/Paris' or 'America/New_York' (kubetasks.schedules.timezones() lists them)"
        )
    return name


@functools.cache
def _zone_set() -> frozenset[str]:
    return frozenset(timezones())


@functools.cache
def zone(name: str | None) -> ZoneInfo:
    """The ZoneInfo of a schedule's time zone (``UTC`` for ``None``)."""
    key = validate_timezone(name)
    try:
        return ZoneInfo(key)
    except ZoneInfoNotFoundError:
        raise InvalidScheduleError(
            f"timezone {key!r} is not in this machine's time zone database; install or "
            "upgrade the tzdata package"
        ) from None


def ticks_after(expression: str, timezone: str | None, after: datetime, count: int) -> list[
    datetime
]:
    """The next ``count`` ticks strictly after ``after``, as aware UTC datetimes."""
    start = after.astimezone(zone(timezone)).replace(microsecond=0)
    iterator = CronSim(expression, start)
    ticks: list[datetime] = []
    while len(ticks) < count:
        tick = next(iterator).astimezone(UTC)
        if tick > after:
            ticks.append(tick)
    return ticks


def next_tick(expression: str, timezone: str | None, after: datetime) -> datetime:
    """The first tick strictly after ``after`` (UTC)."""
    return ticks_after(expression, timezone, after, 1)[0]


def ticks_between(
    expression: str, timezone: str | None, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Ticks ``t`` with ``after < t <= until`` (UTC), at most the last ``limit`` of them.

    Iterates backwards from ``until``, so a long gap costs at most ``limit`` steps.
    """
    if until <= after:
        return []
    found: list[datetime] = []
    latest = previous_tick(expression, timezone, until, inclusive=True)
    while latest is not None and latest > after and len(found) < limit:
        found.append(latest)
        latest = previous_tick(expression, timezone, latest)
    found.reverse()
    return found


def previous_tick(
    expression: str, timezone: str | None, before: datetime, *, inclusive: bool = False
) -> datetime | None:
    """The last tick strictly before ``before`` (or at it, when ``inclusive``), UTC."""
    tz = zone(timezone)
    # Step back from just after (or at) ``before``; cronsim's reverse iteration is exclusive.
    # The step is taken in UTC: local arithmetic would drop the fold of a repeated hour.
    start = before.astimezone(UTC)
    if inclusive or start.microsecond:
        start = start.replace(microsecond=0) + _ONE_SECOND
    start = start.astimezone(tz)
    try:
        tick = next(CronSim(expression, start, reverse=True))
    except StopIteration:
        return None
    result = tick.astimezone(UTC)
    # Forward iteration is the reference; the reverse one can miss a tick it would give:
    # - in the second pass of a repeated hour it steps back in wall-clock time for a
    #   fixed-hour expression (``30 2 * * *`` seen at 02:10 CET misses 02:30 CEST);
    # - a tick moved out of a skipped hour (``0 */2 * * 0`` in America/Santiago, whose clocks
    #   go from 00:00 to 01:00) is given going forward, not going back.
    # So step forward from cronsim's answer to the last tick that is still before ``before``.
    following = next_tick(expression, timezone, result)
    while following < before or (inclusive and following == before):
        result = following
        following = next_tick(expression, timezone, result)
    if result > before or (not inclusive and result == before):
        return None
    return result


@functools.lru_cache(maxsize=4096)
def describe(expression: str) -> str:
    """The expression in English, 24-hour clock: ``"At 02:00, every day"``."""
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    options.verbose = True
    try:
        return str(get_description(normalize_cron(expression), options))
    except Exception:  # a description is a courtesy; the cron was validated
        return normalize_cron(expression)


def scheduled_payload(
    *,
    schedule: str,
    schedule_type: str,
    timestamp: datetime,
    last_timestamp: datetime | None,
    timezone: str | None,
    external_id: str | None,
    upcoming: list[datetime],
) -> dict[str, object]:
    """The payload of a tick's run; the SDK reads it as ``kubetasks.ScheduledPayload``.

    Times are RFC 3339 in UTC; ``timezone`` says how the cron was read. The value depends on
    the tick only, so a tick retried after a crash builds the same payload.
    """
    return {
        "type": schedule_type,
        "timestamp": _rfc3339(timestamp),
        "last_timestamp": _rfc3339(last_timestamp) if last_timestamp else None,
        "timezone": timezone or DEFAULT_TIMEZONE,
        "schedule_id": schedule,
        "external_id": external_id,
        "upcoming": [_rfc3339(tick) for tick in upcoming],
    }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
