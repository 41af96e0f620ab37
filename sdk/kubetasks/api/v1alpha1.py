"""The ``kubetasks.dev/v1alpha1`` API: TaskRun, TaskBatch, Task, TaskQueue and TaskSchedule.

These pydantic models are the one source of truth for the API. The SDK builds objects with
them, the operator parses objects with them, and ``kubetasks.api.crdgen`` turns them into the
CustomResourceDefinitions in ``crds/``. Keywords that only the API server understands (CEL
rules, list types, preserve-unknown-fields) ride along in ``json_schema_extra``.

Python attributes are snake_case; the wire format is camelCase. ``model_dump(mode="json")``
gives a dict ready for the Kubernetes API (camelCase, unset fields left out)::

    run = TaskRun(
        metadata=ObjectMeta(generate_name="send-email-"),
        spec=TaskRunSpec(task="send-email", payload={"to": "a@example.com"}),
    )
    body = run.model_dump(mode="json")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from kubetasks.protocol.cron import CRON_PATTERN

GROUP = "kubetasks.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "kubetasks"

# --------------------------------------------------------------------------------------------
# CRD-only schema keywords


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry (a CEL rule the API server evaluates)."""
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def unchanged(*fields: str) -> str:
    """CEL: each optional field keeps its presence and value across an update."""
    # Not `self.?f == oldSelf.?f`: the cost estimator cannot bound optionals and rejects it.
    return " && ".join(
        f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})"
        for f in fields
    )


def immutable(what: str, kind: str) -> dict[str, str]:
    """A transition rule placed on the field itself: its value may not change."""
    return cel(
        "self == oldSelf",
        f"{what} is immutable; create a new {kind}",
        reason="FieldValueForbidden",
    )


ANY_JSON: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
NULLABLE_ANY_JSON: dict[str, Any] = {**ANY_JSON, "nullable": True}
# Values of arbitrary JSON, keyed by short strings; CEL cannot read them, equality still works.
JSON_MAP: dict[str, Any] = {"additionalProperties": ANY_JSON}


def list_map(*keys: str) -> dict[str, Any]:
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}

# --------------------------------------------------------------------------------------------
# Shared value types

# RFC 1123 label: also a valid label value, so it can go on Jobs and Pods as is.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Python import path, a colon, and an attribute path: ``myapp.tasks:send_email``.
ENTRYPOINT = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
S3_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
SHA256_HEX = r"^[a-f0-9]{64}$"
ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

TaskId = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Uid = Annotated[str, StringConstraints(min_length=1, max_length=36)]
ConcurrencyKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ShortText = Annotated[str, StringConstraints(max_length=1024)]
LongText = Annotated[str, StringConstraints(max_length=32768)]

ONE_YEAR = 365 * 24 * 3600
THIRTY_DAYS = 30 * 24 * 3600

Seconds = Annotated[int, Field(ge=0, le=ONE_YEAR)]
PositiveSeconds = Annotated[int, Field(ge=1, le=ONE_YEAR)]
Count = Annotated[int, Field(ge=0)]
ConcurrencyLimit = Annotated[int, Field(ge=0, le=10000)]
MaxAttempts = Annotated[int, Field(ge=1, le=100)]

Machine = Literal["micro", "small-1x", "small-2x", "medium-1x", "medium-2x", "large-1x", "large-2x"]
IdempotencyKeyScope = Literal["run", "attempt", "global"]
ConditionStatus = Literal["True", "False", "Unknown"]

TaskRunPhase = Literal[
    "Pending",
    "Delayed",
    "Queued",
    "Executing",
    "Waiting",
    "Retrying",
    "Completed",
    "Failed",
    "Canceled",
    "Expired",
    "TimedOut",
    "Crashed",
]
TaskBatchPhase = Literal[
    "Pending", "Running", "Completed", "PartiallyFailed", "Canceled", "Failed"
]


# --------------------------------------------------------------------------------------------
# Base model

# Kubernetes API conventions keep initialisms upper case inside a name: idempotencyKeyTTLSeconds.
_INITIALISMS = {"ttl": "TTL", "uid": "UID", "url": "URL", "id": "ID"}


def wire_name(python_name: str) -> str:
    """The JSON name of a field: ``idempotency_key_ttl_seconds`` → ``idempotencyKeyTTLSeconds``."""
    first, *rest = python_name.split("_")
    return first + "".join(_INITIALISMS.get(word, word.capitalize()) for word in rest)


