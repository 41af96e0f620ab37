"""What the runs page shows: rows from runs, filters, newest first, paging."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubetasks.dashboard.views import PAGE_SIZE, FilterError, duration, run_page, run_row

NOW = 1_800_000_000.0


def run(name: str, created: str, phase: str | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "jobs", "name": name, "creationTimestamp": created,
                     "labels": spec.pop("labels", {})},
        "spec": {"task": spec.pop("task", "send-email"), **spec},
    }
    if phase:
        obj["status"] = {"phase": phase, "queue": "emails", "attempt": 1,
                         "startedTime": "2027-01-15T08:00:00Z",
                         "finishedTime": "2027-01-15T08:00:02Z"}
    return obj


def test_a_row_says_what_a_person_looks_for() -> None:
    row = run_row(run("a", "2027-01-15T07:59:59Z", "Completed", tags=["vip"],
                      labels={"kubetasks.dev/schedule": "nightly"},
                      batch={"name": "b1", "index": 3}), NOW)
    assert (row.id, row.status, row.queue, row.tags, row.attempt) == (
        "jobs/a", "Completed", "emails", ("vip",), 1)
    assert (row.duration, row.schedule, row.batch) == ("2.0 s", "nightly", "b1")
    assert run_row(run("new", "2027-01-15T07:59:59Z"), NOW).status == "Pending"


def test_filters_combine_and_a_status_list_is_any_of() -> None:
    runs = [run("a", "2027-01-15T08:00:00Z", "Failed", tags=["vip"]),
            run("b", "2027-01-15T08:00:01Z", "Crashed"),
            run("c", "2027-01-15T08:00:02Z", "Completed", task="resize")]
    names = lambda f: [r.name for r in run_page(runs, f, 1, NOW).rows]  # noqa: E731
    assert names({}) == ["c", "b", "a"]  # newest first
    assert names({"status": "Failed,Crashed"}) == ["b", "a"]
    assert names({"status": "Failed,Crashed", "tag": "vip"}) == ["a"]
    assert names({"task": "resize"}) == ["c"]
    assert names({"queue": "other"}) == []


def test_pages_hold_page_size_rows_and_a_page_past_the_end_is_the_last() -> None:
    runs = [run(f"r{i:03d}", f"2027-01-15T08:{i // 60:02d}:{i % 60:02d}Z") for i in range(120)]
    first = run_page(runs, {}, 1, NOW)
    assert (first.total, first.pages, len(first.rows)) == (120, 3, PAGE_SIZE)
    last = run_page(runs, {}, 99, NOW)
    assert last.page == 3 and [r.name for r in last.rows][-1] == "r000"


def test_durations_read_like_a_person_says_them() -> None:
    assert duration(None, None, NOW) == ""
    assert duration(NOW - 1.25, None, NOW) == "1.2 s"
    assert duration(NOW - 125, NOW, NOW) == "2 min 5 s"
    assert duration(NOW - 7300, NOW, NOW) == "2 h 1 min"


def test_a_batch_row_counts_its_done_items_and_lists_them_in_order() -> None:
    from kubetasks.dashboard.views import batch_items, batch_row

    batch = {"metadata": {"namespace": "jobs", "name": "b1"},
             "spec": {"task": "resize", "itemCount": 3},
             "status": {"phase": "Running", "total": 3, "created": 3,
                        "counts": {"completed": 1, "failed": 1, "running": 1}}}
    row = batch_row(batch)
    assert (row.total, row.created, row.done, row.phase) == (3, 3, 2, "Running")
    runs = [run(f"b1-{i}", "2027-01-15T08:00:00Z", "Completed", batch={"name": "b1", "index": i})
            for i in (2, 0, 1)] + [run("other", "2027-01-15T08:00:00Z")]
    assert [(i, r.name) for i, r in batch_items(batch, runs, NOW)] == [
        (0, "b1-0"), (1, "b1-1"), (2, "b1-2")]


def test_task_rows_tally_how_runs_ended() -> None:
    from kubetasks.dashboard.views import task_rows

    tasks = [{"metadata": {"namespace": "jobs", "name": "send-email"},
              "spec": {"image": "app:1", "entrypoint": "app.tasks:send",
                       "retry": {"maxAttempts": 3}}},
             {"metadata": {"namespace": "jobs", "name": "resize"},
              "spec": {"image": "app:1", "entrypoint": "app.tasks:resize",
                       "queue": {"name": "images"}}}]
    runs = [run("a", "2027-01-15T08:00:00Z", "Completed"),
            run("b", "2027-01-15T08:00:00Z", "Failed"),
            run("c", "2027-01-15T08:00:00Z", "Completed"),
            run("d", "2027-01-15T08:00:00Z", "Executing")]
    rows = {r.name: r for r in task_rows(tasks, runs)}
    assert rows["send-email"].outcomes == {"Completed": 2, "Failed": 1}
    assert rows["send-email"].retry == "3 attempts" and rows["send-email"].queue == "send-email"
    assert rows["resize"].outcomes == {} and rows["resize"].queue == "images"


def test_the_timeline_is_in_time_order_whatever_the_precision() -> None:
    from kubetasks.dashboard.views import readable_time, timeline

    obj = run("t", "2027-01-15T08:00:00Z")
    obj["status"] = {"enqueuedTime": "2027-01-15T08:00:00.000000Z", "queue": "q",
                     "attempts": [{"number": 1, "startedTime": "2027-01-15T08:00:00.500000Z",
                                   "finishedTime": "2027-01-15T08:00:02Z", "exitCode": 0}],
                     "finishedTime": "2027-01-15T08:00:02.100000Z", "phase": "Completed"}
    assert [m.what for m in timeline(obj)] == [
        "Created", "Queued", "Attempt 1 started", "Attempt 1 ended", "Completed"]
    assert readable_time("2027-01-15T08:00:00.500000Z") == "2027-01-15 08:00:00.500 UTC"
    assert readable_time("2027-01-15T08:00:00Z") == "2027-01-15 08:00:00 UTC"


def test_time_filters_keep_runs_created_in_the_range_and_say_what_is_wrong() -> None:
    runs = [run("old", "2027-01-15T07:00:00Z"), run("mid", "2027-01-15T07:30:00Z"),
            run("new", "2027-01-15T07:59:00Z")]
    now = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC).timestamp()
    names = lambda f: [r.name for r in run_page(runs, f, 1, now).rows]  # noqa: E731
    assert names({"period": "15m"}) == ["new"]
    assert names({"period": "1h"}) == ["new", "mid", "old"]
    # A browser's datetime-local value has no zone: it is read as UTC; both ends included.
    assert names({"from": "2027-01-15T07:30"}) == ["new", "mid"]
    assert names({"to": "2027-01-15T07:30"}) == ["mid", "old"]
    assert names({"from": "2027-01-15T07:10", "to": "2027-01-15T07:40"}) == ["mid"]
    assert names({"from": "2027-01-15T08:30+01:00"}) == ["new", "mid"]
    with pytest.raises(FilterError, match=r"period: '2w' is not one of 15m, 1h"):
        run_page(runs, {"period": "2w"}, 1, now)
    with pytest.raises(FilterError, match=r"from: 'yesterday' is not a date and time; write "
                                          r"it like 2027-01-15T08:30 \(UTC\)"):
        run_page(runs, {"from": "yesterday"}, 1, now)
    with pytest.raises(FilterError, match="to: the range ends before it starts"):
        run_page(runs, {"from": "2027-01-15T08:00", "to": "2027-01-15T07:00"}, 1, now)


def test_children_are_found_by_parent_uid_and_waits_join_the_timeline() -> None:
    from kubetasks.dashboard.views import children, timeline

    parent = run("p", "2027-01-15T08:00:00Z", "Completed")
    parent["metadata"]["uid"] = "uid-p"
    parent["status"]["finishedTime"] = "2027-01-15T08:00:09Z"

    def child(name: str, created: str, wait: bool, uid: str = "uid-p", **more: Any
              ) -> dict[str, Any]:
        obj = run(name, created, "Completed", task="resize",
                  parent={"name": "p", "uid": uid, "wait": wait}, **more)
        obj["status"]["finishedTime"] = "2027-01-15T08:00:05Z"
        return obj

    waited = child("c1", "2027-01-15T08:00:03Z", True)
    fired = child("c2", "2027-01-15T08:00:01Z", False)
    of_old_parent = child("c3", "2027-01-15T08:00:02Z", True, uid="uid-recreated")
    batch_item = child("b-0", "2027-01-15T08:00:04Z", True, batch={"name": "b", "index": 0})
    batch = {"metadata": {"namespace": "jobs", "name": "b", "uid": "uid-b",
                          "creationTimestamp": "2027-01-15T08:00:04Z"},
             "spec": {"task": "resize", "parent": {"name": "p", "uid": "uid-p", "wait": True}},
             "status": {"phase": "Running"}}
    kids = children(parent, [waited, fired, of_old_parent, batch_item], [batch])
    assert [(k.kind, k.name, k.wait, k.href) for k in kids] == [
        ("run", "c2", False, "/runs/jobs/c2"), ("run", "c1", True, "/runs/jobs/c1"),
        ("batch", "b", True, "/batches/jobs/b")]
    assert [(m.what, m.detail) for m in timeline(parent, kids)][1:] == [
        ("Waiting on run", "run c1 (resize)"), ("Waiting on batch", "batch b (resize)"),
        ("Child run ended", "c1: Completed"), ("Completed", "")]
