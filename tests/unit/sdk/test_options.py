"""Parsing of trigger options: durations, delays, ttl, tags, metadata, queues, retries."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from kubetasks import (
    InvalidDelayError,
    InvalidDurationError,
    InvalidOptionError,
    MetadataTooLargeError,
    RetryOptions,
    TaskDefinitionError,
    queue,
)
from kubetasks.idempotency_keys import IdempotencyKey
from kubetasks.options import (
    THIRTY_DAYS,
    normalize_tags,
    parse_delay,
    parse_duration,
    parse_duration_string,
    to_trigger_options,
)

NOW = dt.datetime(2030, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h52m18s", 6738), ("88s", 88), ("1h", 3600), ("10m", 600), ("2d", 172800),
    ("1w", 604800), ("0s", 0), ("1h30s", 3630),
])
def test_duration_strings(text: str, seconds: int) -> None:
    assert parse_duration_string(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1m1h", "-5s", "1.5h", "1 h", "s1"])
def test_not_duration_strings(text: str) -> None:
    assert parse_duration_string(text) is None


def test_durations_accept_numbers_and_timedeltas_and_refuse_the_rest() -> None:
    assert parse_duration(3600) == 3600.0
    assert parse_duration(1.5) == 1.5
    assert parse_duration(dt.timedelta(minutes=2)) == 120.0
    for bad in (-1, True, float("nan"), "soon", [1]):
        with pytest.raises(InvalidDurationError, match="use a duration such as"):
            parse_duration(bad, "ttl")  # type: ignore[arg-type]


@pytest.mark.parametrize(("delay", "expected"), [
    ("1h52m18s", NOW + dt.timedelta(hours=1, minutes=52, seconds=18)),
    ("88s", NOW + dt.timedelta(seconds=88)),
    (dt.timedelta(minutes=5), NOW + dt.timedelta(minutes=5)),
    ("2030-12-01T00:00:00", dt.datetime(2030, 12, 1, tzinfo=dt.UTC)),  # no zone: UTC
    ("2030-12-01T00:00:00Z", dt.datetime(2030, 12, 1, tzinfo=dt.UTC)),
    ("2030-07-23T11:50:00+02:00", dt.datetime(2030, 7, 23, 9, 50, tzinfo=dt.UTC)),
    ("2030-12-01", dt.datetime(2030, 12, 1, tzinfo=dt.UTC)),
    (dt.datetime(2030, 7, 23, 11, 50, tzinfo=ZoneInfo("Europe/Paris")),
     dt.datetime(2030, 7, 23, 9, 50, tzinfo=dt.UTC)),
])
def test_delays(delay: str | dt.datetime | dt.timedelta, expected: dt.datetime) -> None:
    got = parse_delay(delay, NOW)
    assert got == expected
    assert got.tzinfo is dt.UTC


@pytest.mark.parametrize("delay", ["tomorrow", "2030-13-01T00:00:00", 3600,
                                   dt.timedelta(seconds=-1)])
def test_bad_delays_say_which_forms_work(delay: object) -> None:
    with pytest.raises(InvalidDelayError, match=r"'1h52m18s' or '88s', an ISO 8601 timestamp"):
        parse_delay(delay, NOW)  # type: ignore[arg-type]


def test_a_naive_datetime_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidDelayError, match="naive datetime has no timezone"):
        parse_delay(dt.datetime(2030, 1, 1), NOW)


def test_trigger_options_translate_to_the_api() -> None:
    key = IdempotencyKey("order-1", "global")
    opts = to_trigger_options({
        "delay": "10m", "ttl": "1h", "queue": queue("paid", concurrency_limit=10),
        "concurrency_key": "user-1", "max_attempts": 2, "tags": ["a", "b", "a"],
        "metadata": {"plan": "pro"}, "max_duration": "5m", "machine": "large-1x",
        "priority": "1m",
    }, NOW, key)
    assert opts.model_dump(mode="json") == {
        "delayUntil": "2030-06-01T12:10:00Z",
        "ttlSeconds": 3600,
        "idempotencyKey": "order-1",
        "idempotencyKeyTTLSeconds": THIRTY_DAYS,
        "idempotencyKeyScope": "global",
        "queue": {"name": "paid", "concurrencyLimit": 10},
        "concurrencyKey": "user-1",
        "maxAttempts": 2,
        "maxDurationSeconds": 300,
        "machine": "large-1x",
        "priority": 60,
        "tags": ["a", "b"],
        "metadata": {"plan": "pro"},
    }


def test_ttl_zero_disables_and_numbers_are_seconds() -> None:
    assert to_trigger_options({"ttl": 0}, NOW).ttl_seconds == 0
    assert to_trigger_options({"ttl": 3600}, NOW).ttl_seconds == 3600
    assert to_trigger_options({"ttl": 0.2}, NOW).ttl_seconds == 1  # rounds up
    assert to_trigger_options({"queue": "emails"}, NOW).queue.name == "emails"  # type: ignore[union-attr]


def test_idempotency_key_ttl_is_optional_and_needs_a_key() -> None:
    key = IdempotencyKey("k", "global")
    assert to_trigger_options({"idempotency_key_ttl": "1h"}, NOW, key
                              ).idempotency_key_ttl_seconds == 3600
    with pytest.raises(InvalidOptionError, match="needs idempotency_key"):
        to_trigger_options({"idempotency_key_ttl": "1h"}, NOW)


@pytest.mark.parametrize(("options", "match"), [
    ({"max_attempts": 0}, "from 1"),
    ({"max_attempts": 101}, "to 100"),
    ({"machine": "huge"}, "machine"),
    ({"queue": "Not A Label"}, "DNS label"),
    ({"queue": 5}, "queue must be a name"),
    ({"concurrency_key": ""}, "1 to 256"),
    ({"max_duration": 0}, "between 1"),
    ({"ttl": "forever"}, "invalid ttl"),
    ({"delay_until": "x"}, "unknown trigger option"),
])
def test_bad_options_are_refused_before_anything_is_written(options: dict, match: str
                                                             ) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        to_trigger_options(options, NOW)  # type: ignore[arg-type]


def test_tags_at_most_ten_each_at_most_128_characters() -> None:
    assert normalize_tags("one") == ["one"]
    assert normalize_tags([f"t{i}" for i in range(10)]) == [f"t{i}" for i in range(10)]
    with pytest.raises(InvalidOptionError, match="11 tags given, at most 10"):
        normalize_tags([f"t{i}" for i in range(11)])
    with pytest.raises(InvalidOptionError, match="1 to 128"):
        normalize_tags(["x" * 129])


def test_metadata_must_be_small_json() -> None:
    with pytest.raises(MetadataTooLargeError, match=r"16,384 bytes"):
        to_trigger_options({"metadata": {"blob": "x" * 20000}}, NOW)
    with pytest.raises(InvalidOptionError, match="at most 64"):
        to_trigger_options({"metadata": {str(i): i for i in range(65)}}, NOW)
    with pytest.raises(InvalidOptionError, match="cannot be turned into JSON"):
        to_trigger_options({"metadata": {"x": object()}}, NOW)
    with pytest.raises(InvalidOptionError, match="leave the key out"):
        to_trigger_options({"metadata": {"x": None}}, NOW)


def test_queue_and_retry_options_check_their_values() -> None:
    assert queue("emails", concurrency_limit=5).concurrency_limit == 5
    with pytest.raises(InvalidOptionError, match="from 1 to 10000"):
        queue("emails", concurrency_limit=0)
    with pytest.raises(InvalidOptionError, match="DNS label"):
        queue("Emails")
    retry = RetryOptions(max_attempts=3, factor=2, min_timeout=1, max_timeout=10,
                         randomize=True)
    assert retry.to_api() == {"maxAttempts": 3, "factor": 2, "minTimeoutSeconds": 1,
                              "maxTimeoutSeconds": 10, "randomize": True}
    with pytest.raises(TaskDefinitionError, match=r"min_timeout .* is above max_timeout"):
        RetryOptions(min_timeout=10, max_timeout=1)
    with pytest.raises(TaskDefinitionError, match="factor"):
        RetryOptions(factor=0.5)
    with pytest.raises(TaskDefinitionError, match="max_attempts"):
        RetryOptions(max_attempts=0)
