"""Test-suite options shared by all tests."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kind",
        action="store_true",
        default=False,
        help="also run the tests marked `kind` (need Docker and kind; opt-in)",
    )
    parser.addoption(
        "--chaos-full",
        action="store_true",
        default=False,
        help="run the chaos suite (tests/chaos) at full size: 500 runs instead of 200",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--kind"):
        return
    skip_kind = pytest.mark.skip(reason="kind tests are opt-in: pass --kind (needs Docker)")
    for item in items:
        if "kind" in item.keywords:
            item.add_marker(skip_kind)


_skipped_cluster_tests: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An expected failure (xfail, strict) ran and failed as declared: it is reported, and
    # turns the run red once it passes; only a test that did not run is a skip here.
    if report.skipped and "cluster" in report.keywords and not hasattr(report, "wasxfail"):
        _skipped_cluster_tests.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI sets KUBETASKS_REQUIRE_CLUSTER=1: a skipped cluster test there is a failure, so a
    # missing component can never turn the real-cluster proof into a silent no-op.
    if os.environ.get("KUBETASKS_REQUIRE_CLUSTER") == "1" and _skipped_cluster_tests:
        print(
            f"\n{len(_skipped_cluster_tests)} cluster test(s) were skipped, which "
            "KUBETASKS_REQUIRE_CLUSTER=1 forbids:\n  " + "\n  ".join(_skipped_cluster_tests)
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
