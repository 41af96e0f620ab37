"""The CRDs in crds/ are generated from kubetasks.api.v1alpha1 and stay in step with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field, ValidationError

from kubetasks.api import crdgen
from kubetasks.api.v1alpha1 import (
    KINDS,
    Attempt,
    BatchItem,
    Condition,
    ObjectMeta,
    ObjectRef,
    ParentRef,
    QueueSpec,
    TaskBatch,
    TaskBatchSpec,
    TaskRun,
    TaskRunSpec,
    TaskRunStatus,
    TriggerOptions,
)

CRDS_DIR = Path(__file__).resolve().parents[3] / "crds"
TEKTON_SHORT_NAMES = {"tr", "t", "pr", "p", "tsk", "tkn", "trs", "prs"}
SHA = "0" * 64


def load_crds() -> dict[str, dict[str, Any]]:
    crds = {}
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


CRDS = load_crds()


def version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = CRDS[kind]["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    return versions[0]


def root_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = version(kind)["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")


def spec_and_status_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in CRDS:
        for part in ("spec", "status"):
            yield from walk(root_schema(kind)["properties"][part], f"{kind}.{part}")


# --- generated files ------------------------------------------------------------------------


def test_crd_files_match_the_models() -> None:
    problems = crdgen.drift(CRDS_DIR)
    assert not problems, (
        f"crds/ drifted from kubetasks.api.v1alpha1: {crdgen.REGENERATE_HINT}.\n"
        + "".join(problems)
    )


def test_every_kind_has_a_file_and_nothing_else_is_there() -> None:
    assert sorted(CRDS) == sorted(model.__name__ for model in KINDS)
    assert sorted(p.name for p in CRDS_DIR.glob("*.yaml")) == sorted(crdgen.rendered_files())


def test_check_fails_with_a_diff_when_a_file_drifted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--write", str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0

    path = tmp_path / "taskruns.kubetasks.dev.yaml"
    path.write_text(path.read_text().replace("maxLength: 256", "maxLength: 257"))
    capsys.readouterr()

    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "-                maxLength: 257" in out
    assert "+                maxLength: 256" in out
    assert "python -m kubetasks.api.crdgen --write crds/" in err


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    (tmp_path / "tasks.kubetasks.dev.yaml").unlink()
    assert any("tasks.kubetasks.dev.yaml" in problem for problem in crdgen.drift(tmp_path))


# --- names, columns, subresources -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short_names", "columns"),
    [
        ("TaskRun", "taskruns", ["ktr"], ["Task", "Status", "Attempt", "Queue", "Age"]),
        (
            "TaskBatch",
            "taskbatches",
            ["ktb"],
            ["Task", "Items", "Created", "Running", "Completed", "Failed", "Status", "Age"],
        ),
        ("Task", "tasks", ["ktask"], ["Image", "Queue", "Entrypoint", "Age"]),
        ("TaskQueue", "taskqueues", ["ktq"], ["Limit", "Total", "Running", "Queued", "Keys",
                                               "NS Limit", "Paused", "Age"]),
    ],
)
def test_names_columns_and_status_subresource(
    kind: str, plural: str, short_names: list[str], columns: list[str]
) -> None:
    crd = CRDS[kind]
    assert crd["metadata"]["name"] == f"{plural}.kubetasks.dev"
    assert crd["spec"]["group"] == "kubetasks.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["plural"] == plural
    assert names["listKind"] == f"{kind}List"
    assert names["shortNames"] == short_names
    assert names["categories"] == ["kubetasks"]
    assert not set(names["shortNames"]) & TEKTON_SHORT_NAMES
    served = version(kind)
    assert served["served"] and served["storage"]
    assert served["subresources"] == {"status": {}}
    assert [c["name"] for c in served["additionalPrinterColumns"]] == columns


def test_printer_columns_read_the_documented_fields() -> None:
    paths = {
        kind: {c["name"]: c["jsonPath"] for c in version(kind)["additionalPrinterColumns"]}
        for kind in CRDS
    }
    assert paths["TaskRun"] == {
        "Task": ".spec.task",
        "Status": ".status.phase",
        "Attempt": ".status.attempt",
        "Queue": ".status.queue",
        "Age": ".metadata.creationTimestamp",
    }
    assert paths["TaskBatch"]["Items"] == ".status.total"
    assert paths["TaskBatch"]["Completed"] == ".status.counts.completed"
    assert paths["TaskBatch"]["Failed"] == ".status.counts.failed"
    assert paths["TaskBatch"]["Status"] == ".status.phase"
    assert paths["Task"]["Image"] == ".spec.image"
    assert paths["Task"]["Queue"] == ".spec.queue.name"
    assert paths["TaskQueue"]["Limit"] == ".spec.concurrencyLimit"
    assert paths["TaskQueue"]["Running"] == ".status.running"
    assert paths["TaskQueue"]["Queued"] == ".status.queued"


def test_every_printer_column_points_into_the_schema() -> None:
    for kind in CRDS:
        for column in version(kind)["additionalPrinterColumns"]:
            node = root_schema(kind)
            for part in column["jsonPath"].strip(".").split("."):
                if part in ("metadata",):
                    break
                node = node["properties"][part]
            else:
                expected = {"string": "string", "integer": "integer", "boolean": "boolean",
                            "date": "string"}
                assert node["type"] == expected[column["type"]], (kind, column)
                if column["type"] == "date":
                    assert node.get("format") == "date-time", (kind, column)


# --- the schema is structural and bounded ---------------------------------------------------


def test_every_string_list_and_map_is_bounded() -> None:
    """Unbounded strings and lists make CEL rules too costly and objects too big."""
    unbounded = []
    for path, node in spec_and_status_nodes():
        kind = node.get("type")
        # An enum or a timestamp is bounded by what it may contain.
        bounded_string = "maxLength" in node or "enum" in node or node.get("format") == "date-time"
        if kind == "string" and not bounded_string:
            unbounded.append(path)
        if kind == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
    assert not unbounded, f"add max_length / maxProperties to: {unbounded}"


def test_schema_has_only_structural_keywords() -> None:
    for path, node in spec_and_status_nodes():
        assert "title" not in node, path
        assert "default" not in node, path
        assert "$ref" not in node, path
        assert "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


def test_arbitrary_json_fields_preserve_unknown_fields() -> None:
    run = root_schema("TaskRun")["properties"]
    payload = run["spec"]["properties"]["payload"]
    assert payload["x-kubernetes-preserve-unknown-fields"] is True
    assert payload["nullable"] is True
    assert "type" not in payload
    output = run["status"]["properties"]["output"]
    assert output["x-kubernetes-preserve-unknown-fields"] is True
    metadata = run["spec"]["properties"]["metadata"]
    assert metadata["additionalProperties"] == {"x-kubernetes-preserve-unknown-fields": True}
    item = root_schema("TaskBatch")["properties"]["spec"]["properties"]["items"]["items"]
    assert item["properties"]["payload"]["x-kubernetes-preserve-unknown-fields"] is True


def test_conditions_are_a_map_keyed_by_type() -> None:
    for kind in CRDS:
        conditions = root_schema(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert conditions["maxItems"] == 16
        assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_taskrun_rules_are_in_the_schema() -> None:
    spec = root_schema("TaskRun")["properties"]["spec"]
    assert spec["oneOf"] == [{"required": ["payload"]}, {"required": ["payloadRef"]}]
    messages = [rule["message"] for rule in spec["x-kubernetes-validations"]]
    assert any("spec.payloadRef is immutable" in m for m in messages)
    assert any("spec.cancel cannot go back to false" in m for m in messages)
    task_rules = spec["properties"]["task"]["x-kubernetes-validations"]
    assert task_rules[0]["rule"] == "self == oldSelf"
    assert task_rules[0]["message"] == "spec.task is immutable; create a new TaskRun"
    # delayUntil stays mutable: runs.reschedule patches it (its one rule only reads it).
    delay_rules = spec["properties"]["delayUntil"].get("x-kubernetes-validations", [])
    assert all("oldSelf" not in rule["rule"] for rule in delay_rules)
    assert spec["properties"]["delayUntil"]["format"] == "date-time"


def test_taskbatch_rules_are_in_the_schema() -> None:
    spec = root_schema("TaskBatch")["properties"]["spec"]
    rules = {rule["message"]: rule["rule"] for rule in spec["x-kubernetes-validations"]}
    assert rules["set exactly one of spec.items or spec.itemsRef"] == (
        "has(self.items) != has(self.itemsRef)"
    )
    assert spec["properties"]["items"]["maxItems"] == 1000


# --- the converter --------------------------------------------------------------------------


def test_converter_refuses_keywords_the_api_server_does_not_know() -> None:
    class Exclusive(BaseModel):
        ratio: float = Field(gt=0)

    with pytest.raises(crdgen.SchemaError, match="exclusiveMinimum"):
        crdgen.structural_schema(Exclusive)


def test_converter_refuses_real_unions() -> None:
    class Union(BaseModel):
        value: int | str

    with pytest.raises(crdgen.SchemaError, match="Optional"):
        crdgen.structural_schema(Union)


def test_converter_inlines_references_and_flattens_optional() -> None:
    class Inner(BaseModel):
        """Inner doc."""

        name: str = Field(max_length=5)

    class Outer(BaseModel):
        inner: Inner | None = Field(None, description="The inner one.")
        mode: Literal["a"] = "a"

    schema = crdgen.structural_schema(Outer)
    assert schema["properties"]["inner"] == {
        "description": "The inner one.",
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "maxLength": 5}},
    }
    assert schema["properties"]["mode"] == {"type": "string", "enum": ["a"]}


# --- the models -----------------------------------------------------------------------------


def full_taskrun() -> TaskRun:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    return TaskRun(
        metadata=ObjectMeta(name="send-email-abc12", namespace="default", labels={"a": "b"}),
        spec=TaskRunSpec(
            task="send-email",
            payload={"to": "a@example.com", "n": [1, 2.5, None, True]},
            delay_until=when,
            ttl_seconds=600,
            idempotency_key="k1",
            idempotency_key_ttl_seconds=3600,
            idempotency_key_scope="global",
            queue=QueueSpec(name="paid-users", concurrency_limit=10),
            concurrency_key="user-123",
            max_attempts=3,
            max_duration_seconds=60,
            machine="small-2x",
            priority=30,
            tags=["a", "b"],
            metadata={"source": {"x": 1}},
            parent=ParentRef(name="parent-run", uid="u-1", wait=True),
        ),
        status=TaskRunStatus(
            phase="Executing",
            queue="paid-users",
            attempt=1,
            attempts=[Attempt(number=1, job="send-email-abc12-1", started_time=when)],
            conditions=[
                Condition(
                    type="Admitted", status="True", reason="SlotGranted", last_transition_time=when
                )
            ],
            enqueued_time=when,
            output={"ok": True},
        ),
    )


def test_taskrun_round_trips_through_the_wire_format() -> None:
    run = full_taskrun()
    wire = run.model_dump(mode="json")
    assert wire["apiVersion"] == "kubetasks.dev/v1alpha1"
    assert wire["kind"] == "TaskRun"
    assert wire["spec"]["delayUntil"] == "2026-12-01T00:00:00Z"
    assert wire["spec"]["idempotencyKeyTTLSeconds"] == 3600
    assert wire["spec"]["queue"] == {"name": "paid-users", "concurrencyLimit": 10}
    assert wire["status"]["attempts"][0]["startedTime"] == "2026-12-01T00:00:00Z"
    assert "payloadRef" not in wire["spec"]
    assert TaskRun.model_validate(wire) == run
    assert TaskRun.model_validate(wire).model_dump(mode="json") == wire


def test_wire_format_validates_against_the_generated_keys() -> None:
    """Every key the models write is a property of the CRD schema (nothing gets pruned)."""

    def check(value: Any, schema: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in schema:
            for key, sub in value.items():
                assert key in schema["properties"], f"{path}.{key} is not in the CRD"
                check(sub, schema["properties"][key], f"{path}.{key}")
        elif isinstance(value, list) and "items" in schema:
            for item in value:
                check(item, schema["items"], f"{path}[]")

    wire = full_taskrun().model_dump(mode="json")
    schema = root_schema("TaskRun")
    check(wire["spec"], schema["properties"]["spec"], "spec")
    check(wire["status"], schema["properties"]["status"], "status")


def test_null_payload_is_sent_and_absent_with_payload_ref() -> None:
    inline = TaskRunSpec(task="no-input").model_dump(mode="json")
    assert inline == {"task": "no-input", "payload": None, "cancel": False}
    ref = ObjectRef(bucket="payloads", key="runs/x.json", size=10, sha256=SHA)
    by_ref = TaskRunSpec(task="big-input", payload_ref=ref).model_dump(mode="json")
    assert "payload" not in by_ref
    assert by_ref["payloadRef"] == {
        "bucket": "payloads",
        "key": "runs/x.json",
        "size": 10,
        "sha256": SHA,
    }
    assert BatchItem().model_dump(mode="json") == {"payload": None}


def test_parses_camel_case_and_accepts_snake_case() -> None:
    from_api = TaskRunSpec.model_validate(
        {
            "task": "t",
            "payload": 1,
            "maxAttempts": 2,
            "idempotencyKeyTTLSeconds": 5,
            "idempotencyKey": "k",
            "unknownFutureField": True,
        }
    )
    assert from_api.max_attempts == 2
    assert from_api.idempotency_key_ttl_seconds == 5
    assert TaskRunSpec(task="t", max_attempts=2) == TaskRunSpec.model_validate(
        {"task": "t", "max_attempts": 2}
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"payload": 1, "payload_ref": ObjectRef(bucket="bkt", key="k", size=1, sha256=SHA)},
            "set exactly one of spec.payload or spec.payloadRef",
        ),
        ({"idempotency_key_scope": "run"}, "need idempotencyKey"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"tags": [str(i) for i in range(11)]}, "at most 10 items"),
        ({"queue": {"name": "Not_A_Label"}}, "should match pattern"),
        ({"concurrency_key": "k" * 257}, "at most 256 characters"),
        ({"delay_until": datetime(2026, 1, 1)}, "timezone"),
    ],
)
def test_models_reject_what_the_api_server_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        TaskRunSpec.model_validate({"task": "t", **kwargs})


def test_batch_needs_exactly_one_source_of_items() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("exactly one of spec.items or spec.itemsRef")
    ):
        TaskBatchSpec(task="t")
    ref = ObjectRef(bucket="bkt", key="k", size=1, sha256=SHA)
    with pytest.raises(ValidationError, match="itemCount"):
        TaskBatchSpec(task="t", items_ref=ref)
    batch = TaskBatch(
        spec=TaskBatchSpec(
            task="t", items=[BatchItem(payload={"i": 1}, options=TriggerOptions(delay_until=None))]
        )
    )
    assert TaskBatch.model_validate(batch.model_dump(mode="json")) == batch


def test_resource_names_are_on_the_models() -> None:
    assert TaskRun.resource.plural == "taskruns"
    assert {model.resource.plural for model in KINDS} == {
        "taskruns",
        "taskbatches",
        "tasks",
        "taskqueues",
        "taskschedules",
    }
