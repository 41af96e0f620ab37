"""Object storage that stops answering for a while: reads and writes wait for it (within
``retry_seconds``) instead of failing, against a real S3 server (moto) paused with SIGSTOP;
refusals are not retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetasks.devcluster.services import S3Server
from kubetasks.protocol import storage
from kubetasks.protocol.payloads import encode_payload
from kubetasks.protocol.storage import ObjectStore, StorageSettings


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(Path(tmp_path_factory.mktemp("s3"))) as server:
        yield server


def store(s3: S3Server, monkeypatch: pytest.MonkeyPatch, retry_seconds: float) -> ObjectStore:
    # Each try gives up after 1 s, so a pause of a few seconds takes several tries: the
    # retries below are the store's own, not one patient request.
    monkeypatch.setattr(storage, "READ_TIMEOUT", 1)
    monkeypatch.setattr(storage, "CONNECT_TIMEOUT", 1)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    return ObjectStore(StorageSettings(bucket=s3.bucket, endpoint=s3.endpoint,
                                       region=s3.region, retry_seconds=retry_seconds))


def retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying in" in r.getMessage() for r in caplog.records)


def test_a_read_and_a_write_wait_out_a_paused_server(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    objects = store(s3, monkeypatch, retry_seconds=60)
    ref = objects.put("retry/before.json", encode_payload({"n": 1}))
    s3.pause()
    resumer = threading.Timer(4.0, s3.resume)
    resumer.start()
    try:
        started = time.monotonic()
        assert objects.get(ref) == encode_payload({"n": 1}).data
        waited = time.monotonic() - started
        assert waited >= 3.5, f"the read returned after {waited:.1f} s, while paused"
        assert retries(caplog) >= 2
        s3.pause()
        again = threading.Timer(3.0, s3.resume)
        again.start()
        written = objects.put("retry/during.json", encode_payload({"n": 2}))
        assert objects.get(written) == encode_payload({"n": 2}).data
    finally:
        resumer.cancel()
        s3.resume()


def test_a_server_that_stays_away_fails_after_the_retry_budget(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = store(s3, monkeypatch, retry_seconds=3)
    ref = objects.put("retry/away.json", encode_payload({"n": 3}))
    s3.pause()
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as failure:
            objects.get(ref)
        took = time.monotonic() - started
    finally:
        s3.resume()
    assert "timeout" in type(failure.value).__name__.lower() or "timed out" in str(
        failure.value).lower()
    assert 2 <= took < 3 + 1 + 3  # about the budget (no try starts past it), slack


def test_a_refusal_is_not_retried(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    objects = store(s3, monkeypatch, retry_seconds=60)
    missing = {"bucket": s3.bucket, "key": "retry/never-written.json", "size": 1,
               "sha256": "0" * 64}
    started = time.monotonic()
    with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404"):
        objects.get(missing)
    assert time.monotonic() - started < 5
    assert retries(caplog) == 0
