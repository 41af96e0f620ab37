"""Hostile TaskRuns, TaskBatches, Tasks and TaskQueues, generated and posted to the real API
server with the real operator running: each is either refused by the API server with a
message that names the offending field, or accepted and then handled: its runs end, or wait
with a condition that says why. After each kind the operator is the same live process, its
health checks answer, its log holds no crash, and a plain run still completes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client

from kubetasks.api.v1alpha1 import DNS_SUBDOMAIN
from kubetasks.devcluster.local import OperatorProcess
from tests.cluster.helpers import (
    GROUP,
    TERMINAL,
    VERSION,
    create,
    custom,
    make_run,
    make_task,
    phase,
    wait_for,
)

pytestmark = pytest.mark.cluster

TASK = "behave"  # tests/cluster/tasks.py:run, deployed in each test's namespace
BEHAVE_KEYS = {"sleep", "output", "output_bytes", "exit", "fail_before_attempt",
               "kill_self_before_attempt"}
ONE_YEAR = 365 * 24 * 3600
THIRTY_DAYS = 30 * 24 * 3600
SETTLE_SECONDS = 150.0
MISSING = object()  # a field left out
SHA = "ab" * 32
NOWHERE = {"bucket": "kubetasks-test", "key": "nowhere/missing.json", "size": 12, "sha256": SHA}


def examples(n: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``n`` examples, each posted as it is drawn (API calls: no deadline)."""
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- hostile values --------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\x00", "a\x00b", "é", "😀", "Ω" * 64, "a" * 64, "a" * 257,
                     "x" * 10240, "Paid_Users", "-lead", "trail-", "a.b", "${HOME}",
                     "../etc"]),
)
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([-(2**63), -1, 0, 1, 100, 101, 10000, 10001, THIRTY_DAYS, THIRTY_DAYS + 1,
                     ONE_YEAR, ONE_YEAR + 1, 2**31, 2**63 - 1, 10**9]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
WRONG_TYPES = st.one_of(TEXT, st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
SECONDS = st.one_of(NUMBERS, WRONG_TYPES)


def future(seconds: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


TIMESTAMPS = st.one_of(
    st.sampled_from([
        "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
        "2000-01-01T00:00:00.123456789Z", "2000-01-01T00:00:00-23:59", "2000-02-30T00:00:00Z",
        "2000-01-01T24:00:00Z", "tomorrow", "in one hour", "", "2000-01-01",
        "2000-01-01T00:00:00", "2000-01-01t00:00:00z", "2000-01-01T00:00:00x5Z",
        "0000-01-01T00:00:00Z", "2000-01-01T00:00:00+99:99", "2000-01-01T00:00Z",
    ]),
    st.integers(1, 4).map(lambda s: future(s)),  # delayed, then run
    st.just("FAR").map(lambda _: future(10 * ONE_YEAR)),
    WRONG_TYPES,
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"d": value}
    return value


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                      st.sampled_from([10**30, -(10**30), 1e308, -0.0, 5e-324]),
                      st.floats(allow_nan=False, allow_infinity=False), TEXT)
PAYLOADS = st.one_of(
    st.recursive(JSON_LEAF, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(TEXT.filter(lambda k: k not in BEHAVE_KEYS), inner, max_size=3)),
        max_leaves=10),
    st.integers(0, 150).map(nested),
    st.integers(1, 200_000).map(lambda n: {"blob": "x" * n}),
)


@dataclass
class Case:
    """One object to post, and the field made hostile in it (dotted path, or None)."""

    body: dict[str, Any]
    hostile: str | None
    note: dict[str, Any] = field(default_factory=dict)


def put(body: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with MISSING, remove) the dotted ``path`` of ``body``."""
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target.setdefault(key, {})
    if value is MISSING:
        target.pop(last, None)
    else:
        target[last] = value


# Trigger options: every field of TaskRun.spec that a batch item's options also have.
OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "delayUntil": TIMESTAMPS,
    "ttlSeconds": st.one_of(st.sampled_from([0, 1, -1, ONE_YEAR + 1]), SECONDS),
    "maxAttempts": st.one_of(st.sampled_from([0, 1, 100, 101, 10**9]), SECONDS),
    "maxDurationSeconds": st.one_of(st.sampled_from([0, 1, ONE_YEAR]), SECONDS),
    "priority": st.one_of(st.sampled_from([-1, 0, THIRTY_DAYS, THIRTY_DAYS + 1]), SECONDS),
    "queue": st.one_of(
        st.fixed_dictionaries({"name": TEXT}),
        st.fixed_dictionaries({"name": st.from_regex(r"\Aq[a-z0-9]{1,8}\Z"),
                               "concurrencyLimit": SECONDS}),
        WRONG_TYPES),
    "concurrencyKey": st.one_of(TEXT, st.just("k" * 256), st.just("k" * 10240), WRONG_TYPES),
    "tags": st.one_of(st.lists(TEXT, max_size=12), st.just(["a", "a"]),
                      st.lists(st.text(min_size=1, max_size=4), min_size=11, max_size=11,
                               unique=True), WRONG_TYPES),
    "metadata": st.one_of(
        st.dictionaries(TEXT, JSON_LEAF, max_size=3),
        st.builds(lambda n: {str(i): i for i in range(n)}, st.integers(63, 66)),
        WRONG_TYPES),
    "machine": st.one_of(st.sampled_from(["micro", "large-2x", "huge", ""]), WRONG_TYPES),
    "idempotencyKey": st.one_of(TEXT, st.just("k" * 257), WRONG_TYPES),
    "idempotencyKeyScope": st.one_of(st.sampled_from(["run", "attempt", "global", "world"]),
                                     WRONG_TYPES),
    "idempotencyKeyTTLSeconds": st.one_of(st.sampled_from([0, 1, ONE_YEAR + 1]), SECONDS),
}
RUN_ONLY: dict[str, st.SearchStrategy[Any]] = {
    "task": st.one_of(st.just(TASK), st.from_regex(r"\Anope-[a-z0-9]{1,8}\Z"), TEXT,
                      WRONG_TYPES, st.just(MISSING)),
    "payload": st.one_of(PAYLOADS, st.just(MISSING)),
    "payloadRef": st.one_of(st.just(NOWHERE), st.fixed_dictionaries(
        {"bucket": TEXT, "key": TEXT, "size": SECONDS, "sha256": TEXT}), WRONG_TYPES),
    "parent": st.one_of(st.fixed_dictionaries(
        {"name": st.one_of(st.just("ghost"), TEXT), "uid": st.one_of(st.just("u-1"), TEXT),
         "wait": st.booleans()}), WRONG_TYPES),
    "batch": st.one_of(st.fixed_dictionaries(
        {"name": st.one_of(st.just("ghost-batch"), TEXT),
         "index": st.one_of(st.sampled_from([0, 999, 1000, -1]), SECONDS)}), WRONG_TYPES),
    "cancel": st.one_of(st.booleans(), WRONG_TYPES),
    "unknownField": PAYLOADS,
}
NAMES = st.one_of(
    st.just(None),  # a plain unique name
    st.integers(200, 253).map(lambda n: n),  # a valid name this long
    st.sampled_from(["Upper", "under_score", "-lead", "a" * 254, "a..b", ""]),
)


def object_name(prefix: str, counter: Iterator[int], drawn: int | str | None) -> str:
    unique = f"{prefix}{next(counter)}"
    if drawn is None:
        return unique
    if isinstance(drawn, int):
        return (unique + "-" + "n" * drawn)[:drawn]
    return drawn


@st.composite
def taskruns(draw: st.DrawFn, counter: Iterator[int]) -> Case:
    """A valid TaskRun, then one field (or its name, or the whole spec) made hostile."""
    spec: dict[str, Any] = {"task": TASK, "payload": {}}
    hostile = draw(st.sampled_from(sorted({**OPTION_VALUES, **RUN_ONLY, "metadata.name": 0,
                                           "spec": 0})))
    drawn_name = draw(NAMES) if hostile == "metadata.name" else None
    body: dict[str, Any] = {
        "kind": "TaskRun", "metadata": {"name": object_name("r", counter, drawn_name)},
        "spec": spec,
    }
    if hostile == "metadata.name":
        return Case(body, None if drawn_name is None or isinstance(drawn_name, int)
                    else "metadata.name")
    if hostile == "spec":
        body["spec"] = draw(st.one_of(st.just(MISSING), WRONG_TYPES))
        if body["spec"] is MISSING:
            del body["spec"]
        return Case(body, "spec")
    value = draw((OPTION_VALUES | RUN_ONLY)[hostile])
    if hostile == "payloadRef":
        spec.pop("payload")
        spec["maxAttempts"] = 1  # a download that fails is not worth retrying here
    put(spec, hostile, value)
    if hostile == "payloadRef":
        # Without a usable payloadRef the refusal may name the payload it stands in for.
        return Case(body, "spec.payload")
    return Case(body, f"spec.{hostile}")


# --- the API server's answer -----------------------------------------------------------------


@dataclass
class Posted:
    accepted: list[Case] = field(default_factory=list)
    refused: int = 0


def names(path: str, message: str, causes: list[str]) -> bool:
    """The refusal names the field at ``path``: the whole path, or its parent's path and its
    own name (a rule on another field may name it in words: "spec.idempotencyKey: Required
    value: idempotencyKeyScope needs idempotencyKey")."""
    parent, _, leaf = path.rpartition(".")
    return any(path in text or (parent in text and leaf in message)
               for text in (message, *causes))


def post(api: client.ApiClient, namespace: str, plural: str, case: Case, posted: Posted
         ) -> bool:
    """Create ``case``; True if accepted. A refusal must be a 400 or 422 that names the
    hostile field in its message or in its causes."""
    try:
        create(api, namespace, plural, case.body)
    except client.ApiException as exc:
        assert exc.status in (400, 422), (
            f"refused with {exc.status}, not 400/422: {exc.body!s:.600}\n{case}")
        answer = json.loads(exc.body or "{}")
        message = str(answer.get("message", ""))
        causes = [str(c.get("field", "")) for c in (answer.get("details") or {}).get(
            "causes") or []]
        assert causes or message, f"a refusal that says nothing: {exc.body}"
        if case.hostile is not None:
            assert names(case.hostile, message, causes), (
                f"the refusal does not name {case.hostile}: {message[:600]} causes={causes}")
        posted.refused += 1
        return False
    posted.accepted.append(case)
    return True


# --- what "handled" means --------------------------------------------------------------------


def condition(obj: dict[str, Any], type_: str = "Succeeded") -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def parse_rfc3339(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


def run_problem(run: dict[str, Any], now: dt.datetime) -> str | None:
    """Why ``run`` is not handled yet (None: it ended, or it waits with a reason)."""
    current = phase(run)
    succeeded = condition(run)
    reason = (succeeded or {}).get("reason")
    if current is None:
        return "no status at all"
    if current in TERMINAL:
        return None if reason and (succeeded or {}).get("message") else (
            f"{current} without a Succeeded condition that says why")
    if current == "Delayed":
        until = parse_rfc3339((run.get("status") or {}).get("delayUntil"))
        if reason == "Delayed" and until is not None and until > now:
            return None
        return f"Delayed but its delay ({until}) has passed"
    if current == "Queued" and reason == "QueuePaused":
        return None
    return f"{current} ({reason}: {(succeeded or {}).get('message')})"


def listed(api: client.ApiClient, namespace: str, plural: str) -> list[dict[str, Any]]:
    answer = cast(dict[str, Any], custom(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, plural))
    return list(answer["items"])


def settle(api: client.ApiClient, namespace: str, plural: str,
           problem: Callable[[dict[str, Any], dict[str, list[dict[str, Any]]], dt.datetime],
                             str | None],
           notes: dict[str, Any], timeout: float = SETTLE_SECONDS) -> None:
    """Wait until no object of ``plural`` has a problem; fail with every one that has."""
    deadline = time.monotonic() + timeout
    while True:
        objects = listed(api, namespace, plural)
        runs = listed(api, namespace, "taskruns")
        by_batch: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            batch = ((run.get("spec") or {}).get("batch") or {}).get("name")
            if batch:
                by_batch.setdefault(batch, []).append(run)
        now = dt.datetime.now(dt.UTC)
        problems = {o["metadata"]["name"]: p for o in objects
                    if (p := problem(o, by_batch, now)) is not None}
        if not problems:
            return
        if time.monotonic() > deadline:
            lines = [f"{name}: {why}\n    input: {str(notes.get(name))[:400]}"
                     for name, why in sorted(problems.items())[:15]]
            raise AssertionError(
                f"{len(problems)} {plural} not handled after {timeout:.0f} s:\n"
                + "\n".join(lines))
        time.sleep(1.0)


# --- the operator stays well -----------------------------------------------------------------


class OperatorWatch:
    """The operator's process and log from the start of a test on."""

    def __init__(self, operator: OperatorProcess) -> None:
        assert operator.process is not None
        self.operator = operator
        self.pid = operator.process.pid
        self.offset = operator.log_path.stat().st_size

    def assert_well(self, api: client.ApiClient, namespace: str) -> None:
        proc = self.operator.process
        assert proc is not None and proc.pid == self.pid, "the operator was restarted"
        assert self.operator.alive(), "the operator process died"
        for url in (self.operator.metrics_url.rsplit("/", 1)[0] + "/healthz",
                    f"http://127.0.0.1:{self.operator.port}/healthz"):
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.status == 200, f"{url} answered {answer.status}"
        crashes = [r for r in self.records() if "scheduler pass failed" in r
                   or ("Traceback" in r and namespace in r)]
        assert not crashes, (
            f"{len(crashes)} crash(es) in the operator's log {self.operator.log_path}:\n"
            + "\n".join(c[:1500] for c in crashes[:5]))
        # Liveness: a plain run triggered now still completes.
        make_run(api, namespace, "still-alive", TASK, {})
        wait_for(api, namespace, "still-alive", TERMINAL, timeout=90)
        final = wait_for(api, namespace, "still-alive", {"Completed"}, timeout=1)
        assert final["status"]["output"] == {"attempt": 1}

    def records(self) -> list[str]:
        with self.operator.log_path.open(errors="replace") as log:
            log.seek(self.offset)
            text = log.read()
        records: list[str] = []
        for line in text.splitlines():
            if line.startswith("[") or not records:
                records.append(line)
            else:
                records[-1] += "\n" + line
        return records


# --- the tests -------------------------------------------------------------------------------


@dataclass
class Hostile:
    """What each property test starts from: the operator under watch, the task its runs
    use (already deployed), the posted objects and a counter for unique names."""

    watch: OperatorWatch
    posted: Posted
    counter: Iterator[int]


@pytest.fixture
def hostile(kube_api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Hostile:
    make_task(kube_api, namespace, TASK)
    return Hostile(OperatorWatch(operator), Posted(), itertools.count())


def test_hostile_taskruns_are_refused_by_field_or_handled(
    kube_api: client.ApiClient, namespace: str, hostile: Hostile
) -> None:
    watch, posted, counter = hostile.watch, hostile.posted, hostile.counter

    @examples(70)
    @given(case=taskruns(counter))
    @example(case=Case({"kind": "TaskRun", "metadata": {"name": "late"},
                        "spec": {"task": TASK, "payload": {},
                                 "delayUntil": "1970-01-01T00:00:00Z"}}, "spec.delayUntil"))
    @example(case=Case({"kind": "TaskRun", "metadata": {"name": "lower-case-time"},
                        "spec": {"task": TASK, "payload": {},
                                 "delayUntil": "2000-01-01t00:00:00z"}}, "spec.delayUntil"))
    @example(case=Case({"kind": "TaskRun", "metadata": {"name": "year-zero"},
                        "spec": {"task": TASK, "payload": {},
                                 "delayUntil": "0000-01-01T00:00:00Z"}}, "spec.delayUntil"))
    @example(case=Case({"kind": "TaskRun", "metadata": {"name": "key-10k"},
                        "spec": {"task": TASK, "payload": {}, "concurrencyKey": "k" * 10240}},
                       "spec.concurrencyKey"))
    @example(case=Case({"kind": "TaskRun", "metadata": {"name": "no-such-task"},
                        "spec": {"task": "no-such-task", "payload": {}}}, "spec.task"))
    @example(case=Case({"kind": "TaskRun", "metadata": {"name": "deep"},
                        "spec": {"task": TASK, "payload": nested(200)}}, "spec.payload"))
    def post_run(case: Case) -> None:
        post(kube_api, namespace, "taskruns", case, posted)

    post_run()
    notes = {c.body["metadata"]["name"]: c.body.get("spec") for c in posted.accepted}
    settle(kube_api, namespace, "taskruns", lambda run, _, now: run_problem(run, now), notes)
    assert posted.accepted and posted.refused, (len(posted.accepted), posted.refused)
    watch.assert_well(kube_api, namespace)


# --- TaskBatches -----------------------------------------------------------------------------


ITEM_OPTIONS = sorted(OPTION_VALUES)


@st.composite
def taskbatches(draw: st.DrawFn, counter: Iterator[int]) -> Case:
    """A valid TaskBatch of 1-3 items, then one field (of the spec or of an item) made
    hostile. Most batches name a Task that does not exist, which keeps the pods few; their
    runs must still end (TaskNotFound)."""
    task = draw(st.sampled_from([TASK, "nope-task", "nope-task"]))
    items: list[Any] = [{"payload": {}} for _ in range(draw(st.integers(1, 3)))]
    spec: dict[str, Any] = {"task": task, "items": items}
    hostile = draw(st.sampled_from(["item-option", "item-option", "item-option", "item",
                                    "items", "itemsRef", "itemCount", "task", "parent",
                                    "cancel", "unknownField", "metadata.name"]))
    drawn_name = draw(NAMES) if hostile == "metadata.name" else None
    body = {"kind": "TaskBatch", "metadata": {"name": object_name("b", counter, drawn_name)},
            "spec": spec}
    if hostile == "metadata.name":
        return Case(body, None if drawn_name is None or isinstance(drawn_name, int)
                    else "metadata.name")
    index = draw(st.integers(0, len(items) - 1))
    if hostile == "item-option":
        option = draw(st.sampled_from(ITEM_OPTIONS))
        items[index]["options"] = {option: draw(OPTION_VALUES[option])}
        return Case(body, f"spec.items[{index}].options.{option}")
    if hostile == "item":
        items[index] = draw(st.one_of(WRONG_TYPES, st.just({"options": {}}),
                                      st.just({"payload": 1, "payloadRef": NOWHERE}),
                                      PAYLOADS.map(lambda p: {"payload": p})))
        return Case(body, f"spec.items[{index}]")
    if hostile == "items":
        spec["items"] = draw(st.one_of(st.just([]), st.just(MISSING), WRONG_TYPES,
                                       st.just([{"payload": i} for i in range(1001)])))
        if spec["items"] is MISSING:
            del spec["items"]
        return Case(body, "spec.items")
    if hostile == "itemsRef":
        # Items in object storage that are not there: the batch must fail, saying so.
        ref = draw(st.one_of(st.just(NOWHERE), WRONG_TYPES))
        spec.pop("items")
        spec["itemsRef"] = ref
        spec["itemCount"] = draw(st.one_of(st.just(2), SECONDS, st.just(MISSING)))
        if spec["itemCount"] is MISSING:
            del spec["itemCount"]
        return Case(body, "spec.item")
    if hostile in ("itemCount", "task", "parent", "cancel", "unknownField"):
        value = draw({"itemCount": SECONDS, "task": RUN_ONLY["task"],
                      "parent": RUN_ONLY["parent"], "cancel": RUN_ONLY["cancel"],
                      "unknownField": PAYLOADS}[hostile])
        put(spec, hostile, value)
        return Case(body, f"spec.{hostile}")
    raise AssertionError(hostile)


def batch_problem(batch: dict[str, Any], runs_of: dict[str, list[dict[str, Any]]],
                  now: dt.datetime) -> str | None:
    """Why ``batch`` is not handled yet: it must end, or have every run created and each of
    them handled (a run may wait with a reason, e.g. far in the future)."""
    status = batch.get("status") or {}
    current = status.get("phase")
    if current in ("Completed", "PartiallyFailed", "Canceled"):
        return None
    if current == "Failed":
        items = condition(batch, "ItemsReady")
        return None if items and items.get("message") else "Failed without saying why"
    runs = runs_of.get(batch["metadata"]["name"], [])
    total = status.get("total")
    if current == "Running" and total and status.get("created") == total:
        waiting = [(r["metadata"]["name"], why) for r in runs
                   if (why := run_problem(r, now)) is not None]
        return f"runs not handled: {waiting[:3]}" if waiting else None
    return (f"{current} with {status.get('created')}/{total} runs created; runs: "
            f"{[(r['metadata']['name'], phase(r)) for r in runs][:3]}")


def test_hostile_taskbatches_are_refused_by_field_or_handled(
    kube_api: client.ApiClient, namespace: str, hostile: Hostile
) -> None:
    watch, posted, counter = hostile.watch, hostile.posted, hostile.counter

    @examples(40)
    @given(case=taskbatches(counter))
    @example(case=Case({"kind": "TaskBatch", "metadata": {"name": "b" * 253},
                        "spec": {"task": "nope-task", "items": [{"payload": {}}]}}, None))
    @example(case=Case({"kind": "TaskBatch", "metadata": {"name": "stored-nowhere"},
                        "spec": {"task": TASK, "itemsRef": NOWHERE, "itemCount": 2}}, None))
    def post_batch(case: Case) -> None:
        post(kube_api, namespace, "taskbatches", case, posted)

    post_batch()
    notes = {c.body["metadata"]["name"]: c.body.get("spec") for c in posted.accepted}
    settle(kube_api, namespace, "taskbatches", batch_problem, notes)
    assert posted.accepted and posted.refused, (len(posted.accepted), posted.refused)
    watch.assert_well(kube_api, namespace)


# --- Tasks -----------------------------------------------------------------------------------


ENV_NAMES = st.one_of(st.from_regex(r"\AX_[A-Z0-9_]{0,10}\Z"), TEXT)
TASK_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    # Images that the API takes for a Task but pods refuse are their own test (below).
    "image": st.one_of(st.sampled_from(["local", "", "x" * 513, "ímage:1",
                                        "registry.example/app@sha256:" + SHA]),
                       WRONG_TYPES).filter(
        lambda v: not isinstance(v, str) or (v == v.strip() and v.isprintable())),
    "entrypoint": st.one_of(st.sampled_from(["tests.cluster.tasks:run", "nope.module:fn",
                                             "tests.cluster.tasks:missing", "nope", ":fn",
                                             "a" * 257 + ":f"]), WRONG_TYPES),
    "queue": OPTION_VALUES["queue"],
    "retry": st.one_of(
        st.fixed_dictionaries({}, optional={
            "maxAttempts": st.one_of(st.sampled_from([0, 1, 100, 101]), SECONDS),
            "factor": st.one_of(st.sampled_from([0.5, 1, 10, 10.5]), SECONDS),
            "minTimeoutSeconds": st.one_of(st.sampled_from([0, 5, ONE_YEAR]), SECONDS),
            "maxTimeoutSeconds": st.one_of(st.sampled_from([0, 1, ONE_YEAR + 1]), SECONDS),
            "randomize": st.one_of(st.booleans(), WRONG_TYPES)}),
        WRONG_TYPES),
    "machine": OPTION_VALUES["machine"],
    "maxDurationSeconds": OPTION_VALUES["maxDurationSeconds"],
    "ttlSeconds": OPTION_VALUES["ttlSeconds"],
    "env": st.one_of(
        st.lists(st.fixed_dictionaries({"name": ENV_NAMES}, optional={
            "value": st.one_of(st.text(st.characters(exclude_characters="\x00"), max_size=20),
                               st.just("v" * 4097), WRONG_TYPES)}), max_size=3),
        st.just([{"name": "X_A", "value": "1"}, {"name": "X_A", "value": "2"}]),
        st.builds(lambda n: [{"name": f"X_{i}", "value": ""} for i in range(n)],
                  st.integers(64, 65)),
        WRONG_TYPES),
    # A valid name of a missing ServiceAccount is its own test (below), not drawn here.
    "serviceAccountName": st.one_of(
        st.just("default"), TEXT.filter(lambda s: not re.fullmatch(DNS_SUBDOMAIN, s))),
    "unknownField": PAYLOADS,
}


@st.composite
def tasks_(draw: st.DrawFn, counter: Iterator[int]) -> Case:
    spec: dict[str, Any] = {"image": "local", "entrypoint": "tests.cluster.tasks:run"}
    hostile = draw(st.sampled_from([*sorted(TASK_FIELDS), "spec"]))
    body = {"kind": "Task", "metadata": {"name": object_name("t", counter, None)},
            "spec": spec}
    if hostile == "spec":
        body["spec"] = draw(st.one_of(st.just({}), WRONG_TYPES))
        return Case(body, "spec")
    put(spec, hostile, draw(TASK_FIELDS[hostile]))
    return Case(body, f"spec.{hostile}")


def test_hostile_tasks_are_refused_by_field_or_their_runs_handled(
    kube_api: client.ApiClient, namespace: str, hostile: Hostile
) -> None:
    watch, posted, counter = hostile.watch, hostile.posted, hostile.counter

    @examples(40)
    @given(case=tasks_(counter))
    @example(case=Case({"kind": "Task", "metadata": {"name": "not-importable"},
                        "spec": {"image": "local", "entrypoint": "nope.module:fn"}},
                       "spec.entrypoint"))
    def post_task(case: Case) -> None:
        if post(kube_api, namespace, "tasks", case, posted):
            # One run of each accepted Task, not retried: it must end, or say why it waits.
            name = case.body["metadata"]["name"]
            make_run(kube_api, namespace, f"run-of-{name}", name, {}, maxAttempts=1)

    post_task()
    notes = {f"run-of-{c.body['metadata']['name']}": c.body.get("spec")
             for c in posted.accepted}
    settle(kube_api, namespace, "taskruns", lambda run, _, now: run_problem(run, now), notes)
    assert posted.accepted and posted.refused, (len(posted.accepted), posted.refused)
    watch.assert_well(kube_api, namespace)


# --- TaskQueues ------------------------------------------------------------------------------


LIMITS = st.one_of(st.sampled_from([0, 1, 2, 10000, 10001, -1]), SECONDS, st.just(MISSING))


@st.composite
def taskqueues(draw: st.DrawFn, counter: Iterator[int]) -> Case:
    spec: dict[str, Any] = {}
    for key, values in (("concurrencyLimit", LIMITS), ("totalConcurrencyLimit", LIMITS),
                        ("concurrencyKeyLimit", st.one_of(st.just(MISSING), LIMITS)),
                        ("paused", st.one_of(st.just(False), st.just(True), WRONG_TYPES,
                                             st.just(MISSING))),
                        ("unknownField", st.one_of(st.just(MISSING), PAYLOADS))):
        value = draw(values)
        if value is not MISSING:
            spec[key] = value
    drawn_name = draw(st.one_of(st.just(None), st.just(None), NAMES))
    body: dict[str, Any] = {
        "kind": "TaskQueue", "metadata": {"name": object_name("q", counter, drawn_name)},
        "spec": spec}
    if draw(st.integers(0, 9)) == 0:
        body["metadata"]["name"] = object_name("q", counter, None)  # one hostile thing
        body["spec"] = draw(st.one_of(st.just(MISSING), WRONG_TYPES))
        if body["spec"] is MISSING:
            del body["spec"]
        return Case(body, "spec", {"keyed": False})
    # Which field a refusal names: several may be hostile at once, so accept any of them.
    return Case(body, None, {"keyed": draw(st.booleans())})


def test_hostile_taskqueues_are_refused_or_their_runs_handled(
    kube_api: client.ApiClient, namespace: str, hostile: Hostile
) -> None:
    watch, posted, counter = hostile.watch, hostile.posted, hostile.counter

    @examples(40)
    @given(case=taskqueues(counter))
    @example(case=Case({"kind": "TaskQueue", "metadata": {"name": "total-limit-zero"},
                        "spec": {"concurrencyLimit": 5, "totalConcurrencyLimit": 0}}, None,
                       {"keyed": True}))
    @example(case=Case({"kind": "TaskQueue", "metadata": {"name": "retired-key-limit"},
                        "spec": {"concurrencyLimit": 5, "concurrencyKeyLimit": 1}}, None,
                       {"keyed": True}))
    @example(case=Case({"kind": "TaskQueue", "metadata": {"name": "limit-zero"},
                        "spec": {"concurrencyLimit": 0}}, None, {"keyed": False}))
    @example(case=Case({"kind": "TaskQueue", "metadata": {"name": "paused"},
                        "spec": {"paused": True}}, None, {"keyed": True}))
    def post_queue(case: Case) -> None:
        if not post(kube_api, namespace, "taskqueues", case, posted):
            return
        name = case.body["metadata"]["name"]
        if len(name) <= 63 and "." not in name:  # a queue name must be a DNS label
            key = {"concurrencyKey": "user-1"} if case.note.get("keyed") else {}
            make_run(kube_api, namespace, f"run-on-{name}"[:253], TASK, {},
                     queue={"name": name}, maxAttempts=1, **key)

    post_queue()
    notes = {f"run-on-{c.body['metadata']['name']}"[:253]: c.body.get("spec")
             for c in posted.accepted}
    settle(kube_api, namespace, "taskruns", lambda run, _, now: run_problem(run, now), notes)
    assert posted.accepted and posted.refused, (len(posted.accepted), posted.refused)
    watch.assert_well(kube_api, namespace)
