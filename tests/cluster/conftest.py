"""Fixtures for tests on a real local Kubernetes: one control plane, node agent, Redis and
S3 server per test session, and a fresh namespace per test.

Nothing here is mocked: etcd, kube-apiserver, kube-controller-manager and kube-scheduler are
the real binaries, pods run as local processes through the node agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

import kubetasks
from kubetasks.devcluster import ControllerSettings, ControlPlane
from kubetasks.devcluster.local import LOCAL_NODE_CAPACITY, OperatorProcess
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.devcluster.services import RedisServer, S3Server
from kubetasks.protocol.storage import StorageSettings
from tests.cluster.helpers import create_namespace
from tests.workload import NAMESPACE_CAP

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"

Kubectl = Callable[..., str]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubetasks-session")


@pytest.fixture(scope="session")
def control_plane(session_dir: Path) -> Iterator[ControlPlane]:
    # Raised client limits, as production clusters run: the Job controller is not the
    # bottleneck of every test then (defaults: about 9 pods/s).
    cp = ControlPlane(session_dir / "cluster", controller_settings=ControllerSettings.tuned())
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CRDS))
        cp.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS)
        )
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """``kubectl(*args, input=None, check=True) -> stdout`` as the cluster admin."""
    return control_plane.kubectl


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def node_agent(control_plane: ControlPlane, session_dir: Path) -> Iterator[NodeAgentProcess]:
    agent = NodeAgentProcess(
        control_plane, workdir=session_dir / "node", **LOCAL_NODE_CAPACITY
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[RedisServer]:
    with RedisServer(session_dir / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(session_dir: Path) -> Iterator[S3Server]:
    with S3Server(session_dir / "s3") as server:
        yield server


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, kube_api: client.ApiClient
) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists (pods need it)."""
    name = _namespace_name(request.node.name)
    create_namespace(kube_api, name)
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(kube_api).delete_namespace(name)


# The namespace caps the session's operator knows (KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT).
NAMESPACE_CAPS = (3, NAMESPACE_CAP)


@pytest.fixture
def capped_namespace(
    request: pytest.FixtureRequest, kube_api: client.ApiClient
) -> Iterator[Callable[[int], str]]:
    """``capped_namespace(cap) -> name``: a fresh namespace in which the session's operator
    lets at most ``cap`` runs execute at once over all queues (a cap of NAMESPACE_CAPS)."""
    made: list[str] = []

    def make(cap: int) -> str:
        assert cap in NAMESPACE_CAPS, f"the session's operator knows the caps {NAMESPACE_CAPS}"
        name = f"cap{cap}-{_namespace_name(request.node.name)}"[:63].rstrip("-")
        create_namespace(kube_api, name)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(kube_api).delete_namespace(name)


def run_kubectl(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl without raising, for tests that assert on failures."""
    return subprocess.run(
        [control_plane.binaries.kubectl, f"--kubeconfig={control_plane.kubeconfig}", *args],
        capture_output=True, text=True, timeout=60,
    )


def task_env(control_plane: ControlPlane, s3_server: S3Server) -> dict[str, str]:
    """What task pods get from the operator (the node agent passes only declared env)."""
    return {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PYTHONPATH": str(REPO),
        **s3_server.env(),
    }


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    node_agent: NodeAgentProcess,
    redis_server: RedisServer,
    s3_server: S3Server,
    session_dir: Path,
) -> Iterator[OperatorProcess]:
    """The kubetasks operator, watching all namespaces. Attempts run the real worker
    (``python -m kubetasks worker``), which imports the tasks in ``tests/cluster/tasks.py``
    from the repository (PYTHONPATH) and reaches the API and S3 like a pod would."""
    env = {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "KUBETASKS_REDIS_URL": redis_server.url,
        "KUBETASKS_WORKER_COMMAND": f"{sys.executable} -m kubetasks worker",
        "KUBETASKS_TASK_ENV": json.dumps(task_env(control_plane, s3_server)),
        "KUBETASKS_REPAIR_INTERVAL": "5",
        # tests/cluster/operator/test_pod_not_created.py waits this out (the default is 60 s).
        "KUBETASKS_POD_CREATE_TIMEOUT": "30",
        "KUBETASKS_TERMINATION_GRACE_SECONDS": "2",
        # Namespaces named by capped_namespace get a cap over all their queues.
        "KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT": ",".join(
            f"cap{cap}-*={cap}" for cap in NAMESPACE_CAPS),
        **s3_server.env(),
    }
    proc = OperatorProcess(session_dir / "operator", env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def sdk(
    control_plane: ControlPlane, s3_server: S3Server, namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[kubetasks.Client]:
    """The SDK configured for this test's namespace and the session's S3 server, with the
    tasks of ``tests/cluster/tasks.py`` deployed there by ``kubetasks deploy``."""
    env = {**s3_server.env(), "KUBECONFIG": str(control_plane.kubeconfig)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    deployed = subprocess.run(
        [sys.executable, "-m", "kubetasks", "deploy", "--image", "local",
         "--namespace", namespace, "tests.cluster.tasks"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, **env},
    )
    assert deployed.returncode == 0, deployed.stderr
    client = kubetasks.configure(
        kubeconfig=control_plane.kubeconfig, namespace=namespace,
        storage=StorageSettings(bucket=s3_server.bucket, endpoint=s3_server.endpoint,
                                region=s3_server.region),
    )
    try:
        yield client
    finally:
        client.kube.close()
