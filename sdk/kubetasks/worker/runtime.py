"""``kubetasks worker``: the entrypoint of every attempt's pod.

It reads its own TaskRun (named by the ``KUBETASKS_*`` variables the operator sets), fetches
the payload (checking size and SHA-256 when it was offloaded), imports the task from the
Task's entrypoint (``module:function``), runs it with a :class:`Context`, uploads a large
output, writes a small JSON termination message and exits with a code that tells the
operator what happened:

| exit | meaning | the operator |
|---|---|---|
| 0 | the task returned | Completed, output copied to the status |
| 1 | the task raised | retries per the retry policy |
| 65 | the task raised AbortTaskRunError, or the payload does not fit its type | Failed at once |
| 70 | the worker could not run the task (run, payload or import unavailable) | retries |
| 143 | SIGTERM: canceled, past its max duration, or the node drains | the phase it decided |

SIGTERM reaches the task as a cancellation it can observe: ``TaskRunCanceledError`` raised in
a sync task (a BaseException, so ``finally`` runs and ``except Exception`` does not swallow
it), ``asyncio.CancelledError`` in an async one, and ``ctx.cancelled`` set in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kubetasks._internal.client import Client, Json, KubeApi, use_client
from kubetasks.context import AttemptInfo, Context, RunInfo, TaskInfo, running
from kubetasks.errors import (
    AbortTaskRunError,
    ApiError,
    InvalidPayloadError,
    KubetasksError,
    PayloadIntegrityError,
    TaskNotRegisteredError,
    TaskRunCanceledError,
)
from kubetasks.handles import parse_time, read_run
from kubetasks.protocol.logformat import log_format_from, stderr_handler
from kubetasks.protocol.payloads import decode_json, encode_output, validate_as
from kubetasks.protocol.pod import (
    DEFAULT_TERMINATION_MESSAGE_PATH,
    ENV_ATTEMPT,
    ENV_ENTRYPOINT,
    ENV_NAMESPACE,
    ENV_POD_NAME,
    ENV_RUN_NAME,
    ENV_RUN_UID,
    ENV_TASK,
    ENV_TERMINATION_MESSAGE_PATH,
    EXIT_ABORT,
    EXIT_FAILURE,
    EXIT_INTERNAL,
    EXIT_SUCCESS,
    EXIT_TERMINATED,
    TERMINATION_MESSAGE_LIMIT,
    encode_termination_message,
)
from kubetasks.protocol.storage import output_key
from kubetasks.tasks import Task

log = logging.getLogger("kubetasks.worker")

MAX_ERROR_MESSAGE = 1024
CANCELED_MESSAGE = ("the pod was asked to stop (SIGTERM): the run was canceled, ran past its "
                    "max duration, or its node is draining")


@dataclass(frozen=True)
class WorkerEnv:
    """What the operator tells the attempt's container about itself."""

    run_name: str
    run_uid: str
    namespace: str
    task_id: str
    entrypoint: str
    attempt: int
    pod_name: str | None
    message_path: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerEnv:
        missing = [name for name in (ENV_RUN_NAME, ENV_RUN_UID, ENV_NAMESPACE, ENV_TASK,
                                     ENV_ENTRYPOINT, ENV_ATTEMPT) if not environ.get(name)]
        if missing:
            raise KubetasksError(
                f"kubetasks worker runs inside an attempt's pod, which sets {', '.join(missing)}"
                "; these are missing (run tasks by triggering them, not by starting the worker)")
        return cls(
            run_name=environ[ENV_RUN_NAME],
            run_uid=environ[ENV_RUN_UID],
            namespace=environ[ENV_NAMESPACE],
            task_id=environ[ENV_TASK],
            entrypoint=environ[ENV_ENTRYPOINT],
            attempt=int(environ[ENV_ATTEMPT]),
            pod_name=environ.get(ENV_POD_NAME) or None,
            message_path=environ.get(ENV_TERMINATION_MESSAGE_PATH)
            or DEFAULT_TERMINATION_MESSAGE_PATH,
        )


@dataclass(frozen=True)
class Outcome:
    """How the attempt ended: the exit code and the termination message."""

    code: int
    message: dict[str, Any]


def error_info(exc: BaseException, stack_limit: int = 32768) -> dict[str, str]:
    """{type, message, stack} of an exception; the stack keeps its end (the raise site)."""
    stack = "".join(traceback.format_exception(exc))
    return {
        "type": type(exc).__name__[:256],
        "message": str(exc)[:MAX_ERROR_MESSAGE],
        "stack": stack[-stack_limit:],
    }


def failure(code: int, exc: BaseException) -> Outcome:
    return Outcome(code, {"ok": False, "error": error_info(exc)})


