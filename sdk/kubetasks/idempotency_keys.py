"""Idempotency keys: the same key (in its scope, within its TTL) returns the existing run and
creates nothing.

How it is atomic without Redis: the run's *name* is derived from the key. The first run of a
key is named ``<task>-ik-<digest>``, where the digest is a SHA-256 of the task id, the scope
and the key (plus the parent run's uid for scope ``run``, and its attempt for ``attempt``).
Creating an object whose name exists fails with 409 in the API server, so of twenty
concurrent triggers exactly one creates the run and the others read it.

A key is *released* when its run ended without completing (Failed, Crashed, TimedOut,
Expired or Canceled: as in Trigger.dev, a failed run does not hold its key) or when the key's
TTL has passed (counted from the run's creation). The next trigger then creates the next
*generation* of the key, ``<task>-ik-<digest>-r<n>``: a new name, so the same 409 race
decides the winner again, and the old run stays for inspection. Every run of a key carries
the label ``kubetasks.dev/idempotency-key`` (the digest) and
``kubetasks.dev/idempotency-generation`` so the latest generation is found with one list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubetasks.context import current_context
from kubetasks.errors import InvalidOptionError

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

    Made by :func:`create`; pass it as ``idempotency_key=`` to any trigger.
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


def create(key: str | Sequence[str], scope: Scope = "run") -> IdempotencyKey:
    """An idempotency key. Inside a task the default scope ``"run"`` makes it unique to the
    current run, so a retried parent does not trigger its children again; ``"attempt"``
    makes it unique to the attempt; ``"global"`` to the task. Outside a task every scope is
    global. No I/O: it only computes.

    >>> from kubetasks import idempotency_keys
    >>> key = idempotency_keys.create(["order", "1234"], scope="global")
    >>> key.key
    'order-1234'
    """
    if isinstance(key, str):
        text = key
    else:
        if not isinstance(key, Iterable) or isinstance(key, bytes | bytearray | Mapping):
            raise InvalidOptionError(
                f"idempotency key must be a string or a list of strings, got {key!r}")
        parts = list(key)
        if not parts or not all(isinstance(p, str) for p in parts):
            raise InvalidOptionError(f"idempotency key parts must be strings, got {key!r}")
        text = "-".join(parts)
    if not 1 <= len(text) <= MAX_KEY_LENGTH:
        raise InvalidOptionError(
            f"idempotency key has {len(text)} characters; use 1 to {MAX_KEY_LENGTH} (hash a "
            "longer value yourself, e.g. hashlib.sha256(...).hexdigest())")
    if scope not in SCOPES:
        raise InvalidOptionError(f"idempotency key scope {scope!r}: use one of "
                                 f"{', '.join(SCOPES)}")
    ctx = current_context()
    if ctx is None or scope == "global":
        return IdempotencyKey(text, "global")
    if scope == "attempt":
        return IdempotencyKey(text, "attempt", ctx.run.uid, ctx.attempt.number)
    return IdempotencyKey(text, "run", ctx.run.uid)


def resolve(value: str | IdempotencyKey) -> IdempotencyKey:
    """The key a trigger uses: a plain string is scoped like ``create(value)`` (to the
    current run inside a task, global elsewhere), as in Trigger.dev."""
    if isinstance(value, IdempotencyKey):
        return value
    if isinstance(value, str):
        return create(value)
    raise InvalidOptionError(
        f"idempotency_key must be a string or idempotency_keys.create(...), got {value!r}")


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
