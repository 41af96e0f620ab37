"""The node agent itself: the Node, the pod watch and the kubelet endpoint wired together,
and what the agent does with each pod it sees (run it, stop it, fail it, delete it)."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubetasks.devcluster.kubelet_endpoint import KubeletEndpoint
from kubetasks.devcluster.nodeagent.client import Json, KubeClient
from kubetasks.devcluster.nodeagent.node import NodeRegistration, NodeResources
from kubetasks.devcluster.nodeagent.pods import STOP_DELETED, STOP_SHUTDOWN, PodRunner
from kubetasks.devcluster.nodeagent.podwatch import PodWatch
from kubetasks.devcluster.nodeagent.processes import Launcher, Timers
from kubetasks.devcluster.nodeagent.records import RecordLog
from kubetasks.devcluster.nodeagent.recovery import (
    REASON_RESTARTED,
    is_orphan,
    orphan_status,
    recover_records,
)
from kubetasks.devcluster.nodeagent.status import TERMINAL_PHASES, PodWriter

log = logging.getLogger("kubetasks.nodeagent")

READY_MARKER = "agent.ready"  # written (with the agent's pid) once the first pod list is in


@dataclass
class _PodState:
    """What this agent knows about one pod UID."""

    runner: PodRunner | None = None
    running: bool = False
    delete_sent: bool = False


class NodeAgent:
    """The agent itself; ``python -m kubetasks.devcluster.nodeagent`` runs one until
    SIGTERM."""

    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        workdir: Path,
        *,
        resources: NodeResources | None = None,
        heartbeat_seconds: float = 10.0,
        max_grace_seconds: float = 30.0,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.workdir = workdir
        self.max_grace_seconds = max_grace_seconds
        self.pid = os.getpid()
        self.launcher = Launcher()
        self.stopping = threading.Event()
        self.timers = Timers()
        self.records = RecordLog(workdir / "records.jsonl")
        self.pod_writer = PodWriter(client, self.stopping)
        self._lock = threading.Lock()
        self._pods: dict[str, _PodState] = {}
        self._ran_here: set[str] = set()  # pod UIDs with a process start on record
        self._actions = ThreadPoolExecutor(max_workers=4, thread_name_prefix="action")
        self.node = NodeRegistration(
            client, node_name, resources or NodeResources(),
            heartbeat_seconds=heartbeat_seconds, stopping=self.stopping,
        )
        self.pod_watch = PodWatch(
            client, node_name, self.stopping, on_event=self._on_pod_event,
            known_uids=self._known_uids, on_first_list=self._mark_ready,
        )
        # The kubelet API's container logs, for the API server's pods/log.
        self.kubelet = KubeletEndpoint(workdir / "pods", node_name, self.container_active,
                                       workdir / "credentials")

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        self._ran_here.update(recover_records(self.records))
        self.node.kubelet_port = self.kubelet.start()
        self.node.register()
        threading.Thread(target=self.node.heartbeat_loop, name="heartbeat",
                         daemon=True).start()
        threading.Thread(target=self.pod_watch.run, name="watch", daemon=True).start()
        while not self.stopping.wait(1.0):
            pass
        self._shut_down()

    def _mark_ready(self) -> None:
        (self.workdir / READY_MARKER).write_text(str(self.pid))
        log.info("ready: watching pods bound to %s", self.node_name)

    def _shut_down(self) -> None:
        with self._lock:
            runners = [s.runner for s in self._pods.values() if s.running and s.runner]
        log.info("stopping: ending %d running pods", len(runners))
        for runner in runners:
            runner.stop(STOP_SHUTDOWN, min(runner.grace_seconds(), 2.0))
        deadline = time.monotonic() + 4.0
        for runner in runners:
            runner.thread.join(max(0.0, deadline - time.monotonic()))
        self._actions.shutdown(wait=False, cancel_futures=True)
        self.kubelet.stop()

    def container_active(self, namespace: str, pod: str, container: str) -> bool:
        """The container may still write to its log: its pod runs here and the container
        has not ended (for the kubelet endpoint's ``follow``)."""
        with self._lock:
            runners = [s.runner for s in self._pods.values() if s.running and s.runner
                       and s.runner.namespace == namespace and s.runner.name == pod]
        for runner in runners:
            status = runner.main_statuses.get(container) or runner.init_statuses.get(container)
            if status is not None and "terminated" not in (status.get("state") or {}):
                return True
        return False

    # -- pods -----------------------------------------------------------------------------------

    def _known_uids(self) -> list[str]:
        with self._lock:
            return list(self._pods)

    def _on_pod_event(self, kind: str, pod: Json) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        deleting = meta.get("deletionTimestamp") is not None
        status = pod.get("status") or {}
        terminal = status.get("phase") in TERMINAL_PHASES
        orphan = delete = False
        with self._lock:
            state = self._pods.get(uid)
            if kind == "DELETED":
                if state is not None:
                    del self._pods[uid]
                    if state.running and state.runner:
                        state.runner.stop(STOP_DELETED, 0)
                return
            if state is None:
                state = self._pods[uid] = _PodState()
                if terminal:
                    delete = deleting
                elif is_orphan(pod, self._ran_here):
                    orphan, delete = True, deleting
                elif deleting:
                    delete = True  # never started: nothing to stop
                elif not self.stopping.is_set():
                    state.runner = PodRunner(self, pod)
                    state.running = True
                    state.runner.thread.start()
            elif state.running and state.runner:
                state.runner.observe(pod)
                if deleting:
                    state.runner.deletion_requested = True
                    state.runner.stop(STOP_DELETED, state.runner.grace_seconds(
                        meta.get("deletionGracePeriodSeconds")))
            elif deleting:
                delete = True
            if delete:
                if state.delete_sent:
                    delete = False
                state.delete_sent = True
        if orphan:
            self._actions.submit(self._fail_orphan, pod, delete)
        elif delete:
            self._actions.submit(self.pod_writer.delete, meta["namespace"], meta["name"], uid)

    def _fail_orphan(self, pod: Json, delete: bool) -> None:
        meta = pod["metadata"]
        self.pod_writer.patch_status(meta["namespace"], meta["name"], meta["uid"],
                                     orphan_status(pod))
        log.info("pod %s/%s Failed (%s)", meta["namespace"], meta["name"], REASON_RESTARTED)
        if delete:
            self.pod_writer.delete(meta["namespace"], meta["name"], meta["uid"])

    def runner_finished(self, runner: PodRunner) -> None:
        with self._lock:
            state = self._pods.get(runner.uid)
            delete = False
            if state is not None and state.runner is runner:
                state.running = False
                delete = runner.deletion_requested and not state.delete_sent
                state.delete_sent = state.delete_sent or delete
        if delete:
            self.pod_writer.delete(runner.namespace, runner.name, runner.uid)
