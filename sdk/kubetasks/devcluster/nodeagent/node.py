"""The agent's Node and its Lease: registration, then heartbeats that keep the Node's status
Ready and its Lease renewed, as a kubelet's do."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import platform
import threading
import time
from dataclasses import dataclass

from kubetasks.devcluster.nodeagent.client import ApiError, Json, KubeClient
from kubetasks.devcluster.nodeagent.status import LOCAL_IP, timestamp

log = logging.getLogger("kubetasks.nodeagent")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40


def _micro_timestamp(t: float) -> str:
    # Always six digits: the API server refuses a Lease renewTime without them.
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NodeResources:
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 500
    ephemeral_storage: str = "100Gi"

    def as_quantities(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods),
                "ephemeral-storage": self.ephemeral_storage}


class NodeRegistration:
    """Registers the Node (or takes over an existing one), then beats until ``stopping``."""

    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        resources: NodeResources,
        *,
        heartbeat_seconds: float,
        stopping: threading.Event,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.resources = resources
        self.heartbeat_seconds = heartbeat_seconds
        self.stopping = stopping
        self.kubelet_port = 0  # published in the Node's daemonEndpoints: set it before register()
        self._registered_at = time.time()
        self._node_uid = ""
        self._kubelet_version = ""

    def _node_status(self) -> Json:
        now = timestamp(time.time())
        since = timestamp(self._registered_at)

        def condition(kind: str, status: str, reason: str, message: str) -> Json:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": since}

        quantities = self.resources.as_quantities()
        return {
            "capacity": quantities,
            "allocatable": quantities,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                          "no memory pressure"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                          "no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID",
                          "no PID pressure"),
                condition("Ready", "True", "KubeletReady",
                          "the kubetasks node agent is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": LOCAL_IP},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": f"kubetasks local node ({platform.system()})",
                "containerRuntimeVersion": "local://kubetasks",
                "kubeletVersion": self._kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()),
            },
        }

    def register(self) -> None:
        # The node reports the API server's own version, as a kubelet of that release.
        self._kubelet_version = str(self.client.request("GET", "/version")["gitVersion"])
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                # NodeRestriction lets a node set only these kubernetes.io labels.
                "kubernetes.io/hostname": self.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": self._node_status()["nodeInfo"]["architecture"],
            }},
            "status": self._node_status(),
        }
        try:
            created = self.client.request("POST", "/api/v1/nodes", body=node)
            self._node_uid = created["metadata"]["uid"]
            log.info("registered node %s", self.node_name)
        except ApiError as exc:
            if exc.status != 409:
                raise
            self._node_uid = self._patch_node_status()
            log.info("node %s exists: status updated", self.node_name)
        self._renew_lease()

    def _patch_node_status(self) -> str:
        node = self.client.request(
            "PATCH", f"/api/v1/nodes/{self.node_name}/status",
            body={"status": self._node_status()},
            content_type="application/strategic-merge-patch+json",
        )
        return str(node["metadata"]["uid"])

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        spec = {"holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": _micro_timestamp(time.time())}
        try:
            self.client.request("PATCH", f"{path}/{self.node_name}", body={"spec": spec},
                                content_type="application/merge-patch+json", want_body=False)
        except ApiError as exc:
            if exc.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                     "uid": self._node_uid}
            self.client.request("POST", path, body={
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "ownerReferences": [owner]},
                "spec": spec,
            })

    def heartbeat_loop(self) -> None:
        # A fixed rate, so that slow requests do not stretch the renewal interval.
        next_beat = time.monotonic()
        while True:
            next_beat += self.heartbeat_seconds
            if self.stopping.wait(max(0.0, next_beat - time.monotonic())):
                return
            try:
                self._renew_lease()
                self._patch_node_status()
            except ApiError as exc:
                if exc.status == 404:
                    log.warning("node %s was deleted: registering again", self.node_name)
                    with contextlib.suppress(Exception):
                        self.register()
                else:
                    log.warning("heartbeat failed: %s", exc)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
