"""The World's picture of TaskSchedules: their unfinished runs (by the schedule label), and
which schedules a Task's arrival or removal concerns."""

from __future__ import annotations

from typing import Any

from kubetasks_operator.world import World


def run(name: str, rv: int, schedule: str | None, phase: str | None = None,
        created: str = "2027-01-15T08:00:00Z") -> dict[str, Any]:
    labels = {"kubetasks.dev/schedule": schedule} if schedule else {}
    obj: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}",
                     "resourceVersion": str(rv), "creationTimestamp": created,
                     "labels": labels},
        "spec": {"task": "echo"},
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def schedule(name: str, task: str, rv: int = 1, namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": str(rv)},
            "spec": {"task": task, "cron": "* * * * *"}}


def test_unfinished_runs_of_a_schedule_follow_their_phases() -> None:
    world = World()
    world.put_run(run("nightly-202701150800", 1, "nightly"))
    world.put_run(run("nightly-202701150700", 2, "nightly", "Executing",
                      created="2027-01-15T07:00:00Z"))
    world.put_run(run("other-202701150800", 3, "other"))
    world.put_run(run("plain", 4, None))
    assert world.unfinished_schedule_runs(("ns", "nightly")) == (
        "nightly-202701150700", "nightly-202701150800")  # oldest first

    world.put_run(run("nightly-202701150700", 5, "nightly", "Completed",
                      created="2027-01-15T07:00:00Z"))
    assert world.unfinished_schedule_runs(("ns", "nightly")) == ("nightly-202701150800",)
    world.drop_run(run("nightly-202701150800", 6, "nightly"))
    assert world.unfinished_schedule_runs(("ns", "nightly")) == ()
    assert ("ns", "nightly") not in world.schedule_unfinished
    assert world.unfinished_schedule_runs(("ns", "other")) == ("other-202701150800",)


def test_a_task_coming_or_going_marks_its_schedules_changed() -> None:
    world = World()
    world.put_schedule(schedule("a", "send"))
    world.put_schedule(schedule("b", "other"))
    world.put_schedule(schedule("c", "send", namespace="elsewhere"))
    world.changed_schedules.clear()
    task = {"metadata": {"namespace": "ns", "name": "send", "resourceVersion": "1"},
            "spec": {"image": "i", "entrypoint": "m:f"}}
    world.put_task(task)
    assert world.changed_schedules == {("ns", "a")}
    world.changed_schedules.clear()
    world.put_task({**task, "metadata": {**task["metadata"], "resourceVersion": "2"}})
    assert world.changed_schedules == set()  # an update changes no schedule's readiness
    world.drop_task(task)
    assert world.changed_schedules == {("ns", "a")}


def test_a_stale_schedule_is_not_stored_again() -> None:
    world = World()
    world.put_schedule(schedule("a", "send", rv=5))
    world.changed_schedules.clear()
    world.put_schedule(schedule("a", "older", rv=4))
    assert world.schedules[("ns", "a")]["spec"]["task"] == "send"
    assert world.changed_schedules == set()
    world.drop_schedule(schedule("a", "send", rv=6))
    assert ("ns", "a") not in world.schedules and world.changed_schedules == {("ns", "a")}
