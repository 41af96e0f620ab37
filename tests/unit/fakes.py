"""Fakes shared by the unit tests."""

from __future__ import annotations

from typing import Any

from kubetasks.protocol.payloads import Encoded
from kubetasks.protocol.storage import ObjectStore, StorageSettings
from kubetasks_operator.adapters.slots import Grant, SlotId, SlotLimits


class MemoryStore(ObjectStore):
    """Object storage in a dict: ``put`` keeps the bytes, nothing is uploaded."""

    def __init__(self) -> None:
        super().__init__(StorageSettings(bucket="bucket"))
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, encoded: Encoded) -> dict[str, Any]:
        self.objects[key] = encoded.data
        return {"bucket": "bucket", "key": key, "size": encoded.size,
                "sha256": encoded.sha256, "contentType": "application/json"}


class FakeSlots:
    """Queue slots without Redis: every request is granted."""

    def __init__(self) -> None:
        self.held: dict[str, SlotId] = {}

    async def acquire(self, run_id: str, slot: SlotId, limits: SlotLimits) -> Grant:
        self.held[run_id] = slot
        return Grant.GRANTED

    async def release(self, run_id: str, slot: SlotId) -> None:
        self.held.pop(run_id, None)

    async def rebuild(self, holders: dict[str, SlotId]) -> None:
        self.held = dict(holders)

    async def healthy(self) -> bool:
        return True