def fit_message(message: dict[str, Any], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The message as JSON in at most ``limit`` bytes: an error's stack is cut first (its
    end, the raise site, is kept), then its message (its start is kept)."""

    def size(candidate: dict[str, Any]) -> int:
        return len(encode_termination_message(candidate).encode())

    error = message.get("error")
    if size(message) <= limit or not isinstance(error, dict):
        return encode_termination_message(message)
    error = dict(error)
    for field, keep_end in (("stack", True), ("message", False)):
        value = str(error.get(field, ""))

        def cut(n: int, value: str = value, keep_end: bool = keep_end) -> str:
            if n >= len(value):
                return value
            return "…" + value[len(value) - n:] if keep_end else value[:n] + "…"

        # The longest cut that fits; JSON escapes make bytes and characters differ.
        low, high = 0, len(value)
        while low < high:
            mid = (low + high + 1) // 2
            if size({**message, "error": {**error, field: cut(mid)}}) <= limit:
                low = mid
            else:
                high = mid - 1
        error[field] = cut(low) if low else ""
        if size({**message, "error": error}) <= limit:
            break
    return encode_termination_message({**message, "error": error})


def load_task(entrypoint: str, task_id: str) -> Task[Any, Any]:
    """The task the entrypoint ``module:attribute`` names: a ``@task`` or a plain function."""
    module_name, _, attr_path = entrypoint.partition(":")
    if not module_name or not attr_path:
        raise TaskNotRegisteredError(
            f"entrypoint {entrypoint!r} must be module:function, e.g. myapp.tasks:send_email")
    # Like `python -m`: code copied into the image's working directory is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TaskNotRegisteredError(
                f"entrypoint {entrypoint!r}: {module_name} has no {attr_path}; deploy again "
                "(`kubetasks deploy`) so the Task names an existing function") from None
    if isinstance(target, Task):
        return target
    if callable(target):
        return Task(task_id, target)
    raise TaskNotRegisteredError(f"entrypoint {entrypoint!r} names a {type(target).__name__}, "
                                 "not a task function")


def load_payload(client: Client, run: Json, payload_type: Any) -> Any:
    spec = run.get("spec") or {}
    ref = spec.get("payloadRef")
    value = (decode_json(client.storage.get(ref), "the payload") if ref
             else spec.get("payload"))
    from pydantic import ValidationError

    try:
        return validate_as(value, payload_type)
    except ValidationError as exc:
        raise InvalidPayloadError(
            f"the payload does not fit the task's payload type {payload_type!r}: {exc}"
        ) from None


def make_context(env: WorkerEnv, run: Json, task: Task[Any, Any]) -> Context:
    meta, spec = run.get("metadata") or {}, run.get("spec") or {}
    parent = spec.get("parent") or {}
    info = RunInfo(
        id=f"{env.namespace}/{env.run_name}",
        name=env.run_name,
        namespace=env.namespace,
        uid=env.run_uid,
        tags=list(spec.get("tags") or []),
        metadata=dict(spec.get("metadata") or {}),
        idempotency_key=spec.get("idempotencyKey"),
        created_at=parse_time(meta.get("creationTimestamp")),
        parent_id=f"{env.namespace}/{parent['name']}" if parent.get("name") else None,
    )
    return Context(info, AttemptInfo(env.attempt, env.pod_name),
                   TaskInfo(env.task_id, env.entrypoint),
                   logging.getLogger(f"kubetasks.task.{env.task_id}"))


def execute(task: Task[Any, Any], payload: Any, ctx: Context) -> tuple[str, Any]:
    """Run the task function in this (main) thread: ("ok", output), ("abort", exc),
    ("canceled", exc) or ("error", exc)."""
    try:
        output = (_run_async if task.is_async else _run_sync)(task, payload, ctx)
    except AbortTaskRunError as exc:
        return "abort", exc
    except (TaskRunCanceledError, asyncio.CancelledError) as exc:
        return "canceled", exc
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        if ctx.is_cancelled():
            return "canceled", exc
        return "error", exc
    return "ok", output


def _run_sync(task: Task[Any, Any], payload: Any, ctx: Context) -> Any:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if ctx.cancelled.is_set():
            return  # asked once; let the task's cleanup finish
        ctx.cancelled.set()
        raise TaskRunCanceledError(CANCELED_MESSAGE)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return task.fn(payload, ctx)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_async(task: Task[Any, Any], payload: Any, ctx: Context) -> Any:
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None

        def on_sigterm() -> None:
            if not ctx.cancelled.is_set():
                ctx.cancelled.set()
                current.cancel(CANCELED_MESSAGE)

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await task.fn(payload, ctx)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


def finish(client: Client, env: WorkerEnv, kind: str, value: Any) -> Outcome:
    """The exit code and termination message for how the task ended; a large output is
    uploaded and referenced (``outputRef``)."""
    if kind == "abort":
        return failure(EXIT_ABORT, value)
    if kind == "canceled":
        return Outcome(EXIT_TERMINATED, {"ok": False, "error": {
            "type": "TaskRunCanceledError", "message": CANCELED_MESSAGE}})
    if kind == "error":
        return failure(EXIT_FAILURE, value)
    try:
        encoded = encode_output(value)
    except KubetasksError as exc:  # too large, or not JSON: the task's fault, retried
        return failure(EXIT_FAILURE, exc)
    inline = {"ok": True, "output": encoded.value}
    fits = (encoded.size <= client.inline_limit
            and len(encode_termination_message(inline).encode()) <= TERMINATION_MESSAGE_LIMIT)
    if fits:
        return Outcome(EXIT_SUCCESS, inline)
    try:
        ref = client.storage.put(output_key(env.namespace, env.run_name, env.attempt), encoded)
    except Exception as exc:
        log.exception("could not upload the output (%d bytes)", encoded.size)
        return failure(EXIT_INTERNAL, exc)
    return Outcome(EXIT_SUCCESS, {"ok": True, "outputRef": ref})


def write_message(path: str, message: dict[str, Any]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(fit_message(message))
    except OSError as exc:
        log.error("cannot write the termination message to %s: %s", path, exc)


# How long the worker waits for an API server that is restarting or overloaded before it
# gives up on the attempt (exit 70): a control-plane restart must not cost a run an attempt.
START_RETRY_SECONDS = 60.0


def read_own_run(client: Client, namespace: str, name: str,
                 budget: float = START_RETRY_SECONDS) -> Json:
    """The attempt's TaskRun, read again with backoff while the API server cannot be
    reached or answers 5xx or 429, for up to ``budget`` seconds."""
    import urllib3

    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            return read_run(client, namespace, name)
        except (urllib3.exceptions.HTTPError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status < 500 and exc.status != 429:
                raise
            if time.monotonic() + delay > deadline:
                raise
            log.warning("the API server did not answer (%s); reading the run again in "
                        "%.1f s", str(exc).splitlines()[0][:200], delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def run_attempt(environ: Mapping[str, str]) -> int:
    """Everything the worker does; returns the exit code."""
    try:
        env = WorkerEnv.from_environ(environ)
    except KubetasksError as exc:
        log.error("%s", exc)
        return EXIT_INTERNAL
    try:
        client = Client(KubeApi.from_environment(namespace=env.namespace))
        use_client(client)
        run = read_own_run(client, env.namespace, env.run_name)
        if (run.get("metadata") or {}).get("uid") != env.run_uid:
            raise KubetasksError(f"TaskRun {env.namespace}/{env.run_name} was replaced "
                                 "(its uid changed); this attempt belongs to the old one")
        task = load_task(env.entrypoint, env.task_id)
        payload = load_payload(client, run, task.payload_type)
    except (InvalidPayloadError, PayloadIntegrityError) as exc:
        # Not the task's fault and no retry can mend it: the payload does not fit the task's
        # type, or the stored object is not the one the trigger recorded (size, SHA-256).
        log.error("could not start the task: %s", exc)
        outcome = failure(EXIT_ABORT, exc)
        write_message(env.message_path, outcome.message)
        return outcome.code
    except Exception as exc:
        log.exception("could not start the task")
        outcome = failure(EXIT_INTERNAL, exc)
        write_message(env.message_path, outcome.message)
        return outcome.code

    ctx = make_context(env, run, task)
    log.info("run %s attempt %d: %s", ctx.run.id, env.attempt, env.entrypoint)
    with running(ctx, process_wide=True):
        kind, value = execute(task, payload, ctx)
    if kind == "error":
        log.error("run %s attempt %d failed", ctx.run.id, env.attempt, exc_info=value)
    elif kind != "ok":
        log.warning("run %s attempt %d ended: %s: %s", ctx.run.id, env.attempt, kind, value)
    # Cancellation: the pod has seconds left; finish quickly and never hang on S3.
    outcome = finish(client, env, kind, value)
    write_message(env.message_path, outcome.message)
    log.info("run %s attempt %d exits %d", ctx.run.id, env.attempt, outcome.code)
    return outcome.code


def main() -> None:
    """Run one attempt and exit with its code. Logs go to stderr, as JSON lines if
    ``KUBETASKS_LOG_FORMAT=json``."""
    logging.basicConfig(level=logging.INFO,
                        handlers=[stderr_handler(log_format_from(os.environ))])
    code = run_attempt(os.environ)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stdout.flush()
    # Threads the task left behind must not keep the pod alive.
    if threading.active_count() > 1:
        os._exit(code)
    sys.exit(code)
