"""TaskBatches: reads the items (inline, or from object storage), asks the pure core
(``core.batches``) what to do, and carries it out: creates the item runs (the fan-out), claims
idempotency keys, cancels runs and writes the batch status.

The fan-out is background work: a few workers create runs round-robin across batches (a big
batch does not hold up a small one), and take write tokens only while the operator's budget
has room beyond a reserve kept for the writes that move runs along. Restart-safe: every
item's run has a name known in advance, so a create repeated after a restart answers
AlreadyExists and nothing is created twice.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable

from kubetasks.protocol.idempotency import (
    LABEL_GENERATION,
    LABEL_KEY,
    generation_of,
    key_released,
    run_name,
)
from kubetasks.protocol.payloads import decode_json
from kubetasks.protocol.storage import ObjectStore, StorageSettings
from kubetasks_operator.adapters.kube import KubeAdapter
from kubetasks_operator.children import child_run, is_item_run, item_key, parse_items
from kubetasks_operator.core.batches import (
    TERMINAL_BATCH,
    BatchView,
    ItemRun,
    child_name,
    decide_batch,
)
from kubetasks_operator.core.lifecycle import iso
from kubetasks_operator.metrics import OperatorMetrics
from kubetasks_operator.settings import OperatorSettings
from kubetasks_operator.world import Json, Key, World

log = logging.getLogger("kubetasks.batches")
FANOUT_WORKERS = 8
CLAIM_ROUNDS = 10
RETRY_AFTER_ERROR = 2.0
RETRY_ITEMS_DOWNLOAD = 5.0
# A batch is looked at no more often than this: each look goes over all of its items, and
# its runs change many times a second while it fans out or runs.
DECIDE_INTERVAL = 0.1
MAX_NAME = 253  # of a Kubernetes object


def _name_too_long(batch: str, total: int) -> str | None:
    """Why the runs of a batch named ``batch`` cannot be created, if its name leaves no
    room for their names (``<batch>-<index>``, at most 253 characters)."""
    longest = child_name(batch, max(total - 1, 0))
    if len(longest) <= MAX_NAME:
        return None
    return (f"the batch's name is too long for the names of its runs (<batch>-<index>, at "
            f"most {MAX_NAME} characters); give the batch a name of at most "
            f"{MAX_NAME - len(longest) + len(batch)} characters")


class ItemsUnusable(Exception):
    """The uploaded items cannot be used (bad JSON, wrong digest, invalid items)."""


class BatchKeeper:
    def __init__(
        self,
        world: World,
        kube: KubeAdapter,
        settings: OperatorSettings,
        touch_runs: Callable[[Iterable[Key]], None],
        poke: Callable[[], None],
        clock: Callable[[], float] = time.time,
        workers: int = FANOUT_WORKERS,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.world = world
        self.kube = kube
        self.settings = settings
        self.touch_runs = touch_runs
        self.poke = poke
        self.clock = clock
        self.workers = workers
        self.items: dict[str, list[Json]] = {}  # batch uid -> items read from storage
        self.item_errors: dict[str, str] = {}  # batch uid -> why its items are unusable
        self._loading: dict[str, asyncio.Task[None]] = {}
        # keyed item -> run name, from the claim until status.keyedRuns records it
        self.claims: dict[Key, dict[int, str]] = {}
        self.last_write: dict[Key, float] = {}
        self._writing: dict[Key, asyncio.Task[None]] = {}
        self._canceling: dict[Key, asyncio.Task[None]] = {}
        self._timers: dict[Key, float] = {}
        self._queues: dict[Key, collections.deque[int]] = {}
        self._queued: dict[Key, set[int]] = collections.defaultdict(set)
        self._order: collections.deque[Key] = collections.deque()
        self._work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._store: ObjectStore | None = None
        self._decided: dict[Key, float] = {}
        self.created = 0
        self.metrics = metrics if metrics is not None else OperatorMetrics()

    # --- the pass ---------------------------------------------------------------------------

    def next_wake(self) -> float | None:
        return min(self._timers.values(), default=None)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._worker(), name=f"kubetasks-fanout-{n}")
                           for n in range(self.workers)]

    def stop(self) -> None:
        for task in [*self._tasks, *self._loading.values(), *self._writing.values(),
                     *self._canceling.values()]:
            task.cancel()
        self._tasks = []

    async def pass_once(self, now: float) -> None:
        due = {key for key, at in self._timers.items() if at <= now}
        for key in due:
            del self._timers[key]
        keys = self.world.changed_batches | due
        self.world.changed_batches = set()
        for key in keys:
            last = self._decided.get(key)
            if last is not None and now < last + DECIDE_INTERVAL and key not in due:
                self._wake(key, last + DECIDE_INTERVAL)
                continue
            self._decided[key] = now
            try:
                self._decide(key, now)
            except Exception:
                log.exception("deciding batch %s/%s failed; retrying", *key)
                self.metrics.error("batch")
                self._wake(key, now + RETRY_AFTER_ERROR)

    def _wake(self, key: Key, at: float | None) -> None:
        if at is not None and (key not in self._timers or at < self._timers[key]):
            self._timers[key] = at

    def _decide(self, key: Key, now: float) -> None:
        obj = self.world.batches.get(key)
        if obj is None:
            self._forget(key, None)
            return
        if key in self._writing:
            return  # looked at again when the write is done
        view = self.view(key, obj)
        decision = decide_batch(view, now, iso(now), self.last_write.get(key))
        self._wake(key, decision.wake_at)
        if decision.create:
            self._offer(key, decision.create)
        for name in decision.cancel:
            run_key = (key[0], name)
            if run_key not in self._canceling:
                self._canceling[run_key] = asyncio.create_task(self._cancel(key, run_key))
        if decision.status:
            self._writing[key] = asyncio.create_task(self._write_status(key, decision.status))
        elif view.terminal:
            self._forget(key, obj)

    # --- the view ---------------------------------------------------------------------------

    def _items(self, obj: Json) -> list[Json] | None:
        spec = obj.get("spec") or {}
        if spec.get("items") is not None:
            items: list[Json] = spec["items"]
            return items
        return self.items.get(obj["metadata"]["uid"])

    def view(self, key: Key, obj: Json) -> BatchView:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        status = obj.get("status") or {}
        uid = meta["uid"]
        items = self._items(obj)
        total = len(items) if items is not None else int(spec.get("itemCount") or 0)
        terminal = status.get("phase") in TERMINAL_BATCH
        if items is None and uid not in self.item_errors and not terminal:
            self._load_items(key, obj)
        recorded_keyed = {int(i): n for i, n in (status.get("keyedRuns") or {}).items()}
        runs: dict[int, ItemRun] = {}
        for index, run_key in self.world.batch_runs.get(key, {}).items():
            run = self.world.runs.get(run_key)
            if run is not None and index < total:
                runs[index] = self._item_run(run, ours=True)
        claims = self.claims.get(key, {})
        for index, name in {**recorded_keyed, **claims}.items():
            if index in runs:
                continue
            run = self.world.runs.get((key[0], name))
            if run is not None:
                runs[index] = self._item_run(run, ours=is_item_run(run, meta["name"], index))
        keyed = frozenset(i for i, item in enumerate(items or ())
                          if (item.get("options") or {}).get("idempotencyKey"))
        return BatchView(
            namespace=key[0],
            name=key[1],
            uid=uid,
            generation=int(meta.get("generation") or 1),
            total=total,
            cancel=bool(spec.get("cancel")),
            items_ready=items is not None,
            items_error=self.item_errors.get(uid) or _name_too_long(key[1], total),
            keyed=keyed | frozenset(recorded_keyed),
            phase=status.get("phase"),
            recorded_created=int(status.get("created") or 0),
            recorded_keyed=recorded_keyed,
            recorded=status,
            runs=runs,
        )

    @staticmethod
    def _item_run(run: Json, ours: bool) -> ItemRun:
        return ItemRun(
            name=run["metadata"]["name"],
            phase=(run.get("status") or {}).get("phase"),
            ours=ours,
            cancel_requested=bool((run.get("spec") or {}).get("cancel")),
        )

    def _forget(self, key: Key, obj: Json | None) -> None:
        self.claims.pop(key, None)
        self._decided.pop(key, None)
        self.last_write.pop(key, None)
        self._queues.pop(key, None)
        self._timers.pop(key, None)
        if obj is not None:
            self.items.pop(obj["metadata"]["uid"], None)

    # --- items in object storage -----------------------------------------------------------

    def _storage(self) -> ObjectStore:
        if self._store is None:
            self._store = ObjectStore(StorageSettings(
                bucket=self.settings.s3_bucket, endpoint=self.settings.s3_endpoint,
                region=self.settings.s3_region,
                retry_seconds=0))  # this keeper retries on its own, every 5 s
        return self._store

    def _load_items(self, key: Key, obj: Json) -> None:
        uid = obj["metadata"]["uid"]
        if uid not in self._loading:
            self._loading[uid] = asyncio.create_task(self._download(key, obj))

    async def _download(self, key: Key, obj: Json) -> None:
        uid = obj["metadata"]["uid"]
        spec = obj.get("spec") or {}
        ref = spec.get("itemsRef") or {}
        try:
            try:
                data = await asyncio.to_thread(self._storage().get, ref)
            except Exception as exc:
                if type(exc).__name__ == "PayloadIntegrityError":
                    raise ItemsUnusable(str(exc)) from None
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code in ("NoSuchKey", "404", "NoSuchBucket"):
                    raise ItemsUnusable(
                        f"the items at s3://{ref.get('bucket')}/{ref.get('key')} do not exist"
                    ) from None
                raise
            try:
                raw = decode_json(data, "batch items")
                self.items[uid] = parse_items(raw, int(spec.get("itemCount") or 0))
            except Exception as exc:
                raise ItemsUnusable(str(exc)) from None
        except ItemsUnusable as exc:
            log.warning("batch %s/%s cannot be fanned out: %s", *key, exc)
            self.item_errors[uid] = str(exc)
        except Exception as exc:
            log.warning("reading the items of batch %s/%s failed (%s); retrying in %.0f s",
                        *key, exc, RETRY_ITEMS_DOWNLOAD)
            self.metrics.error("batch")
            self._wake(key, self.clock() + RETRY_ITEMS_DOWNLOAD)
        finally:
            self._loading.pop(uid, None)
            self.world.changed_batches.add(key)
            self.poke()

    # --- fan-out ----------------------------------------------------------------------------

    def _offer(self, key: Key, indexes: Iterable[int]) -> None:
        queued = self._queued[key]
        fresh = [i for i in indexes if i not in queued]
        if not fresh:
            return
        queue = self._queues.setdefault(key, collections.deque())
        queue.extend(fresh)
        queued.update(fresh)
        if key not in self._order:
            self._order.append(key)
        self._work.set()

    async def _next(self) -> tuple[Key, int]:
        while True:
            for _ in range(len(self._order)):
                key = self._order[0]
                self._order.rotate(-1)
                queue = self._queues.get(key)
                if queue:
                    return key, queue.popleft()
            self._order = collections.deque(k for k in self._order if self._queues.get(k))
            self._work.clear()
            await self._work.wait()

    async def _worker(self) -> None:
        while True:
            key, index = await self._next()
            try:
                await self._create_item(key, index)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("creating the run of item %d of batch %s/%s failed; retrying",
                              index, *key)
                self.metrics.error("batch")
                self._queued[key].discard(index)
                self._wake(key, self.clock() + RETRY_AFTER_ERROR)
                self.poke()
            else:
                self._queued[key].discard(index)
                self.world.changed_batches.add(key)
                self.poke()

    def _put_run(self, run: Json) -> None:
        self.touch_runs(self.world.put_run(run))

    async def _create_item(self, key: Key, index: int) -> None:
        obj = self.world.batches.get(key)
        if obj is None or (obj.get("spec") or {}).get("cancel"):
            return
        items = self._items(obj)
        if items is None or index >= len(items):
            return
        item = items[index]
        if item_key(obj, item) is not None:
            await self._claim(key, obj, index, item)
            return
        name = child_name(key[1], index)
        run, created = await self.kube.create_run(child_run(obj, index, item, name))
        if run is None:
            return  # created and deleted again meanwhile: the next pass decides anew
        if not is_item_run(run, key[1], index):
            log.warning("TaskRun %s/%s exists but was not created by batch %s for item %d; "
                        "the item is given that run", key[0], name, key[1], index)
            self.claims.setdefault(key, {})[index] = name
        self._put_run(run)
        self.created += 1
        if created:  # not one a restarted fan-out finds already there
            self.metrics.batch_runs_created.labels(key[0]).inc()

    async def _claim(self, key: Key, obj: Json, index: int, item: Json) -> None:
        """Give a keyed item its run: the run of this item if it exists, else the run that
        holds the key, else a new run named from the key (the API server's 409 on a taken
        name decides races with other triggers of the key)."""
        ikey = item_key(obj, item)
        assert ikey is not None
        task = obj["spec"]["task"]
        digest = ikey.digest(task)
        floor = 0
        for _ in range(CLAIM_ROUNDS):
            holders = [self.world.runs[k] for k in self.world.runs_by_key.get(digest, ())
                       if k in self.world.runs]
            for holder in holders:
                if is_item_run(holder, key[1], index):
                    self._record_claim(key, index, holder)
                    return
            latest = max(holders, key=generation_of, default=None)
            now = dt.datetime.now(dt.UTC)
            if latest is not None and not key_released(latest, now):
                self._record_claim(key, index, latest)
                return
            generation = max(floor, generation_of(latest) + 1 if latest is not None else 0)
            name = run_name(task, digest, generation)
            body = child_run(obj, index, item, name, {LABEL_KEY: digest,
                                                      LABEL_GENERATION: str(generation)})
            run, created = await self.kube.create_run(body)
            if run is None:
                continue
            self._put_run(run)
            if created:
                self.created += 1
                self.metrics.batch_runs_created.labels(key[0]).inc()
            if ((run["metadata"].get("labels") or {}).get(LABEL_KEY)) != digest:
                log.warning("TaskRun %s/%s has the name of idempotency key %r but not its "
                            "label; item %d of batch %s is given that run",
                            key[0], name, ikey.key, index, key[1])
                self._record_claim(key, index, run)
                return
            if created or is_item_run(run, key[1], index) or not key_released(run, now):
                self._record_claim(key, index, run)
                return
            floor = generation + 1
        raise RuntimeError(f"could not claim idempotency key {ikey.key!r} in {CLAIM_ROUNDS} "
                           "rounds: its runs are released as fast as they are created")

    def _record_claim(self, key: Key, index: int, run: Json) -> None:
        name = run["metadata"]["name"]
        self.claims.setdefault(key, {})[index] = name
        if not is_item_run(run, key[1], index):
            self.world.reused_by[(key[0], name)].add(key)

    # --- other writes -----------------------------------------------------------------------

    async def _cancel(self, batch: Key, run_key: Key) -> None:
        try:
            await self.kube.cancel_run(*run_key)
        except Exception:
            log.exception("canceling run %s/%s of batch %s failed; retrying", run_key[0],
                          run_key[1], batch[1])
            self.metrics.error("batch")
            self._wake(batch, self.clock() + RETRY_AFTER_ERROR)
        finally:
            self._canceling.pop(run_key, None)

    async def _write_status(self, key: Key, status: Json) -> None:
        try:
            patched = await self.kube.patch_batch_status(key[0], key[1], status)
            self.last_write[key] = self.clock()
            if patched is not None:
                self.touch_runs(self.world.put_batch(patched))
                recorded = (patched.get("status") or {}).get("keyedRuns") or {}
                claims = self.claims.get(key)
                if claims:
                    for index in [i for i, n in claims.items() if recorded.get(str(i)) == n]:
                        del claims[index]
        except asyncio.CancelledError:
            self._writing.pop(key, None)
            raise
        except Exception:
            # The timer brings the batch back, not a hot loop.
            log.exception("writing the status of batch %s/%s failed; retrying", *key)
            self.metrics.error("batch")
            self._writing.pop(key, None)
            self._wake(key, self.clock() + RETRY_AFTER_ERROR)
            self.poke()
        else:
            self._writing.pop(key, None)
            self.world.changed_batches.add(key)
            self.poke()
