"""The TaskBatch lifecycle as pure functions: what is known about a batch and the runs of its
items in; which items still need a run, which runs to cancel and the status to write out.

    create ─► Pending (items in S3 not read yet) ─► Running (fan-out, then the runs) ─►
        Completed | PartiallyFailed (every run ended) | Canceled (spec.cancel)
        Failed (the items cannot be read or are invalid: nothing is created)

Fan-out is restart-safe because every item's run has a name known in advance: ``<batch>-<i>``,
or for an item with an idempotency key the run named from the key, recorded in
``status.keyedRuns``. ``status.created`` is a prefix: items below it all got their run and are
never created again, even if their run is deleted later (it is then counted as missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_BATCH = frozenset({"Completed", "PartiallyFailed", "Canceled", "Failed"})
TERMINAL_RUN = frozenset({"Completed", "Failed", "Canceled", "Expired", "TimedOut", "Crashed"})
COUNT_OF_PHASE = {
    None: "pending",
    "Pending": "pending",
    "Delayed": "pending",
    "Queued": "queued",
    "Retrying": "queued",
    "Executing": "running",
    "Waiting": "running",
    "Completed": "completed",
    "Failed": "failed",
    "TimedOut": "failed",
    "Crashed": "failed",
    "Canceled": "canceled",
    "Expired": "expired",
}
COUNT_NAMES = ("pending", "queued", "running", "completed", "failed", "canceled", "expired",
               "missing")
# Progress (counts, created) is written at most this often; phase changes at once. Every
# write of a TaskBatch costs the API server in proportion to its items (validation and
# managed fields over the whole object: about 0.25 s of CPU for 1,000 inline items), so a
# big batch reports progress less often.
STATUS_INTERVAL = 1.0
ITEMS_PER_SECOND_OF_INTERVAL = 200


def status_interval(total: int) -> float:
    """Seconds between progress writes: 1 s up to 200 items, 5 s for 1,000."""
    return max(STATUS_INTERVAL, total / ITEMS_PER_SECOND_OF_INTERVAL)


def child_name(batch: str, index: int) -> str:
    """The run of an item without an idempotency key."""
    return f"{batch}-{index}"


@dataclass(frozen=True, slots=True)
class ItemRun:
    """The run an item got, as the world shows it now."""

    name: str
    phase: str | None  # None: not written yet (Pending)
    ours: bool = True  # created by this batch (False: an existing run reused through a key)
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class BatchView:
    namespace: str
    name: str
    uid: str
    generation: int
    total: int
    cancel: bool = False
    # The items, once read (inline at once; from S3 after a download). None: not yet.
    items_ready: bool = True
    items_error: str | None = None  # why the items cannot be used (the batch fails)
    keyed: frozenset[int] = frozenset()  # items with an idempotency key
    # status as last written
    phase: str | None = None
    recorded_created: int = 0
    recorded_keyed: Mapping[int, str] = field(default_factory=dict)
    recorded: Mapping[str, Any] = field(default_factory=dict)  # the whole status
    # what exists now: the run of each item that has one (keyed items: claimed ones only)
    runs: Mapping[int, ItemRun] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_BATCH


@dataclass
class BatchDecision:
    create: tuple[int, ...] = ()  # items that need a run, in order
    cancel: tuple[str, ...] = ()  # runs to cancel
    status: dict[str, Any] = field(default_factory=dict)  # merge patch of .status; {}: none
    wake_at: float | None = None


def _has_run(view: BatchView, index: int) -> bool:
    """The item got its run (it may have been deleted since: then it is missing)."""
    return index < view.recorded_created or index in view.runs or index in view.recorded_keyed


def _created_prefix(view: BatchView) -> int:
    index = view.recorded_created
    while index < view.total and _has_run(view, index):
        index += 1
    return index


def counts(view: BatchView) -> dict[str, int]:
    """Runs per state. Items below ``created`` whose run is gone are missing; items never
    created because the batch was canceled count as canceled."""
    out = dict.fromkeys(COUNT_NAMES, 0)
    for index in range(view.total):
        run = view.runs.get(index)
        if run is not None:
            out[COUNT_OF_PHASE.get(run.phase, "pending")] += 1
        elif index < view.recorded_created or index in view.recorded_keyed:
            out["missing"] += 1
        elif view.cancel:
            out["canceled"] += 1
        else:
            out["pending"] += 1
    return out


def _phase(view: BatchView, created: int, tally: Mapping[str, int]) -> str:
    if view.items_error is not None:
        return "Failed"
    if not view.items_ready:
        return "Canceled" if view.cancel else "Pending"
    own_running = any(r.ours and r.phase not in TERMINAL_RUN for r in view.runs.values())
    if view.cancel:
        # A canceled batch ends when its own runs have; runs it reused belong to others.
        return "Running" if own_running else "Canceled"
    if created < view.total:
        return "Running"
    if any(r.phase not in TERMINAL_RUN for r in view.runs.values()):
        return "Running"
    return "Completed" if tally["completed"] == view.total else "PartiallyFailed"


def _items_condition(view: BatchView, now_iso: str) -> dict[str, Any] | None:
    if view.items_error is None:
        return None
    return {"type": "ItemsReady", "status": "False", "reason": "ItemsInvalid",
            "message": view.items_error[:1024], "lastTransitionTime": now_iso}


def decide_batch(view: BatchView, now: float, now_iso: str,
                 last_write: float | None = None) -> BatchDecision:
    """What to do about one batch now. ``last_write`` is when its status was last written
    (progress is throttled to one write per ``status_interval``; phase changes go at
    once)."""
    decision = BatchDecision()
    if view.terminal:
        return decision
    created = _created_prefix(view)
    tally = counts(view)
    phase = _phase(view, created, tally)
    if view.items_ready and view.items_error is None:
        if view.cancel:
            decision.cancel = tuple(sorted(
                r.name for r in view.runs.values()
                if r.ours and not r.cancel_requested and r.phase not in TERMINAL_RUN))
        else:
            decision.create = tuple(i for i in range(created, view.total)
                                    if not _has_run(view, i))
    desired: dict[str, Any] = {
        "phase": phase,
        "total": view.total,
        "created": created,
        "counts": tally,
        "reused": sum(1 for r in view.runs.values() if not r.ours),
        "observedGeneration": view.generation,
    }
    new_keys = {str(i): r.name for i, r in view.runs.items()
                if i in view.keyed and view.recorded_keyed.get(i) != r.name}
    condition = _items_condition(view, now_iso)
    changed = {k: v for k, v in desired.items() if view.recorded.get(k) != v}
    if condition is not None and not view.recorded.get("conditions"):
        changed["conditions"] = [condition]
    if new_keys:
        changed["keyedRuns"] = new_keys
    if not changed:
        return decision
    # Progress waits for the next write slot; a new phase and the end of the fan-out do not.
    urgent = "phase" in changed or ("created" in changed and created == view.total)
    interval = status_interval(view.total)
    if urgent or last_write is None or now >= last_write + interval:
        decision.status = changed
    else:
        decision.wake_at = last_write + interval
    return decision
