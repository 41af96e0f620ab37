"""Trigger options, schedule options and task settings in the SDK's Python form, and their
translation into the API's values: durations, delays, queues, retry options, tags, metadata,
cron expressions and time zones. Pure: no I/O; the clock is passed in."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from kubetasks.errors import (
    InvalidDelayError,
    InvalidDurationError,
    InvalidOptionError,
    MetadataTooLargeError,
    PayloadNotSerializableError,
    TaskDefinitionError,
)
from kubetasks.idempotency_keys import IdempotencyKey
from kubetasks.protocol.payloads import encode_json

if TYPE_CHECKING:
    from kubetasks.api.v1alpha1 import ConcurrencyPolicy, Machine, QueueSpec, TriggerOptions

ONE_YEAR = 365 * 24 * 3600
THIRTY_DAYS = 30 * 24 * 3600
DEFAULT_IDEMPOTENCY_KEY_TTL = THIRTY_DAYS
MAX_TAGS = 10
MAX_TAG_LENGTH = 128
MAX_METADATA_KEYS = 64
# Metadata stays inline in the TaskRun (it is never offloaded): keep it small.
MAX_METADATA_BYTES = 16 * 1024

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(
    r"^(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$"
)
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

Duration = str | int | float | dt.timedelta
"""A duration: ``"1h52m18s"``, ``"88s"``, ``"10m"``, a number of seconds, or a timedelta."""
Delay = str | dt.datetime | dt.timedelta
"""A delay: a duration string, an ISO 8601 timestamp, an aware datetime, or a timedelta."""


# --- durations and delays --------------------------------------------------------------------


def parse_duration_string(text: str) -> int | None:
    """Seconds in a duration string such as ``"1h52m18s"`` (units w, d, h, m, s, in that
    order), or ``None`` when the text is not one.

    >>> parse_duration_string("1h52m18s")
    6738
    """
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groupdict().values()):
        return None
    return sum(int(v) * _UNIT_SECONDS[unit] for unit, v in match.groupdict().items() if v)


def parse_duration(value: Duration, option: str = "duration") -> float:
    """Seconds in a duration given as a string, a number of seconds or a timedelta.

    >>> parse_duration("10m")
    600.0
    """
    if isinstance(value, bool):
        raise InvalidDurationError(option, value, "a boolean is not a duration")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float | str):
        parsed = parse_duration_string(value) if isinstance(value, str) else value
        if parsed is None:
            raise InvalidDurationError(option, value)
        try:
            seconds = float(parsed)
        except OverflowError:  # an int beyond any float: far longer than any limit
            raise InvalidDurationError(option, value, "it is far too long") from None
    else:
        raise InvalidDurationError(option, value, f"a {type(value).__name__} is not a duration")
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidDurationError(option, value, "not a finite number")
    if seconds < 0:
        raise InvalidDurationError(option, value, "it is negative")
    return seconds


def whole_seconds(value: Duration, option: str, *, minimum: int, maximum: int) -> int:
    """A duration as whole seconds (fractions round up), within ``[minimum, maximum]``."""
    seconds = math.ceil(parse_duration(value, option))
    if seconds < minimum or seconds > maximum:
        raise InvalidDurationError(
            option, value, f"it must be between {minimum} and {maximum:,} seconds")
    return seconds


def parse_delay(value: Delay, now: dt.datetime) -> dt.datetime:
    """The UTC time a delay means: ``now`` plus a duration, or the timestamp it names.

    An ISO 8601 timestamp without a zone is read as UTC; a naive ``datetime`` is refused
    (Python cannot know which zone it meant).

    >>> now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    >>> parse_delay("1h52m18s", now).isoformat()
    '2030-01-01T01:52:18+00:00'
    """
    try:
        return _delay_until(value, now)
    except OverflowError:
        # Python's datetimes span the years 1 to 9999 (in UTC), and so does RFC 3339.
        raise InvalidDelayError(value, "it falls outside the years 1 to 9999") from None


def _delay_until(value: Delay, now: dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidDelayError(
                value, "a naive datetime has no timezone: use datetime.now(UTC) + timedelta(...)"
                " or .replace(tzinfo=...)")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0):
            raise InvalidDelayError(value, "it is negative")
        return now + value
    if not isinstance(value, str):
        raise InvalidDelayError(value, f"a {type(value).__name__} is not a delay")
    seconds = parse_duration_string(value)
    if seconds is not None:
        return now + dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidDelayError(value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# --- queues and retries ----------------------------------------------------------------------


def check_dns_label(value: str, what: str, example: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise InvalidOptionError(
            f"{what} {value!r} must be a DNS label: 1-63 lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, e.g. {example!r}")
    return value


@dataclass(frozen=True)
class Queue:
    """A named queue and, optionally, how many of its runs may execute at once: runs with a
    ``concurrency_key`` count per key value (each key is a queue of its own, as in
    Trigger.dev); a cap over the whole queue is its TaskQueue's ``totalConcurrencyLimit``."""

    name: str
    concurrency_limit: int | None = None

    def __post_init__(self) -> None:
        check_dns_label(self.name, "queue name", "emails")
        limit = self.concurrency_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10000
        ):
            raise InvalidOptionError(
                f"concurrency_limit of queue {self.name!r} is {limit!r}; use a whole number "
                "from 1 to 10000, or None for no limit (to stop a queue, pause its TaskQueue)")


