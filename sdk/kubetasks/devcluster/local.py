"""Everything kubetasks needs, started locally in one call: the control plane, a node agent,
Redis and an S3 server, with the kubetasks CRDs installed."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from kubetasks.devcluster.controlplane import ControllerSettings, ControlPlane
from kubetasks.devcluster.nodeagent import NodeAgentProcess
from kubetasks.devcluster.process import ManagedProcess, free_port
from kubetasks.devcluster.services import RedisServer, S3Server

# The local node is one machine pretending to be a big one: pods are processes, and the
# scheduler must not be what limits a test or a benchmark.
LOCAL_NODE_CAPACITY: dict[str, Any] = {"cpu": "2000", "memory": "4Ti", "max_pods": 5000}


def install_crds(control_plane: ControlPlane) -> None:
    """Apply the CRDs generated from the API models and wait until they are served."""
    from kubetasks.api.crdgen import generate_crds

    documents = generate_crds()
    manifest = yaml.safe_dump_all(documents, sort_keys=False)
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                          input=manifest)
    names = [f"crd/{doc['metadata']['name']}" for doc in documents]
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


class OperatorProcess:
    """``kubetasks operator`` as a child process against a local cluster, its metrics and
    health on a free port (``metrics_url``).

    ``kill()`` is a SIGKILL (crash); ``start()`` again is a restart.
    """

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / "operator.log"
        self.process: ManagedProcess | None = None
        self.port = 0
        self.metrics_port = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        env = {**os.environ, **self.env, "KUBETASKS_METRICS_PORT": str(self.metrics_port)}
        self.process = ManagedProcess(
            "kubetasks operator",
            [sys.executable, "-m", "kubetasks", "operator",
             f"--liveness=http://127.0.0.1:{self.port}/healthz"],
            self.log_path, env=env, cwd=self.workdir, ports=(self.port, self.metrics_port),
        )
        self.process.start()
        self.process.wait_ready(self._healthy, timeout)
        return self

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def kill(self) -> None:
        if self.process:
            self.process.kill()


class LocalCluster:
    """Control plane + node agent + Redis + S3, stopped together.

    >>> with LocalCluster() as local:
    ...     print(local.control_plane.kubeconfig, local.redis.url, local.s3.endpoint)
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        controller_settings: ControllerSettings | None = None,
        with_crds: bool = True,
        audit: bool = False,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubetasks-local-"))
        self.control_plane = ControlPlane(
            self.workdir / "cluster", controller_settings=controller_settings,
            audit=audit,  # the API server's audit log of writes (ControlPlane.audit_log)
        )
        self.node_agent = NodeAgentProcess(
            self.control_plane, workdir=self.workdir / "node", **LOCAL_NODE_CAPACITY
        )
        self.redis = RedisServer(self.workdir / "redis")
        self.s3 = S3Server(self.workdir / "s3")
        self.with_crds = with_crds
        self.started_seconds: float | None = None

    def start(self) -> LocalCluster:
        started = time.monotonic()
        try:
            self.redis.start()
            self.s3.start()
            self.control_plane.start()
            self.node_agent.start()
            if self.with_crds:
                install_crds(self.control_plane)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        for component in (self.node_agent, self.control_plane, self.s3, self.redis):
            with contextlib.suppress(Exception):
                component.stop()

    def env(self) -> dict[str, str]:
        """Environment for kubetasks processes that use this cluster."""
        return {
            "KUBECONFIG": str(self.control_plane.kubeconfig),
            "KUBETASKS_REDIS_URL": self.redis.url,
            **self.s3.env(),
        }

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
