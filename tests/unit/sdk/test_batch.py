"""Batch triggers, SDK side: the item forms and their errors, the limits checked as items
arrive (before anything is written), what the TaskBatch looks like (inline items, payloadRef,
itemsRef, the parent link), and reading a batch back (run names, runs, results in item
order). A fake Kubernetes API and object store record what would be written."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import kubetasks.tasks
from kubetasks import (
    Batch,
    BatchHandle,
    BatchNotFoundError,
    BatchPollTimeoutError,
    BatchTooLargeError,
    Context,
    InvalidBatchError,
    InvalidDelayError,
    InvalidOptionError,
    MetadataTooLargeError,
    NotInTaskError,
    PayloadTooLargeError,
    TaskRunCanceledError,
    batch,
    idempotency_keys,
    runs,
    task,
)
from kubetasks._internal.batching import (
    batch_trigger,
    batch_trigger_and_wait,
    batch_trigger_async,
    prepare_batch,
)
from kubetasks._internal.client import Client, Json, KubeApi
from kubetasks.batch import batch_results, poll_batch
from kubetasks.context import AttemptInfo, RunInfo, TaskInfo, running
from kubetasks.errors import ApiError
from kubetasks.protocol.payloads import (
    MIB,
    batch_inline_limit_from_env,
)
from tests.unit.fakes import MemoryStore

NS = "ns"
BATCH = "t-b-abcde"


class FakeKube(KubeApi):
    """Objects in memory; records creations, patches, lists and GETs."""

    def __init__(self, namespace: str = NS) -> None:
        self.namespace = namespace
        self.objects: dict[tuple[str, str], Json] = {}
        self.created: list[tuple[str, Json]] = []
        self.patches: list[tuple[str, str, Json]] = []
        self.selectors: list[str | None] = []
        self.gets: list[tuple[str, str]] = []

    def add(self, plural: str, obj: Json) -> Json:
        obj["metadata"].setdefault("namespace", self.namespace)
        self.objects[(plural, obj["metadata"]["name"])] = obj
        return obj

    def get_object(self, plural: str, namespace: str, name: str) -> Json:
        self.gets.append((plural, name))
        try:
            return copy.deepcopy(self.objects[(plural, name)])
        except KeyError:
            raise ApiError(404, "NotFound", f"{plural} {name!r} not found") from None

    def create_object(self, plural: str, namespace: str, body: Json) -> Json:
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta["name"] = meta.get("name") or meta["generateName"] + "abcde"
        meta["namespace"] = namespace
        meta["uid"] = f"uid-{meta['name']}"
        self.created.append((plural, obj))
        return copy.deepcopy(self.add(plural, obj))

    def merge_patch(self, plural: str, namespace: str, name: str, patch: Json) -> Json:
        self.patches.append((plural, name, patch))
        return self.get_object(plural, namespace, name)

    def list_objects(self, plural: str, namespace: str, *, label_selector: str | None = None,
                     page_size: int = 250) -> Iterator[Json]:
        self.selectors.append(label_selector)
        for (kind, _), obj in list(self.objects.items()):
            labels = obj["metadata"].get("labels") or {}
            pairs = {f"{key}={value}" for key, value in labels.items()}
            if kind == plural and (label_selector is None or label_selector in pairs):
                yield copy.deepcopy(obj)


def fake_client(inline_limit: int = 1024, batch_inline_limit: int = 4096) -> Client:
    return Client(FakeKube(), MemoryStore(), inline_limit=inline_limit,
                  batch_inline_limit=batch_inline_limit)


def kube(client: Client) -> FakeKube:
    assert isinstance(client.kube, FakeKube)
    return client.kube


def store(client: Client) -> MemoryStore:
    assert isinstance(client.storage, MemoryStore)
    return client.storage


def nothing_written(client: Client) -> bool:
    return not kube(client).created and not store(client).objects


def context(attempt: int = 1) -> Context:
    run = RunInfo(id=f"{NS}/parent", name="parent", namespace=NS, uid="uid-parent")
    return Context(run, AttemptInfo(attempt), TaskInfo("parent", "m:f"))


def created_batch(client: Client) -> Json:
    [(plural, obj)] = kube(client).created
    assert plural == "taskbatches"
    return obj


class Out(BaseModel):
    n: int


@task(id="unit-batch-child")
def child(payload: dict[str, int], ctx: Context) -> Out:
    return Out(n=payload["n"])


# --- item forms ------------------------------------------------------------------------------


def test_the_item_forms_mean_the_same() -> None:
    client = fake_client()
    handle = batch_trigger(client, "t", [
        {"payload": {"n": 1}},
        {"payload": {"n": 2}, "options": {"ttl": "1h", "tags": "vip"}},
        batch.item({"n": 3}, ttl="1h", tags="vip"),
        {"payload": None, "options": None},
        batch.item(None),
    ])
    assert (handle.id, handle.task_id, handle.run_count) == (f"{NS}/{BATCH}", "t", 5)
    assert created_batch(client)["spec"]["items"] == [
        {"payload": {"n": 1}},
        {"payload": {"n": 2}, "options": {"ttlSeconds": 3600, "tags": ["vip"]}},
        {"payload": {"n": 3}, "options": {"ttlSeconds": 3600, "tags": ["vip"]}},
        {"payload": None},
        {"payload": None},
    ]


def test_item_checks_option_names_at_once() -> None:
    assert batch.item(1, delay="1h") == batch.BatchItem(1, {"delay": "1h"})
    with pytest.raises(InvalidOptionError, match="unknown trigger option"):
        batch.item(1, colour="red")  # type: ignore[call-arg]


FORMS = re.escape('expected {"payload": ..., "options": {...}} or batch.item(payload, **options)')


@pytest.mark.parametrize(("bad", "message"), [
    ("x", rf"^item 1: {FORMS}, got str$"),
    (5, rf"^item 1: {FORMS}, got int$"),
    ([1], rf"^item 1: {FORMS}, got list$"),
    ({"payload": 1, "delay": "1h"}, r"^item 1: unknown key\(s\) 'delay'; .* inside \"options\""),
    ({"options": {}}, r'^item 1: no "payload" key'),
    ({"payload": 1, "options": ["delay"]}, r'^item 1: "options" must be a mapping .* got list'),
    ({"payload": 1, "options": {1: "x"}}, r"^item 1: option names must be strings"),
])
def test_bad_items_name_their_index_and_the_forms(bad: object, message: str) -> None:
    client = fake_client()
    with pytest.raises(InvalidBatchError, match=message) as caught:
        batch_trigger(client, "t", [{"payload": 0}, bad, {"payload": 2}])
    assert caught.value.index == 1
    assert nothing_written(client)


def test_option_errors_keep_their_class_and_attributes_and_gain_the_index() -> None:
    client = fake_client()
    with pytest.raises(InvalidDelayError, match=r"^item 1: invalid delay 'soon'") as delay:
        batch_trigger(client, "t", [{"payload": 0}, {"payload": 1, "options": {"delay": "soon"}}])
    assert delay.value.value == "soon"
    with pytest.raises(InvalidOptionError, match=r"^item 0: unknown trigger option\(s\) colour"):
        batch_trigger(client, "t", [{"payload": 0, "options": {"colour": "red"}}])
    with pytest.raises(MetadataTooLargeError, match=r"^item 2: the run's metadata") as meta:
        batch_trigger(client, "t", [{"payload": 0}, {"payload": 1},
                                    batch.item(2, metadata={"k": "v" * 20_000})])
    assert meta.value.limit == 16 * 1024
    with pytest.raises(PayloadTooLargeError, match=r"^item 0: the payload \(as JSON\) is"):
        batch_trigger(client, "t", [{"payload": "x" * (11 * MIB)}])
    assert nothing_written(client)


@pytest.mark.parametrize("items", [{"payload": 1}, batch.item(1), "abc", 5, None])
def test_items_must_be_an_iterable_of_items(items: Any) -> None:
    with pytest.raises(InvalidBatchError, match=r"must be a list \(or another iterable\) of "
                                                r"items.*a list of one") as caught:
        batch_trigger(fake_client(), "t", items)
    assert caught.value.index is None


def test_a_batch_needs_an_item() -> None:
    client = fake_client()
    with pytest.raises(InvalidBatchError, match="at least one item"):
        batch_trigger(client, "t", iter([]))
    assert nothing_written(client)


def test_task_ids_are_checked_before_reading_items() -> None:
    with pytest.raises(InvalidOptionError, match="task id 'Bad_Id' must be a DNS label"):
        batch_trigger(fake_client(), "Bad_Id", [{"payload": 1}])


# --- limits, checked as items arrive ---------------------------------------------------------


def counting(items: list[Any], seen: list[int]) -> Iterator[Any]:
    for position, item in enumerate(items):
        seen.append(position)
        yield item


def test_generators_are_read_once_item_by_item() -> None:
    client = fake_client()
    seen: list[int] = []
    handle = batch_trigger(client, "t", counting([{"payload": n} for n in range(3)], seen))
    assert seen == [0, 1, 2] and handle.run_count == 3


def test_item_1001_fails_as_it_arrives_and_nothing_more_is_read() -> None:
    client = fake_client()
    seen: list[int] = []
    items = counting([{"payload": n} for n in range(1500)], seen)
    with pytest.raises(BatchTooLargeError, match=r"at most 1,000 items, and item 1,001 "
                                                 r"arrived") as caught:
        batch_trigger(client, "t", items)
    assert (caught.value.size, caught.value.limit, caught.value.unit) == (1001, 1000, "items")
    assert len(seen) == 1001
    assert nothing_written(client)


def test_a_thousand_items_are_fine() -> None:
    client = fake_client(batch_inline_limit=512 * 1024)
    assert batch_trigger(client, "t", ({"payload": n} for n in range(1000))).run_count == 1000
    assert len(created_batch(client)["spec"]["items"]) == 1000


def test_payloads_above_10_mib_together_fail_with_both_sizes_and_nothing_is_written() -> None:
    client = fake_client()
    seen: list[int] = []
    one_mib = "x" * (MIB - 2)  # with its quotes, exactly 1 MiB of JSON
    items = counting([{"payload": one_mib} for _ in range(20)], seen)
    with pytest.raises(BatchTooLargeError, match=r"reached 11,534,336 bytes by item 10 .*above "
                                                 r"the limit of 10,485,760 bytes") as caught:
        batch_trigger(client, "t", items)
    assert (caught.value.size, caught.value.limit, caught.value.index) == (
        11 * MIB, 10 * MIB, 10)
    assert len(seen) == 11
    assert nothing_written(client)


# --- what is written -------------------------------------------------------------------------


def test_a_small_batch_is_inline_with_its_name_prefix_and_task_label() -> None:
    client = fake_client()
    batch_trigger(client, "send-email", [{"payload": {"to": "a@x.org"}}])
    body = created_batch(client)
    assert (body["apiVersion"], body["kind"]) == ("kubetasks.dev/v1alpha1", "TaskBatch")
    assert body["metadata"]["generateName"] == "send-email-b-"
    assert body["metadata"]["labels"] == {"kubetasks.dev/task": "send-email"}
    assert body["spec"] == {"task": "send-email", "items": [{"payload": {"to": "a@x.org"}}],
                            "cancel": False}
    assert not store(client).objects
    assert kube(client).selectors == []  # no idempotency claims, no lists


def test_a_large_payload_is_uploaded_and_its_item_carries_a_payload_ref() -> None:
    client = fake_client(inline_limit=1024)
    batch_trigger(client, "t", [{"payload": "x" * 2000}, {"payload": "small"}])
    items = created_batch(client)["spec"]["items"]
    ref = items[0]["payloadRef"]
    assert "payload" not in items[0]
    assert ref["key"].startswith(f"payloads/{NS}/t/") and ref["size"] == 2002
    assert store(client).objects[ref["key"]] == json.dumps("x" * 2000).encode()
    assert items[1] == {"payload": "small"}


def test_a_large_list_is_uploaded_with_items_ref_and_item_count() -> None:
    client = fake_client(inline_limit=1024, batch_inline_limit=4096)
    items = [{"payload": "y" * 100, "options": {"ttl": 60}} for _ in range(99)]
    batch_trigger(client, "t", [*items, {"payload": "z" * 2000}])
    spec = created_batch(client)["spec"]
    assert "items" not in spec and spec["itemCount"] == 100
    assert spec["itemsRef"]["key"].startswith(f"batches/{NS}/t/")
    uploaded = json.loads(store(client).objects[spec["itemsRef"]["key"]])
    assert uploaded[:99] == [{"payload": "y" * 100, "options": {"ttlSeconds": 60}}] * 99
    assert set(uploaded[99]) == {"payloadRef"}  # the large payload went up on its own first
    assert len(store(client).objects) == 2


def test_delays_become_one_absolute_time_and_keys_are_written_with_their_scope() -> None:
    client = fake_client()
    batch_trigger(client, "t", [batch.item(n, delay="1h", idempotency_key=f"k{n}")
                                for n in range(3)])
    options = [item["options"] for item in created_batch(client)["spec"]["items"]]
    assert len({o["delayUntil"] for o in options}) == 1
    assert [(o["idempotencyKey"], o["idempotencyKeyScope"]) for o in options] == [
        ("k0", "global"), ("k1", "global"), ("k2", "global")]
    assert all(o["idempotencyKeyTTLSeconds"] == 30 * 24 * 3600 for o in options)


def test_inside_a_task_the_batch_names_its_parent_and_attempt() -> None:
    client = fake_client()
    with running(context(attempt=2)):
        batch_trigger(client, "t", [
            batch.item(1, idempotency_key="k"),
            batch.item(2, idempotency_key=idempotency_keys.create("k", scope="attempt")),
            batch.item(3, idempotency_key=idempotency_keys.create("k", scope="global")),
        ])
    spec = created_batch(client)["spec"]
    assert spec["parent"] == {"name": "parent", "uid": "uid-parent", "wait": False,
                              "attempt": 2}
    assert [item["options"]["idempotencyKeyScope"] for item in spec["items"]] == [
        "run", "attempt", "global"]
    assert [plural for plural, _ in kube(client).created] == ["taskbatches"]


def test_a_batch_in_another_namespace_than_its_parent_has_no_parent_link() -> None:
    client = Client(FakeKube("other"), MemoryStore())
    with running(context()):
        batch_trigger(client, "t", [{"payload": 1}])
    assert "parent" not in created_batch(client)["spec"]
    with running(context()), pytest.raises(InvalidOptionError, match="parent's namespace"):
        batch_trigger_and_wait(client, "t", [{"payload": 1}])


async def test_async_triggers_take_async_iterables() -> None:
    async def items() -> AsyncIterator[Any]:
        for n in range(3):
            yield batch.item(n)

    client = fake_client()
    handle = await batch_trigger_async(client, "t", items())
    assert handle.run_count == 3
    assert created_batch(client)["spec"]["items"] == [{"payload": n} for n in range(3)]

    async def bad() -> AsyncIterator[Any]:
        yield {"payload": 0}
        yield "oops"

    with pytest.raises(InvalidBatchError, match=r"^item 1: .* got str$"):
        await batch_trigger_async(fake_client(), "t", bad())


def test_tasks_and_their_methods_trigger_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    client = fake_client()
    monkeypatch.setattr(kubetasks.tasks, "default_client", lambda: client)
    handle = child.batch_trigger([{"payload": {"n": 1}}, batch.item({"n": 2})])
    assert (handle.task_id, handle.run_count, handle.output_type) == ("unit-batch-child", 2, Out)
    by_id = kubetasks.tasks.batch_trigger("other-task", [{"payload": 1}], output_type=Out)
    assert by_id.output_type is Out and by_id.id == f"{NS}/other-task-b-abcde"
    assert [body["spec"]["task"] for _, body in kube(client).created] == [
        "unit-batch-child", "other-task"]


# --- outside a task --------------------------------------------------------------------------


def test_batch_trigger_and_wait_outside_a_task_reads_and_writes_nothing() -> None:
    seen: list[int] = []
    with pytest.raises(NotInTaskError, match=r"batch_trigger_and_wait\(\) only works inside a "
                                             r"running task.* use batch_trigger\(\) and then "
                                             r"handle\.results\(\)"):
        child.batch_trigger_and_wait(counting([{"payload": {"n": 1}}], seen))
    client = fake_client()
    with pytest.raises(NotInTaskError):
        batch_trigger_and_wait(client, "t", counting([{"payload": 1}], seen))
    assert seen == [] and nothing_written(client)


async def test_batch_trigger_and_wait_async_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(NotInTaskError, match=r"batch_trigger_and_wait_async\(\)"):
        await child.batch_trigger_and_wait_async([{"payload": {"n": 1}}])


# --- reading a batch back --------------------------------------------------------------------


def batch_obj(status: Json | None = None, count: int = 5, name: str = "b") -> Json:
    obj: Json = {"metadata": {"name": name, "namespace": NS},
                 "spec": {"task": "t", "items": [{"payload": i} for i in range(count)]}}
    if status is not None:
        obj["status"] = status
    return obj


def run_obj(name: str, phase: str, *, index: int | None = None, batch_name: str = "b",
            output: Any = None, error: Json | None = None) -> Json:
    obj: Json = {"metadata": {"name": name, "namespace": NS, "labels": {}},
                 "spec": {"task": "t", "payload": None},
                 "status": {"phase": phase}}
    if index is not None:
        obj["metadata"]["labels"] = {"kubetasks.dev/batch": batch_name,
                                     "kubetasks.dev/batch-index": str(index)}
        obj["spec"]["batch"] = {"name": batch_name, "index": index}
    if output is not None:
        obj["status"]["output"] = output
    if error is not None:
        obj["status"]["error"] = error
    return obj


def test_run_names_come_from_keyed_runs_created_and_existing_children() -> None:
    obj = batch_obj({"phase": "Running", "total": 5, "created": 2, "reused": 1,
                     "keyedRuns": {"3": "t-ik-0123"}, "counts": {"completed": 1, "running": 1}})
    found = Batch.from_object(obj, NS, existing=[2])
    assert found.run_names == ["b-0", "b-1", "b-2", "t-ik-0123", None]
    assert (found.id, found.status, found.total, found.created, found.reused) == (
        f"{NS}/b", "Running", 5, 2, 1)
    assert found.counts == {"pending": 0, "queued": 0, "running": 1, "completed": 1,
                            "failed": 0, "canceled": 0, "expired": 0, "missing": 0}
    assert not found.is_finished
    assert Batch.from_object(obj, NS).run_names[2] is None


def test_a_new_batch_is_pending_and_counts_its_items_from_the_spec() -> None:
    obj = {"metadata": {"name": "b"}, "spec": {"task": "t", "itemCount": 3,
                                               "itemsRef": {"bucket": "x", "key": "k"}}}
    found = Batch.from_object(obj, "jobs")
    assert (found.id, found.status, found.total, found.run_names) == (
        "jobs/b", "Pending", 3, [None, None, None])
    assert all(v == 0 for v in found.counts.values())


def test_runs_come_in_item_order_from_one_label_list_and_gets_of_keyed_runs() -> None:
    client = fake_client()
    fake = kube(client)
    fake.add("taskbatches", batch_obj({"phase": "Running", "created": 3,
                                       "keyedRuns": {"1": "t-ik-reused"}}, count=4))
    fake.add("taskruns", run_obj("b-2", "Executing", index=2))
    fake.add("taskruns", run_obj("b-0", "Completed", index=0, output={"n": 0}))
    fake.add("taskruns", run_obj("t-ik-reused", "Completed", output={"n": 1}))
    fake.add("taskruns", run_obj("bb-0", "Completed", index=0, batch_name="bb"))
    handle: BatchHandle[Out] = BatchHandle(f"{NS}/b", "t", 4, client, Out)
    found = handle.runs()
    assert [run.name for run in found] == ["b-0", "t-ik-reused", "b-2"]
    assert found[0].output == Out(n=0)
    assert fake.selectors == ["kubetasks.dev/batch=b"]
    assert ("taskruns", "t-ik-reused") in fake.gets


def test_results_follow_item_order_and_items_without_a_run_fail_saying_why() -> None:
    client = fake_client()
    fake = kube(client)
    obj = fake.add("taskbatches", batch_obj({"phase": "Canceled", "created": 2,
                                             "keyedRuns": {"2": "t-ik-gone"}}, count=4))
    fake.add("taskruns", run_obj("b-0", "Completed", index=0, output={"n": 0}))
    results = batch_results(client, obj, Out)
    assert [(r.ok, r.id, r.status) for r in results] == [
        (True, f"{NS}/b-0", "Completed"),
        (False, f"{NS}/b-1", "Missing"),
        (False, f"{NS}/t-ik-gone", "Missing"),
        (False, f"{NS}/b-3", "Canceled"),
    ]
    assert results[0].unwrap() == Out(n=0)
    assert results[1].error is not None and results[3].error is not None
    assert "item 1 of batch ns/b has no run: its run b-1 was deleted" in str(results[1].error)
    assert "the batch ended Canceled before creating it" in str(results[3].error)


def test_a_failed_batch_gives_its_reason_to_every_item() -> None:
    client = fake_client()
    obj = kube(client).add("taskbatches", batch_obj({"phase": "Failed", "conditions": [
        {"type": "ItemsReady", "status": "False", "reason": "ItemsInvalid",
         "message": "the uploaded list has 2 items but spec.itemCount is 3"}]}, count=2))
    results = batch_results(client, obj)
    assert [r.status for r in results] == ["Failed", "Failed"]
    assert "spec.itemCount is 3" in str(results[0].error)


def test_batch_trigger_and_wait_waits_for_the_batch_and_the_parent_then_orders_results(
) -> None:
    client = fake_client()
    fake = kube(client)
    fake.add("taskruns", run_obj("parent", "Executing"))
    sleeps: list[float] = []

    def operator_acts(seconds: float) -> None:
        sleeps.append(seconds)
        name = BATCH
        if len(sleeps) == 1:  # the batch is running; the parent waits
            fake.objects[("taskruns", "parent")]["status"]["phase"] = "Waiting"
            fake.objects[("taskbatches", name)]["status"] = {"phase": "Running"}
        elif len(sleeps) == 2:  # every run ended, but the parent has no slot yet
            fake.objects[("taskbatches", name)]["status"] = {
                "phase": "PartiallyFailed", "total": 3, "created": 3,
                "keyedRuns": {"1": "t-ik-x"}}
            fake.add("taskruns", run_obj(f"{name}-2", "Failed", index=2, batch_name=name,
                                         error={"type": "ValueError", "message": "bad"}))
            fake.add("taskruns", run_obj("t-ik-x", "Completed", output={"n": 11}))
            fake.add("taskruns", run_obj(f"{name}-0", "Completed", index=0, batch_name=name,
                                         output={"n": 10}))
        else:
            fake.objects[("taskruns", "parent")]["status"]["phase"] = "Executing"

    with running(context(attempt=3)):
        results = batch_trigger_and_wait(
            client, "t", [{"payload": {"n": n}} for n in range(3)], Out, sleep=operator_acts)
    assert created_batch(client)["spec"]["parent"] == {
        "name": "parent", "uid": "uid-parent", "wait": True, "attempt": 3}
    assert sleeps == pytest.approx([0.1, 0.15, 0.225])
    assert [(r.ok, r.output) for r in results] == [(True, Out(n=10)), (True, Out(n=11)),
                                                   (False, None)]
    assert results[2].error is not None and results[2].error.type == "ValueError"


def test_batch_trigger_and_wait_stops_when_the_parent_is_asked_to_stop() -> None:
    client = fake_client()
    ctx = context()

    def cancel_parent(seconds: float) -> None:
        ctx.cancelled.set()

    with running(ctx), pytest.raises(TaskRunCanceledError, match="ns/parent"):
        batch_trigger_and_wait(client, "t", [{"payload": 1}], sleep=cancel_parent)


def test_poll_timeout_not_found_and_cancel() -> None:
    client = fake_client()
    fake = kube(client)
    fake.add("taskbatches", batch_obj({"phase": "Running"}))
    with pytest.raises(BatchPollTimeoutError, match=r"batch ns/b is still Running after 0 s"):
        poll_batch(client, "b", timeout=0, sleep=lambda s: None)
    with pytest.raises(BatchNotFoundError, match=r"kubectl get taskbatches -n ns"):
        poll_batch(client, "ns/missing")
    with pytest.raises(BatchNotFoundError):
        BatchHandle("ns/a/b", "t", 1, client).retrieve()
    BatchHandle(f"{NS}/b", "t", 5, client).cancel()
    assert fake.patches == [("taskbatches", "b", {"spec": {"cancel": True}})]
    fake.objects[("taskbatches", "b")]["status"] = {"phase": "Completed", "created": 5}
    assert BatchHandle(f"{NS}/b", "t", 5, client).poll().is_finished


def test_runs_list_selects_a_batch_by_label_on_the_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = fake_client()
    fake = kube(client)
    fake.add("taskruns", run_obj("b-0", "Completed", index=0))
    fake.add("taskruns", run_obj("other", "Completed"))
    monkeypatch.setattr(runs, "default_client", lambda: client)
    assert [run.name for run in runs.list(batch=f"{NS}/b")] == ["b-0"]
    assert [run.name for run in runs.list(batch=BatchHandle(f"{NS}/b", "t", 1))] == ["b-0"]
    assert fake.selectors == ["kubetasks.dev/batch=b", "kubetasks.dev/batch=b"]


def test_batch_inline_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETASKS_BATCH_INLINE_LIMIT", raising=False)
    assert batch_inline_limit_from_env() == 128 * 1024
    monkeypatch.setenv("KUBETASKS_BATCH_INLINE_LIMIT", "0")
    assert batch_inline_limit_from_env() == 0
    monkeypatch.setenv("KUBETASKS_BATCH_INLINE_LIMIT", "600000")
    with pytest.raises(ValueError, match=r"KUBETASKS_BATCH_INLINE_LIMIT=600000 must be between "
                                         r"0 and 524288 bytes \(TaskBatches .*etcd"):
        batch_inline_limit_from_env()
    monkeypatch.setenv("KUBETASKS_BATCH_INLINE_LIMIT", "big")
    with pytest.raises(ValueError, match="whole number of bytes"):
        batch_inline_limit_from_env()


def test_prepare_reads_everything_before_any_upload() -> None:
    client = fake_client(inline_limit=0, batch_inline_limit=0)
    prepared = prepare_batch(client, "t", [{"payload": n} for n in range(3)], wait=False,
                             method="batch_trigger")
    assert len(prepared.items) == 3 and nothing_written(client)
