"""Hostile inputs to the SDK, generated: every value a trigger refuses is refused before
anything is written, with a named kubetasks error whose message names what to change; every
value it accepts becomes a TaskRun or TaskBatch that the API's models accept and that
encodes as JSON. The triggers run against an offline client: a Kubernetes API and an object
store in memory."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kubetasks._internal.client as client_module
from kubetasks import (
    InvalidBatchError,
    KubetasksError,
    PayloadNotSerializableError,
    PayloadTooLargeError,
    TaskDefinitionError,
    idempotency_keys,
    queue,
    task,
    tasks,
)
from kubetasks._internal.client import Client, Json, KubeApi
from kubetasks.api.v1alpha1 import TaskBatch, TaskRun
from kubetasks.errors import ApiError
from kubetasks.options import RetryOptions
from kubetasks.protocol.payloads import MAX_BATCH_ITEMS, MAX_PAYLOAD_BYTES
from tests.unit.fakes import MemoryStore

NS = "offline"
TASK = "send-email"
CHECKS = settings(max_examples=300, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- an offline client -----------------------------------------------------------------------


class MemoryKube(KubeApi):
    """The Kubernetes API in memory: creates get a name and a uid, lists filter by label."""

    def __init__(self) -> None:
        self.namespace = NS
        self.objects: dict[tuple[str, str], Json] = {}
        self.created: list[tuple[str, Json]] = []

    def get_object(self, plural: str, namespace: str, name: str) -> Json:
        try:
            return copy.deepcopy(self.objects[(plural, name)])
        except KeyError:
            raise ApiError(404, "NotFound", f"{plural} {name!r} not found") from None

    def create_object(self, plural: str, namespace: str, body: Json) -> Json:
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta["name"] = meta.get("name") or f"{meta['generateName']}{len(self.created):05d}"
        if (plural, meta["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists", f"{plural} {meta['name']!r} exists")
        meta.update(namespace=namespace, uid=f"uid-{len(self.created)}",
                    creationTimestamp="2030-01-01T00:00:00Z")
        self.objects[(plural, meta["name"])] = obj
        self.created.append((plural, obj))
        return copy.deepcopy(obj)

    def list_objects(self, plural: str, namespace: str, *, label_selector: str | None = None,
                     page_size: int = 250) -> Iterator[Json]:
        for (kind, _), obj in list(self.objects.items()):
            labels = obj["metadata"].get("labels") or {}
            if kind == plural and (label_selector is None
                                   or label_selector in {f"{k}={v}" for k, v in labels.items()}):
                yield copy.deepcopy(obj)


@pytest.fixture(scope="module")
def kube() -> Iterator[MemoryKube]:
    """The process-wide client, offline for this module (small inline limits, so that
    offloading to the object store is exercised too)."""
    previous = client_module._default
    memory = MemoryKube()
    client_module.use_client(Client(memory, MemoryStore(), inline_limit=2048,
                                       batch_inline_limit=8192))
    try:
        yield memory
    finally:
        client_module._default = previous


# --- the oracle ------------------------------------------------------------------------------


def names(message: str, option: str) -> bool:
    """The message names ``option`` (as written in code, or in words)."""
    return option in message or option.replace("_", " ") in message


def refused_or_valid(kube: MemoryKube, call: Callable[[], object], *options: str,
                     plural: str = "taskruns") -> Json | None:
    """Run the trigger: it refuses with a named error that names one of ``options``, and
    writes nothing; or it creates exactly one object that the API's model accepts and that
    encodes as UTF-8 JSON (what the API server receives). Returns that object, if any."""
    kube.objects.clear()  # each example on its own: no idempotency key is taken already
    before = len(kube.created)
    try:
        call()
    except KubetasksError as exc:
        message = str(exc)
        assert any(names(message, option) for option in options), (
            f"{type(exc).__name__} does not say which of {options} to change: {message[:500]}")
        assert len(kube.created) == before, "something was written before the refusal"
        return None
    except Exception as exc:
        raise AssertionError(
            f"refused with {type(exc).__name__}, not a named kubetasks error: {exc!s:.500}"
        ) from exc
    assert len(kube.created) == before + 1
    created_plural, body = kube.created[-1]
    assert created_plural == plural
    json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
    if plural == "taskruns":
        TaskRun.model_validate(body)
    else:
        TaskBatch.model_validate(body)
    return body


# --- strategies ------------------------------------------------------------------------------

SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=300),
    SURROGATES,
    st.sampled_from(["", " ", "\x00", "\x00abc", "é", "😀", "Ω" * 70, "a" * 257, "x" * 10240,
                     "1h\x00", "-1s", "1e9", "NaN", "null", "${HOME}", "../../etc"]),
)
HUGE_INTS = st.one_of(st.integers(-(10**12), 10**12), st.sampled_from(
    [0, -1, 1, 2**31, 2**63, -(2**63), 10**9, 10**30, 10**400]))
ANY_NUMBER = st.one_of(HUGE_INTS, st.floats(), st.booleans())
TIMEDELTAS = st.one_of(st.timedeltas(), st.sampled_from(
    [dt.timedelta(0), dt.timedelta(seconds=-1), dt.timedelta.max, dt.timedelta.min,
     dt.timedelta(days=999_999_999)]))
TIMEZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=14)),
                             dt.timezone(dt.timedelta(hours=-12, minutes=-59))])
DATETIMES = st.one_of(st.datetimes(), st.datetimes(timezones=TIMEZONES), st.sampled_from(
    [dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=1))),
     dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-1)))]))
DURATION_TEXT = st.one_of(
    st.builds(lambda n, unit: f"{n}{unit}", HUGE_INTS, st.sampled_from("wdhms")),
    st.from_regex(r"\A(\d{1,25}w)?(\d{1,25}d)?(\d{1,25}h)?(\d{1,25}m)?(\d{1,25}s)?\Z"),
)
TIMESTAMP_TEXT = st.one_of(
    st.builds(lambda moment: moment.isoformat(), DATETIMES),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00",
                     "2030-02-30T00:00:00Z", "2030-01-01T25:00:00Z", "2030-01-01t00:00:00z",
                     "+002030-01-01", "2030-13-01", "tomorrow", "now", "1970-01-01T00:00:00Z"]),
)
DURATIONS = st.one_of(ANY_NUMBER, DURATION_TEXT, HOSTILE_TEXT, TIMEDELTAS, st.none(),
                      st.lists(st.integers(), max_size=2), st.builds(object))
DELAYS = st.one_of(DURATION_TEXT, TIMESTAMP_TEXT, HOSTILE_TEXT, TIMEDELTAS, DATETIMES,
                   st.dates(), ANY_NUMBER, st.none())


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


JSON_LEAVES = st.one_of(st.none(), st.booleans(), HUGE_INTS, st.floats(), HOSTILE_TEXT,
                        st.binary(max_size=8), st.sets(st.integers(), max_size=3),
                        st.builds(object), st.just(complex(1, 2)), st.dates())
PAYLOADS = st.one_of(
    st.recursive(JSON_LEAVES, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=2)), max_leaves=12),
    st.integers(0, 260).map(nested),
)
METADATA = st.one_of(
    st.dictionaries(HOSTILE_TEXT, JSON_LEAVES, max_size=4),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.builds(lambda n: {str(i): i for i in range(n)}, st.integers(60, 70)),
    st.builds(lambda n: {"blob": "x" * n}, st.integers(16_000, 17_000)),
    st.integers(0, 260).map(lambda depth: {"deep": nested(depth)}),
    JSON_LEAVES, st.lists(st.integers(), max_size=2),
)
TAGS = st.one_of(HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=12), ANY_NUMBER, st.none(),
                 st.binary(max_size=4), st.dictionaries(st.text(max_size=3), st.integers(),
                                                        max_size=2),
                 st.lists(st.text(min_size=1, max_size=5), min_size=11, max_size=14,
                          unique=True))
IDEMPOTENCY_KEYS = st.one_of(HOSTILE_TEXT, ANY_NUMBER, st.none(), st.binary(max_size=4),
                             st.lists(HOSTILE_TEXT, max_size=3), st.just("k" * 257))
QUEUES = st.one_of(HOSTILE_TEXT, st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,70}[a-z0-9])?\Z"),
                   ANY_NUMBER, st.none(), st.dictionaries(st.just("name"), HOSTILE_TEXT))
MACHINES = st.one_of(st.sampled_from(["micro", "large-2x", "huge", "Small-1x", ""]),
                     HOSTILE_TEXT, ANY_NUMBER, st.none())
MAX_ATTEMPTS = st.one_of(ANY_NUMBER, HOSTILE_TEXT, st.none())

HOSTILE_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "delay": DELAYS,
    "ttl": DURATIONS,
    "idempotency_key": IDEMPOTENCY_KEYS,
    "idempotency_key_ttl": DURATIONS,
    "queue": QUEUES,
    "concurrency_key": st.one_of(HOSTILE_TEXT, ANY_NUMBER, st.none(), st.binary(max_size=4)),
    "max_attempts": MAX_ATTEMPTS,
    "tags": TAGS,
    "metadata": METADATA,
    "max_duration": DURATIONS,
    "machine": MACHINES,
    "priority": DURATIONS,
}
GOOD_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "delay": st.sampled_from(["1h52m18s", "88s", "2030-12-01T00:00:00Z"]),
    "ttl": st.sampled_from([0, 3600, "10m"]),
    "queue": st.sampled_from(["emails", queue("paid", concurrency_limit=10)]),
    "concurrency_key": st.sampled_from(["user-1", "ü"]),
    "max_attempts": st.integers(1, 100),
    "tags": st.sampled_from(["vip", ["a", "b"]]),
    "metadata": st.just({"plan": "pro"}),
    "max_duration": st.sampled_from([1, "5m"]),
    "machine": st.sampled_from(["micro", "large-2x"]),
    "priority": st.sampled_from([0, "1m"]),
}


@st.composite
def one_bad_option(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Valid options around one hostile value: a refusal must name that option."""
    name = draw(st.sampled_from(sorted(HOSTILE_OPTIONS)))
    others = draw(st.lists(st.sampled_from(sorted(GOOD_OPTIONS)), max_size=4, unique=True))
    options = {other: draw(GOOD_OPTIONS[other]) for other in others if other != name}
    options[name] = draw(HOSTILE_OPTIONS[name])
    if name == "idempotency_key_ttl" and draw(st.booleans()):
        options["idempotency_key"] = "order-1"
    return name, options


