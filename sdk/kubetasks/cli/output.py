"""What the ``kubetasks`` command prints: runs, batches, queues and schedules as plain data
(for ``-o json`` and ``-o yaml``) and as rich tables (the default ``-o table``), plus the small
parsers of command-line values. Pure: no API calls, the clock is passed in.

>>> format_age(3 * 3600 + 5 * 60)
'3h5m'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kubetasks.batch import Batch
from kubetasks.handles import TERMINAL_PHASES, Run, RunAttempt, RunError
from kubetasks.schedules import Schedule

OUTPUT_FORMATS = ("table", "json", "yaml")

RUN_PHASES = ("Pending", "Delayed", "Queued", "Executing", "Waiting", "Retrying", "Completed",
              "Failed", "Canceled", "Expired", "TimedOut", "Crashed")
"""Every phase of a run, in lifecycle order."""

FINISHED_COUNTS = ("completed", "failed", "canceled", "expired", "missing")
"""The batch counts of runs that will not change any more."""

MAX_INLINE_VALUE = 2000
"""Characters of a payload or output a table shows before it cuts the value short."""

MAX_BATCH_NAMES = 20
"""Run names ``batches get`` lists in a table (``-o json`` gives them all)."""

_PHASE_STYLES = {
    "Completed": "green",
    "Failed": "red",
    "Crashed": "red",
    "TimedOut": "red",
    "Expired": "yellow",
    "Canceled": "yellow",
    "Executing": "cyan",
    "Retrying": "magenta",
    "Waiting": "blue",
    "Queued": "blue",
    "Delayed": "dim",
    "Pending": "dim",
    "Running": "cyan",
    "PartiallyFailed": "red",
}


# --- parsing command-line values -------------------------------------------------------------


class CliValueError(ValueError):
    """A command-line value cannot be used; the message says which and why."""


def parse_json_value(text: str, what: str) -> Any:
    """A JSON document given on the command line (or read from a file).

    >>> parse_json_value('{"to": "a@example.com"}', "--payload")
    {'to': 'a@example.com'}
    """
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliValueError(f"{what} is not valid JSON ({exc}); quote it for your shell, "
                            """e.g. --payload '{"to": "a@example.com"}'""") from None


def parse_duration_arg(text: str) -> str | int:
    """A duration option: a plain number means seconds, anything else goes to the SDK as it
    is ("10m", "1h52m18s"), which checks it.

    >>> parse_duration_arg("90"), parse_duration_arg("10m")
    (90, '10m')
    """
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() else stripped


def normalize_phases(values: Iterable[str]) -> list[str]:
    """Run phases from ``--status`` values: repeatable and comma-separated, any case.

    >>> normalize_phases(["failed,crashed", "Completed"])
    ['Failed', 'Crashed', 'Completed']
    """
    by_lower = {phase.lower(): phase for phase in RUN_PHASES}
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                continue
            phase = by_lower.get(name.lower())
            if phase is None:
                raise CliValueError(f"unknown status {name!r}; the statuses are "
                                    f"{', '.join(RUN_PHASES)}")
            if phase not in found:
                found.append(phase)
    return found


def one_line(message: str) -> str:
    """A message on a single line: its non-empty lines joined with '; '.

    >>> one_line("first\\n\\n  second ")
    'first; second'
    """
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


# --- plain data ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready values: datetimes as ISO 8601, dataclasses and models as dicts."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return _plain(model_dump(mode="json"))
    return value


_RUN_INTERNALS = frozenset({"raw", "client", "output_type"})
_BATCH_INTERNALS = frozenset({"raw"})
_SCHEDULE_INTERNALS = frozenset({"raw"})


def run_data(run: Run[Any]) -> dict[str, Any]:
    """A run's fields as ``runs.retrieve`` gives them, as JSON-ready values (times in ISO
    8601, ``error`` and ``attempts`` as objects)."""
    return {f.name: _plain(getattr(run, f.name)) for f in dataclasses.fields(run)
            if f.name not in _RUN_INTERNALS}


def batch_data(batch: Batch) -> dict[str, Any]:
    """A batch's fields as ``batch.retrieve`` gives them, plus ``finished`` (runs that
    ended) and ``is_finished`` (the batch ended)."""
    data = {f.name: _plain(getattr(batch, f.name)) for f in dataclasses.fields(batch)
            if f.name not in _BATCH_INTERNALS}
    data["finished"] = finished_count(batch)
    data["is_finished"] = batch.is_finished
    return data


def schedule_data(schedule: Schedule) -> dict[str, Any]:
    """A schedule's fields as ``schedules.retrieve`` gives them, as JSON-ready values."""
    return {f.name: _plain(getattr(schedule, f.name)) for f in dataclasses.fields(schedule)
            if f.name not in _SCHEDULE_INTERNALS}


