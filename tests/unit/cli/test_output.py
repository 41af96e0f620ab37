"""What the ``kubetasks`` command prints, without a cluster: runs, batches and queues as data
(-o json / yaml) and as tables, ages and durations, the parsers of option values, and the
one-line errors of the main group."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from kubetasks._internal.client import Client, Credentials, KubeApi
from kubetasks.batch import Batch
from kubetasks.cli import describe_error, main
from kubetasks.cli.output import (
    CliValueError,
    batch_data,
    batch_details,
    compact_json,
    finished_count,
    format_age,
    format_duration,
    format_time,
    normalize_phases,
    one_line,
    parse_duration_arg,
    parse_json_value,
    queue_data,
    queues_table,
    render_data,
    run_data,
    run_details,
    runs_table,
    wait_summary,
)
from kubetasks.errors import TaskRunNotFoundError
from kubetasks.handles import Run

NOW = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def client() -> Client:
    return Client(KubeApi(Credentials(server="http://127.0.0.1:1"), namespace="jobs"))


def run_object(name: str = "behave-abc12", phase: str = "Completed", **status: Any
               ) -> dict[str, Any]:
    return {
        "apiVersion": "kubetasks.dev/v1alpha1", "kind": "TaskRun",
        "metadata": {"name": name, "namespace": "jobs", "uid": "u-1",
                     "creationTimestamp": "2030-01-01T11:58:00Z"},
        "spec": {"task": "behave", "payload": {"output": {"x": 1}}, "tags": ["a", "b"],
                 "idempotencyKey": "k-1"},
        "status": {"phase": phase, "attempt": 1, "queue": "behave",
                   "startedTime": "2030-01-01T11:58:01Z",
                   "finishedTime": "2030-01-01T11:58:03Z",
                   "attempts": [{"number": 1, "startedTime": "2030-01-01T11:58:01Z",
                                 "finishedTime": "2030-01-01T11:58:03Z", "exitCode": 0,
                                 "reason": "Completed"}],
                   **status},
    }


def text_of(renderable: Any) -> str:
    console = Console(width=200, record=True, markup=False, highlight=False,
                      color_system=None)
    console.print(renderable)
    return console.export_text()


def test_run_data_has_every_field_runs_retrieve_gives_as_json_values() -> None:
    run = Run.from_object(run_object(output={"x": 1}), client())
    data = run_data(run)
    assert data["id"] == "jobs/behave-abc12"
    assert data["status"] == "Completed"
    assert data["output"] == {"x": 1}
    assert data["created_at"] == "2030-01-01T11:58:00+00:00"
    assert data["attempts"][0] == {
        "number": 1, "started_at": "2030-01-01T11:58:01+00:00",
        "finished_at": "2030-01-01T11:58:03+00:00", "exit_code": 0, "reason": "Completed",
        "message": None}
    assert data["error"] is None
    assert "raw" not in data and "client" not in data and "output_type" not in data
    fields = set(Run.__dataclass_fields__) - {"raw", "client", "output_type"}
    assert set(data) == fields
    assert json.loads(render_data(data, "json")) == data
    assert yaml.safe_load(render_data([data], "yaml")) == [data]


def test_a_failed_run_shows_its_error_and_stack() -> None:
    failed = Run.from_object(run_object(
        phase="Failed", error={"type": "ValueError", "message": "bad\nvalue",
                               "stack": "Traceback ...\nValueError: bad"}), client())
    assert run_data(failed)["error"] == {"type": "ValueError", "message": "bad\nvalue",
                                         "stack": "Traceback ...\nValueError: bad"}
    text = text_of(run_details(failed, NOW))
    assert "ValueError: bad; value" in text
    assert "Stack" in text and "Traceback ..." in text
    assert "Output" not in text


def test_run_details_show_times_options_attempts_and_output() -> None:
    run = Run.from_object(run_object(output={"x": 1}), client())
    text = text_of(run_details(run, NOW))
    for expected in ("jobs/behave-abc12", "Completed", "a, b", "k-1", '{"x": 1}',
                     "2030-01-01 11:58:00 UTC (2m ago)", ", took 2.0s", "Attempts"):
        assert expected in text, expected


def test_an_offloaded_output_shows_where_it_is() -> None:
    obj = run_object(outputRef={"bucket": "b", "key": "k", "size": 123456, "sha256": "x"})
    run = Run.from_object(obj, client(), presign=False)
    text = text_of(run_details(run, NOW))
    assert "offloaded: 123,456 bytes in object storage" in text


def test_runs_table_lists_name_task_status_attempt_queue_and_age() -> None:
    runs = [Run.from_object(run_object(), client()),
            Run.from_object(run_object("behave-q", phase="Queued", attempt=0), client())]
    text = text_of(runs_table(runs, NOW))
    lines = [line.split() for line in text.splitlines() if line.strip()]
    assert lines[0] == ["NAME", "TASK", "STATUS", "ATTEMPT", "QUEUE", "AGE"]
    assert lines[1] == ["behave-abc12", "behave", "Completed", "1", "behave", "2m"]
    assert lines[2] == ["behave-q", "behave", "Queued", "-", "behave", "2m"]


def test_wait_summary_gives_the_id_status_and_output_or_error() -> None:
    done = Run.from_object(run_object(output={"x": 1}), client())
    assert wait_summary(done, {"x": 1}) == [
        "jobs/behave-abc12", "status: Completed in 2.0s after 1 attempt", 'output: {"x": 1}']
    failed = Run.from_object(run_object(phase="Failed", error={"type": "E", "message": "m"}),
                             client())
    assert wait_summary(failed, None)[-1] == "error: E: m"


def batch(**status: Any) -> Batch:
    return Batch.from_object({
        "metadata": {"name": "behave-b-x", "namespace": "jobs",
                     "creationTimestamp": "2030-01-01T11:00:00Z"},
        "spec": {"task": "behave", "itemCount": 30},
        "status": {"phase": "Running", "created": 25,
                   "counts": {"completed": 10, "failed": 2, "running": 3, "queued": 10},
                   "keyedRuns": {"1": "behave-ik-1"}, **status},
    }, "jobs")


def test_batch_data_and_details_show_progress_counts_and_run_names() -> None:
    b = batch()
    assert finished_count(b) == 12
    data = batch_data(b)
    assert data["finished"] == 12 and data["is_finished"] is False
    assert data["run_names"][:3] == ["behave-b-x-0", "behave-ik-1", "behave-b-x-2"]
    assert data["run_names"][25] is None
    assert data["counts"]["completed"] == 10
    assert json.loads(render_data(data, "json"))["total"] == 30
    text = text_of(batch_details(b, NOW, max_names=5))
    assert "12/30 finished" in text
    assert "completed 10, failed 2" in text and "running 3" in text
    assert "behave-ik-1" in text
    assert "25 more (-o json lists them all)" in text
    assert "25 of 30 created" in text


def test_queue_rows_come_from_spec_and_status() -> None:
    rows = [queue_data({"metadata": {"name": "emails", "namespace": "jobs"},
                        "spec": {"concurrencyLimit": 5, "totalConcurrencyLimit": 20,
                                 "paused": True},
                        "status": {"running": 2, "queued": 7, "activeKeys": 2,
                                   "namespaceConcurrencyLimit": 50, "namespaceRunning": 9}}),
            queue_data({"metadata": {"name": "new", "namespace": "jobs"}, "spec": {}})]
    assert rows[0] == {"name": "emails", "namespace": "jobs", "concurrency_limit": 5,
                       "total_concurrency_limit": 20, "paused": True, "running": 2,
                       "queued": 7, "active_keys": 2, "namespace_concurrency_limit": 50,
                       "namespace_running": 9, "warning": None}
    assert rows[1]["running"] is None and rows[1]["paused"] is False
    lines = [line.split() for line in text_of(queues_table(rows)).splitlines() if line]
    assert lines[0] == ["NAME", "LIMIT/KEY", "TOTAL", "RUNNING", "QUEUED", "KEYS", "PAUSED"]
    assert lines[1] == ["emails", "5", "20", "2", "7", "2", "yes"]
    assert lines[2] == ["new", "-", "-", "-", "-", "-", "no"]
    assert " ".join(lines[3]) == ("namespace jobs: at most 50 runs at once over all queues "
                                  "(9 running)")
    assert len(lines) == 4


def test_a_queue_with_the_retired_key_limit_shows_the_operators_warning() -> None:
    row = queue_data({"metadata": {"name": "users", "namespace": "jobs"},
                      "spec": {"concurrencyLimit": 10, "concurrencyKeyLimit": 1},
                      "status": {"conditions": [{
                          "type": "Deprecated", "status": "True",
                          "reason": "ConcurrencyKeyLimit", "message": "migrate it"}]}})
    assert row["warning"] == "migrate it"
    text = text_of(queues_table([row]))
    assert "queue users: migrate it" in text
    assert "namespace" not in text


@pytest.mark.parametrize(("seconds", "expected"), [
    (0, "0s"), (59, "59s"), (60, "1m"), (61, "1m1s"), (599, "9m59s"), (600, "10m"),
    (3599, "59m"), (3600, "1h"), (3660, "1h1m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (48 * 3600, "2d"), (49 * 3600, "2d1h"), (8 * 86400 + 3600, "8d"), (-5, "0s"),
])
def test_format_age(seconds: float, expected: str) -> None:
    assert format_age(seconds) == expected


def test_format_duration_and_time() -> None:
    assert format_duration(0.04) == "0.0s"
    assert format_duration(61.5) == "1m1s"
    assert format_duration(3 * 3600 + 120) == "3h2m"
    assert format_time(None, NOW) == ""
    assert format_time(NOW, NOW) == "2030-01-01 12:00:00 UTC (0s ago)"


def test_parsers_of_option_values() -> None:
    assert parse_json_value('{"a": 1}', "--payload") == {"a": 1}
    assert parse_json_value("null", "--payload") is None
    with pytest.raises(CliValueError, match="--payload is not valid JSON"):
        parse_json_value("{a: 1}", "--payload")
    assert parse_duration_arg(" 30 ") == 30
    assert parse_duration_arg("1h") == "1h"
    assert normalize_phases(["queued", "FAILED,crashed", "Failed", ""]) == [
        "Queued", "Failed", "Crashed"]
    with pytest.raises(CliValueError, match="unknown status 'Done'"):
        normalize_phases(["Done"])
    assert compact_json([1, "x"]) == '[1, "x"]'
    assert one_line("") == ""


def test_describe_error_is_one_line() -> None:
    import urllib3

    assert describe_error(TaskRunNotFoundError("jobs/x")).startswith("no run 'jobs/x'")
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    text = describe_error(refused)
    assert text.startswith("cannot reach the Kubernetes API: ")
    assert "\n" not in describe_error(ValueError("a\nb"))


def test_errors_are_one_line_without_traceback_and_usage_errors_exit_2(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["trigger", "behave", "--payload", "{nope"])
    assert bad.exit_code == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: --payload is not")
    assert "Traceback" not in bad.output
    both = runner.invoke(main, ["trigger", "behave", "--payload", "1", "--payload-file", "-"],
                         input="2")
    assert both.exit_code == 2
    unknown = runner.invoke(main, ["runs", "list", "--status", "Done"])
    assert unknown.exit_code == 2 and "unknown status 'Done'" in unknown.stderr
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    no_config = runner.invoke(main, ["runs", "get", "x"])
    assert no_config.exit_code == 1
    assert no_config.stderr.startswith("error: no Kubernetes configuration found")
    assert no_config.stderr.count("\n") == 1
    debug = runner.invoke(main, ["--debug", "runs", "get", "x"])
    assert debug.exit_code == 1 and debug.exception is not None
    assert type(debug.exception).__name__ == "KubeConfigError"
