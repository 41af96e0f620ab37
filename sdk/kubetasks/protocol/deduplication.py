"""Deduplication keys of TaskSchedules on the wire: the digest a key is labelled with and
the schedule name derived from it. Pure; the SDK's ``schedules.create`` uses them.

Why the name comes from the key alone: two ``schedules.create`` calls with the same key
then create an object of the same name, the API server answers the second with 409, and
that caller updates the schedule the first one made. No list, no lock, no duplicate.
"""

from __future__ import annotations

import hashlib
import re

MAX_KEY_LENGTH = 256
DIGEST_LENGTH = 32
NAME_DIGEST_LENGTH = 16
MAX_NAME_LENGTH = 63
"""A TaskSchedule's name must fit a label value: every run of it is labelled with it."""
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def deduplication_digest(key: str) -> str:
    """What the ``kubetasks.dev/deduplication-key`` label holds: a SHA-256 of the key, cut
    to 32 hex characters.

    >>> deduplication_digest("user-42-nightly")
    '0d469107a37c0f5d90c2d77dea87b487'
    """
    return hashlib.sha256(key.encode()).hexdigest()[:DIGEST_LENGTH]


def schedule_name(key: str) -> str:
    """The TaskSchedule name of a deduplication key: a readable slug of the key and 16 hex
    characters of its digest, a DNS label of at most 63 characters.

    >>> schedule_name("User 42 / nightly report")
    'user-42-nightly-report-ee5453bab482254f'
    """
    digest = deduplication_digest(key)[:NAME_DIGEST_LENGTH]
    room = MAX_NAME_LENGTH - NAME_DIGEST_LENGTH - 1
    slug = _NOT_SLUG.sub("-", key.lower()).strip("-")[:room].strip("-")
    return f"{slug}-{digest}" if slug else f"schedule-{digest}"