def queue_data(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A TaskQueue object as the row ``queues list`` gives: name, limits, paused, and the
    operator's counts (None before it wrote them): running, queued, active keys, and the
    namespace's cap with its running count when the operator sets one. ``warning`` holds the
    operator's word on a retired field, else None."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    deprecated = [c for c in status.get("conditions") or []
                  if c.get("type") == "Deprecated" and c.get("status") == "True"]
    return {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "concurrency_limit": spec.get("concurrencyLimit"),
        "total_concurrency_limit": spec.get("totalConcurrencyLimit"),
        "paused": bool(spec.get("paused", False)),
        "running": status.get("running"),
        "queued": status.get("queued"),
        "active_keys": status.get("activeKeys"),
        "namespace_concurrency_limit": status.get("namespaceConcurrencyLimit"),
        "namespace_running": status.get("namespaceRunning"),
        "warning": deprecated[0].get("message") if deprecated else None,
    }


def render_data(data: Any, fmt: str) -> str:
    """``data`` as a JSON or YAML document (ends with a newline)."""
    plain = _plain(data)
    if fmt == "json":
        return json.dumps(plain, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
    raise CliValueError(f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")


# --- times -----------------------------------------------------------------------------------


def format_age(seconds: float) -> str:
    """A short age, as kubectl shows it: 45s, 5m3s, 42m, 3h5m, 12h, 3d4h, 12d.

    >>> [format_age(s) for s in (45, 303, 2520, 11100, 43200, 273600, 1036800)]
    ['45s', '5m3s', '42m', '3h5m', '12h', '3d4h', '12d']
    """
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 10:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    if minutes < 60:
        return f"{minutes}m"
    hours, mins = divmod(minutes, 60)
    if hours < 8:
        return f"{hours}h{mins}m" if mins else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days, hrs = divmod(hours, 24)
    if days < 8:
        return f"{days}d{hrs}h" if hrs else f"{days}d"
    return f"{days}d"


def format_duration(seconds: float) -> str:
    """A duration with a tenth of a second below a minute: 0.4s, 12.0s, 3m4s, 2h0m.

    >>> [format_duration(s) for s in (0.42, 12, 184, 7200)]
    ['0.4s', '12.0s', '3m4s', '2h0m']
    """
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s"
    hours, mins = divmod(minutes, 60)
    return f"{hours}h{mins}m"


def age_of(moment: dt.datetime | None, now: dt.datetime) -> str:
    return "" if moment is None else format_age((now - moment).total_seconds())


def format_time(moment: dt.datetime | None, now: dt.datetime) -> str:
    """A UTC time with how long ago (or from now) it is.

    >>> now = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    >>> format_time(now - dt.timedelta(seconds=90), now)
    '2030-01-01 11:58:30 UTC (1m30s ago)'
    >>> format_time(now + dt.timedelta(hours=2), now)
    '2030-01-01 14:00:00 UTC (in 2h)'
    """
    if moment is None:
        return ""
    utc = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = (now - moment).total_seconds()
    relative = f"{format_age(delta)} ago" if delta >= 0 else f"in {format_age(-delta)}"
    return f"{utc} ({relative})"


# --- values in tables ------------------------------------------------------------------------


def phase_text(phase: str) -> Text:
    return Text(phase, style=_PHASE_STYLES.get(phase, ""))


def compact_json(value: Any, limit: int = MAX_INLINE_VALUE) -> str:
    """A value as one line of JSON, cut short (saying how long it is) above ``limit``.

    >>> compact_json({"a": [1, 2]})
    '{"a": [1, 2]}'
    >>> compact_json("x" * 50, limit=10)
    '"xxxxxxxxx… (52 characters; -o json shows all)'
    """
    text = json.dumps(_plain(value), ensure_ascii=False)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 1]}… ({len(text):,} characters; -o json shows all)"


