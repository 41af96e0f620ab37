"""The one scheduler loop: it wakes on watch events and on the next due time, asks the
decision core what to do with the runs that changed, plans which waiting runs get a slot, and
carries the decisions out through the adapters.

Write order for a start (restart-safe): take the Redis slot, create Job ``<run>-<n>``, then
patch the status. A crash after the slot leaves a slot without a Job (repair frees it); after
the Job, an unrecorded attempt (the core adopts it). Nothing ever starts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from kubetasks_operator.adapters.kube import KubeAdapter, refused
from kubetasks_operator.adapters.slots import Grant, SlotId, SlotLimits, SlotStore
from kubetasks_operator.batches import BatchKeeper
from kubetasks_operator.core.batches import TERMINAL_BATCH
from kubetasks_operator.core.lifecycle import (
    Action,
    CancelBatches,
    CancelChildren,
    CreateJob,
    Decision,
    DeleteJobs,
    PostEvent,
    ReleaseSlot,
    effective_queue,
    iso,
    reconcile,
    resolve_queue,
    start_attempt,
)
from kubetasks_operator.core.model import TERMINAL, Phase, QueueConfig, RunView
from kubetasks_operator.core.scheduling import Candidate, KeyId, Usage, plan_starts
from kubetasks_operator.jobs import attempt_job
from kubetasks_operator.metrics import OperatorMetrics
from kubetasks_operator.schedules import ScheduleKeeper
from kubetasks_operator.settings import OperatorSettings
from kubetasks_operator.timers import DueTimes
from kubetasks_operator.world import Key, World

log = logging.getLogger("kubetasks.scheduler")
RETRY_AFTER_ERROR = 2.0
_TERMINAL_NAMES = frozenset(p.value for p in TERMINAL)
# Runs whose decisions are written at the same time (the writes of one run stay in order).
APPLY_CONCURRENCY = 64
SLOW_PASS = 0.25


class Scheduler:
    def __init__(
        self,
        world: World,
        kube: KubeAdapter,
        slots: SlotStore,
        settings: OperatorSettings,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.world = world
        self.kube = kube
        self.slots = slots
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.dirty: set[Key] = set()
        self._timers: DueTimes[Key] = DueTimes()
        self.waiting: dict[Key, Decision] = {}
        self.holders: dict[Key, tuple[str, SlotId]] = {}  # run key -> (run uid, slot)
        self.orphans: dict[str, SlotId] = {}  # slots of deleted runs, freed once pods are gone
        self.last_served: dict[KeyId, int] = {}
        self._turn = 0
        self._wakeup = asyncio.Event()
        self._deleting: set[tuple[str, str]] = set()
        self._inflight: dict[Key, asyncio.Task[bool]] = {}
        self._gate = asyncio.Semaphore(APPLY_CONCURRENCY)
        self._queue_status: dict[Key, dict[str, Any]] = {}
        self._legacy_since: dict[Key, str] = {}  # TaskQueues still setting concurrencyKeyLimit
        # Tasks confirmed absent by a GET (when), and lookups to make before failing runs.
        self._missing_tasks: dict[Key, float] = {}
        self._task_lookups: dict[Key, set[Key]] = {}
        self._next_repair = 0.0
        self._next_queue_status = 0.0
        self._queue_status_task: asyncio.Task[None] | None = None
        self._admit: set[Key] = set()  # waiting runs whose admission (Queued) is unwritten
        self.decisions = 0
        self.ready = asyncio.Event()
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self.metrics.track(world, self)
        self.batches = BatchKeeper(world, kube, settings, self.touch, self.poke, clock,
                                   metrics=self.metrics)
        self.schedules = ScheduleKeeper(world, kube, self.touch, self.poke, clock,
                                        metrics=self.metrics)

    # --- inputs ----------------------------------------------------------------------------

    def touch(self, keys: Iterable[Key]) -> None:
        # An event that changed nothing (a watch re-delivering a version the operator already
        # holds, e.g. of its own write) wakes nothing: thousands of them in a row made a
        # pass each, and each pass planned over every waiting run.
        before = len(self.dirty)
        self.dirty.update(keys)
        if len(self.dirty) != before:
            self._wakeup.set()

    def poke(self) -> None:
        """Something outside the runs changed (a queue, a pod gone): plan again."""
        self._wakeup.set()

    def _wake_at(self, key: Key, at: float | None) -> None:
        if at is None:
            return
        current = self._timers.at(key)
        if current is not None and current <= at and current > self.clock():
            return  # an earlier wake-up is already due: it decides again anyway
        self._timers.put(key, at)

    # --- slots -----------------------------------------------------------------------------

    def _slot_truth(self) -> dict[Key, tuple[str, SlotId]]:
        """Who holds a slot according to what really runs: runs with a live attempt, except
        those waiting on children."""
        truth: dict[Key, tuple[str, SlotId]] = {}
        for key in self.world.runs:
            view = self.world.view(key)
            if view is None or view.live_attempt is None or view.phase is Phase.WAITING:
                continue
            truth[key] = (view.uid, self._slot_id(view))
        return truth

    def _slot_id(self, view: RunView) -> SlotId:
        run = self.world.runs[view.key]
        queue = view.status_queue or resolve_queue(view, self.world.task_for(run))
        return SlotId(view.namespace, queue, view.concurrency_key)

    async def rebuild_slots(self) -> None:
        truth = self._slot_truth()
        # A start whose Job create is still in flight holds its slot too.
        truth.update({k: self.holders[k] for k in self._inflight if k in self.holders})
        holders = {uid: slot for uid, slot in truth.values()}
        holders.update(self.orphans)
        await self.slots.rebuild(holders)
        self.holders = truth
        self._next_repair = self.clock() + self.settings.repair_interval
        log.info("slots rebuilt from the API: %d held", len(holders))

    def _usage(self) -> Usage:
        per_queue: Counter[tuple[str, str]] = Counter()
        per_key: Counter[KeyId] = Counter()
        for _, slot in [*self.holders.values(), *(("", s) for s in self.orphans.values())]:
            qid = (slot.namespace, slot.queue)
            per_queue[qid] += 1
            per_key[(qid, slot.concurrency_key)] += 1
        per_namespace: Counter[str] = Counter()
        for (namespace, _), count in per_queue.items():  # a few queues, not every holder
            per_namespace[namespace] += count
        return Usage(per_queue, per_key, per_namespace)

    def namespace_limit(self, namespace: str) -> int | None:
        """The operator's cap over every queue of ``namespace``, if it sets one."""
        return self.settings.namespace_concurrency_limit.limit_for(namespace)

    async def _release(self, key: Key) -> None:
        held = self.holders.pop(key, None)
        if held is not None:
            await self.slots.release(held[0], held[1])
            self._wakeup.set()

    # --- the loop --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.rebuild_slots()
        self.dirty.update(self.world.runs)
        self.world.changed_batches.update(self.world.batches)
        self.world.changed_schedules.update(self.world.schedules)
        self.batches.start()
        self.schedules.start()
        self.ready.set()

    async def run_forever(self) -> None:
        await self.start()
        while True:
            timeout = None
            # The repair is due even when nothing happens (it is the safety net), and the
            # queues' counts are brought up to date after the last change.
            wake = min((t for t in (self._timers.next(),
                                    self.batches.next_wake(), self.schedules.next_wake(),
                                    self._next_repair,
                                    self._next_queue_status)
                        if t is not None), default=None)
            if wake is not None:
                timeout = max(0.0, wake - self.clock())
            if (not self.dirty and not self.world.changed_batches
                    and not self.world.changed_schedules):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
            self._wakeup.clear()
            try:
                started = time.monotonic()
                await self.pass_once()
                await self._housekeeping()
                took = time.monotonic() - started
                self.metrics.pass_seconds.observe(took)
                if took > SLOW_PASS:
                    log.warning("a scheduler pass took %.2f s (%d runs waiting for a slot)",
                                took, len(self.waiting))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed; retrying")
                self.metrics.error("pass")
                await asyncio.sleep(RETRY_AFTER_ERROR)

    def _due(self, now: float) -> set[Key]:
        return self._timers.pop_due(now)

    async def pass_once(self) -> None:
        now = self.clock()
        keys = self.dirty | self._due(now)
        self.dirty = set()
        work = []
        try:
            for key in keys:
                decided = self._decide(key, now)
                if decided is not None:
                    work.append(decided)
        except BaseException:
            self.dirty |= keys  # nothing is lost: the next pass looks at them again
            raise
        await self._apply_all(work)
        await self.batches.pass_once(now)
        await self.schedules.pass_once(now)
        await self._confirm_missing_tasks(now)
        await self._free_orphans()
        await self._start_waiting(now)

    async def _apply_all(self, work: list[tuple[Key, RunView, Decision]]) -> None:
        """Start carrying out decisions without waiting for them: the loop goes on deciding
        while writes are in flight. A run with a write in flight is not decided again until
        the write is done (then it is looked at anew), so each run's steps stay in order."""
        for key, view, decision in work:
            task = asyncio.create_task(self._apply_gated(key, view, decision))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._write_done, key))

    async def _apply_gated(self, key: Key, view: RunView, decision: Decision) -> bool:
        async with self._gate:
            return await self._apply(key, view, decision)

    def _write_done(self, key: Key, task: asyncio.Task[bool]) -> None:
        self._inflight.pop(key, None)
        # After a failed write the run's retry timer brings it back, not a hot loop.
        if not task.cancelled() and task.exception() is None and task.result():
            self.touch((key,))

    async def drain(self) -> None:
        """Wait for every write in flight (tests, shutdown)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    def _decide(self, key: Key, now: float) -> tuple[Key, RunView, Decision] | None:
        if key in self._inflight:
            return None  # looked at again when its write is done
        view = self.world.view(key)
        if view is None:
            self.waiting.pop(key, None)
            held = self.holders.pop(key, None)
            if held is not None:
                self.orphans[held[0]] = held[1]
            return None
        run = self.world.runs[key]
        task = self.world.task_for(run)
        if task is None and not view.terminal:
            # Tasks and runs arrive on separate watch streams: a Task created just before the
            # run may not be here yet. Ask the API before failing a run with TaskNotFound.
            task_key = (view.namespace, view.task_id)
            checked = self._missing_tasks.get(task_key)
            if checked is None or checked < view.created_at + 1:  # creationTimestamp: whole s
                self._task_lookups.setdefault(task_key, set()).add(key)
                return None
        queue = self.world.queue(view.namespace, resolve_queue(view, task))
        conditions = tuple((run.get("status") or {}).get("conditions") or ())
        decision = reconcile(view, task, queue, now, self.rng, conditions,
                             self.settings.pod_create_timeout)
        self.decisions += 1
        decision.actions = [a for a in decision.actions if self._needed(key, a)]
        self._wake_at(key, decision.wake_at)
        if decision.wants_slot is not None:
            self.waiting[key] = decision
            if decision.status:
                self._admit.add(key)
            return None
        self.waiting.pop(key, None)
        if not decision.status and not decision.actions:
            return None
        return (key, view, decision)

    def _needed(self, key: Key, action: Action) -> bool:
        """False for an action that would change nothing. The core asks a finished run to
        give its slot back every time it is decided; carried out, that no-op counted as a
        write, whose completion decided the run again: each finished run went round and round
        (an idle operator with 1,400 finished runs used a whole core)."""
        if isinstance(action, ReleaseSlot):
            return key in self.holders
        if isinstance(action, DeleteJobs):
            return any((key[0], name) not in self._deleting
                       for name in self.world.job_names_of(key))
        return True

    async def _grant(
        self,
        plan: list[Candidate],
        configs: dict[tuple[str, str], QueueConfig],
        work: list[tuple[Key, RunView, Decision]],
        now: float,
    ) -> None:
        """Take slots in plan order; each granted run's start is appended to ``work``."""
        for candidate in plan:
            key = (candidate.namespace, candidate.name)
            pending = self.waiting.get(key)
            view = self.world.view(key)
            if pending is None or view is None:
                continue
            if key in self._inflight:
                continue  # planned again once its write is done
            run = self.world.runs[key]
            task = self.world.task_for(run)
            if task is None:
                continue
            config = configs[candidate.queue_id]
            slot = SlotId(view.namespace, candidate.queue, view.concurrency_key)
            limits = SlotLimits(lane=config.concurrency_limit, queue=config.total_limit,
                                namespace=self.namespace_limit(view.namespace))
            grant = await self.slots.acquire(view.uid, slot, limits)
            if grant is Grant.NEEDS_REBUILD:
                log.warning("Redis lost the slot sets (restart or flush): rebuilding")
                await self.rebuild_slots()
                self._wakeup.set()
                break
            if grant is Grant.FULL:
                # Our count disagreed with Redis: trust Redis, repair soon (which plans anew).
                self._next_repair = min(self._next_repair, now + 1)
                continue
            self.holders[key] = (view.uid, slot)
            self.metrics.admitted(view.namespace, candidate.queue)
            self._turn += 1
            self.last_served[(candidate.queue_id, candidate.concurrency_key)] = self._turn
            del self.waiting[key]
            started = start_attempt(view, task, pending, now,
                                    tuple((run.get("status") or {}).get("conditions") or ()))
            work.append((key, view, started))

    async def _confirm_missing_tasks(self, now: float) -> None:
        lookups, self._task_lookups = self._task_lookups, {}
        for task_key, runs in lookups.items():
            try:
                found = await self.kube.get_task(*task_key)
            except Exception:
                log.exception("looking up Task %s/%s failed; retrying", *task_key)
                self.metrics.error("pass")
                for key in runs:
                    self._wake_at(key, now + RETRY_AFTER_ERROR)
                continue
            if found is not None:
                self.world.put_task(found)
                self._missing_tasks.pop(task_key, None)
            else:
                self._missing_tasks[task_key] = now
            self.touch(runs)

    async def _start_waiting(self, now: float) -> None:
        if self.waiting:
            # Planned on every pass: passes come only from changes (an event that changed
            # nothing wakes nothing), and a plan is cheap next to the writes it leads to.
            await self._plan_and_grant(now)
        await self._write_admissions()

    async def _plan_and_grant(self, now: float) -> None:
        candidates = []
        for key, decision in self.waiting.items():
            request = decision.wants_slot
            assert request is not None
            candidates.append(
                Candidate(key[0], key[1], request.queue, request.concurrency_key, request.score)
            )
        configs = {}
        for candidate in candidates:
            qid = candidate.queue_id
            if qid not in configs:
                view = self.world.view((candidate.namespace, candidate.name))
                if view is None:
                    continue
                run = self.world.runs[view.key]
                task = self.world.task_for(run)
                configs[qid] = effective_queue(view, task, self.world.queue(*qid))
        namespace_limits = {}
        if self.settings.namespace_concurrency_limit:
            for namespace in {c.namespace for c in candidates}:
                limit = self.namespace_limit(namespace)
                if limit is not None:
                    namespace_limits[namespace] = limit
        plan = plan_starts(candidates, self._usage(), configs, self.last_served,
                           namespace_limits)
        # Slots are taken one by one in plan order (Redis answers in well under a millisecond);
        # the starts they allow are then written concurrently.
        work: list[tuple[Key, RunView, Decision]] = []
        try:
            await self._grant(plan, configs, work, now)
        finally:
            # Whatever was granted before a failure (Redis gone mid-plan) is still started:
            # its slot is taken, and dropping it here would leave the run stuck.
            if work:
                await self._apply_all(work)

    async def _write_admissions(self) -> None:
        """Runs still waiting: write their admission (Queued) once."""
        work: list[tuple[Key, RunView, Decision]] = []
        for key in list(self._admit):
            decision = self.waiting.get(key)
            if decision is None or not decision.status:
                self._admit.discard(key)
                continue
            if key in self._inflight:
                continue  # written when its write in flight is done and it is decided again
            self._admit.discard(key)
            waiting_view = self.world.view(key)
            if waiting_view is not None:
                status, decision.status = decision.status, {}
                work.append((key, waiting_view, Decision(status=status)))
        await self._apply_all(work)

    async def _apply(self, key: Key, view: RunView, decision: Decision) -> bool:
        run = self.world.runs.get(key)
        if run is None:
            return True
        create_refused = False
        queue = decision.status.get("queue") or view.status_queue or resolve_queue(
            view, self.world.task_for(run))
        try:
            for action in decision.actions:
                if isinstance(action, CreateJob):
                    task_key = (view.namespace, view.task_id)
                    task = self.world.tasks[task_key]
                    job = attempt_job(run, task, queue, action.attempt, self.settings)
                    try:
                        created, _ = await self.kube.create_job(job)
                    except Exception as exc:
                        create_refused = refused(exc)
                        raise
                    if created:
                        self.world.put_job(created)
            if decision.status:
                patched = await self.kube.patch_run_status(view.namespace, view.name,
                                                           decision.status)
                if patched is not None:
                    self.world.put_run(patched)
                    self.metrics.status_written(view, decision.status, queue)
            for action in decision.actions:
                if isinstance(action, ReleaseSlot):
                    await self._release(key)
                elif isinstance(action, DeleteJobs):
                    for name in self.world.job_names_of(key):
                        if (view.namespace, name) not in self._deleting:
                            self._deleting.add((view.namespace, name))
                            await self.kube.delete_job(view.namespace, name,
                                                       foreground=action.foreground)
                elif isinstance(action, CancelChildren):
                    for child in action.names:
                        await self.kube.cancel_run(view.namespace, child)
                elif isinstance(action, CancelBatches):
                    for batch in action.names:
                        await self.kube.cancel_batch(view.namespace, batch)
                elif isinstance(action, PostEvent):
                    await self.kube.post_event(run, action.type, action.reason, action.message)
        except Exception:
            log.exception("applying the decision for %s/%s failed; retrying", *key)
            self.metrics.error("apply")
            if create_refused:
                # The API refused the Job, so nothing runs: give the slot back. After any
                # other failure the Job may exist (a create that timed out, or a status write
                # that failed after the create), and releasing would let another run start
                # beside it: keep the slot; the retry adopts the Job, and the repair frees
                # the slot if no Job ever shows up.
                await self._release(key)
            self._wake_at(key, self.clock() + RETRY_AFTER_ERROR)
            return False
        return True

    async def _free_orphans(self) -> None:
        for uid in list(self.orphans):
            if not self.world.pods_of_run.get(uid) and not self.world.jobs_of_run.get(uid):
                slot = self.orphans.pop(uid)
                await self.slots.release(uid, slot)
                self._wakeup.set()

    # --- housekeeping ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        now = self.clock()
        if now >= self._next_repair:
            truth = self._slot_truth()
            truth.update({k: self.holders[k] for k in self._inflight if k in self.holders})
            if truth != self.holders or not await self.slots.healthy():
                log.info("slot drift found: repairing from the API")
            await self.rebuild_slots()
            # A safety net under the event-driven passes: every unfinished run is looked at
            # again now and then, so no lost wake-up can leave one stuck.
            self.touch(
                key for key, run in self.world.runs.items()
                if (run.get("status") or {}).get("phase") not in _TERMINAL_NAMES
            )
            self.world.changed_batches.update(
                key for key, batch in self.world.batches.items()
                if (batch.get("status") or {}).get("phase") not in TERMINAL_BATCH
            )
        if now >= self._next_queue_status and (
                self._queue_status_task is None or self._queue_status_task.done()):
            self._next_queue_status = now + self.settings.queue_status_interval
            # In the background: a pass that waited on these writes held up every start.
            self._queue_status_task = asyncio.create_task(self._write_queue_status())
        if self._deleting:
            self._deleting = {d for d in self._deleting if d in self.world.jobs}

    async def _write_queue_status(self) -> None:
        running: Counter[Key] = Counter()
        queued: Counter[Key] = Counter()
        keys: dict[Key, set[str]] = {}
        in_namespace: Counter[str] = Counter()
        for _, slot in self.holders.values():
            running[(slot.namespace, slot.queue)] += 1
            in_namespace[slot.namespace] += 1
            if slot.concurrency_key is not None:
                keys.setdefault((slot.namespace, slot.queue), set()).add(slot.concurrency_key)
        for key, decision in self.waiting.items():
            if decision.wants_slot is not None:
                queued[(key[0], decision.wants_slot.queue)] += 1
        # A copy: watch handlers add queues while this task awaits its writes.
        for qkey in list(self.world.queues):
            cap = self.namespace_limit(qkey[0])
            status: dict[str, Any] = {
                "running": running[qkey], "queued": queued[qkey],
                "activeKeys": len(keys.get(qkey, ())),
                # null removes them (a merge patch) once the operator has no cap for it.
                "namespaceConcurrencyLimit": cap,
                "namespaceRunning": in_namespace[qkey[0]] if cap is not None else None,
                "conditions": self._queue_conditions(qkey),
            }
            if self._queue_status.get(qkey) == status:
                continue
            try:
                await self.kube.patch_queue_status(qkey[0], qkey[1], status)
            except Exception:
                log.exception("writing the status of TaskQueue %s/%s failed; retrying", *qkey)
                continue
            self._queue_status[qkey] = status

    def _queue_conditions(self, qkey: Key) -> list[dict[str, Any]] | None:
        """A ``Deprecated`` condition while the TaskQueue still sets concurrencyKeyLimit."""
        spec = (self.world.queues.get(qkey) or {}).get("spec") or {}
        if "concurrencyKeyLimit" not in spec:
            self._legacy_since.pop(qkey, None)
            return None
        since = self._legacy_since.setdefault(qkey, iso(self.clock()))
        key_limit, limit = spec["concurrencyKeyLimit"], spec.get("concurrencyLimit")
        hint = (f"concurrencyLimit: {key_limit}" + (
            f", totalConcurrencyLimit: {limit}" if limit is not None else ""))
        return [{
            "type": "Deprecated", "status": "True", "reason": "ConcurrencyKeyLimit",
            "lastTransitionTime": since,
            "message": (
                "spec.concurrencyKeyLimit is retired and read with its old meaning; "
                "concurrencyLimit now applies to each concurrency key on its own: set "
                f"{{{hint}}} and remove concurrencyKeyLimit"),
        }]
