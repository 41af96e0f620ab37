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
import heapq
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
from kubetasks_operator.world import Json, Key, World

log = logging.getLogger("kubetasks.schedules")
RETRY_AFTER_ERROR = 2.0
# Ticks of many schedules fall on the same second; their writes go out side by side.
CONCURRENT_WRITES = 32


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
        self._timers: list[tuple[float, Key]] = []
        self._timer_at: dict[Key, float] = {}
        self._busy: dict[Key, asyncio.Task[None]] = {}
        self._gate = asyncio.Semaphore(CONCURRENT_WRITES)
        self.created = 0
        self.missed = 0

    # --- the pass ---------------------------------------------------------------------------

    def next_wake(self) -> float | None:
        while self._timers and self._timer_at.get(self._timers[0][1]) != self._timers[0][0]:
            heapq.heappop(self._timers)  # superseded
        return self._timers[0][0] if self._timers else None

    def pending(self) -> bool:
        return bool(self.world.changed_schedules)

    def _wake(self, key: Key, at: float | None) -> None:
        if at is None:
            self._timer_at.pop(key, None)
            return
        if self._timer_at.get(key) == at:
            return
        self._timer_at[key] = at
        heapq.heappush(self._timers, (at, key))

    def _due(self, now: float) -> set[Key]:
        due: set[Key] = set()
        while self._timers and self._timers[0][0] <= now:
            at, key = heapq.heappop(self._timers)
            if self._timer_at.get(key) == at:
                del self._timer_at[key]
                due.add(key)
        return due

    async def pass_once(self, now: float) -> None:
        keys = self.world.changed_schedules | self._due(now)
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
        if decision.create or decision.cancel or decision.status or decision.event:
            self._busy[key] = asyncio.create_task(self._carry_out(key, obj, decision),
                                                  name=f"kubetasks-schedule-{key[1]}")

    # --- the writes -------------------------------------------------------------------------

    async def _carry_out(self, key: Key, obj: Json, decision: ScheduleDecision) -> None:
        try:
            # The gate holds only the urgent writes; the status follows on the background
            # budget, so a second full of ticks creates its runs first.
            async with self._gate:
                for name in decision.cancel:
                    await self.kube.cancel_run(key[0], name)
                if decision.create is not None:
                    run, created = await self.kube.create_run(tick_run(obj, decision.create),
                                                              background=False)
                    if run is not None:
                        self.touch_runs(self.world.put_run(run))
                    if created:
                        self.created += 1
                        self.metrics.schedule_runs_created.inc()
                        self.metrics.schedule_tick_lag.observe(
                            max(0.0, self.clock() - decision.create.nominal))
            if decision.missed:
                self.missed += decision.missed
                self.metrics.schedule_ticks_missed.inc(decision.missed)
            if decision.event is not None:
                await self.kube.post_event(obj, *decision.event, kind="TaskSchedule")
            if decision.status:
                patched = await self.kube.patch_schedule_status(key[0], key[1],
                                                                decision.status)
                if patched is not None:
                    self.world.put_schedule(patched)
        except asyncio.CancelledError:
            self._busy.pop(key, None)
            raise
        except Exception:
            log.exception("carrying out schedule %s/%s failed; retrying", *key)
            self.metrics.error("schedule")
            self._busy.pop(key, None)
            self._wake(key, self.clock() + RETRY_AFTER_ERROR)
        else:
            self._busy.pop(key, None)
            # Whatever changed while the writes were out is looked at now.
            self.world.changed_schedules.add(key)
        self.poke()

    def stop(self) -> None:
        for task in list(self._busy.values()):
            task.cancel()
