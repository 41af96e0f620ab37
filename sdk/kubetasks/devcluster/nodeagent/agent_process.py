"""The node agent as a child process: the wrapper tests and ``kubetasks dev`` use."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kubetasks.devcluster.errors import ComponentError
from kubetasks.devcluster.nodeagent.agent import READY_MARKER
from kubetasks.devcluster.nodeagent.node import NodeResources
from kubetasks.devcluster.nodeagent.records import ProcessRecord, read_records
from kubetasks.devcluster.process import ManagedProcess

if TYPE_CHECKING:
    from kubetasks.devcluster.controlplane import ControlPlane


class NodeAgentProcess:
    """A node agent for a :class:`ControlPlane`, as a child process with node credentials.

    >>> agent = NodeAgentProcess(cp).start()   # the Node is Ready and schedulable
    >>> agent.records()                       # what really ran on it
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        node_name: str = "local-node",
        workdir: Path | None = None,
        *,
        cpu: str = "8",
        memory: str = "16Gi",
        max_pods: int = 500,
        max_grace_seconds: float = 30.0,
        start_timeout: float = 60.0,
    ) -> None:
        self.control_plane = control_plane
        self.node_name = node_name
        self.workdir = Path(workdir or control_plane.workdir / "nodes" / node_name)
        self.records_path = self.workdir / "records.jsonl"
        self.log_path = self.workdir / "agent.log"
        self.resources = NodeResources(cpu=cpu, memory=memory, pods=max_pods)
        self.max_grace_seconds = max_grace_seconds
        self.start_timeout = start_timeout
        self.process: ManagedProcess | None = None

    def pod_log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.workdir / "pods" / namespace / pod / f"{container}.log"

    def records(self) -> list[ProcessRecord]:
        return read_records(self.records_path)

    def start(self) -> NodeAgentProcess:
        """Start the agent and wait until its Node is Ready and schedulable."""
        cp = self.control_plane
        if cp.pki is None:
            raise ComponentError("node agent", "the control plane is not started",
                                 "call ControlPlane.start() first")
        user = f"system:node:{self.node_name}"
        kubeconfig = cp.kubeconfig_for(user, cp.pki.node(self.node_name))
        self.workdir.mkdir(parents=True, exist_ok=True)
        marker = self.workdir / READY_MARKER
        marker.unlink(missing_ok=True)
        self.process = ManagedProcess(
            f"node agent {self.node_name}",
            [sys.executable, "-m", "kubetasks.devcluster.nodeagent",
             f"--kubeconfig={kubeconfig}", f"--node-name={self.node_name}",
             f"--workdir={self.workdir}", f"--cpu={self.resources.cpu}",
             f"--memory={self.resources.memory}", f"--max-pods={self.resources.pods}",
             f"--max-grace-seconds={self.max_grace_seconds}"],
            self.log_path,
            cwd=self.workdir,
        )
        self.process.start()
        pid = str(self.process.pid)
        try:
            self.process.wait_ready(
                lambda: marker.read_text() == pid and self._schedulable(), self.start_timeout
            )
        except BaseException:
            self.process.stop()
            raise
        return self

    def _schedulable(self) -> bool:
        node = json.loads(self.control_plane.kubectl("get", "node", self.node_name, "-o",
                                                     "json"))
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in node["status"].get("conditions", []))
        blocking = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
        tainted = any(t["key"] in blocking for t in node["spec"].get("taints") or [])
        return ready and not tainted

    def stop(self) -> None:
        """SIGTERM: running pods are stopped (Failed, reason Terminated) within seconds."""
        if self.process is not None:
            self.process.stop(grace=10.0)

    def kill(self) -> None:
        """SIGKILL, as a node failure: pod processes die with the agent."""
        if self.process is not None:
            self.process.kill()

    def __enter__(self) -> NodeAgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
