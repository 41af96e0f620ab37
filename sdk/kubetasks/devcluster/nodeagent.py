"""A node agent for the local cluster: it registers a Node and runs the pods bound to it as
plain local processes (there are no images and no containers here).

Run it as ``python -m kubetasks.devcluster.nodeagent --kubeconfig PATH --node-name NAME
--workdir DIR``, or from Python through :class:`NodeAgentProcess`.

What a pod's program gets (the contract tasks and workers rely on):

- argv is the container's ``command`` + ``args``, with ``$(VAR)`` expanded as Kubernetes
  does. A container without ``command`` fails the pod with reason ``NoCommand``: there is
  no image to take an entrypoint from.
- Environment: the container's ``env`` (``value``, ``valueFrom.fieldRef``,
  ``secretKeyRef``, ``configMapKeyRef``) and ``envFrom``, on top of the agent's ``PATH``
  and ``HOME``, plus ``KUBETASKS_TERMINATION_MESSAGE_PATH`` and ``KUBETASKS_POD_UID``.
- Termination message: write it to the file named by ``$KUBETASKS_TERMINATION_MESSAGE_PATH``
  (``terminationMessagePath``, usually ``/dev/termination-log``, cannot exist outside a
  container). At most 4096 bytes are kept. With ``FallbackToLogsOnError`` an empty file on
  failure means the last 80 lines of the log.
- stdout and stderr are appended to ``<workdir>/pods/<namespace>/<pod>/<container>.log``.
- The working directory is ``workingDir`` (created if missing), else
  ``<workdir>/pods/<namespace>/<pod>/work``.
- Containers run one after the other (init containers first). A process is never
  restarted: ``restartPolicy: OnFailure`` behaves like ``Never`` (the Job controller then
  makes a new pod instead of the kubelet restarting the container).
- Every process is the leader of its own process group; stopping a pod signals the group.
  Processes die with the agent (``PR_SET_PDEATHSIG`` = SIGKILL), as containers die with a
  failed node; a restarted agent marks pods it finds running Failed with reason
  ``NodeAgentRestarted``.

``<workdir>/records.jsonl`` tells what really ran: one JSON line per process start (written
before the status patch that announces it) and end (written as soon as it exits), see
:class:`ProcessRecord`. End records of processes that died with a previous agent are
written by the next agent when it starts, with that time and reason ``NodeAgentRestarted``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import errno
import heapq
import itertools
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast

import urllib3
import yaml

from kubetasks.devcluster.errors import ComponentError
from kubetasks.devcluster.kubelet_endpoint import KubeletEndpoint
from kubetasks.devcluster.process import ManagedProcess, die_with_parent

if TYPE_CHECKING:
    from kubetasks.devcluster.controlplane import ControlPlane

log = logging.getLogger("kubetasks.nodeagent")

Json = dict[str, Any]

TERMINATION_MESSAGE_ENV = "KUBETASKS_TERMINATION_MESSAGE_PATH"
POD_UID_ENV = "KUBETASKS_POD_UID"
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
LOCAL_IP = "127.0.0.1"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
READY_MARKER = "agent.ready"

# Why a pod stopped before its processes ended by themselves.
STOP_DELETED = "Deleted"
STOP_DEADLINE = "DeadlineExceeded"
STOP_SHUTDOWN = "NodeShutdown"
STOP_EXTERNAL = "TerminalInAPI"
REASON_RESTARTED = "NodeAgentRestarted"
STATUS_RETRY_SECONDS = 300.0  # how long a pod status write is retried (API server down)

_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class ProcessRecord(TypedDict):
    """One line of ``records.jsonl``."""

    event: Literal["start", "end"]
    namespace: str
    pod: str
    uid: str
    container: str
    labels: dict[str, str]
    pid: int
    time: float
    exitCode: NotRequired[int]
    reason: NotRequired[str]


def read_records(path: Path) -> list[ProcessRecord]:
    """Parse a records file; a torn last line (agent killed mid-write) is skipped."""
    records: list[ProcessRecord] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            records.append(cast(ProcessRecord, json.loads(line)))
    return records


# --- small pure helpers ------------------------------------------------------------------


def _timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _micro_timestamp(t: float) -> str:
    # Always six digits: the API server refuses a Lease renewTime without them.
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand_references(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``,
    unknown references stay as they are."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2:end]
                out.append(env.get(name, text[i:end + 1]))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def exit_code(returncode: int) -> int:
    """A shell-style exit code: death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


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


