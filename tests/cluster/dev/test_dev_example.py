"""The README's first command: ``scripts/dev --once`` runs the example application end to end
on the embedded local cluster. Here it runs what that script runs after its bootstrap, in a
cluster of its own, and checks what the example printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(600)
def test_the_example_runs_end_to_end_and_prints_its_results(tmp_path: Path) -> None:
    script = (REPO / "scripts" / "dev").read_text()
    assert "kubetasks dev examples.tasks --run examples.main:main" in script
    done = subprocess.run(
        [sys.executable, "-m", "kubetasks", "dev", "examples.tasks",
         "--run", "examples.main:main", "--once", "--workdir", str(tmp_path / "dev")],
        cwd=REPO, capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "Hello, kubetasks!" in lines["greet"]
    assert "Completed" in lines["remind"]
    assert "attempts=2" in lines["flaky"] and "succeeded_on_attempt': 2" in lines["flaky"]
    assert "HELLO FROM THE PARENT" in lines["announce"]
    assert lines["sum-of-squares"].rstrip().endswith(" 55")
    assert "completed=6/6" in lines["resize"] and "at most 2 ran at once" in lines["resize"]
    # The spec's concurrencyKey example: limit 1 per user, three users side by side.
    assert "completed=6/6" in lines["review"] and "at most 3 ran at once, 1 per user" in (
        lines["review"])
    assert "all runs ended as expected" in done.stdout
    assert "deployed 10 task(s) from examples.tasks" in done.stderr
    assert "stopping..." in done.stderr
    # The dashboard came up with the cluster and said where.
    assert re.search(r"dashboard on http://127\.0\.0\.1:\d+/", done.stderr), done.stderr[-3000:]