# --- single triggers -------------------------------------------------------------------------


@CHECKS
@given(bad=one_bad_option())
@example(bad=("tags", {"tags": 5}))
@example(bad=("tags", {"tags": None}))
@example(bad=("delay", {"delay": "9999999999999w"}))
@example(bad=("delay", {"delay": dt.timedelta(days=999_999_999)}))
@example(bad=("delay", {"delay": "0001-01-01T00:00:00+14:00"}))
@example(bad=("delay", {"delay": "9999-12-31T23:59:59-05:00"}))
@example(bad=("ttl", {"ttl": 10**400}))
@example(bad=("priority", {"priority": 10**400}))
@example(bad=("metadata", {"metadata": {"a": "\ud800"}}))
@example(bad=("concurrency_key", {"concurrency_key": "u" * 10240}))
@example(bad=("idempotency_key", {"idempotency_key": "k" * 257}))
@example(bad=("max_attempts", {"max_attempts": 10**9}))
def test_every_trigger_option_is_refused_by_name_or_sent_valid(
    kube: MemoryKube, bad: tuple[str, dict[str, Any]]
) -> None:
    name, options = bad
    refused_or_valid(kube, lambda: tasks.trigger(TASK, {"to": "a@example.com"}, **options),
                     name)


@CHECKS
@given(payload=PAYLOADS)
@example(payload="\ud800")
@example(payload=b"\xff")
@example(payload={"blob": b"\xff\xfe"})
@example(payload=float("nan"))
@example(payload="x" * (MAX_PAYLOAD_BYTES - 1))
def test_every_payload_is_refused_by_name_or_sent_as_json(kube: MemoryKube,
                                                          payload: Any) -> None:
    body = refused_or_valid(kube, lambda: tasks.trigger(TASK, payload), "payload")
    if body is not None and "payload" in body["spec"]:
        # What is sent inline is what the payload means as JSON: no NaN, no lost keys.
        sent = body["spec"]["payload"]
        assert json.loads(json.dumps(sent, allow_nan=False)) == sent


