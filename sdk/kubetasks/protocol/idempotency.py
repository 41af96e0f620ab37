"""Idempotency keys on the wire: the digest a key is turned into, the run names of its
generations, the labels every run of a key carries, and when a run releases its key.
Shared by the SDK (which creates runs by these names) and the operator (which counts
generations in batches); the functions users call are in :mod:`kubetasks.idempotency_keys`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["run", "attempt", "global"]
SCOPES: tuple[Scope, ...] = ("run", "attempt", "global")

LABEL_KEY = "kubetasks.dev/idempotency-key"
LABEL_GENERATION = "kubetasks.dev/idempotency-generation"
MAX_KEY_LENGTH = 256
DIGEST_LENGTH = 16
RELEASING_PHASES = frozenset({"Failed", "Crashed", "TimedOut", "Expired", "Canceled"})
"""A run that ended in one of these phases no longer holds its idempotency key."""


@dataclass(frozen=True)
class IdempotencyKey:
    """A key and the scope it is unique in, with the run (and attempt) that scope names.

    Made by :func:`kubetasks.idempotency_keys.create`; pass it as ``idempotency_key=`` to
    any trigger.
    """

    key: str
    scope: Scope
    parent_uid: str | None = None
    attempt: int | None = None

    def digest(self, task_id: str) -> str:
        """What the run's name and label are derived from: unique per task, scope and key."""
        material = json.dumps([task_id, self.scope, self.key, self.parent_uid or "",
                               self.attempt or 0], separators=(",", ":"))
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def __str__(self) -> str:
        return self.key


# --- names and release (pure; used when a run is triggered) ----------------------------------


def run_name(task_id: str, digest: str, generation: int) -> str:
    """The name of the ``generation``-th run of a key.

    >>> run_name("send-email", "0123456789abcdef0123", 0)
    'send-email-ik-0123456789abcdef'
    >>> run_name("send-email", "0123456789abcdef0123", 2)
    'send-email-ik-0123456789abcdef-r2'
    """
    base = f"{task_id}-ik-{digest[:DIGEST_LENGTH]}"
    return base if generation == 0 else f"{base}-r{generation}"


def generation_of(run: Mapping[str, Any]) -> int:
    labels = (run.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get(LABEL_GENERATION, "0"))
    except ValueError:
        return 0


def key_expires_at(run: Mapping[str, Any]) -> dt.datetime | None:
    """When the run's key stops holding: creation time plus idempotencyKeyTTLSeconds."""
    created = (run.get("metadata") or {}).get("creationTimestamp")
    ttl = (run.get("spec") or {}).get("idempotencyKeyTTLSeconds")
    if not created or not isinstance(ttl, int):
        return None
    start = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return start + dt.timedelta(seconds=ttl)


def key_released(run: Mapping[str, Any], now: dt.datetime) -> bool:
    """True when ``run`` no longer holds its idempotency key: it ended without completing,
    its key's TTL has passed, or it is being deleted."""
    if (run.get("metadata") or {}).get("deletionTimestamp"):
        return True
    if ((run.get("status") or {}).get("phase")) in RELEASING_PHASES:
        return True
    expires = key_expires_at(run)
    return expires is not None and now >= expires