class KubeModel(BaseModel):
    """Base of every API model: camelCase on the wire, ``None`` means "not set"."""

    model_config = ConfigDict(
        alias_generator=wire_name,
        populate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    def _nulls_to_keep(self) -> frozenset[str]:
        """Python names of fields whose ``None`` is a value to send, not an absence."""
        return frozenset()

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        keep = set()
        for name in self._nulls_to_keep():
            keep.add(name)
            alias = type(self).model_fields[name].alias
            if alias:
                keep.add(alias)
        return {key: value for key, value in data.items() if value is not None or key in keep}


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry: what ``kubectl get`` shows."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class Resource:
    """How a kind is served: its REST names and its ``kubectl get`` columns."""

    plural: str
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = (CATEGORY,)
    namespaced: bool = True


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


# --------------------------------------------------------------------------------------------
# Object metadata (parsed from the API; the CRD schema leaves it to the API server)


class OwnerReference(KubeModel):
    """An object that owns this one; deleting the owner deletes this object."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KubeModel):
    """The standard Kubernetes object metadata (the fields kubetasks reads or writes)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: AwareDatetime | None = None
    deletion_timestamp: AwareDatetime | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None


ApiMetadata = Annotated[ObjectMeta, WithJsonSchema({"type": "object"})]
ApiString = WithJsonSchema({"type": "string"})


# --------------------------------------------------------------------------------------------
# Building blocks shared by several kinds


class Condition(KubeModel):
    """One aspect of the object's state, shaped like metav1.Condition."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316, pattern=CONDITION_TYPE)]
    """CamelCase name of the aspect, e.g. Succeeded or Admitted."""
    status: ConditionStatus
    """Whether the condition holds: True, False or Unknown."""
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=CONDITION_REASON)
    ]
    """CamelCase, machine-readable cause of the last transition."""
    message: LongText = ""
    """Human-readable details of the last transition."""
    last_transition_time: AwareDatetime
    """When the status last changed."""
    observed_generation: Count | None = None
    """The metadata.generation this condition was computed from."""


Conditions = Annotated[
    list[Condition] | None,
    Field(max_length=16, json_schema_extra=list_map("type")),
]


class ObjectRef(KubeModel):
    """A JSON document kept in S3-compatible object storage instead of inline."""

    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63, pattern=S3_BUCKET)]
    """Bucket that holds the object."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    """Object key inside the bucket."""
    size: Annotated[int, Field(ge=0)]
    """Size of the object in bytes."""
    sha256: Annotated[str, StringConstraints(min_length=64, max_length=64, pattern=SHA256_HEX)]
    """Lowercase hex SHA-256 of the object's bytes, checked after download."""
    content_type: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    """MIME type of the object; application/json when not set."""


class QueueSpec(KubeModel):
    """A queue and, optionally, the concurrency limit to give it."""

    name: QueueName
    """Name of the queue (the TaskQueue of that name); a DNS label, so it is label-safe."""
    concurrency_limit: ConcurrencyLimit | None = None
    """Runs of this queue that may execute at once; with a concurrencyKey, runs of each key
    value (one queue per key, as in Trigger.dev). 0 is accepted by the API but runs nothing;
    the operator reports it on the run. Pause the queue instead."""


class ParentRef(KubeModel):
    """The run that triggered this one from inside its task."""

    name: ObjectName
    """Name of the parent TaskRun (same namespace)."""
    uid: Uid
    """UID of the parent TaskRun, so a recreated parent of the same name is not confused."""
    wait: bool = False
    """The parent waits for this run (trigger_and_wait): it is Waiting until this run ends.
    On a TaskBatch: the parent waits until the batch has ended (batch_trigger_and_wait)."""
    attempt: Annotated[int, Field(ge=1, le=100)] | None = None
    """The parent's attempt that triggered this; idempotency keys of scope "attempt" are
    unique to it."""


class BatchRef(KubeModel):
    """The TaskBatch that created this run, and the item it came from."""

    name: ObjectName
    """Name of the TaskBatch (same namespace)."""
    index: Annotated[int, Field(ge=0, le=999)]
    """Position of the item in the batch, from 0."""


IDEMPOTENCY_NEEDS_KEY = (
    # No "spec." prefix: batch items carry the same options; the error path says where.
    "idempotencyKeyTTLSeconds and idempotencyKeyScope need idempotencyKey; set the key or"
    " remove them"
)
TRIGGER_OPTIONS_RULES = (
    cel(
        "!has(self.idempotencyKeyTTLSeconds) && !has(self.idempotencyKeyScope)"
        " || has(self.idempotencyKey)",
        IDEMPOTENCY_NEEDS_KEY,
        field_path=".idempotencyKey",
        reason="FieldValueRequired",
    ),
)


# The format check of a date-time passes more than RFC 3339 (a lower-case "t" and "z", any
# character before the fraction), but CEL, which reads the field in the update rules, does
# not: such a value would be accepted and then make every status write of the run fail.
# Reading it in a rule refuses it on create instead, naming the field.
READABLE_TIME = cel(
    "self == self",
    "must be an RFC 3339 time such as 2030-12-01T00:00:00Z",
    reason="FieldValueInvalid",
)


class TriggerOptions(KubeModel):
    """Options given when a task is triggered (one run, or one item of a batch)."""

    model_config = ConfigDict(json_schema_extra=validations(*TRIGGER_OPTIONS_RULES))

    delay_until: Annotated[
        AwareDatetime | None, Field(json_schema_extra=validations(READABLE_TIME))
    ] = None
    """Do not start before this time (RFC 3339). Stays mutable: reschedule patches it."""
    ttl_seconds: Seconds | None = None
    """Expire the run if it has not started this many seconds after it was enqueued (after
    any delay). 0 means it never expires; unset takes the Task's default."""
    idempotency_key: IdempotencyKey | None = None
    """A trigger with the same key (in its scope and TTL) returns the existing run."""
    idempotency_key_ttl_seconds: PositiveSeconds | None = None
    """How long the idempotency key holds, in seconds. Needs idempotencyKey."""
    idempotency_key_scope: IdempotencyKeyScope | None = None
    """Where the key is unique: run (per parent run), attempt (per parent attempt) or global.
    Needs idempotencyKey."""
    queue: QueueSpec | None = None
    """Queue to run on, overriding the Task's queue."""
    concurrency_key: ConcurrencyKey | None = None
    """Splits the queue: the concurrency limit applies separately to each key (e.g. a user
    id). Any text; the operator hashes it for labels."""
    max_attempts: MaxAttempts | None = None
    """Attempts before the run fails, overriding the Task's retry policy (1 = no retries)."""
    max_duration_seconds: PositiveSeconds | None = None
    """Each attempt is stopped after this many seconds and the run ends TimedOut."""
    machine: Machine | None = None
    """Machine preset (CPU and memory) for the attempts, overriding the Task's."""
    priority: Annotated[int, Field(ge=0, le=THIRTY_DAYS)] | None = None
    """Seconds of head start in the queue: the run is ordered as if triggered this much
    earlier."""
    tags: Annotated[list[Tag] | None, Field(max_length=10, json_schema_extra=LIST_SET)] = None
    """Up to 10 distinct tags for finding runs."""
    metadata: Annotated[
        dict[str, Any] | None, Field(json_schema_extra={**JSON_MAP, "maxProperties": 64})
    ] = None
    """Up to 64 keys of arbitrary JSON that the task can read."""

    @model_validator(mode="after")
    def _idempotency_settings_need_key(self) -> TriggerOptions:
        if self.idempotency_key is None and (
            self.idempotency_key_ttl_seconds is not None or self.idempotency_key_scope is not None
        ):
            raise ValueError(IDEMPOTENCY_NEEDS_KEY)
        return self


# --------------------------------------------------------------------------------------------
# TaskRun

TASKRUN_PAYLOAD_XOR_REF = "set exactly one of spec.payload or spec.payloadRef"
CANCEL_IS_FINAL = "spec.cancel cannot go back to false: a canceled run stays canceled"


class TaskRunSpec(TriggerOptions):
    """What to run: the task, its payload and the trigger options. Only delayUntil and cancel
    may change after creation."""

    model_config = ConfigDict(
        json_schema_extra={
            # CEL cannot see untyped fields such as payload, so presence is checked here.
            "oneOf": [{"required": ["payload"]}, {"required": ["payloadRef"]}],
            **validations(
                *TRIGGER_OPTIONS_RULES,
                cel(
                    unchanged("payloadRef"),
                    "spec.payloadRef is immutable; create a new TaskRun",
                    field_path=".payloadRef",
                    reason="FieldValueForbidden",
                ),
                cel(
                    unchanged("idempotencyKey", "idempotencyKeyTTLSeconds", "idempotencyKeyScope"),
                    "spec.idempotencyKey, spec.idempotencyKeyTTLSeconds and"
                    " spec.idempotencyKeyScope are immutable; create a new TaskRun",
                    field_path=".idempotencyKey",
                    reason="FieldValueForbidden",
                ),
                cel(
                    unchanged("queue", "concurrencyKey"),
                    "spec.queue and spec.concurrencyKey are immutable; create a new TaskRun",
                    field_path=".queue",
                    reason="FieldValueForbidden",
                ),
                cel(
                    unchanged("parent", "batch"),
                    "spec.parent and spec.batch are immutable",
                    field_path=".parent",
                    reason="FieldValueForbidden",
                ),
                cel(
                    unchanged(
                        "ttlSeconds",
                        "maxAttempts",
                        "maxDurationSeconds",
                        "machine",
                        "priority",
                        "tags",
                    ),
                    "spec.ttlSeconds, maxAttempts, maxDurationSeconds, machine, priority and"
                    " tags are immutable; create a new TaskRun",
                    reason="FieldValueForbidden",
                ),
                # The catch-all for fields CEL cannot read (payload, metadata): when neither
                # mutable field changes, nothing in spec may change. A payload change sent in
                # the same update as a delayUntil or cancel change still passes: CEL cannot
                # compare "spec except these fields".
                cel(
                    "self.?delayUntil != oldSelf.?delayUntil || self.?cancel != oldSelf.?cancel"
                    " || self == oldSelf",
                    "only spec.delayUntil and spec.cancel may change after creation (spec.payload"
                    " and spec.metadata are immutable); create a new TaskRun",
                    reason="FieldValueForbidden",
                ),
                cel(
                    "!oldSelf.?cancel.orValue(false) || self.?cancel.orValue(false)",
                    CANCEL_IS_FINAL,
                    field_path=".cancel",
                    reason="FieldValueForbidden",
                ),
            ),
        }
    )

    task: Annotated[TaskId, Field(json_schema_extra=validations(immutable("spec.task", "TaskRun")))]
    """Id of the task to run: the name of a Task in the same namespace."""
    payload: Annotated[Any, Field(json_schema_extra=NULLABLE_ANY_JSON)] = None
    """Input of the task, any JSON (null included). Small payloads only: larger ones go to
    object storage and payloadRef. Exactly one of payload or payloadRef. Immutable."""
    payload_ref: ObjectRef | None = None
    """Where a large payload was uploaded. Exactly one of payload or payloadRef. Immutable."""
    parent: ParentRef | None = None
    """Set when another run triggered this one. Immutable."""
    batch: BatchRef | None = None
    """Set on the runs a TaskBatch creates. Immutable."""
    cancel: bool = False
    """Set to true to cancel the run; it cannot be set back to false."""

    @model_validator(mode="after")
    def _one_payload(self) -> TaskRunSpec:
        if self.payload_ref is not None and self.payload is not None:
            raise ValueError(TASKRUN_PAYLOAD_XOR_REF)
        return self

    def _nulls_to_keep(self) -> frozenset[str]:
        # A null payload is a payload; it is only absent when payloadRef stands in for it.
        return frozenset() if self.payload_ref is not None else frozenset({"payload"})


class Attempt(KubeModel):
    """One attempt of a run: one Job."""

    number: Annotated[int, Field(ge=1, le=100)]
    """Attempt number, from 1."""
    job: Annotated[str, StringConstraints(max_length=63)] | None = None
    """Name of the attempt's Job."""
    machine: Machine | None = None
    """Machine preset the attempt ran on."""
    started_time: AwareDatetime | None = None
    """When the attempt's container started."""
    finished_time: AwareDatetime | None = None
    """When the attempt ended."""
    exit_code: int | None = None
    """Exit code of the task's container."""
    reason: Annotated[str, StringConstraints(max_length=128)] | None = None
    """CamelCase reason the attempt ended, e.g. Succeeded, Error, OOMKilled, DeadlineExceeded."""
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """Short human-readable account of how the attempt ended."""


class ErrorInfo(KubeModel):
    """The error that ended the run."""

    type: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Error class, e.g. ValueError or AbortTaskRunError."""
    message: LongText | None = None
    """The error message."""
    stack: LongText | None = None
    """The stack trace, truncated to 32 KiB."""


class TaskRunStatus(KubeModel):
    """What the operator observed and decided about the run."""

    phase: TaskRunPhase | None = None
    """Where the run is in its lifecycle."""
    conditions: Conditions = None
    """Succeeded (the summary) and other conditions, keyed by type."""
    queue: QueueName | None = None
    """The queue the run was resolved to (from spec.queue or the Task)."""
    concurrency_key: ConcurrencyKey | None = None
    """The concurrency key the run counts against."""
    attempt: Annotated[int, Field(ge=0, le=100)] | None = None
    """Number of the current or last attempt; 0 before the first."""
    attempts: Annotated[
        list[Attempt] | None, Field(max_length=100, json_schema_extra=list_map("number"))
    ] = None
    """Every attempt so far, oldest first."""
    delay_until: AwareDatetime | None = None
    """The delay in effect: spec.delayUntil as the operator last accepted it. It differs from
    the spec after a refused reschedule (see the Rescheduled condition)."""
    enqueued_time: AwareDatetime | None = None
    """When the run entered its queue (after any delay); the TTL counts from here."""
    expires_time: AwareDatetime | None = None
    """When the run expires unless it has started."""
    started_time: AwareDatetime | None = None
    """When the first attempt started."""
    finished_time: AwareDatetime | None = None
    """When the run reached a final phase."""
    next_attempt_time: AwareDatetime | None = None
    """When a Retrying run is queued again."""
    output: Annotated[Any, Field(json_schema_extra=NULLABLE_ANY_JSON)] = None
    """Return value of the task, any JSON, when small; otherwise see outputRef."""
    output_ref: ObjectRef | None = None
    """Where a large output was uploaded."""
    error: ErrorInfo | None = None
    """The error of a Failed, TimedOut or Crashed run."""
    observed_generation: Count | None = None
    """The metadata.generation the operator acted on last."""


class TaskRun(KubeModel):
    """One triggered run of a task."""

    resource: ClassVar[Resource] = Resource(
        plural="taskruns",
        singular="taskrun",
        short_names=("ktr",),
        printer_columns=(
            PrinterColumn("Task", "string", ".spec.task", "Task id."),
            PrinterColumn("Status", "string", ".status.phase", "Lifecycle phase."),
            PrinterColumn("Attempt", "integer", ".status.attempt", "Current or last attempt."),
            PrinterColumn("Queue", "string", ".status.queue", "Queue the run was resolved to."),
            AGE,
        ),
    )

    api_version: Annotated[str, ApiString] = API_VERSION
    kind: Annotated[str, ApiString] = "TaskRun"
    metadata: ApiMetadata = Field(default_factory=ObjectMeta)
    spec: TaskRunSpec
    status: TaskRunStatus | None = None


# --------------------------------------------------------------------------------------------
# TaskBatch


BATCHITEM_PAYLOAD_XOR_REF = "set exactly one of payload or payloadRef in each item"


class BatchItem(KubeModel):
    """One run to create: its payload and its own trigger options."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["payload"]}, {"required": ["payloadRef"]}]}
    )

    payload: Annotated[Any, Field(json_schema_extra=NULLABLE_ANY_JSON)] = None
    """Input of this item's run, any JSON (null included). Exactly one of payload or
    payloadRef."""
    payload_ref: ObjectRef | None = None
    """Where this item's large payload was uploaded. Exactly one of payload or payloadRef."""
    options: TriggerOptions | None = None
    """Trigger options of this item's run."""

    @model_validator(mode="after")
    def _one_payload(self) -> BatchItem:
        if self.payload_ref is not None and self.payload is not None:
            raise ValueError(BATCHITEM_PAYLOAD_XOR_REF)
        return self

    def _nulls_to_keep(self) -> frozenset[str]:
        return frozenset() if self.payload_ref is not None else frozenset({"payload"})