def test_circular_and_too_deep_payloads_are_refused_by_name(kube: MemoryKube) -> None:
    loop: list[Any] = []
    loop.append(loop)
    # Explicit cases, not examples: Hypothesis cannot print values this deep.
    for payload in (loop, nested(600), nested(5000)):
        with pytest.raises(PayloadNotSerializableError, match="payload cannot be turned into"):
            tasks.trigger(TASK, payload)
    with pytest.raises(KubetasksError, match="metadata cannot be turned into JSON"):
        tasks.trigger(TASK, None, metadata={"deep": nested(600)})


def test_a_payload_just_over_the_limit_says_both_sizes(kube: MemoryKube) -> None:
    with pytest.raises(PayloadTooLargeError, match=r"10,485,761 bytes.*10,485,760 bytes"):
        tasks.trigger(TASK, "x" * (MAX_PAYLOAD_BYTES - 1))


@CHECKS
@given(task_id=st.one_of(HOSTILE_TEXT, ANY_NUMBER, st.none(),
                         st.from_regex(r"\A[a-z0-9-]{1,70}\Z")))
@example(task_id="Bad_Task")
@example(task_id="a" * 64)
def test_task_ids_are_refused_by_name_or_sent_valid(kube: MemoryKube, task_id: Any) -> None:
    refused_or_valid(kube, lambda: tasks.trigger(task_id, None), "task id")


