"""Invariants under load, judged only from what really ran: the node agent's process records
(start and end times, pod labels), never the operator's own counters.

Each test triggers a few hundred runs of the workload in ``tests/workload.py`` (three
queues with limits, concurrency keys, flaky runs and aborts) in a namespace with a cap over
all its queues, optionally disturbs the operator or Redis while the load runs, and then
checks that workload's invariants: no limit (per key, per queue, per namespace) exceeded at
any instant, every run in the phase its behaviour calls for, every attempt run
exactly once, retries no sooner than the backoff. The full fault suite is ``tests/chaos``.

The figures (wall time, runs/s, highest overlaps) are printed; see them with ``-s``. The
workload and the moments of disturbance are random; the seed is printed and
``KUBETASKS_TEST_SEED`` replays it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from kubernetes import client

from kubetasks.devcluster.local import OperatorProcess
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.devcluster.services import RedisServer
from tests.workload import (
    NAMESPACE_CAP,
    check_invariants,
    disturb_during_load,
    plan_workload,
    seeded,
    start_load,
)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]

@pytest.mark.timeout(900)
def test_limits_hold_and_every_attempt_runs_once_under_load(
    kube_api: client.ApiClient, capped_namespace: Callable[[int], str],
    node_agent: NodeAgentProcess
) -> None:
    namespace = capped_namespace(NAMESPACE_CAP)
    rng = seeded("load")
    planned = plan_workload(rng, {"one": 20, "five": 80, "twenty": 200})
    load = start_load(kube_api, namespace, planned)
    check_invariants(kube_api, node_agent, namespace, load, "load",
                     namespace_cap=NAMESPACE_CAP)


@pytest.mark.timeout(900)
def test_limits_hold_and_nothing_runs_twice_across_operator_crashes(
    kube_api: client.ApiClient, capped_namespace: Callable[[int], str],
    node_agent: NodeAgentProcess,
    operator: OperatorProcess,
) -> None:
    namespace = capped_namespace(NAMESPACE_CAP)
    rng = seeded("operator crashes")
    planned = plan_workload(rng, {"one": 20, "five": 40, "twenty": 90})

    def crash_and_restart() -> None:
        operator.kill()
        time.sleep(rng.uniform(0.0, 1.5))
        operator.start()

    try:
        load = start_load(kube_api, namespace, planned)
        disturb_during_load(kube_api, namespace, rng, load, [
            (f"operator SIGKILL {i + 1}", share, crash_and_restart)
            for i, share in enumerate([(0.05, 0.3), (0.3, 0.55), (0.55, 0.8)])
        ])
    finally:
        # The operator is a session fixture: leave it running for the tests after this one.
        if not operator.alive():
            operator.start()
    check_invariants(kube_api, node_agent, namespace, load, "operator crashes",
                     namespace_cap=NAMESPACE_CAP)


@pytest.mark.timeout(900)
def test_limits_hold_and_nothing_runs_twice_when_redis_loses_its_data(
    kube_api: client.ApiClient, capped_namespace: Callable[[int], str],
    node_agent: NodeAgentProcess,
    redis_server: RedisServer,
) -> None:
    namespace = capped_namespace(NAMESPACE_CAP)
    rng = seeded("redis loss")
    planned = plan_workload(rng, {"one": 20, "five": 40, "twenty": 90})

    def flush() -> None:
        with redis.Redis.from_url(redis_server.url) as conn:
            conn.flushall()

    load = start_load(kube_api, namespace, planned)
    disturb_during_load(kube_api, namespace, rng, load, [
        ("Redis FLUSHALL", (0.1, 0.4), flush),
        ("Redis restart (its data lost)", (0.45, 0.75), redis_server.restart),
    ])
    check_invariants(kube_api, node_agent, namespace, load, "redis loss",
                     namespace_cap=NAMESPACE_CAP)
