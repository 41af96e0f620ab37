"""What the pages show, computed from the store: pure functions of objects and filters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
PAGE_SIZE = 50
FINAL = frozenset({"Completed", "Failed", "Canceled", "Expired", "TimedOut", "Crashed"})
FILTERS = ("status", "task", "tag", "queue", "batch", "schedule", "namespace", "period",
           "from", "to")
PHASES = ("Pending", "Delayed", "Queued", "Executing", "Retrying", "Completed", "Failed",
          "Canceled", "Expired", "TimedOut", "Crashed")
PERIODS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400,
           "30d": 30 * 86400}
"""The "created in the last ..." choices of the time filter, in seconds."""


@dataclass(frozen=True)
class RunRow:
    namespace: str
    name: str
    task: str
    status: str
    queue: str
    tags: tuple[str, ...]
    attempt: int
    created: str
    duration: str
    schedule: str
    batch: str

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def duration(started: float | None, finished: float | None, now: float) -> str:
    if started is None:
        return ""
    seconds = max(0.0, (finished if finished is not None else now) - started)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def run_row(run: Json, now: float) -> RunRow:
    meta, spec, status = run["metadata"], run.get("spec") or {}, run.get("status") or {}
    labels = meta.get("labels") or {}
    return RunRow(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        task=str(spec.get("task", "")),
        status=str(status.get("phase") or "Pending"),
        queue=str(status.get("queue") or (spec.get("queue") or {}).get("name") or ""),
        tags=tuple(spec.get("tags") or ()),
        attempt=int(status.get("attempt") or 0),
        created=str(meta.get("creationTimestamp") or ""),
        duration=duration(_time(status.get("startedTime")), _time(status.get("finishedTime")),
                          now),
        schedule=str(labels.get("kubetasks.dev/schedule") or ""),
        batch=str((spec.get("batch") or {}).get("name") or ""),
    )


class FilterError(ValueError):
    """A filter value the page cannot use; the message says what to write instead."""


def _moment(name: str, value: str) -> float:
    """A ``from``/``to`` value: a date and time as a browser's datetime-local input sends it
    (``2027-01-15T08:30``, seconds optional), read as UTC, or with its own offset."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{name}: {value!r} is not a date and time; write it like "
                          "2027-01-15T08:30 (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def created_bounds(filters: Mapping[str, str], now: float) -> tuple[float | None, float | None]:
    """The range of creation times the filters keep (either end open): ``period`` (one of
    ``PERIODS``: created in the last ...), or ``from`` and ``to``; ``FilterError`` for a
    value it cannot read or a range that ends before it starts."""
    period = filters.get("period")
    if period:
        if period not in PERIODS:
            raise FilterError(f"period: {period!r} is not one of {', '.join(PERIODS)}")
        return now - PERIODS[period], None
    low = _moment("from", filters["from"]) if filters.get("from") else None
    high = _moment("to", filters["to"]) if filters.get("to") else None
    if low is not None and high is not None and high < low:
        raise FilterError("to: the range ends before it starts; put the earlier time in from")
    return low, high


def matches(row: RunRow, filters: Mapping[str, str]) -> bool:
    statuses = {s for s in (filters.get("status") or "").split(",") if s}
    if statuses and row.status not in statuses:
        return False
    checks = (("task", row.task), ("queue", row.queue), ("batch", row.batch),
              ("schedule", row.schedule), ("namespace", row.namespace))
    if any(filters.get(name) and filters[name] != value for name, value in checks):
        return False
    return not (filters.get("tag") and filters["tag"] not in row.tags)


@dataclass(frozen=True)
class RunPage:
    rows: list[RunRow]
    total: int
    page: int
    pages: int


