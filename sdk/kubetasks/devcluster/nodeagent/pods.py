"""One pod on this node: its containers run one after the other (init containers first) as
local processes, and its status follows them, up to what the pod becomes when they end,
are stopped, or cannot start."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kubetasks.devcluster.nodeagent.client import Json
from kubetasks.devcluster.nodeagent.environment import (
    ContainerConfigError,
    declared_environment,
    invocation,
)
from kubetasks.devcluster.nodeagent.processes import exit_code, signal_group
from kubetasks.devcluster.nodeagent.records import ProcessRecord
from kubetasks.devcluster.nodeagent.status import (
    TERMINAL_PHASES,
    pod_status,
    terminated_state,
    timestamp,
    waiting_status,
)

if TYPE_CHECKING:
    from kubetasks.devcluster.nodeagent.agent import NodeAgent

log = logging.getLogger("kubetasks.nodeagent")

MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80

# Why a pod stopped before its processes ended by themselves.
STOP_DELETED = "Deleted"
STOP_DEADLINE = "DeadlineExceeded"
STOP_SHUTDOWN = "NodeShutdown"
STOP_EXTERNAL = "TerminalInAPI"


def _cap(data: bytes) -> str:
    return data[-MAX_MESSAGE_BYTES:].decode("utf-8", errors="ignore")


def _log_tail(path: Path, offset: int) -> str:
    """The last lines this run of the container wrote (the log is shared across runs)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(offset, size - 64 * 1024)
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    return _cap(b"\n".join(data.splitlines()[-FALLBACK_LOG_LINES:]))