def queue(name: str, concurrency_limit: int | None = None) -> Queue:
    """A queue for ``@task(queue=...)`` or the ``queue=`` trigger option. With
    ``concurrency_key=`` the limit applies to each key on its own: one run per user here.

    >>> free_users = queue("free-users", concurrency_limit=1)
    >>> # generate_pr.trigger(data, queue=free_users, concurrency_key=data["user_id"])
    >>> emails = queue("emails", concurrency_limit=5)
    >>> emails.concurrency_limit
    5
    """
    return Queue(name, concurrency_limit)


@dataclass(frozen=True)
class RetryOptions:
    """How a task's failed attempts are retried: up to ``max_attempts`` attempts, waiting
    ``min_timeout`` seconds before the first retry, ``factor`` times longer each time, at
    most ``max_timeout`` seconds, with random jitter when ``randomize``.

    >>> RetryOptions(max_attempts=3, factor=2, min_timeout=1, max_timeout=10, randomize=True)
    RetryOptions(max_attempts=3, factor=2, min_timeout=1, max_timeout=10, randomize=True)
    """

    max_attempts: int | None = None
    factor: float | None = None
    min_timeout: int | None = None
    max_timeout: int | None = None
    randomize: bool | None = None

    def __post_init__(self) -> None:
        def whole(name: str, value: object, low: int, high: int) -> None:
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise TaskDefinitionError(
                    f"retry {name} is {value!r}; use a whole number from {low} to {high}")

        whole("max_attempts", self.max_attempts, 1, 100)
        whole("min_timeout", self.min_timeout, 0, ONE_YEAR)
        whole("max_timeout", self.max_timeout, 0, ONE_YEAR)
        if self.factor is not None and (
            isinstance(self.factor, bool) or not isinstance(self.factor, int | float)
            or not 1 <= self.factor <= 10
        ):
            raise TaskDefinitionError(f"retry factor is {self.factor!r}; use a number from 1 "
                                      "to 10")
        if (self.min_timeout is not None and self.max_timeout is not None
                and self.min_timeout > self.max_timeout):
            raise TaskDefinitionError(
                f"retry min_timeout ({self.min_timeout} s) is above max_timeout "
                f"({self.max_timeout} s); lower min_timeout or raise max_timeout")

    def to_api(self) -> dict[str, Any]:
        """The Task's ``spec.retry``."""
        fields = {
            "maxAttempts": self.max_attempts,
            "factor": self.factor,
            "minTimeoutSeconds": self.min_timeout,
            "maxTimeoutSeconds": self.max_timeout,
            "randomize": self.randomize,
        }
        return {k: v for k, v in fields.items() if v is not None}


# --- trigger options -------------------------------------------------------------------------


