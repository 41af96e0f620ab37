"""Triggers every task of the example, waits for the results and prints them.

``kubetasks dev examples.tasks --run examples.main:main`` runs it against the embedded local
cluster (``scripts/dev --once`` does exactly that and stops afterwards). Returns 0 when every
run ended as expected.
"""

from __future__ import annotations

import time
from typing import Any

from examples.tasks import (
    FREE_USERS,
    Greeting,
    announce,
    flaky,
    greet,
    remind,
    resize,
    review,
    sum_of_squares,
)
from kubetasks import Run, RunHandle


def _line(what: str, run: Run[object], shown: object) -> str:
    attempts = len(run.attempts)
    return f"{what:<34} {run.status:<10} attempts={attempts}  {shown}"


def _peak(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one instant."""
    return max((sum(1 for s, e in spans if s <= t < e) for t, _ in spans), default=0)


def main() -> int:
    started = time.time()
    handles: dict[str, RunHandle[Any]] = {
        "greet": greet.trigger(Greeting(name="kubetasks")),
        "remind (delay 3s)": remind.trigger({"note": "stand up"}, delay="3s"),
        "flaky (retried)": flaky.trigger({}),
        "announce (waits on a child)": announce.trigger("hello from the parent"),
        "sum-of-squares (batch of 5)": sum_of_squares.trigger([1, 2, 3, 4, 5]),
    }
    images = resize.batch_trigger([{"payload": {"width": w}} for w in (800, 640, 1024, 320,
                                                                       1920, 480)])
    reviews = [review.trigger({"user": user, "pr": str(n)}, queue=FREE_USERS,
                              concurrency_key=user)
               for user in ("ann", "bob", "cy") for n in (1, 2)]
    ok = True
    print("results:")
    for what, handle in handles.items():
        run = handle.poll(timeout=180)
        shown: object = run.output if run.is_completed else run.error
        if what.startswith("remind") and run.output is not None:
            waited = float(run.output["ran_at"]) - started
            shown = f"ran {waited:.1f} s after the trigger (3 s delay, then a process start)"
        ok = ok and run.is_completed
        print(_line(what, run, shown))
    batch = images.poll(timeout=180)
    runs = images.runs()
    peak = _peak([(r.output["started"], r.output["ended"]) for r in runs
                  if r.output is not None])
    ok = ok and batch.status == "Completed" and peak <= 2
    print(f"{'resize x6 (queue limit 2)':<34} {batch.status:<10} completed="
          f"{batch.counts['completed']}/{batch.total}  at most {peak} ran at once")
    done = [handle.poll(timeout=180) for handle in reviews]
    by_user: dict[str, list[tuple[float, float]]] = {}
    for r in done:
        if r.output is not None:
            by_user.setdefault(r.output.user, []).append((r.output.started, r.output.ended))
    peak = _peak([span for spans in by_user.values() for span in spans])
    per_user = max((_peak(spans) for spans in by_user.values()), default=0)
    completed = sum(r.is_completed for r in done)
    ok = ok and completed == len(done) and peak <= 3 and per_user == 1
    print(f"{'review x6 (limit 1 per user)':<34} "
          f"{'Completed' if completed == len(done) else 'Failed':<10} "
          f"completed={completed}/{len(done)}  at most {peak} ran at once, {per_user} per user")
    print("all runs ended as expected" if ok else "SOME RUNS DID NOT END AS EXPECTED")
    return 0 if ok else 1
