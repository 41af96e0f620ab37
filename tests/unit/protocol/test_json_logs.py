"""Structured logs: the JSON formatter, the setting that turns it on for the operator and the
worker, and the switch of Kopf's handlers at start-up."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kubetasks.protocol.logformat import (
    JsonFormatter,
    log_format_from,
    stderr_handler,
    use_json_logs,
)
from kubetasks_operator.handlers import configure_logging
from kubetasks_operator.settings import OperatorSettings


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("kubetasks.test-json")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_object_on_one_line(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.warning("run %s\nattempt %d ü", "ns/r1", 2)
    [entry] = lines(stream)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "kubetasks.test-json"
    assert entry["message"] == "run ns/r1\nattempt 2 ü"
    time = str(entry["time"])
    assert time.endswith("Z") and len(time) == len("2027-01-15T08:00:00.123Z")


def test_an_exception_comes_with_its_traceback_text(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("applying failed")
    log.info("after", stack_info=True)
    first, second = lines(stream)
    assert first["message"] == "applying failed"
    assert first["level"] == "ERROR"
    exception = str(first["exception"])
    assert exception.startswith("Traceback") and "ValueError: bad value" in exception
    assert "exception" not in second and "Stack (most recent call last)" in str(second["stack"])


def test_a_kopf_object_reference_is_kept() -> None:
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "handled", (), None)
    record.k8s_ref = {"namespace": "ns", "name": "r1", "kind": "TaskRun"}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["object"] == {"namespace": "ns", "name": "r1", "kind": "TaskRun"}


def test_the_setting_and_the_environment_variable() -> None:
    assert OperatorSettings().log_format == "text"
    assert OperatorSettings.from_env({"KUBETASKS_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        OperatorSettings.from_env({"KUBETASKS_LOG_FORMAT": "yaml"})
    assert log_format_from({"KUBETASKS_LOG_FORMAT": " Json "}) == "json"
    assert log_format_from({}) == "text"
    assert isinstance(stderr_handler("json").formatter, JsonFormatter)
    assert not isinstance(stderr_handler("text").formatter, JsonFormatter)


def test_json_logs_are_passed_on_to_the_pods_unless_the_task_env_says_otherwise() -> None:
    def log_env(settings: OperatorSettings) -> list[object]:
        return [e.get("value") for e in settings.pod_env()
                if e["name"] == "KUBETASKS_LOG_FORMAT"]

    assert log_env(OperatorSettings()) == []
    assert log_env(OperatorSettings(log_format="json")) == ["json"]
    assert log_env(OperatorSettings(log_format="json",
                                    task_env={"KUBETASKS_LOG_FORMAT": "text"})) == ["text"]


def test_the_operator_switches_the_root_handlers_to_json() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        configure_logging(OperatorSettings())  # text: untouched
        assert not isinstance(handler.formatter, JsonFormatter)
        configure_logging(OperatorSettings(log_format="json"))
        assert isinstance(handler.formatter, JsonFormatter)
        use_json_logs()  # idempotent
        assert root.handlers == [handler]
        logging.getLogger("kubetasks.operator").warning("ready")
        assert json.loads(stream.getvalue())["message"] == "ready"
    finally:
        root.handlers[:] = saved


def test_the_worker_logs_json_lines_when_asked() -> None:
    # Started outside a pod, the worker logs one error and exits 70.
    done = subprocess.run(
        [sys.executable, "-m", "kubetasks", "worker"], capture_output=True, text=True,
        timeout=60, env={"KUBETASKS_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 70
    [entry] = [json.loads(line) for line in done.stderr.splitlines()]
    assert entry["level"] == "ERROR" and entry["logger"] == "kubetasks.worker"
    assert "kubetasks worker runs inside an attempt's pod" in entry["message"]