class TriggerOptionsDict(TypedDict, total=False):
    """The keyword options of every trigger call (``**options``)."""

    delay: Delay
    """Do not start before then: '1h52m18s', '88s', an ISO 8601 time, an aware datetime."""
    ttl: Duration
    """Expire the run if it has not started this long after it was enqueued; 0 disables."""
    idempotency_key: str | IdempotencyKey
    """Return the existing run instead of creating one for the same key (see
    ``idempotency_keys.create``)."""
    idempotency_key_ttl: Duration
    """How long the key holds (default 30 days)."""
    queue: str | Queue
    """Run on this queue instead of the task's."""
    concurrency_key: str
    """Give each value (e.g. a user id) a queue of its own: the concurrency limit applies
    per value."""
    max_attempts: int
    """Attempts before the run fails, overriding the task's retry policy."""
    tags: str | Sequence[str]
    """Up to 10 tags to find the run by."""
    metadata: Mapping[str, Any]
    """Small JSON values the task can read as ``ctx.run.metadata``."""
    max_duration: Duration
    """Stop each attempt after this long (the run ends TimedOut)."""
    machine: Machine
    """Machine preset: micro, small-1x, small-2x, medium-1x, medium-2x, large-1x, large-2x."""
    priority: Duration
    """Seconds of head start in the queue."""


_OPTION_NAMES = frozenset(TriggerOptionsDict.__annotations__)


def normalize_tags(tags: str | Sequence[str]) -> list[str]:
    """Tags as a list: one string or many, duplicates dropped, at most 10 of 1-128 characters.

    >>> normalize_tags(["a", "b", "a"])
    ['a', 'b']
    """
    if isinstance(tags, str):
        items: list[object] = [tags]
    elif isinstance(tags, Iterable) and not isinstance(tags, bytes | bytearray | Mapping):
        items = list(tags)
    else:
        raise InvalidOptionError(
            f"tags must be a string or a list of strings such as ['vip'], got a "
            f"{type(tags).__name__}")
    unique: list[str] = []
    for tag in items:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH:
            raise InvalidOptionError(
                f"tag {tag!r} in tags must be a string of 1 to {MAX_TAG_LENGTH} characters")
        if tag not in unique:
            unique.append(tag)
    if len(unique) > MAX_TAGS:
        raise InvalidOptionError(
            f"{len(unique)} tags given, at most {MAX_TAGS} are allowed; drop some, or put the "
            "extra information in metadata")
    return unique


def normalize_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as a JSON object of at most 64 keys and 16 KiB."""
    if not isinstance(metadata, Mapping):
        raise InvalidOptionError(f"metadata must be a mapping of str to JSON values, got "
                                 f"{type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidOptionError(
            f"metadata has {len(metadata)} keys, at most {MAX_METADATA_KEYS} are allowed")
    for key, item in metadata.items():
        if not isinstance(key, str):
            raise InvalidOptionError(f"metadata key {key!r} must be a string")
        if item is None:
            # The CRD's map of JSON values is not nullable: the API server drops such keys.
            raise InvalidOptionError(
                f"metadata[{key!r}] is None, which the API would drop; leave the key out")
    try:
        data, value = encode_json(dict(metadata), "metadata")
    except PayloadNotSerializableError as exc:
        raise InvalidOptionError(str(exc)) from None
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataTooLargeError(len(data), MAX_METADATA_BYTES)
    assert isinstance(value, dict)
    return value


def check_option_names(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise InvalidOptionError(
            f"unknown trigger option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(sorted(_OPTION_NAMES))}")


def to_trigger_options(
    options: TriggerOptionsDict,
    now: dt.datetime,
    key: IdempotencyKey | None = None,
) -> TriggerOptions:
    """The API's ``TriggerOptions`` for the SDK's keyword options. The idempotency key comes
    already resolved (its scope depends on where the trigger runs).

    >>> opts = to_trigger_options({"ttl": "1h", "tags": "vip"}, dt.datetime.now(dt.UTC))
    >>> (opts.ttl_seconds, opts.tags)
    (3600, ['vip'])
    """
    from pydantic import ValidationError

    from kubetasks.api.v1alpha1 import TriggerOptions

    check_option_names(options)
    fields: dict[str, Any] = {}
    if "delay" in options:
        fields["delay_until"] = parse_delay(options["delay"], now)
    fields.update(_idempotency_fields(options, key))
    fields.update(run_option_fields(options))
    if "priority" in options:
        fields["priority"] = whole_seconds(options["priority"], "priority", minimum=0,
                                           maximum=THIRTY_DAYS)
    try:
        return TriggerOptions(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors())
        raise InvalidOptionError(f"invalid trigger options: {problems}") from None


RUN_OPTIONS = ("ttl", "queue", "concurrency_key", "max_attempts", "tags", "metadata",
               "max_duration", "machine")
"""The options that shape how a run runs, shared by triggers and schedules."""


def run_option_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The API's fields (Python names, as in ``TriggerOptions``) of the options in
    :data:`RUN_OPTIONS` that ``options`` gives; the others are ignored.

    >>> run_option_fields({"ttl": "1h", "queue": "emails", "delay": "1m"})
    {'ttl_seconds': 3600, 'queue': QueueSpec(name='emails', concurrency_limit=None)}
    """
    fields: dict[str, Any] = {}
    if "ttl" in options:
        fields["ttl_seconds"] = whole_seconds(options["ttl"], "ttl", minimum=0,
                                              maximum=ONE_YEAR)
    if "queue" in options:
        fields["queue"] = _queue_spec(options["queue"])
    if "concurrency_key" in options:
        fields["concurrency_key"] = _concurrency_key(options["concurrency_key"])
    if "max_attempts" in options:
        fields["max_attempts"] = _max_attempts(options["max_attempts"])
    if "tags" in options:
        fields["tags"] = normalize_tags(options["tags"]) or None
    if "metadata" in options:
        fields["metadata"] = normalize_metadata(options["metadata"])
    if "max_duration" in options:
        fields["max_duration_seconds"] = whole_seconds(
            options["max_duration"], "max_duration", minimum=1, maximum=ONE_YEAR)
    if "machine" in options:
        fields["machine"] = _machine(options["machine"])
    return fields