def termination_message(container: Json, code: int, message_path: Path, log_path: Path,
                        log_offset: int) -> str:
    """What the process wrote to its termination message file (at most 4096 bytes); with
    ``FallbackToLogsOnError``, a failed process that wrote nothing gets its log's tail."""
    raw = b""
    with contextlib.suppress(OSError), message_path.open("rb") as f:
        raw = f.read(MAX_MESSAGE_BYTES)
    message = _cap(raw)
    if (not message.strip() and code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"):
        message = _log_tail(log_path, log_offset)
    return message


def _exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"


class PodRunner:
    """Runs one pod's containers in sequence on its own thread and reports their status.

    The thread that starts a process also waits for it: PR_SET_PDEATHSIG fires when the
    forking *thread* exits, so it must outlive its children.
    """

    def __init__(self, agent: NodeAgent, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        self.agent = agent
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.pod_dir = agent.workdir / "pods" / self.namespace / self.name
        self.init_specs: list[Json] = spec.get("initContainers") or []
        self.main_specs: list[Json] = spec.get("containers") or []
        first_reason = "PodInitializing" if self.init_specs else "ContainerCreating"
        self.init_statuses = {c["name"]: waiting_status(c, "PodInitializing")
                              for c in self.init_specs}
        self.main_statuses = {c["name"]: waiting_status(c, first_reason)
                              for c in self.main_specs}
        self.start_time = time.time()
        self.deletion_requested = False  # guarded by the agent's lock
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stop_reason: str | None = None
        self._stopped = threading.Event()
        self._kill_at: float | None = None  # monotonic time of the pending SIGKILL
        self._finished = False
        self._anything_started = False
        self._initialized = not self.init_specs
        self._sent_phase = "Pending"
        self.thread = threading.Thread(target=self._run, name=f"pod {self.key}", daemon=True)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def grace_seconds(self, requested: float | None = None) -> float:
        if requested is None:
            requested = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return max(0.0, min(float(requested or 0), self.agent.max_grace_seconds))

    # -- called from other threads ------------------------------------------------------------

    def observe(self, pod: Json) -> None:
        self.pod = pod
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES and self._sent_phase not in TERMINAL_PHASES:
            # Someone else (the pod GC) ended the pod: stop it and leave its status alone.
            self.stop(STOP_EXTERNAL, 0)

    def stop(self, reason: str, grace: float) -> None:
        """SIGTERM the current process group now, SIGKILL it after ``grace`` seconds.

        Called again (every event of a terminating pod does), it only brings the SIGKILL
        forward: a second SIGTERM would tell many programs to skip their cleanup.
        """
        kill_at = time.monotonic() + grace
        with self._lock:
            if self._finished or (self._kill_at is not None and kill_at >= self._kill_at):
                return
            first = self._stop_reason is None
            if first:
                self._stop_reason = reason
            self._kill_at = kill_at
            process = self._process
        self._stopped.set()
        if process is None:
            return
        log.debug("stopping %s (%s, grace %.0f s)", self.key, reason, grace)
        if grace <= 0:
            self._kill_if_current(process)
            return
        if first:
            signal_group(process.pid, signal.SIGTERM)
        self.agent.timers.call_at(kill_at, lambda: self._kill_if_current(process))

    def _kill_if_current(self, process: subprocess.Popen[bytes]) -> None:
        # Under the lock, the process is not reaped yet: its pid cannot have been reused.
        with self._lock:
            if self._process is process:
                signal_group(process.pid, signal.SIGKILL)

    @property
    def stop_reason(self) -> str | None:
        with self._lock:
            return self._stop_reason

    # -- the pod's thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._run_pod()
        except Exception:
            log.exception("pod %s: the agent failed while running it", self.key)
        finally:
            with self._lock:
                self._finished = True
            self.agent.runner_finished(self)

    def _run_pod(self) -> None:
        without_command = [c["name"] for c in self.init_specs + self.main_specs
                           if not c.get("command")]
        if without_command:
            self._fail_without_command(without_command)
            return
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            self.agent.timers.call_at(
                time.monotonic() + float(deadline),
                lambda: self.stop(STOP_DEADLINE, self.grace_seconds()),
            )
        for container in self.init_specs:
            code = self._run_container(container, self.init_statuses, init=True)
            if code != 0 or self.stop_reason:
                break
        else:
            self._initialized = True
            for container in self.main_specs:
                self._run_container(container, self.main_statuses, init=False)
                if self.stop_reason:
                    break
        self._report_end()

    def _fail_without_command(self, names: list[str]) -> None:
        now = time.time()
        message = ("the node agent runs processes, not images: give each container a "
                   f"`command` (missing in: {', '.join(names)})")
        for statuses in (self.init_statuses, self.main_statuses):
            for name in names:
                if name in statuses:
                    statuses[name]["state"] = terminated_state(128, "NoCommand", message,
                                                               now, now)
        self._patch_status("Failed", reason="NoCommand", message=message)
        log.info("pod %s failed: no command", self.key)

    def _environment_when_ready(self, container: Json, statuses: dict[str, Json]) -> (
            dict[str, str] | None):
        # Like the kubelet, wait (the Secret may come later) until the pod is stopped.
        delay = 1.0
        while True:
            try:
                return declared_environment(self.agent.client, self.pod, container)
            except ContainerConfigError as exc:
                statuses[container["name"]]["state"] = {"waiting": {
                    "reason": "CreateContainerConfigError", "message": str(exc)}}
                log.info("pod %s: %s; retrying in %.0f s", self.key, exc, delay)
                self._patch_status("Pending")
            if self._stopped.wait(delay):
                return None
            delay = min(delay * 2, 10.0)

    def _run_container(self, container: Json, statuses: dict[str, Json], *, init: bool) -> (
            int | None):
        """Run one container's process to its end: its exit code, 128 if it could not
        start, None if the pod was stopped first."""
        name = container["name"]
        declared = self._environment_when_ready(container, statuses)
        if declared is None:
            return None
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.pod_dir / f"{name}.log"
        message_path = self.pod_dir / f"{name}.termination-log"
        message_path.write_bytes(b"")
        how = invocation(container, declared, pod_dir=self.pod_dir, pod_uid=self.uid,
                         message_path=message_path)
        with self._lock:
            if self._stop_reason:
                return None
            try:
                how.cwd.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log_file:
                    log_offset = log_file.tell()
                    process = self.agent.launcher.spawn(how.argv, env=how.env, cwd=how.cwd,
                                                        output=log_file)
            except OSError as exc:
                now = time.time()
                statuses[name]["state"] = terminated_state(128, "StartError", str(exc), now,
                                                           now)
                log.info("pod %s container %s could not start: %s", self.key, name, exc)
                return 128
            self._process = process
            self._anything_started = True
        started = time.time()
        container_id = self._report_started(name, statuses, process.pid, started, init=init)
        code, finished = self._wait_for_exit(name, process, started)
        message = termination_message(container, code, message_path, log_path, log_offset)
        statuses[name] = {
            **statuses[name], "ready": False,
            "state": terminated_state(code, _exit_reason(code), message, started, finished,
                                      container_id),
        }
        return code

    def _report_started(self, name: str, statuses: dict[str, Json], pid: int, started: float,
                        *, init: bool) -> str:
        """Record the start, then tell the API server: the pod is Running (or still Pending
        while init containers run). Returns the container's ID."""
        container_id = f"local://{pid}"
        self._record("start", name, pid, started)
        log.info("started %s container %s pid %d", self.key, name, pid)
        statuses[name] = {
            **statuses[name], "ready": True, "started": True, "containerID": container_id,
            "imageID": "local://" + statuses[name]["image"],
            "state": {"running": {"startedAt": timestamp(started)}},
        }
        self._patch_status("Pending" if init else "Running")
        return container_id

    def _wait_for_exit(self, name: str, process: subprocess.Popen[bytes],
                       started: float) -> tuple[int, float]:
        """Reap the process, record its end and kill what it left in its group: its exit
        code and the time it ended."""
        returncode = process.wait()
        finished = time.time()
        code = exit_code(returncode)
        self._record("end", name, process.pid, finished, code, _exit_reason(code))
        with self._lock:
            self._process = None
            # The leader is gone; whatever it left in its group goes too, as in a container.
            signal_group(process.pid, signal.SIGKILL)
        log.info("finished %s container %s pid %d exit %d after %.2f s",
                 self.key, name, process.pid, code, finished - started)
        return code, finished

    def _record(self, event: Literal["start", "end"], container: str, pid: int, when: float,
                code: int | None = None, reason: str | None = None) -> None:
        record: ProcessRecord = {
            "event": event, "namespace": self.namespace, "pod": self.name, "uid": self.uid,
            "container": container, "labels": self.labels, "pid": pid, "time": when,
        }
        if code is not None:
            record["exitCode"] = code
        if reason is not None:
            record["reason"] = reason
        self.agent.records.append(record)

    def _report_end(self) -> None:
        stop_reason = self.stop_reason
        if stop_reason == STOP_EXTERNAL:
            return
        if stop_reason == STOP_DELETED and not self._anything_started:
            return  # deleted before it started: nothing to report, only to delete
        codes = [s["state"].get("terminated", {}).get("exitCode")
                 for s in [*self.init_statuses.values(), *self.main_statuses.values()]]
        succeeded = all(code == 0 for code in codes) and stop_reason != STOP_DEADLINE
        phase = "Succeeded" if succeeded else "Failed"
        reason = message = None
        if stop_reason == STOP_DEADLINE:
            reason = "DeadlineExceeded"
            message = "Pod was active on the node longer than the specified deadline"
        elif stop_reason == STOP_SHUTDOWN:
            reason, message = "Terminated", "the node agent stopped"
        self._patch_status(phase, reason=reason, message=message)
        log.log(logging.INFO if reason else logging.DEBUG, "pod %s %s%s", self.key, phase,
                f" ({reason})" if reason else "")

    def _patch_status(self, phase: str, *, reason: str | None = None,
                      message: str | None = None) -> None:
        if self._sent_phase in TERMINAL_PHASES:
            return  # the API server would let a phase go backwards: never send one
        status = pod_status(
            phase, start_time=self.start_time, initialized=self._initialized,
            init_statuses=self.init_statuses, main_statuses=self.main_statuses,
            reason=reason, message=message,
        )
        self._sent_phase = phase
        self.agent.pod_writer.patch_status(self.namespace, self.name, self.uid, status)