TASKBATCH_ITEMS_XOR_REF = "set exactly one of spec.items or spec.itemsRef"


class TaskBatchSpec(KubeModel):
    """A batch trigger: one task, many payloads, fanned out into child TaskRuns. Only cancel
    may change after creation."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.items) != has(self.itemsRef)", TASKBATCH_ITEMS_XOR_REF),
            cel(
                "!has(self.itemsRef) || has(self.itemCount)",
                "spec.itemsRef needs spec.itemCount, the number of items in the uploaded list",
                field_path=".itemCount",
                reason="FieldValueRequired",
            ),
            cel(
                "!has(self.items) || !has(self.itemCount) || self.itemCount == size(self.items)",
                "spec.itemCount must equal the number of spec.items; or leave it out",
                field_path=".itemCount",
            ),
            cel(
                unchanged("items", "itemsRef", "itemCount"),
                "spec.items, spec.itemsRef and spec.itemCount are immutable; create a new"
                " TaskBatch",
                field_path=".items",
                reason="FieldValueForbidden",
            ),
            cel(
                unchanged("parent"),
                "spec.parent is immutable",
                field_path=".parent",
                reason="FieldValueForbidden",
            ),
            cel(
                "!oldSelf.?cancel.orValue(false) || self.?cancel.orValue(false)",
                "spec.cancel cannot go back to false: a canceled batch stays canceled",
                field_path=".cancel",
                reason="FieldValueForbidden",
            ),
        )
    )

    task: Annotated[
        TaskId, Field(json_schema_extra=validations(immutable("spec.task", "TaskBatch")))
    ]
    """Id of the task every item runs: the name of a Task in the same namespace."""
    items: Annotated[list[BatchItem] | None, Field(min_length=1, max_length=1000)] = None
    """The items, 1 to 1000. Exactly one of items or itemsRef. Immutable."""
    items_ref: ObjectRef | None = None
    """Where a large list of items (JSON array of {payload, options}) was uploaded. Exactly one
    of items or itemsRef. Immutable."""
    item_count: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Number of items; required with itemsRef."""
    parent: ParentRef | None = None
    """Set when a run triggered this batch from inside its task. Immutable."""
    cancel: bool = False
    """Set to true to cancel every run of the batch; it cannot be set back to false."""

    @model_validator(mode="after")
    def _one_source_of_items(self) -> TaskBatchSpec:
        if (self.items is None) == (self.items_ref is None):
            raise ValueError(TASKBATCH_ITEMS_XOR_REF)
        if self.items_ref is not None and self.item_count is None:
            raise ValueError("spec.itemsRef needs spec.itemCount")
        return self


