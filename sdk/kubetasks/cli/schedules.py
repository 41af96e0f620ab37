"""``kubetasks schedules list|get|create|delete|activate|deactivate``: TaskSchedules from the
command line, through the SDK's ``schedules`` functions. The shared command machinery
(``Cli``, ``api_command``) is in :mod:`.runs`; what is printed is built in :mod:`.output`."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import click

from kubetasks.cli.output import (
    parse_duration_arg,
    parse_json_value,
    schedule_data,
    schedule_details,
    schedules_table,
)
from kubetasks.cli.runs import MACHINES, Cli, api_command
from kubetasks.options import ScheduleOptionsDict
from kubetasks.schedules import Schedule

POLICIES = ("Allow", "Forbid", "Replace")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@click.group("schedules")
def schedules_group() -> None:
    """List, inspect, create, delete, activate and deactivate schedules (TaskSchedules).

    \b
    kubetasks schedules create send-report --cron '0 9 * * MON-FRI' --timezone Europe/Paris
    kubetasks runs list --schedule send-report-x7k2p
    """


@schedules_group.command("list")
@api_command
@click.option("--task", default=None, help="Only schedules of this task.")
@click.option("--active/--inactive", default=None,
              help="Only active (or only inactive) schedules.")
@click.option("--type", "type_", type=click.Choice(("declarative", "imperative"),
                                                   case_sensitive=False), default=None,
              help="Only schedules declared in code (@task(cron=...)) or only those "
                   "created with schedules.create.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many schedules.")
def list_schedules(cli: Cli, task: str | None, active: bool | None, type_: str | None,
                   limit: int | None) -> None:
    """List schedules (in name order): task, type, cron, time zone, active, the next tick
    and the run of the latest one."""
    from kubetasks import schedules

    client = cli.client()
    found = list(schedules.list(task=task, active=active, type=type_, limit=limit))
    if not cli.as_table:
        cli.emit([schedule_data(s) for s in found])
    elif not found:
        cli.note(f"no schedules found in namespace {client.namespace}")
    else:
        cli.show(schedules_table(found, _now()))


@schedules_group.command("get")
@api_command
@click.argument("schedule_id", metavar="SCHEDULE")
def get_schedule(cli: Cli, schedule_id: str) -> None:
    """Show a schedule: its cron in English, options, the latest tick and its run, the next
    five ticks and the operator's conditions. SCHEDULE is namespace/name or a name in the
    namespace."""
    from kubetasks import schedules

    cli.client()
    found = schedules.retrieve(schedule_id)
    if cli.as_table:
        cli.show(schedule_details(found, _now()))
    else:
        cli.emit(schedule_data(found))


def _options(timezone: str | None, external_id: str | None, inactive: bool,
             concurrency_policy: str | None, starting_deadline: str | None,
             queue: str | None, concurrency_key: str | None, ttl: str | None,
             max_attempts: int | None, max_duration: str | None, machine: str | None,
             tags: tuple[str, ...], metadata_json: str | None) -> ScheduleOptionsDict:
    """The SDK's options for what was given on the command line."""
    options: ScheduleOptionsDict = {}
    if timezone is not None:
        options["timezone"] = timezone
    if external_id is not None:
        options["external_id"] = external_id
    if inactive:
        options["active"] = False
    if concurrency_policy is not None:
        options["concurrency_policy"] = cast(Any, concurrency_policy)
    if starting_deadline is not None:
        options["starting_deadline"] = parse_duration_arg(starting_deadline)
    if queue is not None:
        options["queue"] = queue
    if concurrency_key is not None:
        options["concurrency_key"] = concurrency_key
    if ttl is not None:
        options["ttl"] = parse_duration_arg(ttl)
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if max_duration is not None:
        options["max_duration"] = parse_duration_arg(max_duration)
    if machine is not None:
        options["machine"] = cast(Any, machine)
    if tags:
        options["tags"] = list(tags)
    if metadata_json is not None:
        options["metadata"] = parse_json_value(metadata_json, "--metadata")
    return options


@schedules_group.command("create")
@api_command
@click.argument("task_id", metavar="TASK")
@click.option("--cron", required=True,
              help="Five fields: minute hour day-of-month month day-of-week, e.g. "
                   "'0 2 * * *' (quote it).")
@click.option("--timezone", default=None,
              help="IANA time zone the cron is read in, e.g. Europe/Paris (default UTC).")
@click.option("--external-id", default=None,
              help="Your own id for the schedule (e.g. a user id), in every run's payload.")
@click.option("--deduplication-key", default=None,
              help="Update the schedule of this key instead of creating another.")