_LABEL_REF = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]$")


def field_value(pod: Json, path: str) -> str | None:
    """The downward API value of ``fieldRef.fieldPath``; None if unsupported."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
        "status.hostIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_REF.match(path)
    if match:
        values: dict[str, str] = meta.get(match.group(1)) or {}
        return values.get(match.group(2), "")
    return None


class ContainerConfigError(Exception):
    """The container's environment cannot be built (yet): a missing Secret or ConfigMap."""


# --- the API, as raw JSON over HTTP --------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: Json) -> None:
        self.status = status
        self.reason = str(body.get("reason", ""))
        message = body.get("message") or body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


class KubeClient:
    """Just enough of a Kubernetes client: raw JSON in and out (the official client's object
    deserialisation costs more CPU than the rest of the agent)."""

    _RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

    def __init__(self, kubeconfig: Path, secrets_dir: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config.get("current-context")
        contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
        context = contexts.get(context_name) or next(iter(contexts.values()))
        cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in config["users"]}[context["user"]]
        self.server: str = str(cluster["server"]).rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": "kubetasks-nodeagent"}
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"

        def file_of(section: Json, key: str) -> str | None:
            if section.get(key):
                return str(section[key])
            if section.get(f"{key}-data"):
                secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                path = secrets_dir / key
                path.write_bytes(base64.b64decode(section[f"{key}-data"]))
                path.chmod(0o600)
                return str(path)
            return None

        tls: dict[str, Any] = {
            "ca_certs": file_of(cluster, "certificate-authority"),
            "cert_file": file_of(user, "client-certificate"),
            "key_file": file_of(user, "client-key"),
            "cert_reqs": "CERT_NONE" if cluster.get("insecure-skip-tls-verify") else
            "CERT_REQUIRED",
        }
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=16, block=True, retries=False,
            timeout=urllib3.Timeout(connect=5, read=30), **tls,
        )
        # Watches hold their connection for minutes: keep them out of the shared pool.
        self._watch_pool = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, **tls)

    def _url(self, path: str, query: dict[str, str] | None) -> str:
        return self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        attempts: int = 5,
        want_body: bool = True,
    ) -> Json:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        url = self._url(path, query)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._pool.request(method, url, body=data, headers=headers)
            except urllib3.exceptions.HTTPError:
                if last:
                    raise
                time.sleep(min(0.2 * 2**attempt, 3.0))
                continue
            if response.status in self._RETRY_STATUSES and not last:
                time.sleep(min(0.2 * 2**attempt, 3.0))
                continue
            if response.status < 400 and not want_body:
                return {}  # parsing a whole pod we do not need costs more than the request
            try:
                parsed = json.loads(response.data) if response.data else {}
            except ValueError:
                parsed = {"message": response.data[:500].decode(errors="replace")}
            if response.status >= 400:
                raise ApiError(response.status, method, path, parsed)
            return cast(Json, parsed)
        raise AssertionError("unreachable")

    def watch(self, path: str, query: dict[str, str], read_timeout: float) -> Iterator[Json]:
        """The events of a watch, one dict per line of the stream."""
        response = self._watch_pool.request(
            "GET", self._url(path, {**query, "watch": "true"}), headers=self.headers,
            preload_content=False, timeout=urllib3.Timeout(connect=5, read=read_timeout),
        )
        try:
            if response.status != 200:
                body = response.read()
                raise ApiError(response.status, "WATCH", path,
                               json.loads(body) if body.startswith(b"{") else {})
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                while (newline := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:newline], buffer[newline + 1:]
                    if line.strip():
                        yield cast(Json, json.loads(line))
        finally:
            response.close()
            response.release_conn()