class BatchCounts(KubeModel):
    """How many of the batch's runs are in each state."""

    pending: Count = 0
    """Not yet queued (pending or delayed)."""
    queued: Count = 0
    """Waiting for a queue slot, including runs waiting to retry."""
    running: Count = 0
    """Executing or waiting on a child run."""
    completed: Count = 0
    """Completed."""
    failed: Count = 0
    """Failed, timed out or crashed."""
    canceled: Count = 0
    """Canceled."""
    expired: Count = 0
    """Expired before they started."""
    missing: Count = 0
    """Runs that were created but deleted before they ended; they are not created again."""


class TaskBatchStatus(KubeModel):
    """Progress of the fan-out and of the runs it created."""

    phase: TaskBatchPhase | None = None
    """Running until every run has ended; then Completed, PartiallyFailed or Canceled.
    Failed: the items could not be read (see conditions), so no run was created."""
    total: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Number of items in the batch."""
    created: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Items 0 .. created-1 all have their run; they are never created again, even if a run
    is deleted later."""
    keyed_runs: Annotated[
        dict[str, ObjectName] | None,
        Field(json_schema_extra={"maxProperties": 1000}),
    ] = None
    """The run of each item that has an idempotency key, by item index ("0", "1", ...): a
    run the batch created (named from the key) or an existing run that held the key. Other
    items' runs are named <batch>-<index>."""
    reused: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Items whose idempotency key returned an existing run instead of creating one."""
    counts: BatchCounts | None = None
    """Child runs per state."""
    conditions: Conditions = None
    """Conditions of the batch, keyed by type."""
    observed_generation: Count | None = None
    """The metadata.generation the operator acted on last."""


class TaskBatch(KubeModel):
    """One batch trigger of a task."""

    resource: ClassVar[Resource] = Resource(
        plural="taskbatches",
        singular="taskbatch",
        short_names=("ktb",),
        printer_columns=(
            PrinterColumn("Task", "string", ".spec.task", "Task id."),
            PrinterColumn("Items", "integer", ".status.total", "Number of items."),
            PrinterColumn("Created", "integer", ".status.created", "Runs created so far.",
                          priority=1),
            PrinterColumn("Running", "integer", ".status.counts.running", "Runs executing.",
                          priority=1),
            PrinterColumn("Completed", "integer", ".status.counts.completed", "Runs completed."),
            PrinterColumn("Failed", "integer", ".status.counts.failed", "Runs failed."),
            PrinterColumn("Status", "string", ".status.phase", "Lifecycle phase."),
            AGE,
        ),
    )

    api_version: Annotated[str, ApiString] = API_VERSION
    kind: Annotated[str, ApiString] = "TaskBatch"
    metadata: ApiMetadata = Field(default_factory=ObjectMeta)
    spec: TaskBatchSpec
    status: TaskBatchStatus | None = None


# --------------------------------------------------------------------------------------------
# Task


class RetryPolicy(KubeModel):
    """How failed attempts are retried: exponential backoff with optional jitter."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.minTimeoutSeconds) || !has(self.maxTimeoutSeconds)"
                " || self.minTimeoutSeconds <= self.maxTimeoutSeconds",
                "spec.retry.minTimeoutSeconds must not exceed spec.retry.maxTimeoutSeconds",
                field_path=".minTimeoutSeconds",
            )
        )
    )

    max_attempts: MaxAttempts | None = None
    """Attempts before a run fails (1 = no retries)."""
    factor: Annotated[float, Field(ge=1, le=10)] | None = None
    """Each backoff is this many times the previous one."""
    min_timeout_seconds: Seconds | None = None
    """Backoff before the first retry."""
    max_timeout_seconds: Seconds | None = None
    """Longest backoff between attempts."""
    randomize: bool | None = None
    """Add random jitter to each backoff."""


