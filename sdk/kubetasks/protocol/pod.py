"""What the operator and the in-pod worker agree on: labels, environment variables, exit
codes and the termination message. Both sides import these names from here."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# --- labels on Jobs and Pods -----------------------------------------------------------------
LABEL_PREFIX = "kubetasks.dev/"
LABEL_RUN = "kubetasks.dev/run"
LABEL_RUN_UID = "kubetasks.dev/run-uid"
LABEL_TASK = "kubetasks.dev/task"
LABEL_QUEUE = "kubetasks.dev/queue"
LABEL_CONCURRENCY_KEY = "kubetasks.dev/concurrency-key"
LABEL_ATTEMPT = "kubetasks.dev/attempt"
LABEL_BATCH = "kubetasks.dev/batch"
LABEL_BATCH_INDEX = "kubetasks.dev/batch-index"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# On the TaskRuns a TaskSchedule creates: the schedule's name, and the tick's nominal time.
LABEL_SCHEDULE = "kubetasks.dev/schedule"
ANNOTATION_SCHEDULE_TIME = "kubetasks.dev/schedule-time"
# On TaskSchedules: "declarative" (from @task(cron=...), owned by `kubetasks deploy`) or
# "imperative" (schedules.create); and the digest of the deduplication key.
LABEL_SCHEDULE_TYPE = "kubetasks.dev/schedule-type"
SCHEDULE_DECLARATIVE = "declarative"
SCHEDULE_IMPERATIVE = "imperative"
LABEL_DEDUPLICATION_KEY = "kubetasks.dev/deduplication-key"
MANAGED_BY = "kubetasks"

# --- environment of an attempt's container ---------------------------------------------------
ENV_RUN_NAME = "KUBETASKS_RUN_NAME"
ENV_RUN_UID = "KUBETASKS_RUN_UID"
ENV_NAMESPACE = "KUBETASKS_NAMESPACE"
ENV_TASK = "KUBETASKS_TASK"
ENV_ENTRYPOINT = "KUBETASKS_ENTRYPOINT"
ENV_ATTEMPT = "KUBETASKS_ATTEMPT"
ENV_POD_NAME = "KUBETASKS_POD_NAME"
# Where the worker writes its result: the container's terminationMessagePath on a real
# kubelet; the local node agent passes its own file in this variable.
ENV_TERMINATION_MESSAGE_PATH = "KUBETASKS_TERMINATION_MESSAGE_PATH"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

# --- exit codes of `kubetasks worker` --------------------------------------------------------
EXIT_SUCCESS = 0
EXIT_FAILURE = 1  # the task raised: retry per policy
EXIT_ABORT = 65  # AbortTaskRunError; a payload failing its type or integrity check
EXIT_INTERNAL = 70  # the worker could not run the task (API, S3, import): retry
# Killed by SIGKILL (128 + 9), the code an out-of-memory kill also gives.
EXIT_SIGKILL = 137
# Stopped by SIGTERM (128 + 15): cancel, deadline or node drain; the task saw a cancellation.
EXIT_TERMINATED = 143

# The kubelet keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096


def label_value(text: str) -> str:
    """A label-safe stand-in for any string (concurrency keys may be long or exotic):
    the text itself when it is a valid label value, else a short stable hash."""
    ok = (
        0 < len(text) <= 63
        and text[0].isalnum()
        and text[-1].isalnum()
        and all(c.isalnum() or c in "-_." for c in text)
        and text.isascii()
    )
    return text if ok else "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def encode_termination_message(result: dict[str, Any]) -> str:
    """Compact JSON; the caller keeps it under ``TERMINATION_MESSAGE_LIMIT``."""
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False)


def decode_termination_message(text: str | None) -> dict[str, Any] | None:
    """The worker's result, or ``None`` when the message is not one of ours."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or "ok" not in value:
        return None
    return value
