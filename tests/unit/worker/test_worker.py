"""The worker's pure parts: how a task's end becomes an exit code and a termination message,
running sync and async tasks (with SIGTERM), and loading entrypoints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from kubetasks import AbortTaskRunError, Context, StorageSettings, TaskRunCanceledError
from kubetasks._internal.client import Client
from kubetasks.context import AttemptInfo, RunInfo, TaskInfo
from kubetasks.errors import TaskNotRegisteredError
from kubetasks.protocol.payloads import Encoded
from kubetasks.protocol.pod import TERMINATION_MESSAGE_LIMIT
from kubetasks.protocol.storage import ObjectStore
from kubetasks.tasks import Task
from kubetasks.worker.runtime import WorkerEnv, execute, finish, fit_message, load_task, run_attempt

ENV = WorkerEnv("r1", "uid-1", "ns", "t", "m:f", 2, "r1-2-abc", "/dev/null")


class MemoryStore(ObjectStore):
    def __init__(self, bucket: str | None = "bucket") -> None:
        super().__init__(StorageSettings(bucket=bucket))
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, encoded: Encoded) -> dict[str, Any]:
        if not self.settings.bucket:
            return super().put(key, encoded)
        self.objects[key] = encoded.data
        return {"bucket": "bucket", "key": key, "size": encoded.size,
                "sha256": encoded.sha256}


def client(bucket: str | None = "bucket") -> Client:
    return Client(kube=None, storage=MemoryStore(bucket), inline_limit=32 * 1024)  # type: ignore[arg-type]


def ctx() -> Context:
    return Context(RunInfo("ns/r1", "r1", "ns", "uid-1"), AttemptInfo(2), TaskInfo("t", "m:f"))


def plain(payload: Any, ctx: Context) -> Any:
    return payload


# --- exit codes and messages -----------------------------------------------------------------


def test_a_small_output_is_inline_in_the_message() -> None:
    outcome = finish(client(), ENV, "ok", {"sent": True})
    assert (outcome.code, outcome.message) == (0, {"ok": True, "output": {"sent": True}})


def test_an_output_above_the_message_limit_is_uploaded_and_referenced() -> None:
    c = client()
    outcome = finish(c, ENV, "ok", {"data": "x" * 5000})
    assert outcome.code == 0
    ref = outcome.message["outputRef"]
    assert ref["key"] == "outputs/ns/r1/attempt-2.json"
    assert json.loads(c.storage.objects[ref["key"]]) == {"data": "x" * 5000}  # type: ignore[attr-defined]


def test_nested_nulls_stay_inline_the_operator_keeps_them() -> None:
    for bucket_client in (client(), client(bucket=None)):
        assert finish(bucket_client, ENV, "ok", {"a": None}).message == {
            "ok": True, "output": {"a": None}}


def test_a_large_output_without_a_bucket_is_an_internal_error() -> None:
    outcome = finish(client(bucket=None), ENV, "ok", "x" * 5000)
    assert outcome.code == 70
    assert outcome.message["error"]["type"] == "StorageNotConfiguredError"
    assert "KUBETASKS_S3_BUCKET" in outcome.message["error"]["message"]


def test_failures_have_distinct_codes() -> None:
    assert finish(client(), ENV, "error", ValueError("bad")).code == 1
    abort = finish(client(), ENV, "abort", AbortTaskRunError("stop"))
    assert abort.code == 65
    assert abort.message["error"]["type"] == "AbortTaskRunError"
    assert abort.message["error"]["message"] == "stop"
    canceled = finish(client(), ENV, "canceled", TaskRunCanceledError("x"))
    assert canceled.code == 143
    unserialisable = finish(client(), ENV, "ok", object())
    assert unserialisable.code == 1
    assert unserialisable.message["error"]["type"] == "PayloadNotSerializableError"


def test_the_message_always_fits_keeping_the_end_of_the_stack() -> None:
    stack = "".join(f"  frame {i}\n" for i in range(5000)) + "ValueError: the real cause"
    message = {"ok": False, "error": {"type": "ValueError", "message": "m" * 3000,
                                      "stack": stack}}
    text = fit_message(message)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    decoded = json.loads(text)
    assert decoded["error"]["type"] == "ValueError"
    assert decoded["error"]["stack"].endswith("ValueError: the real cause")
    small = {"ok": True, "output": [1, 2]}
    assert json.loads(fit_message(small)) == small
    only_message = {"ok": False, "error": {"type": "E", "message": "é" * 5000}}
    assert len(fit_message(only_message).encode()) <= TERMINATION_MESSAGE_LIMIT


# --- running tasks ---------------------------------------------------------------------------


def sync_task(fn: Any) -> Task[Any, Any]:
    return Task("t", fn)


def test_execute_sync_outcomes() -> None:
    def ok(payload: Any, ctx: Context) -> Any:
        return payload["x"] + ctx.attempt.number

    def boom(payload: Any, ctx: Context) -> Any:
        raise ValueError("boom")

    def abort(payload: Any, ctx: Context) -> Any:
        raise AbortTaskRunError("no")

    assert execute(sync_task(ok), {"x": 1}, ctx()) == ("ok", 3)
    kind, exc = execute(sync_task(boom), {}, ctx())
    assert kind == "error" and isinstance(exc, ValueError)
    assert execute(sync_task(abort), {}, ctx())[0] == "abort"


def sigterm_soon(delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def test_sigterm_reaches_a_sync_task_as_a_cancellation_it_can_observe() -> None:
    seen: list[str] = []

    def sleeper(payload: Any, ctx: Context) -> Any:
        try:
            time.sleep(30)
        except Exception:  # must not catch the cancellation
            seen.append("swallowed")
        finally:
            seen.append(f"finally cancelled={ctx.is_cancelled()}")

    context = ctx()
    started = time.monotonic()
    sigterm_soon()
    kind, exc = execute(sync_task(sleeper), {}, context)
    assert time.monotonic() - started < 5
    assert kind == "canceled" and isinstance(exc, TaskRunCanceledError)
    assert seen == ["finally cancelled=True"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_reaches_an_async_task_as_cancelled_error() -> None:
    seen: list[bool] = []

    async def sleeper(payload: Any, ctx: Context) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(ctx.is_cancelled())
            raise

    async def ok(payload: Any, ctx: Context) -> Any:
        await asyncio.sleep(0)
        return "done"

    assert execute(sync_task(ok), {}, ctx()) == ("ok", "done")
    sigterm_soon()
    kind, _ = execute(sync_task(sleeper), {}, ctx())
    assert kind == "canceled"
    assert seen == [True]


# --- entrypoints and environment -------------------------------------------------------------


def test_load_task_finds_decorated_and_plain_functions() -> None:
    decorated = load_task("tests.cluster.tasks:run", "echo")
    assert decorated.id == "behave"
    wrapped = load_task("tests.unit.worker.test_worker:plain", "echo")
    assert wrapped.id == "echo" and wrapped.fn is plain
    with pytest.raises(TaskNotRegisteredError, match="has no missing"):
        load_task("tests.unit.worker.test_worker:missing", "echo")
    with pytest.raises(TaskNotRegisteredError, match="module:function"):
        load_task("tests.unit.worker.test_worker", "echo")
    with pytest.raises(TaskNotRegisteredError, match="not a task function"):
        load_task("tests.unit.worker.test_worker:ENV", "echo")


def test_the_worker_outside_a_pod_exits_with_the_internal_code(
    caplog: pytest.LogCaptureFixture
) -> None:
    assert run_attempt({}) == 70
    assert "KUBETASKS_RUN_NAME" in caplog.text


class _FlakyKube:
    """``get_object`` fails with the given errors, then answers."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"metadata": {"name": name, "namespace": namespace}}


def test_the_worker_waits_out_an_api_server_restart_but_not_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    import urllib3

    from kubetasks.errors import ApiError
    from kubetasks.worker.runtime import read_own_run

    monkeypatch.setattr("kubetasks.worker.runtime.time.sleep", lambda _: None)
    down = urllib3.exceptions.MaxRetryError(None, "/apis", reason=None)  # type: ignore[arg-type]
    kube = _FlakyKube([down, ApiError(503, "ServiceUnavailable", "starting"), down])
    client = types.SimpleNamespace(kube=kube)
    assert read_own_run(client, "ns", "r1")["metadata"]["name"] == "r1"  # type: ignore[arg-type]
    assert kube.calls == 4

    refused = _FlakyKube([ApiError(403, "Forbidden", "no")])
    with pytest.raises(ApiError, match="403"):
        read_own_run(types.SimpleNamespace(kube=refused), "ns", "r1")  # type: ignore[arg-type]
    assert refused.calls == 1

    gone = _FlakyKube([down] * 100)
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        read_own_run(types.SimpleNamespace(kube=gone), "ns", "r1",  # type: ignore[arg-type]
                     budget=0)