class EnvVar(KubeModel):
    """An environment variable for the task's container."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ENV_VAR_NAME)]
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=4096)] = ""
    """Variable value."""


class TaskSpec(KubeModel):
    """A deployed task: the image and function that run it and its defaults."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    """Container image that holds the task's code."""
    entrypoint: Annotated[str, StringConstraints(min_length=3, max_length=256, pattern=ENTRYPOINT)]
    """The task function as module:function, e.g. myapp.tasks:send_email."""
    queue: QueueSpec | None = None
    """Default queue of the task's runs; unset means a queue named after the task."""
    retry: RetryPolicy | None = None
    """Default retry policy."""
    machine: Machine | None = None
    """Default machine preset (CPU and memory)."""
    max_duration_seconds: PositiveSeconds | None = None
    """Default limit on each attempt's duration."""
    ttl_seconds: Seconds | None = None
    """Default TTL of runs, counted from enqueue; 0 means they never expire."""
    env: Annotated[
        list[EnvVar] | None, Field(max_length=64, json_schema_extra=list_map("name"))
    ] = None
    """Environment variables for the task's container."""
    service_account_name: ObjectName | None = None
    """ServiceAccount the task's pods run as."""


class TaskStatus(KubeModel):
    """What the operator observed about the task."""

    conditions: Conditions = None
    """Conditions of the task, keyed by type."""
    observed_generation: Count | None = None
    """The metadata.generation the operator acted on last."""


