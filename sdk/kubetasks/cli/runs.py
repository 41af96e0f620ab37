"""The ``kubetasks`` commands that trigger and manage runs, and read batches and queues:
``trigger``, ``runs list|get|cancel|reschedule|replay|logs|watch``, ``batches get`` and
``queues list``. ``cli/__init__.py`` registers them on the main group.

Every command takes ``-n/--namespace`` and ``--kubeconfig`` (also accepted before the
command name, where they apply to every command) and ``-o/--output table|json|yaml``:
``json`` and ``yaml`` print the full data (a run's fields as ``runs.retrieve`` gives them,
lists as arrays), ``table`` is for people.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast, get_args

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from kubetasks._internal.client import Client
from kubetasks.api.v1alpha1 import Machine
from kubetasks.cli.output import (
    OUTPUT_FORMATS,
    CliValueError,
    format_time,
    normalize_phases,
    parse_duration_arg,
    parse_json_value,
    run_data,
    run_details,
    runs_table,
    wait_summary,
)
from kubetasks.errors import RunPollTimeoutError
from kubetasks.handles import Run, read_run, split_run_id
from kubetasks.options import TriggerOptionsDict

POLL_INTERVAL = 1.0
"""Seconds between reads while a command waits for runs (``--wait``, ``logs -f``,
``watch``); the first reads come sooner."""


# --- shared plumbing -------------------------------------------------------------------------


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) without markup parsing: run names, payloads and
    messages are printed as they are. Off a terminal, lines are not cut at 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    width = None if is_tty else int(os.environ.get("COLUMNS") or 0) or 200
    return Console(stderr=stderr, markup=False, highlight=False, width=width,
                   soft_wrap=False)


@dataclass
class Cli:
    """What every API command gets: where the cluster is and how to print."""

    namespace: str | None
    kubeconfig: Path | None
    output: str
    _client: Client | None = field(default=None, repr=False)

    @property
    def as_table(self) -> bool:
        return self.output == "table"

    def client(self) -> Client:
        """The SDK's default client, configured from the options (else the environment)."""
        if self._client is None:
            from kubetasks._internal.client import configure

            self._client = configure(namespace=self.namespace, kubeconfig=self.kubeconfig)
        return self._client

    def emit(self, data: Any) -> None:
        """Print ``data`` as a JSON or YAML document (``-o json|yaml``)."""
        from kubetasks.cli.output import render_data

        click.echo(render_data(data, self.output), nl=False)

    def show(self, renderable: RenderableType) -> None:
        console().print(renderable)

    def note(self, message: str) -> None:
        """A remark for the person at the terminal, on stderr (scripts read stdout)."""
        click.echo(message, err=True)


def api_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command ``-n/--namespace``, ``--kubeconfig`` and ``-o/--output``, and call it
    with a :class:`Cli` as its first argument. Apply it above the command's own options."""

    @functools.wraps(fn)
    def command(*args: Any, namespace: str | None, kubeconfig: Path | None, output: str,
                **kwargs: Any) -> None:
        root = click.get_current_context().obj or {}
        cli = Cli(namespace=namespace or root.get("namespace"),
                  kubeconfig=kubeconfig or root.get("kubeconfig"), output=output.lower())
        fn(cli, *args, **kwargs)

    decorated: Callable[..., None] = command
    for option in reversed(API_OPTIONS):
        decorated = option(decorated)
    return decorated


def namespace_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-n", "--namespace", default=None, metavar="NAMESPACE",
        help="Namespace of the runs; default: KUBETASKS_NAMESPACE, else the kubeconfig "
             "context's, else default.")(fn)


def kubeconfig_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--kubeconfig", default=None,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Kubeconfig file; default: KUBECONFIG, in-cluster, else ~/.kube/config.")(fn)


def output_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o", "--output", default="table", show_default=True,
        type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
        help="table for people; json or yaml for scripts (the full data).")(fn)


API_OPTIONS = (namespace_option, kubeconfig_option, output_option)


def _growing_intervals(ceiling: float) -> Iterator[float]:
    """0.1 s, then 1.5 times longer each time, up to ``ceiling``."""
    interval = min(0.1, ceiling)
    while True:
        yield interval
        interval = min(ceiling, interval * 1.5)


