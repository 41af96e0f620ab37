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

from collections.abc import Iterable, Mapping, Sequence

from kubetasks.context import current_context
from kubetasks.errors import InvalidOptionError
from kubetasks.protocol.idempotency import (
    LABEL_GENERATION,
    LABEL_KEY,
    MAX_KEY_LENGTH,
    SCOPES,
    IdempotencyKey,
    Scope,
    generation_of,
    key_expires_at,
    key_released,
    run_name,
)

__all__ = [
    "LABEL_GENERATION",
    "LABEL_KEY",
    "IdempotencyKey",
    "Scope",
    "create",
    "generation_of",
    "key_expires_at",
    "key_released",
    "resolve",
    "run_name",
]


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