@CHECKS
@given(key=IDEMPOTENCY_KEYS, scope=st.one_of(st.sampled_from(["run", "attempt", "global"]),
                                             HOSTILE_TEXT, st.none()))
def test_idempotency_keys_made_by_create_are_refused_by_name(key: Any, scope: Any) -> None:
    try:
        made = idempotency_keys.create(key, scope=scope)
    except KubetasksError as exc:
        assert names(str(exc), "idempotency_key") or "idempotency key" in str(exc), str(exc)
        return
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc!s:.300}") from exc
    assert 1 <= len(made.key) <= 256


# --- batches ---------------------------------------------------------------------------------


ITEM_FORMS = ("good", "bad-option", "bad-payload", "not-an-item", "no-payload",
              "unknown-key", "options-not-a-mapping", "option-name-not-a-string")


@st.composite
def items_with_one_bad(draw: st.DrawFn) -> tuple[list[Any], int, tuple[str, ...]]:
    """Good items around one hostile item: its index, and the words a refusal must use."""
    good = draw(st.lists(st.builds(lambda n: {"payload": {"n": n}}, st.integers()),
                         max_size=5))
    index = draw(st.integers(0, len(good)))
    form = draw(st.sampled_from(ITEM_FORMS))
    bad: Any
    expect: tuple[str, ...] = ("item",)
    if form == "good":
        bad = {"payload": None}
    elif form == "bad-option":
        name, options = draw(one_bad_option())
        bad = {"payload": 1, "options": options}
        expect = (name,)
    elif form == "bad-payload":
        bad = {"payload": draw(PAYLOADS)}
        expect = ("payload",)
    elif form == "not-an-item":
        bad = draw(st.one_of(HOSTILE_TEXT, ANY_NUMBER, st.none(), st.lists(st.integers(),
                                                                             max_size=2)))
    elif form == "no-payload":
        bad = {"options": {}}
    elif form == "unknown-key":
        bad = {"payload": 1, draw(HOSTILE_TEXT.filter(lambda k: k not in ("payload",
                                                                           "options"))): 2}
    elif form == "options-not-a-mapping":
        bad = {"payload": 1, "options": draw(st.one_of(HOSTILE_TEXT, ANY_NUMBER,
                                                        st.lists(st.integers(), max_size=2)))}
    else:
        bad = {"payload": 1, "options": {1: "x"}}
    return [*good[:index], bad, *good[index:]], index, expect