def _read(client: Client, run_id: str) -> Run[Any]:
    namespace, name = split_run_id(run_id, client.namespace)
    return Run.from_object(read_run(client, namespace, name), client)


def _status_line(run: Run[Any]) -> str:
    attempt = f", attempt {run.attempt_count}" if run.attempt_count else ""
    return f"{run.id}: {run.status}{attempt}"


def wait_for_run(client: Client, run_id: str, timeout: float | None,
                 poll_interval: float = POLL_INTERVAL) -> Run[Any]:
    """Poll until the run has ended, with a spinner and the run's status on stderr (shown
    only on a terminal). RunPollTimeoutError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    intervals = _growing_intervals(poll_interval)
    run = _read(client, run_id)
    with console(stderr=True).status(_status_line(run)) as spinner:
        while not run.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise RunPollTimeoutError(run.id, run.status, timeout or 0)
            time.sleep(next(intervals))
            run = _read(client, run_id)
            spinner.update(_status_line(run))
    return run


# --- trigger ---------------------------------------------------------------------------------


MACHINES: tuple[str, ...] = get_args(Machine)


def _payload(payload_json: str | None, payload_file: IO[str] | None) -> Any:
    if payload_json is not None and payload_file is not None:
        raise click.UsageError("give the payload with --payload or --payload-file, not both")
    if payload_file is not None:
        name = getattr(payload_file, "name", "the payload file")
        return parse_json_value(payload_file.read(), f"--payload-file {name}")
    if payload_json is not None:
        return parse_json_value(payload_json, "--payload")
    return None


@click.command()
@api_command
@click.argument("task_id", metavar="TASK")
@click.option("--payload", "payload_json", metavar="JSON", default=None,
              help="The payload as JSON (default: null).")
@click.option("--payload-file", type=click.File("r"), default=None, metavar="PATH",
              help="Read the payload's JSON from a file ('-' for stdin).")
@click.option("--delay", default=None,
              help="Start no sooner than: a duration ('1h52m18s', '88s', seconds) or an "
                   "ISO 8601 time.")
@click.option("--ttl", default=None,
              help="Expire the run if it has not started this long after it was enqueued.")
@click.option("--idempotency-key", default=None,
              help="Return the run of this key instead of creating another.")
@click.option("--idempotency-key-ttl", default=None, help="How long the key holds (30d).")
@click.option("--queue", default=None, help="Run on this queue instead of the task's.")
@click.option("--concurrency-key", default=None,
              help="Split the queue's concurrency limit per value (e.g. a user id).")
@click.option("--max-attempts", type=int, default=None,
              help="Attempts before the run fails (overrides the task's retry policy).")
@click.option("--tag", "tags", multiple=True, help="A tag to find the run by (repeatable).")
@click.option("--metadata", "metadata_json", metavar="JSON", default=None,
              help="A JSON object the task reads as ctx.run.metadata.")
@click.option("--machine", type=click.Choice(MACHINES), default=None, help="Machine preset.")
@click.option("--max-duration", default=None,
              help="Stop each attempt after this long (the run ends TimedOut).")
@click.option("--priority", default=None, help="Seconds of head start in the queue.")
@click.option("--wait", is_flag=True,
              help="Wait until the run has ended; print its status and output. The exit "
                   "code is 1 if it did not complete.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="With --wait: give up after this many seconds (the run goes on).")
def trigger(cli: Cli, task_id: str, payload_json: str | None, payload_file: IO[str] | None,
            delay: str | None, ttl: str | None, idempotency_key: str | None,
            idempotency_key_ttl: str | None, queue: str | None, concurrency_key: str | None,
            max_attempts: int | None, tags: tuple[str, ...], metadata_json: str | None,
            machine: str | None, max_duration: str | None, priority: str | None,
            wait: bool, timeout: float | None) -> None:
    """Trigger a run of TASK (a task id) and print its id.

    \b
    kubetasks trigger send-email --payload '{"to": "a@example.com"}' --delay 10m
    kubetasks trigger behave --payload-file payload.json --wait --timeout 120
    """
    from kubetasks import tasks

    if timeout is not None and not wait:
        raise click.UsageError("--timeout applies only with --wait")
    payload = _payload(payload_json, payload_file)
    options: TriggerOptionsDict = {}
    if delay is not None:
        parsed = parse_duration_arg(delay)
        options["delay"] = dt.timedelta(seconds=parsed) if isinstance(parsed, int) else parsed
    if ttl is not None:
        options["ttl"] = parse_duration_arg(ttl)
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    if idempotency_key_ttl is not None:
        options["idempotency_key_ttl"] = parse_duration_arg(idempotency_key_ttl)
    if queue is not None:
        options["queue"] = queue
    if concurrency_key is not None:
        options["concurrency_key"] = concurrency_key
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if tags:
        options["tags"] = list(tags)
    if metadata_json is not None:
        options["metadata"] = parse_json_value(metadata_json, "--metadata")
    if machine is not None:
        options["machine"] = cast(Any, machine)
    if max_duration is not None:
        options["max_duration"] = parse_duration_arg(max_duration)
    if priority is not None:
        options["priority"] = parse_duration_arg(priority)

    client = cli.client()
    handle = tasks.trigger(task_id, payload, **options)
    if not wait:
        if cli.as_table:
            click.echo(handle.id)
            if handle.is_cached:
                cli.note(f"the idempotency key {idempotency_key!r} returned the existing run "
                         f"{handle.id}")
        else:
            cli.emit({**run_data(_read(client, handle.id)), "is_cached": handle.is_cached})
        return
    run = wait_for_run(client, handle.id, timeout)
    if cli.as_table:
        for line in wait_summary(run, _output_of(cli, run)):
            click.echo(line)
    else:
        cli.emit({**run_data(run), "is_cached": handle.is_cached})
    if not run.is_completed:
        sys.exit(1)


def _output_of(cli: Cli, run: Run[Any]) -> Any:
    """The run's output, downloaded when it was offloaded; where it is, when that fails
    (no S3 credentials here, say): the run completed all the same."""
    if not run.is_completed or run.output_ref is None:
        return run.output
    try:
        return run.get_output()
    except Exception as exc:
        cli.note(f"warning: cannot download the output ({type(exc).__name__}: {exc})")
        return {"outputRef": run.output_ref, "presignedUrl": run.output_presigned_url}


# --- runs ------------------------------------------------------------------------------------


@click.group("runs")
def runs_group() -> None:
    """List, inspect, cancel, reschedule, replay and watch runs; read their logs."""


def _phases(values: tuple[str, ...]) -> list[str]:
    try:
        return normalize_phases(values)
    except CliValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--status") from None


def _filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--task", default=None, help="Only runs of this task."),
        click.option("--tag", default=None, help="Only runs with this tag."),
        click.option("--batch", default=None, help="Only runs this batch created."),
        click.option("--schedule", default=None, help="Only runs this schedule created."),
        click.option("--queue", default=None, help="Only runs on this queue."),
    )):
        fn = option(fn)
    return fn


@runs_group.command("list")
@api_command
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              help="Only runs in this status (repeatable, or comma-separated: "
                   "--status Failed,Crashed).")
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many runs.")
def list_runs(cli: Cli, statuses: tuple[str, ...], task: str | None, tag: str | None,
              batch: str | None, schedule: str | None, queue: str | None,
              limit: int | None) -> None:
    """List runs (in name order): name, task, status, attempt, queue, age."""
    from kubetasks import runs

    phases = _phases(statuses)
    client = cli.client()
    found = list(runs.list(status=phases or None, task=task, tag=tag, batch=batch,
                           schedule=schedule, queue=queue, limit=limit))
    if not cli.as_table:
        cli.emit([run_data(run) for run in found])
        return
    if not found:
        cli.note(f"no runs found in namespace {client.namespace}")
        return
    cli.show(runs_table(found, dt.datetime.now(dt.UTC)))


@runs_group.command("get")
@api_command
@click.argument("run_id", metavar="RUN")
def get_run(cli: Cli, run_id: str) -> None:
    """Show a run: status, times, options, attempts, and its output or error. RUN is
    namespace/name (as trigger prints it) or a name in the namespace."""
    from kubetasks import runs

    cli.client()
    run = runs.retrieve(run_id)
    if cli.as_table:
        cli.show(run_details(run, dt.datetime.now(dt.UTC)))
    else:
        cli.emit(run_data(run))


@runs_group.command("cancel")
@api_command
@click.argument("run_id", metavar="RUN")
def cancel_run(cli: Cli, run_id: str) -> None:
    """Cancel a run: its pod is stopped and it ends Canceled (a run that ended stays as it
    is)."""
    from kubetasks import runs

    client = cli.client()
    before = runs.retrieve(run_id)
    if not before.is_terminal:
        runs.cancel(before.id)
    if not cli.as_table:
        cli.emit(run_data(_read(client, before.id)))
    elif before.is_terminal:
        click.echo(f"{before.id} already ended {before.status}; nothing to cancel")
    else:
        click.echo(f"{before.id} canceled (it was {before.status}; it ends Canceled once its "
                   "pod has stopped)")


@runs_group.command("reschedule")
@api_command
@click.argument("run_id", metavar="RUN")
@click.option("--delay", required=True,
              help="The new start: a duration from now ('2h', '90s', seconds) or an ISO 8601 "
                   "time.")
def reschedule_run(cli: Cli, run_id: str, delay: str) -> None:
    """Move the start of a Delayed run."""
    from kubetasks import runs

    cli.client()
    parsed = parse_duration_arg(delay)
    run = runs.reschedule(run_id, delay=dt.timedelta(seconds=parsed)
                          if isinstance(parsed, int) else parsed)
    if cli.as_table:
        click.echo(f"{run.id} delayed until "
                   f"{format_time(run.delay_until, dt.datetime.now(dt.UTC))}")
    else:
        cli.emit(run_data(run))


@runs_group.command("replay")
@api_command
@click.argument("run_id", metavar="RUN")
def replay_run(cli: Cli, run_id: str) -> None:
    """Trigger a new run of the same task with the same payload and options (without the
    delay, the idempotency key and the parent); print its id."""
    from kubetasks import runs

    client = cli.client()
    original_namespace, original_name = split_run_id(run_id, client.namespace)
    handle = runs.replay(run_id)
    if cli.as_table:
        click.echo(handle.id)
    else:
        cli.emit({**run_data(_read(client, handle.id)),
                  "replay_of": f"{original_namespace}/{original_name}"})


# --- runs logs -------------------------------------------------------------------------------


def _attempt_to_show(run: Run[Any], attempt: int | None, follow: bool) -> int | None:
    """The attempt whose log to read; None while a followed run does not have it yet."""
    wanted = attempt or run.attempt_count
    if wanted and wanted <= run.attempt_count:
        return wanted
    if follow and not run.is_terminal:
        return None
    if attempt:
        raise CliValueError(f"run {run.id} has {run.attempt_count} attempt(s); there is no "
                            f"attempt {attempt}")
    raise CliValueError(f"run {run.id} has no attempt yet ({run.status}), so no log"
                        + ("" if run.is_terminal else "; --follow waits for it"))


def _pod_to_read(client: Client, run: Run[Any], attempt: int | None,
                 follow: bool) -> tuple[Run[Any], int, dict[str, Any]]:
    """The run, the attempt and its pod; with ``follow`` it waits until the attempt
    exists and its container has started."""
    from kubetasks.cli import podlogs

    intervals = _growing_intervals(POLL_INTERVAL)
    with console(stderr=True).status(_status_line(run)) as spinner:
        while True:
            number = _attempt_to_show(run, attempt, follow)
            if number is not None:
                pod = podlogs.attempt_pod(client, run, number)
                if pod is None and (not follow or run.is_terminal):
                    raise CliValueError(
                        f"attempt {number} of run {run.id} has no pod: not created yet, or "
                        "deleted with its Job, and its log with it (the operator deletes an "
                        "attempt's Job KUBETASKS_JOB_TTL_SECONDS after it finished)")
                if pod is not None:
                    state = podlogs.container_state(pod, podlogs.log_container(pod))
                    if not follow or run.is_terminal or state in ("running", "terminated"):
                        return run, number, pod
            spinner.update(_status_line(run) + " (waiting for its pod to start)")
            time.sleep(next(intervals))
            run = _read(client, run.id)


@runs_group.command("logs")
@api_command
@click.argument("run_id", metavar="RUN")
@click.option("--attempt", type=click.IntRange(min=1), default=None,
              help="The attempt (from 1); default: the latest.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing as the attempt writes, until it ends (waits for the "
                   "attempt to start).")
@click.option("--tail", type=click.IntRange(min=0), default=None,
              help="Only the last N lines.")
def run_logs(cli: Cli, run_id: str, attempt: int | None, follow: bool,
             tail: int | None) -> None:
    """Print what an attempt of the run wrote (stdout and stderr of its pod), through the
    API server's pods/log. -o json|yaml gives {run, attempt, pod, log}."""
    from kubetasks import runs
    from kubetasks.cli import podlogs

    if follow and not cli.as_table:
        raise click.UsageError("--follow prints the log as it comes; it cannot be -o "
                               f"{cli.output}")
    client = cli.client()
    run, number, pod = _pod_to_read(client, runs.retrieve(run_id), attempt, follow)
    chunks = podlogs.pod_log(client, pod, follow=follow, tail_lines=tail)
    if not cli.as_table:
        text = b"".join(chunks).decode(errors="replace")
        cli.emit({"run": run.id, "attempt": number, "pod": pod["metadata"]["name"],
                  "log": text})
        return
    for chunk in chunks:
        click.echo(chunk, nl=False)  # bytes as they are, flushed at once