@click.option("--inactive", is_flag=True, help="Create it deactivated.")
@click.option("--concurrency-policy", type=click.Choice(POLICIES), default=None,
              help="A tick while a run of the schedule is unfinished: Allow (default), "
                   "Forbid (skip the tick) or Replace (cancel the unfinished run).")
@click.option("--starting-deadline", default=None,
              help="How late a missed tick may still run (default 300 s).")
@click.option("--queue", default=None, help="Queue of every run instead of the task's.")
@click.option("--concurrency-key", default=None, help="Concurrency key of every run.")
@click.option("--ttl", default=None,
              help="Expire a run that has not started this long after it was enqueued.")
@click.option("--max-attempts", type=int, default=None,
              help="Attempts before a run fails (overrides the task's retry policy).")
@click.option("--max-duration", default=None, help="Stop each attempt after this long.")
@click.option("--machine", type=click.Choice(MACHINES), default=None, help="Machine preset.")
@click.option("--tag", "tags", multiple=True, help="A tag of every run (repeatable).")
@click.option("--metadata", "metadata_json", metavar="JSON", default=None,
              help="A JSON object every run reads as ctx.run.metadata.")
def create_schedule(cli: Cli, task_id: str, cron: str, timezone: str | None,
                    external_id: str | None, deduplication_key: str | None, inactive: bool,
                    concurrency_policy: str | None, starting_deadline: str | None,
                    queue: str | None, concurrency_key: str | None, ttl: str | None,
                    max_attempts: int | None, max_duration: str | None,
                    machine: str | None, tags: tuple[str, ...],
                    metadata_json: str | None) -> None:
    """Create a schedule that triggers TASK on a cron, and print its id (with
    --deduplication-key, an existing schedule of that key is updated instead).

    \b
    kubetasks schedules create send-report --cron '0 9 * * MON-FRI' \\
        --timezone Europe/Paris --external-id user-42 --deduplication-key user-42-report
    """
    from kubetasks._internal.scheduling import create_schedule as create

    options = _options(timezone, external_id, inactive, concurrency_policy,
                       starting_deadline, queue, concurrency_key, ttl, max_attempts,
                       max_duration, machine, tags, metadata_json)
    client = cli.client()
    obj, created = create(client, task_id, cron, deduplication_key, options)
    made = Schedule.from_object(obj, client.namespace, _now())
    if not cli.as_table:
        cli.emit({**schedule_data(made), "created": created})
        return
    click.echo(made.id)
    if not created:
        cli.note(f"the deduplication key {deduplication_key!r} named the existing schedule "
                 f"{made.id}: it was updated")
    cli.note(_next_note(made))


def _next_note(schedule: Schedule) -> str:
    if schedule.next_run is None:
        return f"{schedule.description}; inactive: no run until it is activated"
    when = schedule.next_run.strftime("%Y-%m-%d %H:%M UTC")
    return f"{schedule.description} ({schedule.timezone}); next run at {when}"


@schedules_group.command("delete")
@api_command
@click.argument("schedule_id", metavar="SCHEDULE")
def delete_schedule(cli: Cli, schedule_id: str) -> None:
    """Delete a schedule (the runs it created stay). A schedule declared in code goes away
    when the code no longer declares it and `kubetasks deploy` runs."""
    from kubetasks import schedules

    cli.client()
    found = schedules.retrieve(schedule_id)
    schedules.delete(found.id)
    if cli.as_table:
        click.echo(f"{found.id} deleted (the runs it created stay)")
    else:
        cli.emit({**schedule_data(found), "deleted": True})


def _set_active(cli: Cli, schedule_id: str, active: bool) -> None:
    from kubetasks import schedules

    cli.client()
    changed = (schedules.activate if active else schedules.deactivate)(schedule_id)
    if not cli.as_table:
        cli.emit(schedule_data(changed))
    elif active:
        click.echo(f"{changed.id} activated: {_next_note(changed)}")
    else:
        click.echo(f"{changed.id} deactivated: its ticks create no run until it is activated "
                   "(they are not caught up then)")


@schedules_group.command("activate")
@api_command
@click.argument("schedule_id", metavar="SCHEDULE")
def activate_schedule(cli: Cli, schedule_id: str) -> None:
    """Let a schedule's ticks create runs again, from its next tick on."""
    _set_active(cli, schedule_id, True)


@schedules_group.command("deactivate")
@api_command
@click.argument("schedule_id", metavar="SCHEDULE")
def deactivate_schedule(cli: Cli, schedule_id: str) -> None:
    """Stop a schedule's ticks from creating runs (also one declared in code: deploy leaves
    it deactivated)."""
    _set_active(cli, schedule_id, False)
