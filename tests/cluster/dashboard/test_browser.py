"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against
the real local control plane, used as a person uses it: runs appear without a reload, filters
live in the URL, runs are canceled, replayed and rescheduled, queues paused, schedules
deactivated, logs followed, offloaded payloads downloaded."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from kubernetes import client
from playwright.sync_api import sync_playwright

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.app import create_app
from kubetasks.dashboard.cache import Store, Watcher
from kubetasks.devcluster import ControlPlane
from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.services import S3Server
from kubetasks.protocol.payloads import Encoded, encode_json
from kubetasks.protocol.storage import ObjectStore, StorageSettings
from tests.cluster.helpers import (
    GROUP,
    VERSION,
    create,
    custom,
    get_run,
    make_queue,
    make_run,
    make_task,
    phase,
    wait_until,
)

pytestmark = pytest.mark.cluster
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


SHOTS = os.environ.get("KUBETASKS_SCREENSHOTS")  # a directory: save the pages there


def shot(page: Any, name: str) -> None:
    """With KUBETASKS_SCREENSHOTS set, the page in light and in dark, for docs/."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(Path(SHOTS) / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    kube = KubeApi.from_environment(kubeconfig=control_plane.kubeconfig)
    store = Store()
    watchers = [Watcher(kube, store, plural, namespace).start()
                for plural in ("taskruns", "taskqueues", "taskbatches", "tasks", "taskschedules")]
    assert all(w.synced.wait(30) for w in watchers)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, kube), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        for watcher in watchers:
            watcher.stop()


def test_a_new_run_appears_live_and_filters_stay_in_the_url(
    dashboard: str, kube_api: client.ApiClient, namespace: str, tmp_path: Path,
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap (it installs Debian's "
                    "chromium package)")
    make_run(kube_api, namespace, "first", "behave", {"i": 1}, tags=["vip"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/runs")
        page.wait_for_selector(f'tr[data-run="{namespace}/first"]')
        make_run(kube_api, namespace, "second", "behave", {"i": 2})
        # No reload: the page learns of the run through its event stream.
        page.wait_for_selector(f'tr[data-run="{namespace}/second"]', timeout=10_000)
        page.screenshot(path=str(tmp_path / "runs.png"))
        shot(page, "runs")
        # By keyboard, through the field's label: Enter in a filter field applies it.
        page.get_by_label("Tag").fill("vip")
        page.get_by_label("Tag").press("Enter")
        page.wait_for_url("**/runs?*tag=vip*")
        assert page.locator("tbody tr[data-run]").count() == 1
        assert page.locator(f'tr[data-run="{namespace}/first"]').count() == 1
        # The run's page: its timeline, payload and tags.
        page.click(f'a[href="/runs/{namespace}/first"]')
        page.wait_for_selector("ol.timeline")
        assert "Created" in page.text_content("ol.timeline")
        assert '"i": 1' in page.text_content("main")
        assert "vip" in page.text_content("dl.facts")
        shot(page, "run")
        missing = page.goto(f"{dashboard}/runs/{namespace}/nope")
        assert missing is not None and missing.status == 404
        # The time range: chosen in the form, kept in the URL, refused with a reason.
        page.goto(f"{dashboard}/runs")
        page.get_by_label("Created").select_option("15m")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/runs?*period=15m*")
        page.wait_for_selector(f'tr[data-run="{namespace}/second"]')
        page.goto(f"{dashboard}/runs?from=2099-01-01T00:00")
        assert page.locator("tbody tr[data-run]").count() == 0
        assert "No runs match." in page.text_content("tbody")  # type: ignore[operator]
        refused = page.goto(f"{dashboard}/runs?from=yesterday")
        assert refused is not None and refused.status == 400
        assert "from: 'yesterday' is not a date and time" in page.text_content(
            '[role="alert"]')  # type: ignore[operator]
        browser.close()


def test_a_parent_shows_its_children_and_waits_and_an_offloaded_payload_downloads(
    dashboard: str, kube_api: client.ApiClient, namespace: str, s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in s3_server.env().items():  # what the dashboard presigns with
        monkeypatch.setenv(key, value)
    big, _ = encode_json({"rows": list(range(20_000))})
    ref = ObjectStore(StorageSettings(bucket=s3_server.bucket, endpoint=s3_server.endpoint,
                                      region=s3_server.region)).put(
        f"{namespace}/payloads/parent", Encoded(big, None))
    parent = create(kube_api, namespace, "taskruns", {
        "kind": "TaskRun", "metadata": {"name": "parent"},
        "spec": {"task": "behave", "payloadRef": ref}})
    uid = parent["metadata"]["uid"]
    make_run(kube_api, namespace, "waited", "behave", {"i": 1},
             parent={"name": "parent", "uid": uid, "wait": True})
    make_run(kube_api, namespace, "fired", "behave", {"i": 2},
             parent={"name": "parent", "uid": uid})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/runs/{namespace}/parent")
        kids = page.locator("ul.children li")
        assert kids.count() == 2
        assert "(waited for)" in kids.nth(0).inner_text() + kids.nth(1).inner_text()
        assert "Waiting on run" in page.text_content("ol.timeline")  # type: ignore[operator]
        assert "run waited (behave)" in page.text_content("ol.timeline")  # type: ignore[operator]
        shot(page, "run-parent")
        link = page.get_by_role("link", name="Download the payload")
        # The page holds no presigned URL: the link is the dashboard's own, signed on click.
        assert link.get_attribute("href") == f"/runs/{namespace}/parent/download/payload"
        assert "X-Amz-Signature" not in page.content()
        with page.expect_download() as downloaded:
            link.click()
        assert Path(downloaded.value.path()).read_bytes() == big
        page.click(f'ul.children a[href="/runs/{namespace}/waited"]')
        page.wait_for_selector("dl.facts")
        assert "(waits for this run)" in page.text_content("dl.facts")  # type: ignore[operator]
        # Nothing to download for an inline payload; a redirect to S3 carries no-store.
        none = page.goto(f"{dashboard}/runs/{namespace}/waited/download/payload")
        assert none is not None and none.status == 404
        browser.close()
    answer = urllib.request.build_opener(NoRedirect).open(
        f"{dashboard}/runs/{namespace}/parent/download/payload")
    assert answer.status == 303
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "X-Amz-Expires=300" in answer.headers["Location"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None

    def http_error_303(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        return fp


def test_a_queue_is_paused_after_confirmation_and_a_forged_post_changes_nothing(
    dashboard: str, kube_api: client.ApiClient, namespace: str,
) -> None:
    make_queue(kube_api, namespace, "emails", concurrencyLimit=2)

    def paused() -> bool:
        queue = custom(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskqueues", "emails")
        return bool((queue.get("spec") or {}).get("paused"))

    # A POST from another site, without the page's token: refused, nothing changes.
    forged = urllib.request.Request(
        f"{dashboard}/queues/{namespace}/emails/pause", data=b"csrf=guess", method="POST",
        headers={"Origin": "http://evil.example", "Cookie": "kubetasks_csrf=guess2"})
    try:
        urllib.request.urlopen(forged)
        raise AssertionError("a forged POST was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 403
    assert not paused()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/queues")
        row = page.locator(f'tr[data-queue="{namespace}/emails"]')
        row.wait_for()
        # Dismissing the confirmation does nothing.
        page.once("dialog", lambda dialog: dialog.dismiss())
        row.get_by_role("button", name="Pause").click()
        time.sleep(0.5)
        assert not paused()
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Pause").click()
        page.wait_for_url("**/queues")
        wait_until(paused, timeout=10, what="the queue to be paused")
        assert "Paused" in page.locator(f'tr[data-queue="{namespace}/emails"]').inner_text()
        shot(page, "queues")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator(f'tr[data-queue="{namespace}/emails"]').get_by_role(
            "button", name="Resume").click()
        wait_until(lambda: not paused(), timeout=10, what="the queue to be resumed")
        browser.close()


def test_a_run_is_canceled_and_replayed_from_its_page(
    dashboard: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    # With the operator (other tests of the session start it anyway): a delayed run stays
    # cancellable until the page cancels it.
    make_task(kube_api, namespace, "behave")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    make_run(kube_api, namespace, "nightly", "behave", {"report": "x"}, tags=["ops"],
             delayUntil=later)
    wait_until(lambda: phase(get_run(kube_api, namespace, "nightly")) == "Delayed",
               timeout=30, what="the run to be delayed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/runs/{namespace}/nightly")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel").click()
        wait_until(lambda: phase(get_run(kube_api, namespace, "nightly")) == "Canceled",
                   timeout=30, what="the run to be canceled")
        page.reload()
        page.wait_for_selector("h1 .badge.Canceled")
        assert page.get_by_role("button", name="Cancel").count() == 0  # nothing to cancel
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Replay").click()
        # The replay's own page: a new run of the same task, payload and tags.
        page.wait_for_url(f"**/runs/{namespace}/behave-*")
        new_name = page.url.rsplit("/", 1)[1]
        page.wait_for_selector("ol.timeline")  # its page, not a 404
        replayed = get_run(kube_api, namespace, new_name)
        assert replayed["spec"]["payload"] == {"report": "x"}
        assert replayed["spec"]["tags"] == ["ops"]
        assert not replayed["spec"].get("cancel")
        browser.close()


def test_batches_and_tasks_pages_show_what_exists(
    dashboard: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    create(kube_api, namespace, "taskbatches", {
        "kind": "TaskBatch", "metadata": {"name": "fan"},
        "spec": {"task": "behave", "items": [{"payload": {"i": i}} for i in range(3)]}})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/batches")
        page.locator(f'tr[data-batch="{namespace}/fan"]').wait_for()
        page.click(f'a[href="/batches/{namespace}/fan"]')
        # The operator fans the batch out; the page lists the item runs in item order.
        deadline = time.monotonic() + 30
        while page.locator("tr[data-item]").count() < 3:
            assert time.monotonic() < deadline, "the batch's runs never showed"
            time.sleep(0.5)
            page.reload()
        assert page.locator("tr[data-item]").evaluate_all(
            "rows => rows.map(r => r.dataset.item)") == ["0", "1", "2"]
        shot(page, "batch")
        page.goto(f"{dashboard}/tasks")
        row = page.locator(f'tr[data-task="{namespace}/behave"]')
        row.wait_for()
        assert "tests.cluster.tasks:run" in row.inner_text()
        shot(page, "tasks")
        browser.close()


def test_a_bulk_cancel_cancels_what_the_filter_selects_and_nothing_else(
    dashboard: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(4):
        make_run(kube_api, namespace, f"bulk-{i}", "behave", {"i": i}, tags=["bulk"],
                 delayUntil=later)
    make_run(kube_api, namespace, "keep", "behave", {"i": 9}, tags=["other"],
             delayUntil=later)

    def canceled(name: str) -> bool:
        return bool(custom(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskruns", name)["spec"].get("cancel"))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/runs?tag=bulk")
        page.wait_for_selector(f'tr[data-run="{namespace}/bulk-3"]')
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel all 4 selected").click()
        page.wait_for_url("**/bulk/*")
        page.wait_for_selector("text=finished", timeout=20_000)
        assert "4 of 4 done" in page.text_content("#progress")  # type: ignore[operator]
        browser.close()
    assert all(canceled(f"bulk-{i}") for i in range(4))
    assert not canceled("keep")


def test_the_run_page_shows_each_attempts_log_live_while_it_runs(
    dashboard: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "say", entrypoint="tests.cluster.tasks:say")
    make_run(kube_api, namespace, "talk", "say",
             {"lines": ["first line", "second line", "last line"], "sleep": 2})
    wait_until(lambda: phase(get_run(kube_api, namespace, "talk")) == "Executing",
               timeout=60, what="the run to execute")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/runs/{namespace}/talk")
        log = page.locator("#log-1")
        log.wait_for()
        # Followed as it is written: the first line shows before the last is printed.
        page.wait_for_function(
            "document.querySelector('#log-1').textContent.includes('first line')",
            timeout=20_000)
        assert "last line" not in log.inner_text()
        page.wait_for_function(
            "document.querySelector('#log-1').textContent.includes('last line')",
            timeout=20_000)
        wait_until(lambda: phase(get_run(kube_api, namespace, "talk")) == "Completed",
                   timeout=60, what="the run to complete")
        # Once finished, the page reads the whole log at once.
        page.reload()
        page.wait_for_function(
            "document.querySelector('#log-1').textContent.includes('last line')",
            timeout=20_000)
        shot(page, "run-logs")
        printed = [line for line in log.inner_text().splitlines() if line.endswith(" line")]
        assert printed == ["first line", "second line", "last line"]
        browser.close()


def test_a_failed_run_shows_its_error_and_log_and_its_replay_completes(
    dashboard: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    make_task(kube_api, namespace, "needs-file", entrypoint="tests.cluster.tasks:needs_file")
    make_task(kube_api, namespace, "behave")
    marker = tmp_path / "marker"
    make_run(kube_api, namespace, "broken", "needs-file", {"path": str(marker)},
             maxAttempts=1)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    make_run(kube_api, namespace, "later", "behave", {"i": 1}, delayUntil=later)
    wait_until(lambda: phase(get_run(kube_api, namespace, "broken")) == "Failed",
               timeout=90, what="the run to fail")
    wait_until(lambda: phase(get_run(kube_api, namespace, "later")) == "Delayed",
               timeout=30, what="the run to be delayed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/runs?status=Failed")
        page.click(f'a[href="/runs/{namespace}/broken"]')
        error = page.locator("pre.error")
        error.wait_for()
        assert "FileNotFoundError" in error.inner_text()
        assert "is missing" in error.inner_text()
        page.wait_for_function(
            "document.querySelector('#log-1').textContent.includes('looking for')",
            timeout=20_000)
        shot(page, "run-failed")
        # The fault is fixed outside; the replay completes.
        marker.write_text("here")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Replay").click()
        page.wait_for_url(f"**/runs/{namespace}/needs-file-*")
        replay = page.url.rsplit("/", 1)[1]
        wait_until(lambda: phase(get_run(kube_api, namespace, replay)) == "Completed",
                   timeout=90, what="the replay to complete")
        # A delayed run is rescheduled from its page, then canceled.
        page.goto(f"{dashboard}/runs/{namespace}/later")
        page.get_by_label("Delay").fill("3h")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Reschedule").click()
        page.wait_for_url(f"**/runs/{namespace}/later")
        moved = dt.datetime.fromisoformat(
            get_run(kube_api, namespace, "later")["spec"]["delayUntil"].replace("Z", "+00:00"))
        ahead = moved - dt.datetime.now(dt.UTC)
        assert dt.timedelta(hours=2, minutes=55) < ahead <= dt.timedelta(hours=3), ahead
        wait_until(lambda: (get_run(kube_api, namespace, "later").get("status") or {}).get(
            "delayUntil") == get_run(kube_api, namespace, "later")["spec"]["delayUntil"],
            timeout=30, what="the operator to accept the new delay")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel").click()
        wait_until(lambda: phase(get_run(kube_api, namespace, "later")) == "Canceled",
                   timeout=30, what="the delayed run to be canceled")
        browser.close()


def test_a_schedule_is_shown_in_english_and_deactivated_after_confirmation(
    dashboard: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
) -> None:
    make_task(kube_api, namespace, "behave")
    create(kube_api, namespace, "taskschedules", {
        "kind": "TaskSchedule", "metadata": {"name": "nightly"},
        "spec": {"task": "behave", "cron": "0 2 * * *", "timezone": "Europe/Paris"}})

    def active() -> bool:
        obj = custom(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskschedules", "nightly")
        return obj["spec"].get("active", True) is not False

    wait_until(lambda: (custom(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskschedules", "nightly").get("status") or {}).get(
        "description"), timeout=30, what="the operator to describe the schedule")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{dashboard}/schedules")
        row = page.locator(f'tr[data-schedule="{namespace}/nightly"]')
        row.wait_for()
        page.wait_for_function(
            "document.body.textContent.includes('At 02:00, every day')", timeout=10_000)
        assert "Europe/Paris" in row.inner_text()
        shot(page, "schedules")
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Deactivate").click()
        page.wait_for_url("**/schedules")
        wait_until(lambda: not active(), timeout=10, what="the schedule to be deactivated")
        assert page.locator(f'tr[data-schedule="{namespace}/nightly"]').get_by_role(
            "button", name="Activate").count() == 1
        browser.close()