# --- runs watch ------------------------------------------------------------------------------


def _watch_view(runs: list[Run[Any]], now: dt.datetime) -> RenderableType:
    ended = sum(run.is_terminal for run in runs)
    footer = Text(f"{ended} of {len(runs)} ended · {now.strftime('%H:%M:%S')} UTC",
                  style="dim")
    return Group(runs_table(runs, now), footer)


@runs_group.command("watch")
@api_command
@click.argument("run_id", metavar="[RUN]", required=False)
@_filter_options
@click.option("--interval", type=click.FloatRange(min=0.1), default=POLL_INTERVAL,
              show_default=True, help="Seconds between updates.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up after this many seconds (exit code 1).")
def watch_runs(cli: Cli, run_id: str | None, task: str | None, tag: str | None,
               batch: str | None, schedule: str | None, queue: str | None,
               interval: float, timeout: float | None) -> None:
    """Show a live table of runs until they have ended. With RUN, that run; otherwise the
    runs (matching the filters) that had not ended when the watch began, and those created
    since. The exit code is 0 if every watched run completed, else 1. -o json|yaml prints
    only the final state."""
    from kubetasks import runs

    if run_id is not None and any((task, tag, batch, schedule, queue)):
        raise click.UsageError("give a RUN or filters (--task, --tag, --batch, --schedule, "
                               "--queue), not both")
    client = cli.client()
    started = time.monotonic()
    began = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    watched: set[str] = set()

    def current() -> list[Run[Any]]:
        if run_id is not None:
            return [runs.retrieve(run_id)]
        found = []
        for run in runs.list(task=task, tag=tag, batch=batch, schedule=schedule,
                             queue=queue):
            if run.id in watched or not run.is_terminal:
                watched.add(run.id)
                found.append(run)
            elif run.created_at is not None and run.created_at >= began:
                watched.add(run.id)  # created since the watch began and ended already
                found.append(run)
        return found

    shown = current()
    if run_id is None and not shown:
        if cli.as_table:
            cli.note(f"no unfinished runs in namespace {client.namespace}")
        else:
            cli.emit([])
        return
    live = Live(_watch_view(shown, dt.datetime.now(dt.UTC)), console=console(),
                auto_refresh=False) if cli.as_table else None
    with live if live is not None else contextlib.nullcontext():
        while not all(run.is_terminal for run in shown):
            if timeout is not None and time.monotonic() - started >= timeout:
                unfinished = [run for run in shown if not run.is_terminal]
                if live is not None:
                    live.update(_watch_view(shown, dt.datetime.now(dt.UTC)), refresh=True)
                raise RunPollTimeoutError(
                    unfinished[0].id if len(unfinished) == 1
                    else f"{unfinished[0].id} (and {len(unfinished) - 1} more)",
                    unfinished[0].status, timeout)
            time.sleep(interval)
            shown = current()
            if live is not None:
                live.update(_watch_view(shown, dt.datetime.now(dt.UTC)), refresh=True)
    if not cli.as_table:
        cli.emit(run_data(shown[0]) if run_id is not None else [run_data(r) for r in shown])
    if not all(run.is_completed for run in shown):
        sys.exit(1)


COMMANDS: tuple[click.Command, ...] = (trigger, runs_group)
"""What ``cli/__init__.py`` adds to the main group."""

__all__ = ["COMMANDS", "Cli", "api_command", "console", "wait_for_run"]