@CHECKS
@given(case=items_with_one_bad())
@example(case=([{"payload": 1, "options": {"tags": 7}}], 0, ("tags",)))
@example(case=([{"payload": "\ud800"}], 0, ("payload",)))
def test_every_batch_item_is_refused_by_position_or_sent_valid(
    kube: MemoryKube, case: tuple[list[Any], int, tuple[str, ...]]
) -> None:
    items, index, expect = case
    try:
        tasks.batch_trigger(TASK, items)
    except KubetasksError as exc:
        message = str(exc)
        assert f"item {index}" in message, f"the refusal does not say which item: {message}"
        assert any(names(message, word) for word in expect), (
            f"the refusal does not name any of {expect}: {message[:500]}")
        return
    except Exception as exc:
        raise AssertionError(
            f"refused with {type(exc).__name__}, not a named kubetasks error: {exc!s:.500}"
        ) from exc
    plural, body = kube.created[-1]
    assert plural == "taskbatches"
    json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
    TaskBatch.model_validate(body)


@settings(max_examples=60, deadline=None)
@given(items=st.one_of(HOSTILE_TEXT, ANY_NUMBER, st.none(), st.binary(max_size=4),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                       st.just([]), st.just(())))
def test_item_containers_that_are_not_lists_of_items_are_refused(
    kube: MemoryKube, items: Any
) -> None:
    with pytest.raises(InvalidBatchError, match="item"):
        tasks.batch_trigger(TASK, items)


def test_a_batch_of_too_many_items_says_how_many_fit(kube: MemoryKube) -> None:
    items = ({"payload": i} for i in range(MAX_BATCH_ITEMS + 1))
    with pytest.raises(KubetasksError, match="at most 1,000 items"):
        tasks.batch_trigger(TASK, items)


# --- task definitions ------------------------------------------------------------------------


SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(HOSTILE_TEXT, ANY_NUMBER, st.none()),
    "ttl": DURATIONS,
    "max_duration": DURATIONS,
    "machine": MACHINES,
    "queue": st.one_of(QUEUES, st.just(queue("emails"))),
    "retry": st.one_of(ANY_NUMBER, HOSTILE_TEXT, st.just(RetryOptions(max_attempts=2))),
}


@CHECKS
@given(data=st.data(), setting=st.sampled_from(sorted(SETTINGS)))
def test_task_settings_are_refused_by_name_at_the_decorator(
    data: st.DataObject, setting: str
) -> None:
    value = data.draw(SETTINGS[setting], label=setting)
    try:
        task(**{"id": "send-email", setting: value})
    except TaskDefinitionError as exc:
        word = "task id" if setting == "id" else setting
        assert names(str(exc), word), f"{word!r} not in {exc}"
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}, not TaskDefinitionError: {exc!s:.300}"
                             ) from exc
    else:
        if setting == "machine":
            assert value in ("micro", "large-2x", None), f"machine {value!r} was accepted"


def test_an_unknown_machine_is_refused_at_the_decorator() -> None:
    with pytest.raises(TaskDefinitionError, match="machine 'huge'"):
        task(id="send-email", machine="huge")  # type: ignore[arg-type]


@CHECKS
@given(max_attempts=st.one_of(ANY_NUMBER, st.none()), factor=st.one_of(ANY_NUMBER, st.none()),
       min_timeout=st.one_of(ANY_NUMBER, st.none()),
       max_timeout=st.one_of(ANY_NUMBER, st.none()))
def test_retry_options_are_refused_by_name(max_attempts: Any, factor: Any, min_timeout: Any,
                                           max_timeout: Any) -> None:
    try:
        retry = RetryOptions(max_attempts=max_attempts, factor=factor,
                             min_timeout=min_timeout, max_timeout=max_timeout)
    except TaskDefinitionError as exc:
        assert any(names(str(exc), word) for word in
                   ("max_attempts", "factor", "min_timeout", "max_timeout")), str(exc)
        return
    api = retry.to_api()
    assert 1 <= api.get("maxAttempts", 1) <= 100
    assert 1 <= api.get("factor", 1) <= 10 and not math.isnan(api.get("factor", 1))
