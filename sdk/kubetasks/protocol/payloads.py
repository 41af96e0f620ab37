"""Payloads and outputs as bytes: JSON encoding of plain values and pydantic models, the size
limits (checked before anything is written), SHA-256 digests, and the choice between inline
and object storage. Pure: uploads and downloads are in ``kubetasks.protocol.storage``."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from kubetasks.errors import (
    OutputTooLargeError,
    PayloadIntegrityError,
    PayloadNotSerializableError,
    PayloadTooLargeError,
    TooLargeError,
)

MIB = 1024 * 1024
MAX_PAYLOAD_BYTES = 10 * MIB
"""A payload's JSON may be at most 10 MiB."""
MAX_OUTPUT_BYTES = 100 * MIB
"""A task's output, as JSON, may be at most 100 MiB."""
MAX_BATCH_BYTES = 10 * MIB
"""The payloads of one batch together may be at most 10 MiB."""
MAX_BATCH_ITEMS = 1000
"""A batch may have at most 1,000 items."""
DEFAULT_INLINE_LIMIT = 32 * 1024
"""Payloads up to this many bytes stay in the TaskRun; larger ones go to object storage.
etcd refuses requests above about 1.5 MiB and every watcher receives the whole object on
each change, so inline values are kept small."""
DEFAULT_BATCH_INLINE_LIMIT = 128 * 1024
"""A batch's list of items (its JSON, with large payloads already offloaded) up to this many
bytes stays in the TaskBatch; a larger list goes to object storage as one document."""
MAX_INLINE_LIMIT = 512 * 1024
INLINE_LIMIT_ENV = "KUBETASKS_INLINE_LIMIT"
BATCH_INLINE_LIMIT_ENV = "KUBETASKS_BATCH_INLINE_LIMIT"
CONTENT_TYPE = "application/json"


def _limit_from_env(name: str, default: int, kind: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be a whole number of bytes") from None
    if not 0 <= value <= MAX_INLINE_LIMIT:
        raise ValueError(f"{name}={value} must be between 0 and {MAX_INLINE_LIMIT} bytes "
                         f"({kind} must stay far below etcd's 1.5 MiB request limit)")
    return value


def inline_limit_from_env() -> int:
    """``$KUBETASKS_INLINE_LIMIT`` (bytes), else the default (32 KiB)."""
    return _limit_from_env(INLINE_LIMIT_ENV, DEFAULT_INLINE_LIMIT, "TaskRuns")


def batch_inline_limit_from_env() -> int:
    """``$KUBETASKS_BATCH_INLINE_LIMIT`` (bytes), else the default (128 KiB)."""
    return _limit_from_env(BATCH_INLINE_LIMIT_ENV, DEFAULT_BATCH_INLINE_LIMIT, "TaskBatches")


# Pydantic serialises at most 255 levels of nesting, and a payload is serialised again
# inside the TaskRun or TaskBatch that carries it: it is checked with this many levels of
# room to spare, so a payload that passes here also fits there.
NESTING_HEADROOM = 16


def _wrapped(value: Any) -> Any:
    for _ in range(NESTING_HEADROOM):
        value = [value]
    return value


def to_jsonable(value: Any, what: str = "value") -> Any:
    """``value`` as plain JSON types: pydantic models, dataclasses, datetimes, UUIDs and
    the like are converted the way pydantic serialises them."""
    from pydantic import BaseModel
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        if isinstance(value, BaseModel):
            plain = value.model_dump(mode="json")
            to_jsonable_python(_wrapped(plain))  # the nesting check
            return plain
        wrapped = to_jsonable_python(_wrapped(value))
        for _ in range(NESTING_HEADROOM):
            wrapped = wrapped[0]
        return wrapped
    except (PydanticSerializationError, ValueError, RecursionError) as exc:
        # ValueError: bytes that are not UTF-8, a circular reference, nesting too deep;
        # none has a JSON form that kubetasks can carry.
        if "depth" in str(exc) or isinstance(exc, RecursionError):
            raise PayloadNotSerializableError(
                f"{what} cannot be turned into JSON: it is nested more than "
                f"{255 - NESTING_HEADROOM - 1} levels deep; flatten it") from None
        raise PayloadNotSerializableError(
            f"{what} cannot be turned into JSON ({exc}); pass JSON types (dict, list, str, "
            "int, float, bool, None) or pydantic models, with text as str (bytes only if "
            "they are UTF-8)") from None


def encode_json(value: Any, what: str = "value") -> tuple[bytes, Any]:
    """Compact UTF-8 JSON of ``value``, and the JSON-typed value it encodes.

    >>> encode_json({"a": 1})
    (b'{"a":1}', {'a': 1})
    """
    plain = to_jsonable(value, what)
    try:
        text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadNotSerializableError(
            f"{what} cannot be turned into JSON ({exc}); NaN and infinity have no JSON form"
        ) from None
    try:
        return text.encode(), plain
    except UnicodeEncodeError as exc:
        raise PayloadNotSerializableError(
            f"{what} cannot be turned into JSON: it holds a lone surrogate "
            f"{exc.object[exc.start:exc.end]!r}, which is not text; decode bytes with "
            "errors='replace' (not 'surrogateescape') or pass them base64-encoded") from None


def has_nested_null(value: Any) -> bool:
    """True when a null sits inside an object or array of ``value``.

    In a JSON merge patch a null member means "delete": the operator writes such outputs
    into the run's status with a JSON patch instead.

    >>> has_nested_null({"a": [1, None]}), has_nested_null(None)
    (True, False)
    """
    if isinstance(value, dict):
        return any(v is None or has_nested_null(v) for v in value.values())
    if isinstance(value, list):
        return any(v is None or has_nested_null(v) for v in value)
    return False


def decode_json(data: bytes, what: str = "value") -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise PayloadIntegrityError(f"{what} is not valid JSON: {exc}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Encoded:
    """A payload or output ready to store: its JSON bytes and JSON-typed value."""

    data: bytes
    value: Any

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)


def _encode(value: Any, what: str, limit: int, error: type[TooLargeError]) -> Encoded:
    data, plain = encode_json(value, what)
    if len(data) > limit:
        raise error(len(data), limit)
    return Encoded(data, plain)


def encode_payload(value: Any, limit: int = MAX_PAYLOAD_BYTES) -> Encoded:
    """A payload as JSON, refused above 10 MiB (PayloadTooLargeError gives both sizes).

    >>> encode_payload({"to": "a@example.com"}).size
    22
    """
    return _encode(value, "the payload", limit, PayloadTooLargeError)


def encode_output(value: Any, limit: int = MAX_OUTPUT_BYTES) -> Encoded:
    """A task's return value as JSON, refused above 100 MiB."""
    return _encode(value, "the task's output", limit, OutputTooLargeError)


def verify(data: bytes, size: int, sha256: str, where: str) -> None:
    """Raise PayloadIntegrityError unless ``data`` has the recorded size and digest."""
    if len(data) != size:
        raise PayloadIntegrityError(
            f"{where} is {len(data)} bytes, but {size} were recorded: the object was changed "
            "or truncated")
    digest = sha256_hex(data)
    if digest != sha256:
        raise PayloadIntegrityError(
            f"{where} has SHA-256 {digest}, but {sha256} was recorded: the object was changed")


def validate_as(value: Any, type_: Any) -> Any:
    """``value`` (plain JSON) converted to ``type_`` with pydantic; ``Any`` passes it on."""
    if type_ is Any or type_ is None:
        return value
    from pydantic import TypeAdapter

    return TypeAdapter(type_).validate_python(value)