def run_page(runs: Iterable[Json], filters: Mapping[str, str], page: int, now: float,
             size: int | None = PAGE_SIZE) -> RunPage:
    """The runs that match, newest first, one page of them (every one with ``size`` None).
    ``FilterError`` when a time filter cannot be read."""
    low, high = created_bounds(filters, now)

    def in_range(row: RunRow) -> bool:
        if low is None and high is None:
            return True
        created = _time(row.created)
        return created is not None and (low is None or created >= low) and (
            high is None or created <= high)

    rows = [row for row in (run_row(r, now) for r in runs)
            if matches(row, filters) and in_range(row)]
    rows.sort(key=lambda r: (r.created, r.name), reverse=True)
    if size is None:
        return RunPage(rows, len(rows), 1, 1)
    pages = max(1, -(-len(rows) // size))
    page = min(max(1, page), pages)
    start = (page - 1) * size
    return RunPage(rows[start:start + size], len(rows), page, pages)


@dataclass(frozen=True)
class Moment:
    """One line of a run's timeline."""

    at: str
    what: str
    detail: str = ""


@dataclass(frozen=True)
class Child:
    """A run or batch the run triggered from inside its task."""

    kind: str
    """``run`` or ``batch``."""
    namespace: str
    name: str
    task: str
    status: str
    wait: bool
    """The parent waited for it (trigger_and_wait, batch_trigger_and_wait)."""
    created: str
    finished: str

    @property
    def href(self) -> str:
        return f"/{'runs' if self.kind == 'run' else 'batches'}/{self.namespace}/{self.name}"


def children(run: Json, runs: Iterable[Json], batches: Iterable[Json]) -> list[Child]:
    """The runs and batches whose ``spec.parent`` is this run (by UID: a recreated parent of
    the same name is another run), oldest first. Runs a child batch created are left to the
    batch's page."""
    uid = (run.get("metadata") or {}).get("uid")
    found: list[Child] = []
    for kind, objs in (("run", runs), ("batch", batches)):
        for obj in objs:
            meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
            parent = spec.get("parent") or {}
            if not uid or parent.get("uid") != uid or (kind == "run" and spec.get("batch")):
                continue
            found.append(Child(
                kind, str(meta.get("namespace", "")), str(meta.get("name", "")),
                str(spec.get("task") or ""), str(status.get("phase") or "Pending"),
                bool(parent.get("wait")), str(meta.get("creationTimestamp") or ""),
                str(status.get("finishedTime") or "")))
    found.sort(key=lambda c: (_time(c.created) or 0.0, c.name))
    return found


def timeline(run: Json, kids: Iterable[Child] = ()) -> list[Moment]:
    """Created, delayed until, queued, each attempt's start and end (with its exit and
    reason), the waits on children (from the child's creation to its end), and the end of
    the run, in time order."""
    meta, spec, status = run["metadata"], run.get("spec") or {}, run.get("status") or {}
    moments = [Moment(str(meta.get("creationTimestamp") or ""), "Created")]
    if spec.get("delayUntil"):
        moments.append(Moment(str(spec["delayUntil"]), "Delayed until"))
    if status.get("enqueuedTime"):
        queue = status.get("queue") or ""
        key = status.get("concurrencyKey")
        moments.append(Moment(str(status["enqueuedTime"]), "Queued",
                              f"{queue} (key {key})" if key else str(queue)))
    for attempt in status.get("attempts") or ():
        number = attempt.get("number")
        if attempt.get("startedTime"):
            moments.append(Moment(str(attempt["startedTime"]), f"Attempt {number} started",
                                  str(attempt.get("machine") or "")))
        if attempt.get("finishedTime"):
            parts = [str(attempt[k]) for k in ("reason", "message") if attempt.get(k)]
            if attempt.get("exitCode") is not None:
                parts.insert(0, f"exit {attempt['exitCode']}")
            moments.append(Moment(str(attempt["finishedTime"]), f"Attempt {number} ended",
                                  ", ".join(parts)))
    for kid in kids:
        if not kid.wait:
            continue
        what = f"{kid.kind} {kid.name}" + (f" ({kid.task})" if kid.task else "")
        moments.append(Moment(kid.created, f"Waiting on {kid.kind}", what))
        if kid.finished:
            moments.append(Moment(kid.finished, f"Child {kid.kind} ended",
                                  f"{kid.name}: {kid.status}"))
    if status.get("finishedTime"):
        moments.append(Moment(str(status["finishedTime"]),
                              str(status.get("phase") or "Finished")))
    # By time, not text: "…:29.000000Z" sorts before "…:29Z" as text.
    moments.sort(key=lambda m: _time(m.at) or 0.0)
    return moments


def readable_time(value: str) -> str:
    """``2026-12-04 22:07:29 UTC`` (milliseconds when the time has them)."""
    moment = _time(value)
    if moment is None:
        return value
    when = dt.datetime.fromtimestamp(moment, dt.UTC)
    text = when.strftime("%Y-%m-%d %H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond // 1000:03d}"
    return text + " UTC"


def pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class QueueRow:
    namespace: str
    name: str
    limit: int | None
    total: int | None
    running: int
    queued: int
    keys: int
    paused: bool
    declared: bool
    """A TaskQueue object exists (else the queue is only named by runs or tasks)."""


def queue_rows(queues: Iterable[Json], runs: Iterable[Json]) -> list[QueueRow]:
    """Every TaskQueue, and every queue runs name without one, by namespace and name."""
    rows: dict[tuple[str, str], QueueRow] = {}
    for queue in queues:
        meta, spec, status = queue["metadata"], queue.get("spec") or {}, queue.get("status") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        rows[key] = QueueRow(key[0], key[1], spec.get("concurrencyLimit"),
                             spec.get("totalConcurrencyLimit"), int(status.get("running") or 0),
                             int(status.get("queued") or 0), int(status.get("activeKeys") or 0),
                             bool(spec.get("paused")), True)
    for run in runs:
        status = run.get("status") or {}
        name = status.get("queue")
        key = (str(run["metadata"].get("namespace", "")), str(name or ""))
        if name and key not in rows:
            rows[key] = QueueRow(key[0], key[1], None, None, 0, 0, 0, False, False)
    return [rows[k] for k in sorted(rows)]


@dataclass(frozen=True)
class BatchRow:
    namespace: str
    name: str
    task: str
    phase: str
    total: int
    created: int
    counts: Mapping[str, int]

    @property
    def done(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("completed", "failed", "canceled",
                                                     "expired"))


def batch_row(batch: Json) -> BatchRow:
    meta, spec, status = batch["metadata"], batch.get("spec") or {}, batch.get("status") or {}
    total = int(status.get("total") or spec.get("itemCount") or len(spec.get("items") or ()))
    return BatchRow(str(meta.get("namespace", "")), str(meta.get("name", "")),
                    str(spec.get("task", "")), str(status.get("phase") or "Pending"), total,
                    int(status.get("created") or 0),
                    {k: int(v) for k, v in (status.get("counts") or {}).items()})


def batch_items(batch: Json, runs: Iterable[Json], now: float) -> list[tuple[int, RunRow]]:
    """The batch's item runs, in item order."""
    name = batch["metadata"]["name"]
    items = []
    for run in runs:
        ref = (run.get("spec") or {}).get("batch") or {}
        if ref.get("name") == name and isinstance(ref.get("index"), int):
            items.append((ref["index"], run_row(run, now)))
    items.sort(key=lambda item: item[0])
    return items


@dataclass(frozen=True)
class TaskRow:
    namespace: str
    name: str
    image: str
    entrypoint: str
    queue: str
    retry: str
    outcomes: Mapping[str, int]


def task_rows(tasks: Iterable[Json], runs: Iterable[Json]) -> list[TaskRow]:
    """Deployed tasks with their retry policy and how their runs ended."""
    outcomes: dict[tuple[str, str], dict[str, int]] = {}
    for run in runs:
        phase = (run.get("status") or {}).get("phase")
        if phase in FINAL:
            key = (str(run["metadata"].get("namespace", "")),
                   str((run.get("spec") or {}).get("task", "")))
            tally = outcomes.setdefault(key, {})
            tally[phase] = tally.get(phase, 0) + 1
    rows = []
    for task in tasks:
        meta, spec = task["metadata"], task.get("spec") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        retry = spec.get("retry") or {}
        retry_text = (f"{retry['maxAttempts']} attempts" if retry.get("maxAttempts")
                      else "default")
        rows.append(TaskRow(key[0], key[1], str(spec.get("image", "")),
                            str(spec.get("entrypoint", "")),
                            str((spec.get("queue") or {}).get("name") or key[1]), retry_text,
                            dict(sorted(outcomes.get(key, {}).items()))))
    return sorted(rows, key=lambda r: (r.namespace, r.name))


@dataclass(frozen=True)
class ScheduleRow:
    namespace: str
    name: str
    task: str
    cron: str
    description: str
    timezone: str
    active: bool
    next: str
    last_run: str
    ready: str


def schedule_rows(schedules: Iterable[Json]) -> list[ScheduleRow]:
    rows = []
    for obj in schedules:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        ready: Json = next((c for c in status.get("conditions") or ()
                            if c.get("type") == "Ready"), {})
        rows.append(ScheduleRow(
            str(meta.get("namespace", "")), str(meta.get("name", "")), str(spec.get("task", "")),
            str(spec.get("cron", "")), str(status.get("description") or ""),
            str(spec.get("timezone") or "UTC"), spec.get("active", True) is not False,
            str(status.get("nextScheduleTime") or ""), str(status.get("lastRun") or ""),
            str(ready.get("reason") or "")))
    return sorted(rows, key=lambda r: (r.namespace, r.name))
