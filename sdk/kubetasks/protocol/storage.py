"""S3-compatible object storage for large payloads and outputs (boto3, imported only when an
object is really written or read).

Settings come from the environment:

| env var | meaning |
|---|---|
| KUBETASKS_S3_BUCKET | bucket for payloads and outputs (needed only when something is offloaded) |
| KUBETASKS_S3_ENDPOINT | endpoint URL of an S3-compatible server; unset: AWS |
| KUBETASKS_S3_REGION | region; unset: boto3's default |
| KUBETASKS_PRESIGN_EXPIRY | seconds a presigned URL stays valid (300) |
| KUBETASKS_S3_RETRY_SECONDS | how long an unreachable or failing (5xx) server is retried (60) |
| AWS_ACCESS_KEY_ID, ... | credentials, found by boto3 as usual |
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubetasks.errors import KubetasksError, MissingDependencyError, StorageNotConfiguredError
from kubetasks.protocol.payloads import CONTENT_TYPE, Encoded, verify

log = logging.getLogger("kubetasks.storage")

DEFAULT_PRESIGN_EXPIRY = 300
DEFAULT_RETRY_SECONDS = 60.0
# Per request: a server that accepts the connection and then says nothing (stopped, or
# overloaded) must not hold a worker for boto3's default of a minute per try.
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 15
T = TypeVar("T")


@dataclass(frozen=True)
class StorageSettings:
    """Where offloaded payloads and outputs go."""

    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    presign_expiry: int = DEFAULT_PRESIGN_EXPIRY
    retry_seconds: float = DEFAULT_RETRY_SECONDS

    @classmethod
    def from_env(cls) -> StorageSettings:
        expiry = os.environ.get("KUBETASKS_PRESIGN_EXPIRY", "").strip()
        try:
            presign_expiry = int(expiry) if expiry else DEFAULT_PRESIGN_EXPIRY
        except ValueError:
            raise KubetasksError(
                f"KUBETASKS_PRESIGN_EXPIRY={expiry!r} must be a whole number of seconds"
            ) from None
        retry = os.environ.get("KUBETASKS_S3_RETRY_SECONDS", "").strip()
        try:
            retry_seconds = float(retry) if retry else DEFAULT_RETRY_SECONDS
            if retry_seconds < 0:
                raise ValueError
        except ValueError:
            raise KubetasksError(
                f"KUBETASKS_S3_RETRY_SECONDS={retry!r} must be a number of seconds, 0 or more"
            ) from None
        return cls(
            bucket=os.environ.get("KUBETASKS_S3_BUCKET") or None,
            endpoint=os.environ.get("KUBETASKS_S3_ENDPOINT") or None,
            region=os.environ.get("KUBETASKS_S3_REGION") or None,
            presign_expiry=presign_expiry,
            retry_seconds=retry_seconds,
        )


def transient(exc: BaseException) -> bool:
    """A failure worth retrying: the server unreachable, silent or failing (5xx, throttled);
    not a refusal (403, 404, a bad request) that the same request would get again."""
    try:
        from botocore.exceptions import (
            ClientError,
            HTTPClientError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )
    except ImportError:  # no boto3: nothing reached S3, so nothing is worth retrying
        return False

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True  # refused, reset, timed out (connect or read)
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return int(status) >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout")
    return False


def payload_key(namespace: str, task_id: str) -> str:
    """Object key of a payload uploaded before its run exists (its name may be generated)."""
    return f"payloads/{namespace}/{task_id}/{uuid.uuid4().hex}.json"


def batch_items_key(namespace: str, task_id: str) -> str:
    """Object key of a batch's list of items, uploaded before the TaskBatch exists."""
    return f"batches/{namespace}/{task_id}/{uuid.uuid4().hex}.json"


def output_key(namespace: str, run_name: str, attempt: int) -> str:
    return f"outputs/{namespace}/{run_name}/attempt-{attempt}.json"


class ObjectStore:
    """Puts, gets and presigns JSON objects. One boto3 client, made on first use."""

    def __init__(self, settings: StorageSettings | None = None) -> None:
        self.settings = settings or StorageSettings.from_env()
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError as exc:
                    raise MissingDependencyError(
                        "this payload or output goes to object storage (S3), which needs "
                        "boto3: install it with pip install 'kubetasks[s3]'") from exc

                self._client = boto3.client(
                    "s3",
                    endpoint_url=self.settings.endpoint,
                    region_name=self.settings.region,
                    config=Config(signature_version="s3v4",
                                  # One try per call: _retrying does the retries, in
                                  # its own time budget.
                                  retries={"mode": "standard", "total_max_attempts": 1},
                                  connect_timeout=CONNECT_TIMEOUT,
                                  read_timeout=READ_TIMEOUT),
                )
            return self._client

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call``, again with backoff while it fails transiently, for up to
        ``retry_seconds``: an object store down for half a minute must not fail a trigger, or
        burn a run's attempts."""
        deadline = time.monotonic() + self.settings.retry_seconds
        delay = 0.5
        while True:
            try:
                return call()
            except Exception as exc:
                if not transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("object storage failed to %s (%s); retrying in %.1f s", what,
                            type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def put(self, key: str, encoded: Encoded) -> dict[str, Any]:
        """Upload ``encoded`` under ``key``; the ``ObjectRef`` (wire form) that names it."""
        bucket = self.settings.bucket
        if not bucket:
            raise StorageNotConfiguredError(
                f"{encoded.size:,} bytes must go to object storage (above the inline limit), "
                "but no bucket is configured: set KUBETASKS_S3_BUCKET (and "
                "KUBETASKS_S3_ENDPOINT for a non-AWS server) with credentials in AWS_* "
                "variables, or kubetasks.configure(storage=StorageSettings(...))")
        self._retrying(f"store s3://{bucket}/{key}", lambda: self._s3().put_object(
            Bucket=bucket, Key=key, Body=encoded.data, ContentType=CONTENT_TYPE))
        return {"bucket": bucket, "key": key, "size": encoded.size, "sha256": encoded.sha256,
                "contentType": CONTENT_TYPE}

    def get(self, ref: dict[str, Any]) -> bytes:
        """Download the object ``ref`` names and check its size and SHA-256."""
        def fetch() -> bytes:
            response = self._s3().get_object(Bucket=ref["bucket"], Key=ref["key"])
            body: bytes = response["Body"].read()
            return body

        data = self._retrying(f"read s3://{ref['bucket']}/{ref['key']}", fetch)
        verify(data, int(ref["size"]), str(ref["sha256"]), f"s3://{ref['bucket']}/{ref['key']}")
        return data

    def presign(self, ref: dict[str, Any], filename: str | None = None) -> str | None:
        """A GET URL for ``ref`` valid for ``presign_expiry`` seconds, or ``None`` (with a
        warning) when no credentials are available to sign it. With ``filename``, the
        server answers it as an attachment of that name (a browser saves it)."""
        s3 = self._s3()
        from botocore.exceptions import BotoCoreError

        params = {"Bucket": ref["bucket"], "Key": ref["key"]}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        try:
            url: str = s3.generate_presigned_url(
                "get_object", Params=params,
                ExpiresIn=self.settings.presign_expiry,
            )
        except BotoCoreError as exc:
            log.warning("cannot presign s3://%s/%s: %s", ref["bucket"], ref["key"], exc)
            return None
        return url
