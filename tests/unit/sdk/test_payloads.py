"""Payload and output encoding, the size limits (both sizes in the error), integrity checks,
and the inline-or-S3 choice."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kubetasks import (
    OutputTooLargeError,
    PayloadIntegrityError,
    PayloadNotSerializableError,
    PayloadTooLargeError,
)
from kubetasks.protocol.payloads import (
    DEFAULT_INLINE_LIMIT,
    MAX_OUTPUT_BYTES,
    MAX_PAYLOAD_BYTES,
    encode_json,
    encode_output,
    encode_payload,
    has_nested_null,
    inline_limit_from_env,
    validate_as,
    verify,
)


class Order(BaseModel):
    id: str
    placed: dt.datetime


def test_models_and_plain_values_encode_as_compact_utf8_json() -> None:
    order = Order(id="o-1", placed=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert encode_json(order)[0] == b'{"id":"o-1","placed":"2030-01-01T00:00:00Z"}'
    assert encode_json({"name": "café", "n": [1, 2.5, None, True]})[0] == (
        '{"name":"café","n":[1,2.5,null,true]}'.encode())
    encoded = encode_payload({"to": "a@example.com"})
    assert encoded.size == 22
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()


def test_limits_are_checked_with_both_sizes_in_the_message() -> None:
    just_fits = "x" * (MAX_PAYLOAD_BYTES - 2)  # the quotes make it exactly the limit
    assert encode_payload(just_fits).size == MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadTooLargeError) as info:
        encode_payload("x" * (MAX_PAYLOAD_BYTES - 1))
    assert info.value.size == MAX_PAYLOAD_BYTES + 1
    assert info.value.limit == MAX_PAYLOAD_BYTES
    assert "10,485,761 bytes" in str(info.value) and "10,485,760 bytes" in str(info.value)
    with pytest.raises(OutputTooLargeError, match=r"104,857,601 bytes.*104,857,600 bytes"):
        encode_output("x" * (MAX_OUTPUT_BYTES - 1))


@pytest.mark.parametrize("value", [object(), float("nan"), {"x": float("inf")}, {"f": print}])
def test_values_without_a_json_form_are_refused(value: Any) -> None:
    with pytest.raises(PayloadNotSerializableError, match="cannot be turned into JSON"):
        encode_payload(value)


def test_verify_checks_size_and_digest() -> None:
    data = b'{"a":1}'
    verify(data, len(data), hashlib.sha256(data).hexdigest(), "s3://b/k")
    with pytest.raises(PayloadIntegrityError, match="7 bytes, but 8 were recorded"):
        verify(data, 8, hashlib.sha256(data).hexdigest(), "s3://b/k")
    with pytest.raises(PayloadIntegrityError, match="SHA-256"):
        verify(data, len(data), "0" * 64, "s3://b/k")


def test_validate_as_builds_the_annotated_type() -> None:
    order = validate_as({"id": "o", "placed": "2030-01-01T00:00:00Z"}, Order)
    assert isinstance(order, Order)
    assert validate_as({"a": 1}, Any) == {"a": 1}
    assert validate_as([1, 2], list[int]) == [1, 2]
    with pytest.raises(ValidationError):
        validate_as({"id": "o"}, Order)


def test_nested_nulls_are_found() -> None:
    assert not has_nested_null({"a": 1, "b": [1, {"c": "x"}]})
    assert has_nested_null({"a": {"b": None}})
    assert has_nested_null([1, None])
    assert not has_nested_null(None)


def test_inline_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETASKS_INLINE_LIMIT", raising=False)
    assert inline_limit_from_env() == DEFAULT_INLINE_LIMIT
    monkeypatch.setenv("KUBETASKS_INLINE_LIMIT", "1024")
    assert inline_limit_from_env() == 1024
    monkeypatch.setenv("KUBETASKS_INLINE_LIMIT", "2000000")
    with pytest.raises(ValueError, match="etcd"):
        inline_limit_from_env()