def _offloaded(ref: Mapping[str, Any] | None, url: str | None) -> str:
    size = (ref or {}).get("size")
    where = f"{size:,} bytes in object storage" if isinstance(size, int) else "object storage"
    return f"(offloaded: {where}) {url or ''}".rstrip()


def error_text(error: RunError | None) -> str:
    if error is None:
        return ""
    return one_line(str(error))


def queue_of(run: Run[Any]) -> str:
    """The queue a run uses: the operator's record, else what its spec or task implies."""
    return run.queue or run.task_id


def runs_table(runs: Sequence[Run[Any]], now: dt.datetime, *, title: str | None = None
               ) -> Table:
    """``runs list``: name, task, status, attempt, queue, age."""
    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "TASK", "STATUS", "ATTEMPT", "QUEUE", "AGE"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        table.add_row(run.name, run.task_id, phase_text(run.status),
                      str(run.attempt_count) if run.attempt_count else "-", queue_of(run),
                      age_of(run.created_at, now))
    return table


def attempts_table(attempts: Sequence[RunAttempt], now: dt.datetime) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("#", "STARTED", "DURATION", "EXIT", "REASON", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE")
    for attempt in attempts:
        duration = ""
        if attempt.started_at is not None:
            end = attempt.finished_at or now
            duration = format_duration((end - attempt.started_at).total_seconds())
            if attempt.finished_at is None:
                duration += " so far"
        table.add_row(str(attempt.number), age_of(attempt.started_at, now) + " ago"
                      if attempt.started_at else "", duration,
                      "" if attempt.exit_code is None else str(attempt.exit_code),
                      attempt.reason or "", one_line(attempt.message or ""))
    return table


def _fields_table(rows: Iterable[tuple[str, RenderableType]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in rows:
        if value not in ("", None):
            table.add_row(label, value)
    return table


def run_details(run: Run[Any], now: dt.datetime) -> RenderableType:
    """``runs get``: every field worth reading, the attempts, then output or error."""
    took = ""
    if run.started_at is not None and run.finished_at is not None:
        took = f", took {format_duration((run.finished_at - run.started_at).total_seconds())}"
    rows: list[tuple[str, RenderableType]] = [
        ("Run", run.id),
        ("Task", run.task_id),
        ("Status", phase_text(run.status)),
        ("Attempts", str(run.attempt_count)),
        ("Queue", queue_of(run)),
        ("Concurrency key", run.concurrency_key or ""),
        ("Tags", ", ".join(run.tags)),
        ("Idempotency key", run.idempotency_key or ""),
        ("Parent", run.parent_id or ""),
        ("Batch", run.batch_id or ""),
        ("Created", format_time(run.created_at, now)),
        ("Delayed until", format_time(run.delay_until, now)),
        ("Enqueued", format_time(run.enqueued_at, now)),
        ("Expires", format_time(run.expires_at, now) if not run.is_terminal else ""),
        ("Started", format_time(run.started_at, now)),
        ("Finished", format_time(run.finished_at, now) + took if run.finished_at else ""),
        ("Metadata", compact_json(run.metadata) if run.metadata else ""),
        ("Payload", _offloaded(run.payload_ref, run.payload_presigned_url)
         if run.payload_ref else compact_json(run.payload)),
    ]
    if run.is_completed:
        rows.append(("Output", _offloaded(run.output_ref, run.output_presigned_url)
                     if run.output_ref else compact_json(run.output)))
    if run.error is not None:
        rows.append(("Error", Text(error_text(run.error), style="red")))
    parts: list[RenderableType] = [_fields_table(rows)]
    if run.attempts:
        parts += [Text(""), Text("Attempts", style="bold"), attempts_table(run.attempts, now)]
    if run.error is not None and run.error.stack:
        parts += [Text(""), Text("Stack", style="bold"), Text(run.error.stack.rstrip())]
    return Group(*parts)


def finished_count(batch: Batch) -> int:
    """Runs of the batch that ended (completed, failed, canceled, expired, missing)."""
    return sum(batch.counts.get(name, 0) for name in FINISHED_COUNTS)


def batch_details(batch: Batch, now: dt.datetime, max_names: int = MAX_BATCH_NAMES
                  ) -> RenderableType:
    """``batches get``: status, a progress bar of finished/total, counts, run names."""
    finished = finished_count(batch)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(batch.total, 1), completed=finished, width=40),
                Text(f"{finished}/{batch.total} finished"))
    counts = ", ".join(f"{name} {value}" for name, value in batch.counts.items() if value)
    rows: list[tuple[str, RenderableType]] = [
        ("Batch", batch.id),
        ("Task", batch.task_id),
        ("Status", phase_text(batch.status)),
        ("Progress", bar),
        ("Runs", f"{batch.created} of {batch.total} created"
         + (f", {batch.reused} reused" if batch.reused else "")),
        ("Counts", counts or "none yet"),
        ("Parent", batch.parent_id or ""),
        ("Created", format_time(batch.created_at, now)),
    ]
    if batch.status == "Failed":
        rows.append(("Error", Text(one_line(batch.failure_message() or ""), style="red")))
    parts: list[RenderableType] = [_fields_table(rows)]
    names = [name or "(not created yet)" for name in batch.run_names]
    if names:
        parts += [Text(""), Text("Run names (item order)", style="bold")]
        parts += [Text(f"{index:>4}  {name}") for index, name in enumerate(names[:max_names])]
        if len(names) > max_names:
            parts.append(Text(f"  … {len(names) - max_names:,} more (-o json lists them all)",
                              style="dim"))
    return Group(*parts)


def queues_table(queues: Sequence[Mapping[str, Any]]) -> Group:
    """``queues list``: per queue its limit (each concurrency key's, and the keyless runs'),
    its total cap, running, queued, active keys and paused; then the namespace's cap, if the
    operator sets one, and any warning."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "LIMIT/KEY", "TOTAL", "RUNNING", "QUEUED", "KEYS", "PAUSED"):
        table.add_column(column, no_wrap=True)

    def number(value: Any) -> str:
        return "-" if value is None else str(value)

    for row in queues:
        table.add_row(str(row["name"]), number(row["concurrency_limit"]),
                      number(row["total_concurrency_limit"]), number(row["running"]),
                      number(row["queued"]), number(row["active_keys"]),
                      Text("yes", style="yellow") if row["paused"] else "no")
    parts: list[Table | Text] = [table]
    capped = [row for row in queues if row.get("namespace_concurrency_limit") is not None]
    if capped:
        row = capped[0]
        parts.append(Text(
            f"namespace {row['namespace']}: at most {row['namespace_concurrency_limit']} runs "
            f"at once over all queues ({number(row['namespace_running'])} running)"))
    for row in queues:
        if row.get("warning"):
            parts.append(Text(f"queue {row['name']}: {row['warning']}", style="yellow"))
    return Group(*parts)


def _active_text(active: bool) -> Text:
    return Text("yes") if active else Text("no", style="yellow")


def _next_run(schedule: Schedule, now: dt.datetime) -> str:
    if schedule.next_run is None:
        return "-"
    return f"in {format_age((schedule.next_run - now).total_seconds())}"


def schedules_table(schedules: Sequence[Schedule], now: dt.datetime) -> Table:
    """``schedules list``: name, task, type, cron, time zone, active, the next tick (from
    now) and the run of the latest tick."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "TASK", "TYPE", "CRON", "TIMEZONE", "ACTIVE", "NEXT", "LAST RUN"):
        table.add_column(column, no_wrap=True)
    for schedule in schedules:
        last_run = schedule.last_run_id.partition("/")[2] if schedule.last_run_id else "-"
        table.add_row(schedule.name, schedule.task_id, schedule.type.lower(), schedule.cron,
                      schedule.timezone, _active_text(schedule.active),
                      _next_run(schedule, now), last_run)
    return table


def _tick_line(tick: dt.datetime, timezone: str, now: dt.datetime) -> str:
    """A tick in UTC, in the schedule's time zone and from now."""
    from kubetasks.protocol.cron import zone

    utc = tick.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    local = tick.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")
    where = "" if timezone == "UTC" else f"  {local} ({timezone})"
    return f"{utc}{where}  in {format_age((tick - now).total_seconds())}"


def conditions_table(schedule: Schedule, now: dt.datetime) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE")
    for condition in schedule.conditions:
        table.add_row(condition.type, condition.status, condition.reason or "",
                      age_of(condition.last_transition_time, now),
                      one_line(condition.message or ""))
    return table


def schedule_details(schedule: Schedule, now: dt.datetime) -> RenderableType:
    """``schedules get``: the cron in English, the options, the latest tick and its run,
    the next ticks, and the operator's conditions."""
    kind = ("declarative (@task(cron=...), applied by kubetasks deploy)"
            if schedule.type == "DECLARATIVE" else "imperative")
    optional = {
        "External id": schedule.external_id,
        "Deduplication key": schedule.deduplication_key,
        "Queue": schedule.queue,
        "Concurrency key": schedule.concurrency_key,
        "TTL": None if schedule.ttl_seconds is None else f"{schedule.ttl_seconds} s",
        "Max attempts": schedule.max_attempts,
        "Max duration": (None if schedule.max_duration_seconds is None
                         else f"{schedule.max_duration_seconds} s"),
        "Machine": schedule.machine,
        "Tags": ", ".join(schedule.tags),
        "Metadata": compact_json(schedule.metadata) if schedule.metadata else "",
    }
    rows: list[tuple[str, RenderableType]] = [
        ("Schedule", schedule.id),
        ("Task", schedule.task_id),
        ("Type", kind),
        ("Cron", f"{schedule.cron}  ({schedule.description})"),
        ("Timezone", schedule.timezone),
        ("Active", _active_text(schedule.active)),
        ("Concurrency policy", schedule.concurrency_policy),
        ("Starting deadline", f"{schedule.starting_deadline_seconds} s"),
        *((label, "" if value is None else str(value)) for label, value in optional.items()),
        ("Created", format_time(schedule.created_at, now)),
        ("Last tick", format_time(schedule.last_schedule_time, now) or "none yet"),
        ("Last run", schedule.last_run_id or "none yet"),
    ]
    parts: list[RenderableType] = [_fields_table(rows), Text("")]
    if schedule.upcoming:
        parts.append(Text("Next runs", style="bold"))
        parts += [Text(_tick_line(tick, schedule.timezone, now)) for tick in schedule.upcoming]
    elif not schedule.active:
        parts.append(Text("Next runs: none while inactive (activate it to resume; the ticks "
                          "it passes meanwhile are not caught up)", style="yellow"))
    else:
        parts.append(Text("Next runs: the cron cannot be read (see the conditions)",
                          style="red"))
    if schedule.conditions:
        parts += [Text(""), Text("Conditions", style="bold"), conditions_table(schedule, now)]
    return Group(*parts)


def wait_summary(run: Run[Any], output: Any) -> list[str]:
    """What ``trigger --wait`` prints once the run ended: the id, how it ended, and its
    output or error."""
    took = ""
    if run.started_at is not None and run.finished_at is not None:
        took = f" in {format_duration((run.finished_at - run.started_at).total_seconds())}"
    attempts = f" after {run.attempt_count} attempt{'s' if run.attempt_count != 1 else ''}"
    lines = [run.id, f"status: {run.status}{took}{attempts if run.attempt_count else ''}"]
    if run.is_completed:
        lines.append(f"output: {json.dumps(_plain(output), ensure_ascii=False)}")
    elif run.error is not None:
        lines.append(f"error: {error_text(run.error)}")
    return lines


def is_terminal(phase: str) -> bool:
    return phase in TERMINAL_PHASES