class _WatchExpired(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


# --- records and timers --------------------------------------------------------------------


class _RecordLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def append(self, record: ProcessRecord) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            # One write(2) per line, flushed at once: a SIGKILL right after loses nothing.
            self._file.write(line)
            self._file.flush()


class _Timers:
    """One thread that calls functions at given monotonic times (deadlines, SIGKILLs)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="timers", daemon=True).start()

    def call_at(self, when: float, function: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), function))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, function = heapq.heappop(self._heap)
            try:
                function()
            except Exception:
                log.exception("timer callback failed")


# --- processes -----------------------------------------------------------------------------


def _setpriv_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    try:
        usage = subprocess.run([setpriv, "--help"], capture_output=True, text=True,
                               timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"] if "--pdeathsig" in usage else []


class _Launcher:
    """Starts pod processes as leaders of their own process group, to get SIGKILL when the
    agent dies.

    util-linux's ``setpriv --pdeathsig KILL`` keeps subprocess on its vfork path: about 2 ms
    of CPU per process, against 6 ms with a Python ``preexec_fn`` (the fallback).
    """

    def __init__(self) -> None:
        self.agent_pid = os.getpid()
        self._prefix = _setpriv_prefix()

    def spawn(self, argv: list[str], *, env: dict[str, str], cwd: Path,
              output: IO[bytes]) -> subprocess.Popen[bytes]:
        program = argv[0] if argv else ""
        found = str(cwd / program) if "/" in program else shutil.which(program,
                                                                      path=env["PATH"])
        if not found or not os.access(found, os.X_OK) or os.path.isdir(found):
            # Checked here: through setpriv it would only be an exit code 127.
            raise FileNotFoundError(errno.ENOENT, "executable file not found in $PATH",
                                    program)
        if self._prefix:
            return subprocess.Popen(
                [*self._prefix, *argv], stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
            )
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True,
            preexec_fn=die_with_parent(self.agent_pid),
        )


# --- one pod ---------------------------------------------------------------------------------


def _waiting_status(container: Json, reason: str) -> Json:
    return {
        "name": container["name"], "image": container.get("image") or "local",
        "imageID": "", "ready": False, "started": False, "restartCount": 0,
        "state": {"waiting": {"reason": reason}},
    }


def _terminated_state(
    code: int, reason: str, message: str, started: float, finished: float,
    container_id: str | None = None,
) -> Json:
    state: Json = {"exitCode": code, "reason": reason,
                   "startedAt": _timestamp(started), "finishedAt": _timestamp(finished)}
    if message:
        state["message"] = message
    if container_id:
        state["containerID"] = container_id
    return {"terminated": state}


def _condition(kind: str, status: bool, reason: str | None = None) -> Json:
    condition: Json = {"type": kind, "status": "True" if status else "False",
                       "lastTransitionTime": _timestamp(time.time()), "lastProbeTime": None}
    if reason:
        condition["reason"] = reason
    return condition


class _PodRunner:
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
        self.init_statuses = {c["name"]: _waiting_status(c, "PodInitializing")
                              for c in self.init_specs}
        self.main_statuses = {c["name"]: _waiting_status(c, first_reason)
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
        if phase in _TERMINAL_PHASES and self._sent_phase not in _TERMINAL_PHASES:
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
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        self.agent.timers.call_at(kill_at, lambda: self._kill_if_current(process))

    def _kill_if_current(self, process: subprocess.Popen[bytes]) -> None:
        # Under the lock, the process is not reaped yet: its pid cannot have been reused.
        with self._lock:
            if self._process is process:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

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
                    statuses[name]["state"] = _terminated_state(128, "NoCommand", message,
                                                                now, now)
        self._patch_status("Failed", reason="NoCommand", message=message)
        log.info("pod %s failed: no command", self.key)

    def _environment(self, container: Json) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, resource in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                ref = source.get(kind)
                if ref:
                    data = self._read_data(resource, ref["name"], ref.get("optional", False))
                    env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item or "valueFrom" not in item:
                env[name] = expand_references(item.get("value", ""), env)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                value = field_value(self.pod, source["fieldRef"]["fieldPath"])
                if value is None:
                    raise ContainerConfigError(
                        f"env {name}: fieldPath {source['fieldRef']['fieldPath']} is not "
                        "supported by the local node agent")
                env[name] = value
                continue
            for kind, resource in (("configMapKeyRef", "configmaps"),
                                   ("secretKeyRef", "secrets")):
                ref = source.get(kind)
                if ref:
                    optional = ref.get("optional", False)
                    data = self._read_data(resource, ref["name"], optional)
                    if ref["key"] in data:
                        env[name] = data[ref["key"]]
                    elif not optional:
                        raise ContainerConfigError(
                            f"env {name}: key {ref['key']!r} not found in {resource[:-1]} "
                            f"{ref['name']!r}")
                    break
            else:
                raise ContainerConfigError(
                    f"env {name}: this kind of valueFrom is not supported by the local node "
                    "agent (use value, fieldRef, secretKeyRef or configMapKeyRef)")
        return env

    def _read_data(self, resource: str, name: str, optional: bool) -> dict[str, str]:
        path = f"/api/v1/namespaces/{self.namespace}/{resource}/{name}"
        try:
            obj = self.agent.client.request("GET", path)
        except ApiError as exc:
            if exc.status == 404 and optional:
                return {}
            raise ContainerConfigError(f"{resource[:-1]} {name!r}: {exc}") from exc
        if resource == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace")
                    for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    def _environment_when_ready(self, container: Json, statuses: dict[str, Json]) -> (
            dict[str, str] | None):
        # Like the kubelet, wait (the Secret may come later) until the pod is stopped.
        delay = 1.0
        while True:
            try:
                return self._environment(container)
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
        name = container["name"]
        declared = self._environment_when_ready(container, statuses)
        if declared is None:
            return None
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.pod_dir / f"{name}.log"
        message_path = self.pod_dir / f"{name}.termination-log"
        message_path.write_bytes(b"")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", str(self.pod_dir)),
            TERMINATION_MESSAGE_ENV: str(message_path),
            POD_UID_ENV: self.uid,
            **declared,
        }
        argv = [expand_references(str(a), declared)
                for a in (container.get("command") or []) + (container.get("args") or [])]
        cwd = Path(container.get("workingDir") or self.pod_dir / "work")
        with self._lock:
            if self._stop_reason:
                return None
            try:
                cwd.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log_file:
                    log_offset = log_file.tell()
                    process = self.agent.launcher.spawn(argv, env=env, cwd=cwd,
                                                        output=log_file)
            except OSError as exc:
                now = time.time()
                statuses[name]["state"] = _terminated_state(128, "StartError", str(exc), now,
                                                            now)
                log.info("pod %s container %s could not start: %s", self.key, name, exc)
                return 128
            self._process = process
            self._anything_started = True
        started = time.time()
        container_id = f"local://{process.pid}"
        self._record("start", name, process.pid, started)
        log.info("started %s container %s pid %d", self.key, name, process.pid)
        statuses[name] = {
            **statuses[name], "ready": True, "started": True, "containerID": container_id,
            "imageID": "local://" + statuses[name]["image"],
            "state": {"running": {"startedAt": _timestamp(started)}},
        }
        self._patch_status("Pending" if init else "Running")

        returncode = process.wait()
        finished = time.time()
        code = exit_code(returncode)
        reason = "Completed" if code == 0 else "Error"
        self._record("end", name, process.pid, finished, code, reason)
        with self._lock:
            self._process = None
            # The leader is gone; whatever it left in its group goes too, as in a container.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        log.info("finished %s container %s pid %d exit %d after %.2f s",
                 self.key, name, process.pid, code, finished - started)

        raw = b""
        with contextlib.suppress(OSError), message_path.open("rb") as f:
            raw = f.read(MAX_MESSAGE_BYTES)
        message = _cap(raw)
        if (not message.strip() and code != 0
                and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"):
            message = _log_tail(log_path, log_offset)
        statuses[name] = {
            **statuses[name], "ready": False,
            "state": _terminated_state(code, reason, message, started, finished, container_id),
        }
        return code

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
        if self._sent_phase in _TERMINAL_PHASES:
            return  # the API server would let a phase go backwards: never send one
        terminal = phase in _TERMINAL_PHASES
        running = phase == "Running"
        completed = "PodCompleted" if terminal else None
        status: Json = {
            "phase": phase,
            "hostIP": LOCAL_IP, "hostIPs": [{"ip": LOCAL_IP}],
            "podIP": LOCAL_IP, "podIPs": [{"ip": LOCAL_IP}],
            "startTime": _timestamp(self.start_time),
            "conditions": [
                _condition("Initialized", self._initialized),
                _condition("ContainersReady", running, completed),
                _condition("Ready", running, completed),
            ],
            # Lists are replaced whole by a patch: always send all of them.
            "containerStatuses": list(self.main_statuses.values()),
        }
        if self.init_statuses:
            status["initContainerStatuses"] = list(self.init_statuses.values())
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        self._sent_phase = phase
        self.agent.patch_pod_status(self.namespace, self.name, self.uid, status)


# --- the node --------------------------------------------------------------------------------


@dataclass
class _PodState:
    """What this agent knows about one pod UID."""

    runner: _PodRunner | None = None
    running: bool = False
    delete_sent: bool = False


@dataclass(frozen=True)
class NodeResources:
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 500
    ephemeral_storage: str = "100Gi"

    def as_quantities(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods),
                "ephemeral-storage": self.ephemeral_storage}


class NodeAgent:
    """The agent itself; :func:`main` runs one until SIGTERM."""

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
        self.resources = resources or NodeResources()
        self.heartbeat_seconds = heartbeat_seconds
        self.max_grace_seconds = max_grace_seconds
        self.pid = os.getpid()
        self.launcher = _Launcher()
        self.stopping = threading.Event()
        self.timers = _Timers()
        self.records = _RecordLog(workdir / "records.jsonl")
        self._lock = threading.Lock()
        self._pods: dict[str, _PodState] = {}
        self._ran_here: set[str] = set()  # pod UIDs with a process start on record
        self._actions = ThreadPoolExecutor(max_workers=4, thread_name_prefix="action")
        self._registered_at = time.time()
        self._node_uid = ""
        self._kubelet_version = ""
        # The kubelet API's container logs, for the API server's pods/log.
        self.kubelet = KubeletEndpoint(workdir / "pods", node_name, self.container_active,
                                       workdir / "credentials")
        self.kubelet_port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        self._recover_records()
        self.kubelet_port = self.kubelet.start()
        self._register()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._watch_loop, name="watch", daemon=True).start()
        while not self.stopping.wait(1.0):
            pass
        self._shut_down()

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

    def _recover_records(self) -> None:
        """Processes a previous agent started and never saw end died with it: record that,
        kill what they left behind, and never start those pods again."""
        open_starts: dict[tuple[str, str, int], ProcessRecord] = {}
        for record in read_records(self.records.path):
            key = (record["uid"], record["container"], record["pid"])
            self._ran_here.add(record["uid"])
            if record["event"] == "start":
                open_starts[key] = record
            else:
                open_starts.pop(key, None)
        if not open_starts:
            return
        _kill_leftovers({uid for uid, _, _ in open_starts})
        now = time.time()
        for record in open_starts.values():
            self.records.append({**record, "event": "end", "time": now, "exitCode": 137,
                                 "reason": REASON_RESTARTED})
        log.info("%d processes died with the previous agent", len(open_starts))

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

    # -- node and lease ---------------------------------------------------------------------

    def _node_status(self) -> Json:
        now = _timestamp(time.time())
        since = _timestamp(self._registered_at)

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

    def _register(self) -> None:
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

    def _heartbeat_loop(self) -> None:
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
                        self._register()
                else:
                    log.warning("heartbeat failed: %s", exc)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    # -- pods: list and watch -----------------------------------------------------------------

    def _pod_query(self) -> dict[str, str]:
        return {"fieldSelector": f"spec.nodeName={self.node_name}"}

    def _watch_loop(self) -> None:
        resource_version: str | None = None
        first = True
        delay = 0.5
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                    if first:
                        (self.workdir / READY_MARKER).write_text(str(self.pid))
                        log.info("ready: watching pods bound to %s", self.node_name)
                        first = False
                resource_version = self._watch(resource_version)
                delay = 0.5
            except _WatchExpired:
                log.debug("watch expired: listing again")
                resource_version = None
            except Exception as exc:
                log.warning("pod watch failed (%s); listing again in %.1f s", exc, delay)
                resource_version = None
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _relist(self) -> str:
        query = {**self._pod_query(), "limit": "500"}
        seen: set[str] = set()
        while True:
            listing = self.client.request("GET", "/api/v1/pods", query=query)
            for pod in listing.get("items") or []:
                seen.add(pod["metadata"]["uid"])
                self._on_pod_event("ADDED", pod)
            meta = listing.get("metadata") or {}
            if not meta.get("continue"):
                break
            query["continue"] = meta["continue"]
        with self._lock:
            gone = [uid for uid in self._pods if uid not in seen]
        for uid in gone:
            self._on_pod_event("DELETED", {"metadata": {"uid": uid}})
        return str(meta.get("resourceVersion", ""))

    def _watch(self, resource_version: str) -> str:
        query = {**self._pod_query(), "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        for event in self.client.watch("/api/v1/pods", query, read_timeout=330):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _WatchExpired()
                raise ApiError(int(obj.get("code", 500)), "WATCH", "/api/v1/pods", obj)
            resource_version = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self._on_pod_event(str(kind), obj)
            if self.stopping.is_set():
                break
        return resource_version

    def _on_pod_event(self, kind: str, pod: Json) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        deleting = meta.get("deletionTimestamp") is not None
        status = pod.get("status") or {}
        terminal = status.get("phase") in _TERMINAL_PHASES
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
                elif self._is_orphan(pod):
                    orphan, delete = True, deleting
                elif deleting:
                    delete = True  # never started: nothing to stop
                elif not self.stopping.is_set():
                    state.runner = _PodRunner(self, pod)
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
            self._actions.submit(self.delete_pod, meta["namespace"], meta["name"], uid)

    def _is_orphan(self, pod: Json) -> bool:
        """A pod that a previous agent started: its processes died with that agent."""
        status = pod.get("status") or {}
        if status.get("phase") == "Running" or pod["metadata"]["uid"] in self._ran_here:
            return True
        statuses = (status.get("containerStatuses") or []) + (
            status.get("initContainerStatuses") or [])
        return any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
                   for s in statuses)

    def _fail_orphan(self, pod: Json, delete: bool) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        now = time.time()
        message = "the node agent restarted; the pod's processes died with the previous agent"

        def ended(old: Json) -> Json:
            state = old.get("state") or {}
            if "terminated" in state:
                return old
            started = state.get("running", {}).get("startedAt") or _timestamp(now)
            return {**old, "ready": False, "state": {"terminated": {
                "exitCode": 137, "reason": REASON_RESTARTED, "message": message,
                "startedAt": started, "finishedAt": _timestamp(now)}}}

        def statuses(key: str, specs: list[Json]) -> list[Json]:
            known = {s["name"]: s for s in status.get(key) or []}
            return [ended(known.get(c["name"]) or _waiting_status(c, "ContainerCreating"))
                    for c in specs]

        spec = pod["spec"]
        patch: Json = {
            "phase": "Failed", "reason": REASON_RESTARTED, "message": message,
            "conditions": [_condition("ContainersReady", False, "PodCompleted"),
                           _condition("Ready", False, "PodCompleted")],
            "containerStatuses": statuses("containerStatuses", spec.get("containers") or []),
        }
        if spec.get("initContainers"):
            patch["initContainerStatuses"] = statuses("initContainerStatuses",
                                                      spec["initContainers"])
        self.patch_pod_status(meta["namespace"], meta["name"], meta["uid"], patch)
        log.info("pod %s/%s Failed (%s)", meta["namespace"], meta["name"], REASON_RESTARTED)
        if delete:
            self.delete_pod(meta["namespace"], meta["name"], meta["uid"])

    def runner_finished(self, runner: _PodRunner) -> None:
        with self._lock:
            state = self._pods.get(runner.uid)
            delete = False
            if state is not None and state.runner is runner:
                state.running = False
                delete = runner.deletion_requested and not state.delete_sent
                state.delete_sent = state.delete_sent or delete
        if delete:
            self.delete_pod(runner.namespace, runner.name, runner.uid)

    # -- pod writes -------------------------------------------------------------------------

    def patch_pod_status(self, namespace: str, name: str, uid: str, status: Json) -> None:
        """Write a pod's status; while the API server is unreachable or answers 5xx/429,
        again with backoff (as the kubelet's status manager does): a lost final status
        would leave the pod Running in the API forever, holding its run's queue slot."""
        delay = 0.5
        deadline = time.monotonic() + STATUS_RETRY_SECONDS
        while True:
            try:
                self.client.request(
                    "PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                    # The UID makes the patch fail (409) on a new pod that reuses the name.
                    body={"metadata": {"uid": uid}, "status": status},
                    content_type="application/strategic-merge-patch+json", want_body=False,
                )
                return
            except ApiError as exc:
                if exc.status in (404, 409):
                    log.debug("pod %s/%s is gone; status not written", namespace, name)
                    return
                if exc.status < 500 and exc.status != 429:
                    log.error("writing the status of pod %s/%s failed: %s", namespace, name,
                              exc)
                    return
                failure: Exception = exc
            except Exception as exc:
                failure = exc
            if self.stopping.is_set() or time.monotonic() + delay > deadline:
                log.error("writing the status of pod %s/%s failed, giving up: %s",
                          namespace, name, failure)
                return
            log.warning("writing the status of pod %s/%s failed (%s); retrying in %.1f s",
                        namespace, name, failure, delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, 5.0)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.client.request(
                "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                      "preconditions": {"uid": uid}}, want_body=False,
            )
            log.debug("deleted pod %s/%s", namespace, name)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.error("deleting pod %s/%s failed: %s", namespace, name, exc)
        except Exception as exc:
            log.error("deleting pod %s/%s failed: %s", namespace, name, exc)


def _kill_leftovers(pod_uids: set[str]) -> None:
    """SIGKILL processes whose environment names one of these pods (a dead pod process's
    children, which PR_SET_PDEATHSIG does not reach)."""
    markers = {f"{POD_UID_ENV}={uid}".encode() for uid in pod_uids}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if markers.intersection(environ):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
                log.info("killed pid %s, left behind by a pod of the previous agent", entry)


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubetasks.devcluster.nodeagent",
        description="Register a Node and run the pods bound to it as local processes.",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True,
                        help="credentials of system:node:<name> (group system:nodes)")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--workdir", type=Path, required=True,
                        help="pod logs, working directories and records.jsonl go here")
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="16Gi")
    parser.add_argument("--max-pods", type=int, default=500)
    parser.add_argument("--max-grace-seconds", type=float, default=30.0,
                        help="cap on the SIGTERM-to-SIGKILL grace period of a stopping pod")
    parser.add_argument("--heartbeat-seconds", type=float, default=10.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(
        KubeClient(args.kubeconfig, args.workdir / "credentials"),
        args.node_name,
        args.workdir,
        resources=NodeResources(cpu=args.cpu, memory=args.memory, pods=args.max_pods),
        heartbeat_seconds=min(args.heartbeat_seconds, 10.0),
        max_grace_seconds=args.max_grace_seconds,
    )

    def request_stop(signum: int, _frame: object) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        agent.run()
    except ApiError as exc:
        log.error("cannot register the node: %s", exc)
        return 1
    return 0


# --- the wrapper tests and `kubetasks dev` use ----------------------------------------------


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


if __name__ == "__main__":
    sys.exit(main())
