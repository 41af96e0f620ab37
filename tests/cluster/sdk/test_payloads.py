"""Payloads and outputs above the inline threshold go through S3 (the SDK uploads the
payload, the worker the output) and come back byte for byte, through the SDK and through
the presigned URLs."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from kubetasks import runs
from kubetasks._internal.client import Client
from kubetasks.protocol.payloads import DEFAULT_INLINE_LIMIT, encode_json
from tests.cluster.tasks import blob

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: bytes = response.read()
    return data


def test_large_payload_and_output_round_trip_through_s3(sdk: Client) -> None:
    payload = {"text": "é" * DEFAULT_INLINE_LIMIT, "size": 300_000}  # 64 KiB of UTF-8
    payload_bytes, _ = encode_json(payload)
    assert len(payload_bytes) > sdk.inline_limit
    handle = blob.trigger(payload, tags=["big"])

    obj = sdk.kube.get_object("taskruns", sdk.namespace, handle.name)
    assert "payload" not in obj["spec"]
    ref = obj["spec"]["payloadRef"]
    assert ref["size"] == len(payload_bytes)
    assert ref["sha256"] == hashlib.sha256(payload_bytes).hexdigest()

    done = handle.poll(timeout=60)
    assert done.status == "Completed", done.error
    assert done.payload is None and done.output is None
    assert done.payload_ref is not None and done.output_ref is not None
    assert done.get_payload() == payload
    output = done.get_output()
    assert output == {"echo_length": len(payload["text"]), "data": "x" * 300_000,
                      "tags": ["big"], "metadata": {}}
    output_bytes, _ = encode_json(output)
    assert done.output_ref["size"] == len(output_bytes)

    assert done.payload_presigned_url and done.output_presigned_url
    assert download(done.payload_presigned_url) == payload_bytes
    assert download(done.output_presigned_url) == output_bytes
    stored = sdk.kube.get_object("taskruns", sdk.namespace, handle.name)
    assert "output" not in stored["status"]


def test_an_output_too_big_for_the_termination_message_goes_to_s3(sdk: Client) -> None:
    # 5 KB: far below the inline limit, but the kubelet keeps only 4096 bytes of message.
    done = blob.trigger({"size": 5000}).poll(timeout=60)
    assert done.status == "Completed", done.error
    assert done.output is None and done.output_ref is not None
    assert done.get_output()["data"] == "x" * 5000


def test_small_payload_and_output_stay_inline(sdk: Client) -> None:
    handle = blob.trigger({"text": "hi", "size": 10}, metadata={"k": [1, 2]})
    done = handle.poll(timeout=60)
    assert done.payload == {"text": "hi", "size": 10}
    assert done.output == {"echo_length": 2, "data": "x" * 10, "tags": [],
                           "metadata": {"k": [1, 2]}}
    assert done.payload_ref is None and done.output_ref is None
    assert runs.retrieve(handle.id).get_output() == done.output


def test_nulls_inside_payloads_and_outputs_survive(sdk: Client) -> None:
    payload = {"text": "n", "nested": {"a": None, "b": [None, 1]}}
    done = blob.trigger(payload, metadata={"m": {"n": None}}).poll(timeout=60)
    assert done.payload == payload
    assert done.get_payload() == payload
    assert done.metadata == {"m": {"n": None}}
    assert done.get_output()["metadata"] == {"m": {"n": None}}
