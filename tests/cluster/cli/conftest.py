"""What the CLI's cluster tests share: the CLI run in-process against the test's namespace,
and the checks of a command's result."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kubetasks._internal.client import Client
from kubetasks.cli import main
from kubetasks.devcluster import ControlPlane

Cli = Callable[..., Result]


@pytest.fixture
def cli(sdk: Client, control_plane: ControlPlane, namespace: str) -> Cli:
    """``cli(*args, input=None)``: the CLI with --kubeconfig and -n of this test."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(
            main, ["--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, *args],
            input=input, catch_exceptions=False)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)
