"""Screenshots of every dashboard page, from a namespace with the example's runs in it.

    .venv/bin/kubetasks dev examples.tasks --run examples.screenshots:main --once

Runs the example application (``examples.main``), and adds what it lacks: a run that
fails, a delayed run, a schedule. Then a headless Chromium (Debian's ``chromium``, driven
by Playwright, both from ``scripts/bootstrap``) saves each page of the dashboard that
``kubetasks dev`` started, in light and in dark, to ``docs/screenshots`` (or to the
directory in ``KUBETASKS_SCREENSHOTS``). Returns 0 when every page was saved.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from examples import main as example
from examples.tasks import remind
from kubetasks import schedules, tasks

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def save(page: Any, directory: Path, name: str) -> None:
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(directory / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    print(f"saved {name}")


def main() -> int:
    from playwright.sync_api import sync_playwright

    url = os.environ["KUBETASKS_DASHBOARD_URL"].rstrip("/")
    directory = Path(os.environ.get("KUBETASKS_SCREENSHOTS") or "docs/screenshots")
    directory.mkdir(parents=True, exist_ok=True)

    broken = tasks.trigger("greet", {"nom": "typo"}, max_attempts=1, tags=["onboarding"])
    later = remind.trigger({"note": "renew the certificate"}, delay="6h", tags=["ops"])
    schedules.create("daily-digest", "0 9 * * mon-fri", timezone="Europe/Paris",
                     external_id="team-a", deduplication_key="team-a-digest")
    example.main()
    broken.poll(timeout=120)
    namespace, name = broken.id.split("/", 1)
    parent = tasks_runs("announce")[0]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{url}/runs")
        page.wait_for_selector("tr[data-run]")
        save(page, directory, "runs")
        page.goto(f"{url}/runs/{namespace}/{name}")
        page.wait_for_function(
            "[...document.querySelectorAll('pre.log')].every(p => p.textContent !== '…')")
        save(page, directory, "run-failed")
        page.goto(f"{url}/runs/{parent}")
        page.wait_for_selector("ol.timeline")
        save(page, directory, "run-parent")
        page.goto(f"{url}/runs/{tasks_runs('flaky')[0]}")
        page.wait_for_function(
            "[...document.querySelectorAll('pre.log')].every(p => p.textContent !== '…')")
        save(page, directory, "run-logs")
        page.goto(f"{url}/runs/{later.id}")
        page.wait_for_selector("ol.timeline")
        save(page, directory, "run")
        for section in ("queues", "batches", "tasks", "schedules"):
            page.goto(f"{url}/{section}")
            time.sleep(0.3)
            save(page, directory, section)
        page.goto(f"{url}/batches")
        page.locator("tbody a").first.click()
        page.wait_for_selector("tr[data-item]")
        save(page, directory, "batch")
        browser.close()
    return 0


def tasks_runs(task_id: str) -> list[str]:
    """Ids of the runs of one task, newest first."""
    from kubetasks import runs

    return [r.id for r in runs.list(task=task_id)]
