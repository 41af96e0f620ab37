"""S3-compatible object storage for large payloads and outputs (boto3, imported only when an
object is really written or read).

Settings come from the environment:

| env var | meaning |
|---|---|
| KUBETASKS_S3_BUCKET | bucket for payloads and outputs (needed only when something is offloaded) |
| KUBETASKS_S3_ENDPOINT | endpoint URL of an S3-compatible server; unset: AWS |
| KUBETASKS_S3_REGION | region; unset: boto3's default |
| KUBETASKS_PRESIGN_EXPIRY | seconds a presigned URL stays valid (300) |
| AWS_ACCESS_KEY_ID, ... | credentials, found by boto3 as usual |
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from kubetasks.errors import KubetasksError, StorageNotConfiguredError
from kubetasks.payloads import CONTENT_TYPE, Encoded, verify

log = logging.getLogger("kubetasks.storage")

DEFAULT_PRESIGN_EXPIRY = 300


@dataclass(frozen=True)
class StorageSettings:
    """Where offloaded payloads and outputs go."""

    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    presign_expiry: int = DEFAULT_PRESIGN_EXPIRY

    @classmethod
    def from_env(cls) -> StorageSettings:
        expiry = os.environ.get("KUBETASKS_PRESIGN_EXPIRY", "").strip()
        try:
            presign_expiry = int(expiry) if expiry else DEFAULT_PRESIGN_EXPIRY
        except ValueError:
            raise KubetasksError(
                f"KUBETASKS_PRESIGN_EXPIRY={expiry!r} must be a whole number of seconds"
            ) from None
        return cls(
            bucket=os.environ.get("KUBETASKS_S3_BUCKET") or None,
            endpoint=os.environ.get("KUBETASKS_S3_ENDPOINT") or None,
            region=os.environ.get("KUBETASKS_S3_REGION") or None,
            presign_expiry=presign_expiry,
        )


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
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "s3",
                    endpoint_url=self.settings.endpoint,
                    region_name=self.settings.region,
                    config=Config(signature_version="s3v4", retries={"mode": "standard"}),
                )
            return self._client

    def put(self, key: str, encoded: Encoded) -> dict[str, Any]:
        """Upload ``encoded`` under ``key``; the ``ObjectRef`` (wire form) that names it."""
        bucket = self.settings.bucket
        if not bucket:
            raise StorageNotConfiguredError(
                f"{encoded.size:,} bytes must go to object storage (above the inline limit), "
                "but no bucket is configured: set KUBETASKS_S3_BUCKET (and "
                "KUBETASKS_S3_ENDPOINT for a non-AWS server) with credentials in AWS_* "
                "variables, or kubetasks.configure(storage=StorageSettings(...))")
        self._s3().put_object(
            Bucket=bucket, Key=key, Body=encoded.data, ContentType=CONTENT_TYPE)
        return {"bucket": bucket, "key": key, "size": encoded.size, "sha256": encoded.sha256,
                "contentType": CONTENT_TYPE}

    def get(self, ref: dict[str, Any]) -> bytes:
        """Download the object ``ref`` names and check its size and SHA-256."""
        response = self._s3().get_object(Bucket=ref["bucket"], Key=ref["key"])
        data: bytes = response["Body"].read()
        verify(data, int(ref["size"]), str(ref["sha256"]), f"s3://{ref['bucket']}/{ref['key']}")
        return data

    def presign(self, ref: dict[str, Any]) -> str | None:
        """A GET URL for ``ref`` valid for ``presign_expiry`` seconds, or ``None`` (with a
        warning) when no credentials are available to sign it."""
        from botocore.exceptions import BotoCoreError

        try:
            url: str = self._s3().generate_presigned_url(
                "get_object", Params={"Bucket": ref["bucket"], "Key": ref["key"]},
                ExpiresIn=self.settings.presign_expiry,
            )
        except BotoCoreError as exc:
            log.warning("cannot presign s3://%s/%s: %s", ref["bucket"], ref["key"], exc)
            return None
        return url
