"""The chaos suite's own cluster: faults here (API server restarts, a node agent killed) must
not touch the session cluster the other tests share, so this module starts a separate
control plane, node agent, Redis, S3 server and operator."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from kubetasks.devcluster import ControllerSettings
from kubetasks.devcluster.local import LocalCluster, OperatorProcess
from tests.cluster.conftest import task_env
from tests.workload import NAMESPACE_CAP


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(Path(tmp_path_factory.mktemp("chaos")),
                      controller_settings=ControllerSettings.tuned()) as local:
        yield local


@pytest.fixture(scope="module")
def chaos_api(chaos_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(chaos_cluster.control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def chaos_operator(chaos_cluster: LocalCluster) -> Iterator[OperatorProcess]:
    local = chaos_cluster
    env = {
        **local.env(),
        "KUBETASKS_WORKER_COMMAND": f"{sys.executable} -m kubetasks worker",
        "KUBETASKS_TASK_ENV": json.dumps(task_env(local.control_plane, local.s3)),
        "KUBETASKS_REPAIR_INTERVAL": "5",
        "KUBETASKS_TERMINATION_GRACE_SECONDS": "2",
        # The load's namespace (test_chaos.NAMESPACE) has a cap over all its queues; the S3
        # probes' has none.
        "KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT": f"chaos={NAMESPACE_CAP}",
    }
    proc = OperatorProcess(local.workdir / "operator", env).start()
    try:
        yield proc
    finally:
        proc.stop()
