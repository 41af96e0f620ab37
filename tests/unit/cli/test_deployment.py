"""``kubetasks deploy``'s objects: one Task per task (entrypoint = module:attribute) and
one TaskQueue per declared queue."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from kubetasks import Context, RetryOptions, TaskDefinitionError, queue, task
from kubetasks.cli import main
from kubetasks.cli.deployment import manifests


@pytest.fixture
def module() -> Iterator[str]:
    name = "kubetasks_unit_deploy_example"
    mod = types.ModuleType(name)
    emails = queue("emails", concurrency_limit=5)

    def send(payload: Any, ctx: Context) -> None: ...

    def digest(payload: Any, ctx: Context) -> None: ...

    send.__module__ = digest.__module__ = name
    mod.send_email = task(id="unit-send-email", queue=emails,  # type: ignore[attr-defined]
                          retry=RetryOptions(max_attempts=3, min_timeout=1),
                          machine="small-2x", max_duration=300, ttl="10m")(send)
    mod.digest = task(id="unit-digest", queue=emails)(digest)  # type: ignore[attr-defined]
    mod.alias = mod.digest  # type: ignore[attr-defined]
    sys.modules[name] = mod
    try:
        yield name
    finally:
        del sys.modules[name]


def test_manifests_have_queues_then_tasks(module: str) -> None:
    objects = manifests(module, "registry/app:1", {"LOG": "debug"}, "runner")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("TaskQueue", "emails"), ("Task", "unit-digest"), ("Task", "unit-send-email")]
    assert objects[0]["spec"] == {"concurrencyLimit": 5}  # never "paused": not ours
    send = objects[2]
    assert send["apiVersion"] == "kubetasks.dev/v1alpha1"
    assert send["spec"] == {
        "image": "registry/app:1",
        "entrypoint": f"{module}:send_email",
        "queue": {"name": "emails", "concurrencyLimit": 5},
        "retry": {"maxAttempts": 3, "minTimeoutSeconds": 1},
        "machine": "small-2x",
        "maxDurationSeconds": 300,
        "ttlSeconds": 600,
        "env": [{"name": "LOG", "value": "debug"}],
        "serviceAccountName": "runner",
    }
    assert objects[1]["spec"]["entrypoint"] == f"{module}:alias"  # first attribute by name


def test_a_queue_declared_with_two_limits_is_refused(module: str) -> None:
    mod = sys.modules[module]

    def other(payload: Any, ctx: Context) -> None: ...

    other.__module__ = module
    mod.other = task(id="unit-other", queue=queue("emails", concurrency_limit=9))(other)  # type: ignore[attr-defined]
    with pytest.raises(TaskDefinitionError, match=r"concurrency_limit 5 in task .* but 9"):
        manifests(module, "img")


def test_deploy_dry_run_prints_yaml_and_a_module_without_tasks_is_an_error(
    module: str
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["deploy", "--image", "img", "--dry-run", module])
    assert result.exit_code == 0, result.output
    assert "kind: TaskQueue" in result.output and f"entrypoint: {module}:send_email" in (
        result.output)
    empty = runner.invoke(main, ["deploy", "--image", "img", "--dry-run", "json"])
    assert empty.exit_code == 1
    assert "defines no tasks" in empty.output