class Task(KubeModel):
    """A deployed task; TaskRuns name it by its metadata.name (the task id)."""

    resource: ClassVar[Resource] = Resource(
        plural="tasks",
        singular="task",
        short_names=("ktask",),
        printer_columns=(
            PrinterColumn("Image", "string", ".spec.image", "Container image."),
            PrinterColumn("Queue", "string", ".spec.queue.name", "Default queue."),
            PrinterColumn("Entrypoint", "string", ".spec.entrypoint", "Task function.", 1),
            AGE,
        ),
    )

    api_version: Annotated[str, ApiString] = API_VERSION
    kind: Annotated[str, ApiString] = "Task"
    metadata: ApiMetadata = Field(default_factory=ObjectMeta)
    spec: TaskSpec
    status: TaskStatus | None = None


# --------------------------------------------------------------------------------------------
# TaskQueue


KEY_LIMIT_RETIRED = (
    "spec.concurrencyKeyLimit is retired: concurrencyLimit now applies to each concurrency key "
    "on its own, and totalConcurrencyLimit caps the whole queue. Write {concurrencyLimit: K, "
    "totalConcurrencyLimit: N} for what was {concurrencyLimit: N, concurrencyKeyLimit: K}"
)


class TaskQueueSpec(KubeModel):
    """A named queue shared by tasks.

    | field | applies to |
    |---|---|
    | concurrencyLimit | each concurrency key on its own; the runs without a key together |
    | totalConcurrencyLimit | all runs of the queue together, every key included |
    | (operator) KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT | all queues of the namespace |
    """

    concurrency_limit: ConcurrencyLimit | None = None
    """Runs that may execute at once in each lane of this queue: each concurrency key value
    on its own (Trigger.dev: one queue per key), and the runs without a key together. Unset
    means the run's or the Task's limit, else none. 0 is accepted by the API but runs
    nothing; the operator fails such runs with InvalidQueue. Use paused instead."""
    total_concurrency_limit: ConcurrencyLimit | None = None
    """A cap over the whole queue: runs of all its keys (and without a key) that may execute
    at once together; unset means no cap. Keys still take turns while it binds. E.g.
    concurrencyLimit 1 with totalConcurrencyLimit 100: one run per user, 100 in all."""
    concurrency_key_limit: Annotated[
        ConcurrencyLimit | None,
        Field(json_schema_extra=validations(cel("false", KEY_LIMIT_RETIRED,
                                                reason="FieldValueForbidden"))),
    ] = None
    """Retired; refused in new writes. A TaskQueue stored with it keeps its old meaning
    (concurrencyLimit capped the queue, this capped each key, and the runs without a key now
    share it too) and says so in a Deprecated condition. Migrate {concurrencyLimit: N,
    concurrencyKeyLimit: K} to {concurrencyLimit: K, totalConcurrencyLimit: N}."""
    paused: bool = False
    """While true, no new run of this queue starts; running ones continue."""


