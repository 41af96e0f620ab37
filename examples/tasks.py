"""The example's tasks: a plain one, a delayed one, a queue with a limit, one limited per
user by a concurrency key, a flaky one that succeeds on its retry, a parent waiting on a
child, a parent fanning out a batch, and one for a schedule."""

from __future__ import annotations

import time

from pydantic import BaseModel

from kubetasks import Context, RetryOptions, ScheduledPayload, queue, task


class Greeting(BaseModel):
    name: str


@task(id="greet")
def greet(payload: Greeting, ctx: Context) -> str:
    ctx.logger.info("greeting %s", payload.name)
    return f"Hello, {payload.name}!"


@task(id="remind")
def remind(payload: dict[str, str], ctx: Context) -> dict[str, float]:
    """Triggered with a delay: reports when it really ran."""
    return {"ran_at": time.time()}


@task(id="resize", queue=queue("images", concurrency_limit=2))
def resize(payload: dict[str, int], ctx: Context) -> dict[str, float]:
    """At most two run at once (the queue's limit); each reports when it ran."""
    started = time.time()
    time.sleep(1.0)
    return {"width": payload["width"] // 2, "started": started, "ended": time.time()}


# The spec's concurrencyKey example: every free user gets a queue of its own with a limit of
# 1 (trigger with queue=FREE_USERS, concurrency_key=user_id); users run side by side.
FREE_USERS = queue("free-users", concurrency_limit=1)


class Reviewed(BaseModel):
    user: str
    started: float
    ended: float


@task(id="review")
def review(payload: dict[str, str], ctx: Context) -> Reviewed:
    """Reviews one pull request of one user; reports when it ran."""
    started = time.time()
    time.sleep(1.0)
    return Reviewed(user=payload["user"], started=started, ended=time.time())


class Flaky(Exception):
    """Fails the first attempt: the retry policy runs it again."""


@task(id="flaky", retry=RetryOptions(max_attempts=3, min_timeout=1, max_timeout=2,
                                     randomize=False))
def flaky(payload: dict[str, str], ctx: Context) -> dict[str, int]:
    if ctx.attempt.number < 2:
        raise Flaky(f"attempt {ctx.attempt.number} fails on purpose")
    return {"succeeded_on_attempt": ctx.attempt.number}


@task(id="square")
def square(payload: int, ctx: Context) -> int:
    return payload * payload


@task(id="sum-of-squares")
def sum_of_squares(payload: list[int], ctx: Context) -> int:
    """Fans out one ``square`` run per number and waits for all of them (its queue slot is
    free while it waits)."""
    results = square.batch_trigger_and_wait([{"payload": n} for n in payload])
    return sum(result.unwrap() for result in results)


@task(id="shout")
def shout(payload: str, ctx: Context) -> str:
    return payload.upper()


@task(id="announce")
def announce(payload: str, ctx: Context) -> str:
    """Waits for a child run and uses its result."""
    loud = shout.trigger_and_wait(payload).unwrap()
    return f"{loud} (from child run of {ctx.run.id})"


@task(id="daily-digest")
def daily_digest(payload: ScheduledPayload, ctx: Context) -> dict[str, str]:
    """Run by a schedule (``kubetasks schedules create daily-digest "0 9 * * mon-fri"``):
    reports the tick it ran for."""
    return {"tick": payload.timestamp.isoformat(), "schedule": payload.schedule_id}
