"""``kubetasks schedules ...``, ``runs list --schedule`` and the declarative schedules of
``kubetasks deploy``, on the real API server (no operator: what is checked is what the
commands write and print)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from kubetasks import ScheduleNotFoundError, schedules
from kubetasks._internal.client import Client
from kubetasks.protocol.deduplication import schedule_name
from tests.cluster.cli.conftest import Cli, as_json, ok
from tests.cluster.helpers import GROUP, VERSION, create, custom

pytestmark = pytest.mark.cluster


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_schedule_commands_print_what_a_person_expects(cli: Cli, sdk: Client,
                                                       namespace: str,
                                                       kube_api: k8s.ApiClient) -> None:
    made = ok(cli("schedules", "create", "tick", "--cron", "0 9 * * MON-FRI", "--timezone",
                  "Europe/Paris", "--external-id", "user-42", "--deduplication-key",
                  "user-42-report", "--tag", "reports", "--ttl", "1h"))
    schedule_id = f"{namespace}/{schedule_name('user-42-report')}"
    assert made.stdout == f"{schedule_id}\n"
    assert made.stderr.startswith("At 09:00, Monday through Friday (Europe/Paris); next run "
                                  "at ")
    again = ok(cli("schedules", "create", "tick", "--cron", "30 9 * * MON-FRI",
                   "--timezone", "Europe/Paris", "--deduplication-key", "user-42-report"))
    assert again.stdout == f"{schedule_id}\n"
    assert (f"the deduplication key 'user-42-report' named the existing schedule "
            f"{schedule_id}: it was updated") in again.stderr
    other = as_json(cli("schedules", "create", "behave", "--cron", "*/15 * * * *",
                        "--inactive", "--concurrency-policy", "Forbid", "-o", "json"))
    assert other["created"] is True and other["active"] is False
    assert other["concurrency_policy"] == "Forbid" and other["next_run"] is None
    refused = cli("schedules", "create", "tick", "--cron", "0 9 * *")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr == (
        "error: cron '0 9 * *' has 4 field(s), not 5; use five fields: minute hour "
        "day-of-month month day-of-week, such as '0 2 * * *' (02:00 every day) or "
        "'*/15 9-17 * * MON-FRI'\n")

    header, *table = rows(ok(cli("schedules", "list")).stdout)
    assert header == ["NAME", "TASK", "TYPE", "CRON", "TIMEZONE", "ACTIVE", "NEXT", "LAST",
                      "RUN"]
    by_name = {row[0]: row for row in table}
    assert by_name[schedule_name("user-42-report")][1:10] == [
        "tick", "imperative", "30", "9", "*", "*", "MON-FRI", "Europe/Paris", "yes"]
    assert by_name[other["name"]][1:10] == [
        "behave", "imperative", "*/15", "*", "*", "*", "*", "UTC", "no"]
    assert [s["id"] for s in as_json(cli("schedules", "list", "-o", "json", "--inactive"))
            ] == [other["id"]]
    assert [s["id"] for s in as_json(cli("schedules", "list", "-o", "json", "--task",
                                         "tick", "--active"))] == [schedule_id]
    assert as_json(cli("schedules", "list", "-o", "json", "--type", "declarative")) == []

    details = ok(cli("schedules", "get", schedule_id)).stdout
    for expected in (schedule_id, "30 9 * * MON-FRI  (At 09:30, Monday through Friday)",
                     "Europe/Paris", "user-42-report", "Next runs", "Last run", "none yet"):
        assert expected in details, expected
    next_runs = details.split("Next runs\n")[1].splitlines()[:5]
    assert all(" 09:30 CE" in line and "(Europe/Paris)  in " in line for line in next_runs)
    got = as_json(cli("schedules", "get", schedule_id, "-o", "json"))
    assert got["external_id"] is None and got["ttl_seconds"] is None  # as the update said
    assert yaml.safe_load(ok(cli("schedules", "get", schedule_id, "-o", "yaml")).stdout
                          ) == got

    off = ok(cli("schedules", "deactivate", schedule_id)).stdout
    assert off == (f"{schedule_id} deactivated: its ticks create no run until it is "
                   "activated (they are not caught up then)\n")
    assert "Next runs: none while inactive" in ok(cli("schedules", "get", schedule_id)).stdout
    on = ok(cli("schedules", "activate", schedule_id)).stdout
    assert on.startswith(f"{schedule_id} activated: At 09:30, Monday through Friday "
                         "(Europe/Paris); next run at ")

    tick_run = f"{schedule_name('user-42-report')}-203001060830"
    create(kube_api, namespace, "taskruns", {
        "kind": "TaskRun", "metadata": {"name": tick_run, "labels": {
            "kubetasks.dev/schedule": schedule_name("user-42-report")}},
        "spec": {"task": "tick", "payload": None}})
    create(kube_api, namespace, "taskruns", {
        "kind": "TaskRun", "metadata": {"name": "by-hand"},
        "spec": {"task": "tick", "payload": None}})
    listed = rows(ok(cli("runs", "list", "--schedule", schedule_id)).stdout)
    assert [row[0] for row in listed[1:]] == [tick_run]
    assert as_json(cli("runs", "list", "-o", "json", "--schedule", other["name"])) == []

    deleted = ok(cli("schedules", "delete", schedule_id)).stdout
    assert deleted == f"{schedule_id} deleted (the runs it created stay)\n"
    gone = cli("schedules", "get", schedule_id)
    assert gone.exit_code == 1 and gone.stderr == (
        f"error: TaskSchedule '{schedule_name('user-42-report')}' not found in namespace "
        f"'{namespace}'; list them with `kubetasks schedules list`\n")


MODULE = "deployed_schedules_app"


def write_app(directory: Path, nightly_cron: str | None, plain_cron: str | None = None
              ) -> None:
    """The application module as its next version: tasks ``deployed-nightly`` and
    ``deployed-plain``, each with the cron given (None: without one)."""
    def cron(value: str | None) -> str:
        return "" if value is None else f", cron={value}"

    (directory / f"{MODULE}.py").write_text(textwrap.dedent(f"""
        from kubetasks import ScheduledPayload, schedule, task

        @task(id="deployed-nightly"{cron(nightly_cron)})
        def nightly(payload: ScheduledPayload, ctx) -> str:
            return payload.timestamp.isoformat()

        @task(id="deployed-plain"{cron(plain_cron)})
        def plain(payload, ctx) -> None: ...
    """))
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()


def test_deploy_applies_a_declarative_schedule_and_removes_it_once_the_code_drops_it(
        cli: Cli, sdk: Client, namespace: str, kube_api: k8s.ApiClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # each version is read afresh
    monkeypatch.setitem(sys.modules, MODULE, None)  # popped by write_app, restored after
    write_app(tmp_path, 'schedule("0 2 * * *", timezone="Europe/Paris")')
    imperative = schedules.create("deployed-nightly", "0 12 * * *")

    first = ok(cli("deploy", "--image", "local", MODULE)).stdout.splitlines()
    assert first == [
        f"task/deployed-nightly applied in {namespace} ({MODULE}:nightly)",
        f"task/deployed-plain applied in {namespace} ({MODULE}:plain)",
        f"taskschedule/deployed-nightly applied in {namespace} (cron '0 2 * * *' in "
        "Europe/Paris: At 02:00, every day)",
    ]
    declared = schedules.retrieve("deployed-nightly")
    assert (declared.type, declared.task_id, declared.timezone, declared.active) == (
        "DECLARATIVE", "deployed-nightly", "Europe/Paris", True)
    raw = custom(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskschedules", "deployed-nightly")
    assert raw["metadata"]["annotations"]["kubetasks.dev/deployed-from"] == MODULE
    assert "active" not in raw["spec"]

    # Deactivated by a person: a redeploy leaves it so. Deleted by hand: refused.
    ok(cli("schedules", "deactivate", "deployed-nightly"))
    ok(cli("deploy", "--image", "local", MODULE))
    assert not schedules.retrieve("deployed-nightly").active
    refused = cli("schedules", "delete", "deployed-nightly")
    assert refused.exit_code == 1 and "declared in code by @task(id='deployed-nightly', " \
        "cron=...); change or remove the cron there and run `kubetasks deploy`" in (
            refused.stderr)

    write_app(tmp_path, None)
    second = ok(cli("deploy", "--image", "local", MODULE)).stdout.splitlines()
    assert second[-1] == (f"taskschedule/deployed-nightly deleted in {namespace} (no longer "
                          f"declared in {MODULE})")
    with pytest.raises(ScheduleNotFoundError):
        schedules.retrieve("deployed-nightly")
    assert [s.id for s in schedules.list()] == [imperative.id]  # never deploy's to delete

    # A schedule made by hand under a task's name is not taken over by a deploy.
    create(kube_api, namespace, "taskschedules", {
        "kind": "TaskSchedule", "metadata": {"name": "deployed-plain"},
        "spec": {"task": "deployed-plain", "cron": "0 1 * * *"}})
    write_app(tmp_path, None, '"0 3 * * *"')
    clash = cli("deploy", "--image", "local", MODULE)
    assert clash.exit_code == 1 and clash.stderr == (
        f"error: task 'deployed-plain' declares a cron, but TaskSchedule "
        f"{namespace}/deployed-plain exists and was not made by kubetasks deploy; delete it "
        "(kubetasks schedules delete) or give the task another id\n")
    assert schedules.retrieve("deployed-plain").cron == "0 1 * * *"