class TaskQueueStatus(KubeModel):
    """Current use of the queue."""

    running: Count | None = None
    """Runs holding a slot of the queue."""
    queued: Count | None = None
    """Runs waiting for a slot."""
    active_keys: Count | None = None
    """Distinct concurrency keys with a run holding a slot."""
    namespace_concurrency_limit: Count | None = None
    """The operator's cap over every queue of this namespace, when it sets one."""
    namespace_running: Count | None = None
    """Runs holding a slot in this namespace, all queues together (with the cap only)."""
    conditions: Conditions = None
    """Conditions of the queue, keyed by type (Deprecated while it sets
    concurrencyKeyLimit)."""
    observed_generation: Count | None = None
    """The metadata.generation the operator acted on last."""


class TaskQueue(KubeModel):
    """A queue with concurrency limits (per key, and a cap over the whole queue); its name is
    the queue name."""

    resource: ClassVar[Resource] = Resource(
        plural="taskqueues",
        singular="taskqueue",
        short_names=("ktq",),
        printer_columns=(
            PrinterColumn("Limit", "integer", ".spec.concurrencyLimit",
                          "Concurrency limit of each key (and of the runs without one)."),
            PrinterColumn("Total", "integer", ".spec.totalConcurrencyLimit",
                          "Cap over all keys of the queue."),
            PrinterColumn("Running", "integer", ".status.running", "Runs holding a slot."),
            PrinterColumn("Queued", "integer", ".status.queued", "Runs waiting for a slot."),
            PrinterColumn("Keys", "integer", ".status.activeKeys",
                          "Concurrency keys with a run holding a slot."),
            PrinterColumn("NS Limit", "integer", ".status.namespaceConcurrencyLimit",
                          "The operator's cap over every queue of the namespace.", 1),
            PrinterColumn("Paused", "boolean", ".spec.paused", "New runs do not start."),
            AGE,
        ),
    )

    api_version: Annotated[str, ApiString] = API_VERSION
    kind: Annotated[str, ApiString] = "TaskQueue"
    metadata: ApiMetadata = Field(default_factory=ObjectMeta)
    spec: TaskQueueSpec = Field(default_factory=TaskQueueSpec)
    status: TaskQueueStatus | None = None


# --------------------------------------------------------------------------------------------
# TaskSchedule

# The cron grammar the API server checks (RE2) is protocol.cron's CRON_PATTERN, which the
# SDK checks too before it writes. cronsim reads the same grammar; the operator still checks
# each expression with it and reports InvalidSchedule for what a pattern cannot see (a day
# that never comes, such as 30 2 *).
CRON_INVALID = (
    "spec.cron must be five fields separated by single spaces: minute (0-59), hour (0-23), "
    "day of month (1-31, L, LW), month (1-12, JAN-DEC) and day of week (0-7, SUN-SAT, 5L, "
    "5#2), each *, */n, a value, a range a-b or a list; e.g. '0 2 * * *'"
)
TIMEZONE_INVALID = (
    "spec.timezone must be an IANA time zone name such as UTC, Europe/Paris or "
    "America/New_York; kubetasks.schedules.timezones() lists them"
)
SCHEDULE_NAME_INVALID = (
    "a TaskSchedule name must be a DNS label of at most 63 characters (lower case letters, "
    "digits and '-'): it labels every run of the schedule"
)
ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
DEFAULT_STARTING_DEADLINE_SECONDS = 300


def _timezone_rule() -> dict[str, str]:
    from kubetasks.protocol.cron import timezones

    names = ", ".join(f"'{name}'" for name in timezones())
    return cel(f"self in [{names}]", TIMEZONE_INVALID, reason="FieldValueInvalid")


