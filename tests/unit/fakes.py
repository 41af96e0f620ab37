"""Fakes shared by the SDK's unit tests."""

from __future__ import annotations

from typing import Any

from kubetasks.payloads import Encoded
from kubetasks.storage import ObjectStore, StorageSettings


class MemoryStore(ObjectStore):
    """Object storage in a dict: ``put`` keeps the bytes, nothing is uploaded."""

    def __init__(self) -> None:
        super().__init__(StorageSettings(bucket="bucket"))
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, encoded: Encoded) -> dict[str, Any]:
        self.objects[key] = encoded.data
        return {"bucket": "bucket", "key": key, "size": encoded.size,
                "sha256": encoded.sha256, "contentType": "application/json"}
