"""TaskSchedules: asks the pure core (``core.schedules``) what each schedule should do now,
and carries it out: cancels the runs a Replace policy displaces, creates the tick's TaskRun,
writes the schedule's status.

Exactly once per tick: the run's name is a function of the schedule and the tick's nominal
time, and it is created before ``lastScheduleTime`` moves past the tick. An operator killed
between the two sees the tick due again after its restart, and the create answers
AlreadyExists. Driven by the scheduler's loop, like the batches: a heap of wake-up times (a
tick, a retry) and the schedules the watch changed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable

from kubetasks.api.v1alpha1 import API_VERSION
from kubetasks.protocol.pod import (
    ANNOTATION_SCHEDULE_TIME,
    LABEL_MANAGED_BY,
    LABEL_SCHEDULE,
    LABEL_TASK,
    MANAGED_BY,
)
from kubetasks_operator.adapters.kube import KubeAdapter
from kubetasks_operator.core.schedules import ScheduleDecision, TickRun, decide_schedule
from kubetasks_operator.metrics import OperatorMetrics
from kubetasks_operator.observe import schedule_state
from kubetasks_operator.timers import DueTimes
from kubetasks_operator.world import Json, Key, World

log = logging.getLogger("kubetasks.schedules")
RETRY_AFTER_ERROR = 2.0
# Ticks of many schedules fall on the same second; their runs are created side by side.
TICK_WORKERS = 32
STATUS_WORKERS = 8


def tick_run(schedule: Json, run: TickRun) -> Json:
    """The TaskRun body of one tick: labelled with its schedule, not owned by it (deleting
    a schedule keeps the history of its runs)."""
    meta = schedule["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "TaskRun",
        "metadata": {
            "name": run.name,
            "namespace": meta["namespace"],
            "labels": {
                LABEL_SCHEDULE: meta["name"],
                LABEL_TASK: run.spec["task"],
                LABEL_MANAGED_BY: MANAGED_BY,
            },
            "annotations": {ANNOTATION_SCHEDULE_TIME: run.annotation},
        },
        "spec": run.spec,
    }


class ScheduleKeeper:
    """Decides each schedule when it changes or its tick comes, and hands the writes to a
    fixed set of workers: ``TICK_WORKERS`` take the decisions that create or cancel runs,
    ``STATUS_WORKERS`` the status writes that follow them (and the status-only ones), so a
    second full of ticks creates its runs before it records them, and ten thousand status
    writes at start-up hold a few coroutines, not ten thousand."""

    def __init__(
        self,
        world: World,
        kube: KubeAdapter,
        touch_runs: Callable[[Iterable[Key]], None],
        poke: Callable[[], None],
        clock: Callable[[], float] = time.time,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.world = world
        self.kube = kube
        self.touch_runs = touch_runs
        self.poke = poke
        self.clock = clock
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self._timers: DueTimes[Key] = DueTimes()
        # A schedule is in at most one of: _ticks / _statuses (waiting for a worker), _busy
        # (a worker has it). Its decision waits in _decisions.
        self._decisions: dict[Key, tuple[Json, ScheduleDecision]] = {}
        self._ticks: collections.deque[Key] = collections.deque()
        self._statuses: collections.deque[Key] = collections.deque()
        self._busy: set[Key] = set()
        self._tick_work = asyncio.Event()
        self._status_work = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._creating = 0  # tick workers with a decision in hand
        self._ticks_drained = asyncio.Event()
        self.created = 0
        self.missed = 0

    def start(self) -> None:
        if not self._workers:
            self._workers = [
                *(asyncio.create_task(self._tick_worker(), name=f"kubetasks-tick-{n}")
                  for n in range(TICK_WORKERS)),
                *(asyncio.create_task(self._status_worker(), name=f"kubetasks-sched-{n}")
                  for n in range(STATUS_WORKERS)),
            ]

    def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        self._workers = []

    # --- the pass ---------------------------------------------------------------------------

    def next_wake(self) -> float | None:
        return self._timers.next()

    def _wake(self, key: Key, at: float | None) -> None:
        if at is None:
            self._timers.clear(key)
        else:
            self._timers.put(key, at)

    async def pass_once(self, now: float) -> None:
        keys = self.world.changed_schedules | self._timers.pop_due(now)
        self.world.changed_schedules = set()
        for key in keys:
            try:
                self._decide(key, now)
            except Exception:
                log.exception("deciding schedule %s/%s failed; retrying", *key)
                self.metrics.error("schedule")
                self._wake(key, now + RETRY_AFTER_ERROR)

    def _decide(self, key: Key, now: float) -> None:
        obj = self.world.schedules.get(key)
        if obj is None:
            self._wake(key, None)
            return
        if key in self._busy:
            return  # decided again when its writes are done
        spec = obj.get("spec") or {}
        state = schedule_state(
            obj,
            task_exists=(key[0], str(spec.get("task", ""))) in self.world.tasks,
            unfinished_runs=self.world.unfinished_schedule_runs(key),
        )
        decision = decide_schedule(state, now)
        self._wake(key, decision.wake_at)
        waiting = key in self._decisions
        if not (decision.create or decision.cancel or decision.status or decision.event):
            if waiting:  # what it waited to write is no longer needed
                del self._decisions[key]
            return
        self._decisions[key] = (obj, decision)  # a newer decision replaces a waiting one
        if decision.create or decision.cancel:
            if key in self._statuses:
                self._statuses.remove(key)
                waiting = False
            if not waiting:
                self._ticks.append(key)
                self._tick_work.set()
        elif not waiting:
            self._statuses.append(key)
            self._status_work.set()

    # --- the writes -------------------------------------------------------------------------

    async def _next(self, queue: collections.deque[Key], work: asyncio.Event) -> Key:
        while True:
            while queue:
                key = queue.popleft()
                if key in self._decisions and key not in self._busy:
                    self._busy.add(key)
                    return key
            work.clear()
            await work.wait()

    async def _tick_worker(self) -> None:
        while True:
            key = await self._next(self._ticks, self._tick_work)
            obj, decision = self._decisions.pop(key)
            self._creating += 1
            try:
                await self._create(key, decision)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("creating the run of schedule %s/%s failed; retrying", *key)
                self._failed(key)
                continue
            finally:
                self._creating -= 1
                if not self._creating and not self._ticks:
                    self._ticks_drained.set()
            if decision.status or decision.event or decision.missed:
                # The key stays busy: no new decision before this one is recorded.
                self._decisions[key] = (obj, decision)
                self._statuses.append(key)
                self._status_work.set()
            else:
                self._done(key)

    async def _status_worker(self) -> None:
        while True:
            key = await self._next_status()
            obj, decision = self._decisions.pop(key)
            try:
                await self._record(key, obj, decision)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing the status of schedule %s/%s failed; retrying", *key)
                self._failed(key)
                continue
            self._done(key)

    async def _next_status(self) -> Key:
        """The next status write: of a tick already carried out (its key is busy), or a
        status-only decision. None while runs of ticks are still to be created: the API
        server serves those first."""
        while True:
            while self._creating or self._ticks:
                self._ticks_drained.clear()
                await self._ticks_drained.wait()
            while self._statuses:
                key = self._statuses.popleft()
                if key in self._decisions:
                    self._busy.add(key)  # already busy after its tick, or now
                    return key
            self._status_work.clear()
            await self._status_work.wait()

    async def _create(self, key: Key, decision: ScheduleDecision) -> None:
        for name in decision.cancel:
            await self.kube.cancel_run(key[0], name)
        if decision.create is None:
            return
        obj = self.world.schedules.get(key)
        if obj is None:
            return  # deleted meanwhile: no more ticks
        run, created = await self.kube.create_run(tick_run(obj, decision.create), tick=True)
        if run is not None:
            self.touch_runs(self.world.put_run(run))
        if created:
            self.created += 1
            self.metrics.schedule_runs_created.inc()
            self.metrics.schedule_tick_lag.observe(
                max(0.0, self.clock() - decision.create.nominal))
        self.poke()

    async def _record(self, key: Key, obj: Json, decision: ScheduleDecision) -> None:
        if decision.missed:
            self.missed += decision.missed
            self.metrics.schedule_ticks_missed.inc(decision.missed)
        if decision.event is not None:
            await self.kube.post_event(obj, *decision.event, kind="TaskSchedule")
        if decision.status:
            patched = await self.kube.patch_schedule_status(key[0], key[1], decision.status)
            if patched is not None:
                self.world.put_schedule(patched)

    def _failed(self, key: Key) -> None:
        self.metrics.error("schedule")
        self._busy.discard(key)
        self._wake(key, self.clock() + RETRY_AFTER_ERROR)
        self.poke()

    def _done(self, key: Key) -> None:
        self._busy.discard(key)
        # Whatever changed while the writes were out is looked at now.
        self.world.changed_schedules.add(key)
        self.poke()