class TaskScheduleSpec(KubeModel):
    """When to trigger a task, and the options of every run it triggers."""

    task: TaskId
    """Id of the task each tick triggers (a Task's metadata.name)."""
    cron: Annotated[
        str,
        StringConstraints(min_length=1, max_length=100),
        Field(json_schema_extra=validations(
            cel(f"self.matches('{CRON_PATTERN}')", CRON_INVALID, reason="FieldValueInvalid")
        )),
    ]
    """Five-field cron expression (minute hour day-of-month month day-of-week), read in
    timezone: *, */n, ranges, lists, names, L, LW, 5L and 5#2. On a spring-forward day a
    fixed-time tick inside the skipped hour fires once, right after the gap; on a fall-back
    day a fixed-time tick in the repeated hour fires once (the first). An expression whose
    minute or hour field starts with * (*/30 * * * *, */15 2 * * *) follows the clock
    instead: it fires in both passes of a repeated hour and not at all in a skipped one."""
    timezone: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64),
        Field(json_schema_extra=validations(_timezone_rule())),
    ] | None = None
    """IANA time zone the cron is read in, e.g. Europe/Paris; unset means UTC."""
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    """Your own id for the schedule (e.g. a user id), passed to every run's payload."""
    deduplication_key: Annotated[
        str,
        StringConstraints(min_length=1, max_length=256),
        Field(json_schema_extra=validations(immutable("spec.deduplicationKey",
                                                      "TaskSchedule"))),
    ] | None = None
    """Key that makes schedules.create update this schedule instead of creating another."""
    active: bool = True
    """While false, ticks create no run (they are not caught up when it turns true again)."""
    concurrency_policy: ConcurrencyPolicy | None = None
    """What a tick does while a run of this schedule is still unfinished: Allow (the default)
    creates the run anyway, Forbid skips the tick, Replace cancels the unfinished runs and
    creates the new one."""
    starting_deadline_seconds: Annotated[int, Field(ge=1, le=ONE_YEAR)] | None = None
    """How late a tick may still create its run, e.g. after the operator was down; a tick
    later than this is skipped. Only the latest missed tick is ever caught up. Unset means
    300."""
    queue: QueueSpec | None = None
    """Queue of every run, overriding the Task's queue."""
    concurrency_key: ConcurrencyKey | None = None
    """Concurrency key of every run."""
    ttl_seconds: Seconds | None = None
    """TTL of every run (seconds after it is enqueued); 0 means it never expires."""
    max_attempts: MaxAttempts | None = None
    """Attempts of every run, overriding the Task's retry policy."""
    max_duration_seconds: PositiveSeconds | None = None
    """Limit on each attempt's duration."""
    machine: Machine | None = None
    """Machine preset of every run."""
    tags: Annotated[list[Tag] | None, Field(max_length=10, json_schema_extra=LIST_SET)] = None
    """Tags of every run (up to 10)."""
    metadata: Annotated[
        dict[str, Any] | None, Field(json_schema_extra={**JSON_MAP, "maxProperties": 64})
    ] = None
    """Metadata of every run (up to 64 keys)."""


class TaskScheduleStatus(KubeModel):
    """What the operator did with the schedule, and what comes next."""

    last_schedule_time: AwareDatetime | None = None
    """Nominal time of the latest tick the operator handled (ran, skipped or missed)."""
    next_schedule_time: AwareDatetime | None = None
    """Nominal time of the next tick (unset while inactive or invalid)."""
    upcoming: Annotated[list[AwareDatetime] | None, Field(max_length=5)] = None
    """The next five ticks."""
    description: ShortText | None = None
    """The cron expression in English, e.g. "At 02:00, every day"."""
    last_run: ObjectName | None = None
    """Name of the TaskRun of the latest tick that created one."""
    active_since: AwareDatetime | None = None
    """When the operator saw the schedule active (creation, or the last reactivation); ticks
    before it are not caught up."""
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The time zone the operator read the cron in."""
    conditions: Conditions = None
    """Ready (InvalidSchedule, TaskNotFound, Inactive) and Skipped (why the latest tick
    created no run)."""
    observed_generation: Count | None = None
    """The metadata.generation the operator acted on last."""


class TaskSchedule(KubeModel):
    """A cron schedule that triggers a task: one TaskRun per tick, named
    <schedule>-<yyyymmddhhmm> after the tick's UTC time, so each tick runs at most once."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.metadata.name.size() <= 63"
                " && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                SCHEDULE_NAME_INVALID,
                reason="FieldValueInvalid",
            )
        )
    )

    resource: ClassVar[Resource] = Resource(
        plural="taskschedules",
        singular="taskschedule",
        short_names=("kts",),
        printer_columns=(
            PrinterColumn("Task", "string", ".spec.task", "Task id."),
            PrinterColumn("Cron", "string", ".spec.cron", "Cron expression."),
            PrinterColumn("Timezone", "string", ".status.timezone", "Time zone of the cron."),
            PrinterColumn("Active", "boolean", ".spec.active", "Ticks create runs."),
            PrinterColumn("Last", "date", ".status.lastScheduleTime", "Latest tick handled."),
            PrinterColumn("Next", "string", ".status.nextScheduleTime", "Next tick (UTC)."),
            PrinterColumn("Last Run", "string", ".status.lastRun", "Run of the latest tick.",
                          1),
            AGE,
        ),
    )

    api_version: Annotated[str, ApiString] = API_VERSION
    kind: Annotated[str, ApiString] = "TaskSchedule"
    metadata: ApiMetadata = Field(default_factory=ObjectMeta)
    spec: TaskScheduleSpec
    status: TaskScheduleStatus | None = None


KINDS: tuple[type[TaskRun | TaskBatch | Task | TaskQueue | TaskSchedule], ...] = (
    TaskRun,
    TaskBatch,
    Task,
    TaskQueue,
    TaskSchedule,
)
"""Every kind of the API version, in the order the CRDs are generated."""
