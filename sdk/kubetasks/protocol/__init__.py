"""The wire contract between the SDK, the in-pod worker and the operator.

Each side imports these names from here and from nowhere else in the SDK, so that what
travels between them (labels, environment variables, exit codes, termination messages,
idempotency key names, payload encodings, the object store's key layout, log lines) is
defined once:

- :mod:`~kubetasks.protocol.pod`: labels, environment, exit codes, termination message;
- :mod:`~kubetasks.protocol.idempotency`: key digests, run names, generations, release;
- :mod:`~kubetasks.protocol.cron`: cron expressions and time zones of schedules, ticks;
- :mod:`~kubetasks.protocol.deduplication`: a schedule's deduplication digest and name;
- :mod:`~kubetasks.protocol.payloads`: JSON encoding, size limits, integrity;
- :mod:`~kubetasks.protocol.storage`: the S3 object store (boto3 is imported on first use);
- :mod:`~kubetasks.protocol.logformat`: JSON log lines.

Modules here import only the standard library, pydantic, the cron libraries (cronsim,
cron-descriptor) and :mod:`kubetasks.errors`.
"""