def _idempotency_fields(options: TriggerOptionsDict, key: IdempotencyKey | None
                        ) -> dict[str, Any]:
    if key is None:
        if "idempotency_key_ttl" in options:
            raise InvalidOptionError("idempotency_key_ttl needs idempotency_key; set the key "
                                     "or drop the ttl")
        return {}
    return {
        "idempotency_key": key.key,
        "idempotency_key_scope": key.scope,
        "idempotency_key_ttl_seconds": whole_seconds(
            options.get("idempotency_key_ttl", DEFAULT_IDEMPOTENCY_KEY_TTL),
            "idempotency_key_ttl", minimum=1, maximum=ONE_YEAR),
    }


def _queue_spec(value: Any) -> QueueSpec:
    from kubetasks.api.v1alpha1 import QueueSpec

    q = Queue(value) if isinstance(value, str) else value
    if not isinstance(q, Queue):
        raise InvalidOptionError(
            f"queue must be a name or kubetasks.queue(name, concurrency_limit=...), got {q!r}")
    return QueueSpec(name=q.name, concurrency_limit=q.concurrency_limit)


def _concurrency_key(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise InvalidOptionError(
            f"concurrency_key {value!r} must be a string of 1 to 256 characters")
    return value


def _max_attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InvalidOptionError(
            f"max_attempts is {value!r}; use a whole number from 1 (no retries) to 100")
    return value


def _machine(value: Any) -> Machine:
    import typing

    from kubetasks.api.v1alpha1 import Machine as MachinePreset

    presets: tuple[Machine, ...] = typing.get_args(MachinePreset)
    if value not in presets:
        raise InvalidOptionError(f"machine {value!r} is not a machine preset; use one of "
                                 f"{', '.join(presets)}")
    return typing.cast("Machine", value)


# --- schedule options ------------------------------------------------------------------------


class ScheduleOptionsDict(TypedDict, total=False):
    """The keyword options of ``schedules.create``, and of ``schedules.update``, where
    ``None`` unsets an option: how the cron is read, what a tick does while an earlier run
    is unfinished, and the options of every run the schedule triggers."""

    timezone: str | None
    """IANA time zone the cron is read in, e.g. 'Europe/Paris'; None means UTC."""
    external_id: str | None
    """Your own id for the schedule (e.g. a user id); every run's payload carries it."""
    active: bool
    """False: ticks create no run until the schedule is activated again."""
    concurrency_policy: ConcurrencyPolicy | None
    """A tick while a run of the schedule is unfinished: 'Allow' (the default) runs anyway,
    'Forbid' skips the tick, 'Replace' cancels the unfinished run and runs."""
    starting_deadline: Duration | None
    """How late a tick may still create its run, e.g. after the operator was down (default
    300 s); a later tick is skipped."""
    queue: str | Queue | None
    """Queue of every run, instead of the task's."""
    concurrency_key: str | None
    """Concurrency key of every run."""
    ttl: Duration | None
    """Expire a run that has not started this long after it was enqueued; 0 disables."""
    max_attempts: int | None
    """Attempts before a run fails, overriding the task's retry policy."""
    max_duration: Duration | None
    """Stop each attempt after this long (the run ends TimedOut)."""
    machine: Machine | None
    """Machine preset of every run."""
    tags: str | Sequence[str] | None
    """Up to 10 tags of every run."""
    metadata: Mapping[str, Any] | None
    """Small JSON values every run can read as ``ctx.run.metadata``."""


class ScheduleChangesDict(ScheduleOptionsDict, total=False):
    """What ``schedules.update`` may change: the options, the task and the cron."""

    task: str
    """Id of the task each tick triggers."""
    cron: str
    """Five-field cron expression, e.g. '0 2 * * *'."""


_SCHEDULE_FIELDS = {
    "task": "task", "cron": "cron", "timezone": "timezone", "external_id": "external_id",
    "active": "active", "concurrency_policy": "concurrency_policy",
    "starting_deadline": "starting_deadline_seconds", "ttl": "ttl_seconds", "queue": "queue",
    "concurrency_key": "concurrency_key", "max_attempts": "max_attempts", "tags": "tags",
    "metadata": "metadata", "max_duration": "max_duration_seconds", "machine": "machine",
}
"""Each schedule option and the TaskScheduleSpec field (Python name) it sets."""
_REQUIRED_SCHEDULE_OPTIONS = frozenset({"task", "cron", "active"})


def to_schedule_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``TaskScheduleSpec`` fields (Python names) of schedule options, each checked; an
    option given as ``None`` maps to ``None`` (unset). The run options are read as the
    trigger options are (:func:`run_option_fields`).

    >>> to_schedule_fields({"cron": "0  2 * * *", "timezone": None, "ttl": "1h"})
    {'timezone': None, 'cron': '0 2 * * *', 'ttl_seconds': 3600}
    """
    from kubetasks.protocol.cron import validate_cron, validate_timezone

    unknown = sorted(set(options) - set(_SCHEDULE_FIELDS))
    if unknown:
        raise InvalidOptionError(
            f"unknown schedule option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(sorted(_SCHEDULE_FIELDS))}")
    fields: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            if name in _REQUIRED_SCHEDULE_OPTIONS:
                raise InvalidOptionError(f"{name} cannot be None; give a value or leave it "
                                         "out")
            fields[_SCHEDULE_FIELDS[name]] = None
    given = {name: value for name, value in options.items() if value is not None}
    if "task" in given:
        fields["task"] = check_dns_label(given["task"], "task id", "send-email")
    if "cron" in given:
        fields["cron"] = validate_cron(given["cron"])
    if "timezone" in given:
        fields["timezone"] = validate_timezone(given["timezone"])
    if "external_id" in given:
        fields["external_id"] = check_text(given["external_id"], "external_id")
    if "active" in given:
        if not isinstance(given["active"], bool):
            raise InvalidOptionError(f"active is {given['active']!r}; use True or False")
        fields["active"] = given["active"]
    if "concurrency_policy" in given:
        fields["concurrency_policy"] = _concurrency_policy(given["concurrency_policy"])
    if "starting_deadline" in given:
        fields["starting_deadline_seconds"] = whole_seconds(
            given["starting_deadline"], "starting_deadline", minimum=1, maximum=ONE_YEAR)
    fields.update(run_option_fields(given))
    return fields


def check_text(value: Any, option: str, maximum: int = 256) -> str:
    """A string option of 1 to ``maximum`` characters (an external id, a key)."""
    if not isinstance(value, str) or not 1 <= len(value) <= maximum:
        raise InvalidOptionError(
            f"{option} {value!r} must be a string of 1 to {maximum} characters")
    return value


def _concurrency_policy(value: Any) -> ConcurrencyPolicy:
    import typing

    from kubetasks.api.v1alpha1 import ConcurrencyPolicy as Policy

    policies: tuple[ConcurrencyPolicy, ...] = typing.get_args(Policy)
    if value not in policies:
        raise InvalidOptionError(
            f"concurrency_policy {value!r} is not a policy; use 'Allow' (a tick runs even "
            "while an earlier run is unfinished), 'Forbid' (it is skipped) or 'Replace' (the "
            "unfinished run is canceled)")
    return typing.cast("ConcurrencyPolicy", value)
