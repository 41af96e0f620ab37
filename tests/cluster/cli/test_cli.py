"""The ``kubetasks`` command line against the real local cluster: tasks deployed with
``kubetasks deploy`` (the ``sdk`` fixture), runs made by the real operator and worker, logs
served by the API server's ``pods/log`` through the node agent's kubelet endpoint.

Most commands run in-process through click's CliRunner (stdout and stderr apart, exit codes
as the shell sees them); the error cases also run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from kubetasks import runs, tasks
from kubetasks._internal.client import Client
from kubetasks.devcluster import ControlPlane
from tests.cluster.cli.conftest import Cli, as_json, ok
from tests.cluster.conftest import REPO
from tests.cluster.helpers import make_queue, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def test_trigger_prints_the_run_id_and_with_wait_the_output(
        cli: Cli, sdk: Client, namespace: str) -> None:
    plain = ok(cli("trigger", "behave", "--payload", '{"output": {"answer": 42}}'))
    run_id = plain.stdout.strip()
    assert run_id.startswith(f"{namespace}/behave-")
    assert runs.poll(run_id, timeout=60).output == {"answer": 42}

    data = as_json(cli("trigger", "behave", "-o", "json", "--payload", '{"output": 1}',
                       "--tag", "cli", "--tag", "json", "--max-attempts", "2",
                       "--metadata", '{"source": "cli"}', "--ttl", "600",
                       "--idempotency-key", "cli-key-1", "--machine", "micro"))
    assert data["task_id"] == "behave" and data["payload"] == {"output": 1}
    assert data["tags"] == ["cli", "json"] and data["metadata"] == {"source": "cli"}
    assert data["idempotency_key"] == "cli-key-1" and data["is_cached"] is False
    raw = runs.retrieve(data["id"]).raw["spec"]
    assert (raw["maxAttempts"], raw["ttlSeconds"], raw["machine"]) == (2, 600, "micro")
    again = as_json(cli("trigger", "behave", "-o", "json", "--payload", '{"output": 1}',
                        "--idempotency-key", "cli-key-1"))
    assert again["id"] == data["id"] and again["is_cached"] is True

    waited = ok(cli("trigger", "behave", "--payload", '{"output": {"answer": 43}}', "--wait",
                    "--timeout", "60"))
    lines = waited.stdout.splitlines()
    assert lines[0].startswith(f"{namespace}/behave-")
    assert lines[1].startswith("status: Completed")
    assert lines[2] == 'output: {"answer": 43}'

    final = as_json(cli("trigger", "behave", "-o", "json", "--payload-file", "-", "--wait",
                        input='{"output": [1, 2, 3]}'))
    assert (final["status"], final["output"]) == ("Completed", [1, 2, 3])
    assert final["attempt_count"] == 1 and final["attempts"][0]["exit_code"] == 0

    failed = cli("trigger", "behave", "--payload", '{"exit": 65}', "--wait")
    assert failed.exit_code == 1
    assert "status: Failed" in failed.stdout and "AbortTaskRunError" in failed.stdout

    timed_out = cli("trigger", "behave", "--payload", '{"sleep": 30}', "--wait",
                    "--timeout", "0.5")
    assert timed_out.exit_code == 1
    assert timed_out.stderr.startswith("error: run ") and "after 0.5 s" in timed_out.stderr
    assert timed_out.stderr.count("\n") == 1
    for run in runs.list():
        if not run.is_terminal:
            runs.cancel(run.id)


def test_runs_list_and_get_as_tables_json_and_yaml(cli: Cli, sdk: Client) -> None:
    done = tasks.trigger("behave", {"output": {"n": 1}}, tags=["first"])
    failed = tasks.trigger("behave", {"exit": 65})
    delayed = tasks.trigger("behave", {}, delay="1h", tags=["later"])
    runs.poll(done.id, timeout=60)
    runs.poll(failed.id, timeout=60)

    table = ok(cli("runs", "list")).stdout
    header, *rows = [line.split() for line in table.splitlines() if line.strip()]
    assert header == ["NAME", "TASK", "STATUS", "ATTEMPT", "QUEUE", "AGE"]
    by_name = {row[0]: row for row in rows}
    assert by_name[done.name][1:5] == ["behave", "Completed", "1", "behave"]
    assert by_name[failed.name][2] == "Failed"
    assert by_name[delayed.name][2:4] == ["Delayed", "-"]

    listed = as_json(cli("runs", "list", "-o", "json"))
    assert {r["id"] for r in listed} == {done.id, failed.id, delayed.id}
    assert {r["id"]: r for r in listed}[done.id]["output"] == {"n": 1}
    assert [r["id"] for r in as_json(cli("runs", "list", "-o", "json", "--status",
                                         "failed,delayed", "--tag", "later"))] == [delayed.id]
    assert [r["id"] for r in as_json(cli("runs", "list", "-o", "json", "--status",
                                         "Completed"))] == [done.id]
    assert len(as_json(cli("runs", "list", "-o", "json", "--task", "behave",
                           "--limit", "2"))) == 2
    assert as_json(cli("runs", "list", "-o", "json", "--task", "nope")) == []
    assert yaml.safe_load(ok(cli("runs", "list", "-o", "yaml", "--queue", "behave")
                             ).stdout).__len__() == 3

    got = as_json(cli("runs", "get", done.id, "-o", "json"))
    retrieved = runs.retrieve(done.id)
    assert got["id"] == retrieved.id and got["status"] == "Completed"
    assert got["output"] == {"n": 1} and got["tags"] == ["first"]
    assert got["started_at"] == retrieved.started_at.isoformat()  # type: ignore[union-attr]
    assert yaml.safe_load(ok(cli("runs", "get", done.name, "-o", "yaml")).stdout) == got

    details = ok(cli("runs", "get", done.name)).stdout
    for expected in (done.id, "Completed", '{"n": 1}', "Attempts", "first"):
        assert expected in details
    failure = ok(cli("runs", "get", failed.id)).stdout
    assert "Failed" in failure and "AbortTaskRunError" in failure


def test_cancel_reschedule_and_replay_change_the_runs(cli: Cli, sdk: Client,
                                                      namespace: str) -> None:
    delayed = tasks.trigger("behave", {"output": "replayed"}, delay="1h")
    before = runs.retrieve(delayed.id).delay_until
    assert before is not None
    moved = as_json(cli("runs", "reschedule", delayed.id, "--delay", "3h", "-o", "json"))
    assert moved["status"] in ("Pending", "Delayed")
    after = runs.retrieve(delayed.id).delay_until
    assert after is not None and 7000 < (after - before).total_seconds() < 7300
    text = ok(cli("runs", "reschedule", delayed.name, "--delay", "7200")).stdout
    assert text.startswith(f"{delayed.id} delayed until ") and "(in 1h59m" in text

    canceled = ok(cli("runs", "cancel", delayed.id)).stdout
    assert canceled.startswith(f"{delayed.id} canceled")
    assert runs.poll(delayed.id, timeout=30).status == "Canceled"
    assert "already ended Canceled" in ok(cli("runs", "cancel", delayed.id)).stdout
    assert as_json(cli("runs", "cancel", delayed.id, "-o", "json"))["status"] == "Canceled"
    refused = cli("runs", "reschedule", delayed.id, "--delay", "1h")
    assert refused.exit_code == 1 and "is Canceled, not Delayed" in refused.stderr

    replayed_id = ok(cli("runs", "replay", delayed.id)).stdout.strip()
    assert replayed_id.startswith(f"{namespace}/behave-") and replayed_id != delayed.id
    replayed = runs.poll(replayed_id, timeout=60)  # no delay: it runs at once
    assert (replayed.status, replayed.output) == ("Completed", "replayed")
    data = as_json(cli("runs", "replay", replayed_id, "-o", "json"))
    assert data["replay_of"] == replayed_id and data["payload"] == {"output": "replayed"}


def test_runs_logs_show_what_the_task_printed_also_through_kubectl(
        cli: Cli, sdk: Client, namespace: str, control_plane: ControlPlane) -> None:
    marker = f"cli-log-marker-{time.time_ns()}"
    handle = tasks.trigger("say", {"lines": [marker, "second line"]})
    assert runs.poll(handle.id, timeout=60).status == "Completed"

    logs = ok(cli("runs", "logs", handle.id)).stdout
    assert f"{marker}\nsecond line\n" in logs
    tail = ok(cli("runs", "logs", handle.name, "--attempt", "1", "--tail", "2")).stdout
    assert tail == "".join(logs.splitlines(keepends=True)[-2:])
    data = as_json(cli("runs", "logs", handle.id, "-o", "json"))
    assert data["attempt"] == 1 and marker in data["log"]
    # The same log through kubectl: the API server proxies pods/log to the node agent.
    kubectl_logs = control_plane.kubectl("logs", "-n", namespace, data["pod"])
    assert marker in kubectl_logs

    missing = cli("runs", "logs", handle.id, "--attempt", "2")
    assert missing.exit_code == 1 and "there is no attempt 2" in missing.stderr

    # --follow waits for the attempt to start, prints lines as they come, ends with it.
    slow = tasks.trigger("say", {"lines": ["one", "two", "three"], "sleep": 1})
    started = time.monotonic()
    followed = ok(cli("runs", "logs", slow.id, "--follow"))
    assert "one\ntwo\nthree\n" in followed.stdout
    assert time.monotonic() - started >= 2
    assert runs.retrieve(slow.id).is_terminal or wait_until(
        lambda: runs.retrieve(slow.id).is_terminal, 10, "the followed run to end")


def test_runs_watch_until_the_runs_end(cli: Cli, sdk: Client) -> None:
    done = tasks.trigger("behave", {"sleep": 1, "output": "w"})
    watched = ok(cli("runs", "watch", done.id, "--interval", "0.2"))
    assert done.name in watched.stdout and "Completed" in watched.stdout
    assert "1 of 1 ended" in watched.stdout
    assert runs.retrieve(done.id).status == "Completed"

    failing = tasks.trigger("behave", {"sleep": 1, "exit": 65})
    failed = cli("runs", "watch", failing.name, "-o", "json", "--interval", "0.2")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["status"] == "Failed"

    first = tasks.trigger("behave", {"sleep": 1}, tags=["group"])
    second = tasks.trigger("behave", {"sleep": 2}, tags=["group"])
    group = as_json(cli("runs", "watch", "--tag", "group", "-o", "json", "--interval", "0.2"))
    assert {r["id"]: r["status"] for r in group} == {first.id: "Completed",
                                                     second.id: "Completed"}
    nothing = ok(cli("runs", "watch", "--tag", "group"))
    assert "no unfinished runs" in nothing.stderr

    slow = tasks.trigger("behave", {"sleep": 30})
    gave_up = cli("runs", "watch", slow.id, "--timeout", "1", "--interval", "0.2")
    assert gave_up.exit_code == 1 and "after 1 s" in gave_up.stderr
    runs.cancel(slow.id)


def test_batches_get_shows_progress_counts_and_run_names(cli: Cli, sdk: Client) -> None:
    handle = tasks.batch_trigger("behave", [{"payload": {"output": n}} for n in range(3)]
                                 + [{"payload": {"exit": 65}}])
    handle.poll(timeout=120)
    data = as_json(cli("batches", "get", handle.id, "-o", "json"))
    assert data["id"] == handle.id and data["status"] == "PartiallyFailed"
    assert data["total"] == 4 and data["finished"] == 4
    assert (data["counts"]["completed"], data["counts"]["failed"]) == (3, 1)
    assert data["run_names"] == [f"{handle.name}-{n}" for n in range(4)]
    table = ok(cli("batches", "get", handle.name)).stdout
    assert "PartiallyFailed" in table and "4/4 finished" in table
    assert f"{handle.name}-3" in table and "completed 3, failed 1" in table
    missing = cli("batches", "get", "no-such-batch")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no batch ")


def test_queues_list_shows_limits_paused_and_counts(
        cli: Cli, sdk: Client, kube_api: k8s.ApiClient, namespace: str) -> None:
    assert as_json(cli("queues", "list", "-o", "json")) == []
    make_queue(kube_api, namespace, "held", concurrencyLimit=3, paused=True)
    make_queue(kube_api, namespace, "open", concurrencyLimit=1, totalConcurrencyLimit=5)
    ok(cli("trigger", "behave", "--payload", "{}", "--queue", "held"))
    ok(cli("trigger", "behave", "--payload", "{}", "--queue", "held"))

    def held_counts() -> dict[str, Any] | None:
        rows = {r["name"]: r for r in as_json(cli("queues", "list", "-o", "json"))}
        return rows if rows["held"]["queued"] == 2 else None

    rows = wait_until(held_counts, 30, "the operator to count the held queue")
    assert rows["held"] == {"name": "held", "namespace": namespace, "concurrency_limit": 3,
                            "total_concurrency_limit": None, "paused": True, "running": 0,
                            "queued": 2, "active_keys": 0, "namespace_concurrency_limit": None,
                            "namespace_running": None, "warning": None}
    assert rows["open"]["total_concurrency_limit"] == 5 and rows["open"]["paused"] is False
    table = ok(cli("queues", "list")).stdout
    lines = {line.split()[0]: line.split() for line in table.splitlines()[1:] if line}
    assert lines["held"] == ["held", "3", "-", "0", "2", "0", "yes"]
    assert lines["open"][:3] == ["open", "1", "5"]


def test_errors_are_one_line_on_stderr_with_exit_code_1(
        cli: Cli, control_plane: ControlPlane, namespace: str) -> None:
    bad = cli("trigger", "behave", "--payload", "{not json")
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: --payload is not valid JSON")
    unknown = cli("runs", "get", "no-such-run")
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        f"error: no run '{namespace}/no-such-run'; check the id (namespace/name, as "
        "RunHandle.id gives it) and the namespace kubetasks is configured for\n")
    assert cli("runs", "cancel", "no-such-run").exit_code == 1
    assert cli("runs", "logs", "no-such-run").exit_code == 1

    # The same as a real process: one line on stderr, no traceback, exit codes 1 and 2.
    def kubetasks(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubetasks", "--kubeconfig", str(control_plane.kubeconfig),
             "-n", namespace, *args], capture_output=True, text=True, timeout=60, cwd=REPO)

    for args in (("runs", "get", "no-such-run"),
                 ("trigger", "behave", "--payload", "{not json")):
        result = kubetasks(*args)
        assert result.returncode == 1, result
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr and result.stdout == ""
    usage = kubetasks("runs", "list", "--limit", "0")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "kubetasks", "--debug", "--kubeconfig",
         str(control_plane.kubeconfig), "-n", namespace, "runs", "get", "no-such-run"],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
