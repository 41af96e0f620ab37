"""What a restarted agent does about the previous one: the processes that agent started died
with it (PR_SET_PDEATHSIG), so their end is recorded, whatever they left behind is killed,
and their pods fail with reason ``NodeAgentRestarted`` instead of being started again."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from kubetasks.devcluster.nodeagent.client import Json
from kubetasks.devcluster.nodeagent.environment import POD_UID_ENV
from kubetasks.devcluster.nodeagent.records import ProcessRecord, RecordLog, read_records
from kubetasks.devcluster.nodeagent.status import pod_condition, timestamp, waiting_status

log = logging.getLogger("kubetasks.nodeagent")

REASON_RESTARTED = "NodeAgentRestarted"


def recover_records(records: RecordLog) -> set[str]:
    """Processes a previous agent started and never saw end died with it: record that and
    kill what they left behind. Returns the UIDs of the pods with a process start on record:
    they must never be started again."""
    ran_here: set[str] = set()
    open_starts: dict[tuple[str, str, int], ProcessRecord] = {}
    for record in read_records(records.path):
        key = (record["uid"], record["container"], record["pid"])
        ran_here.add(record["uid"])
        if record["event"] == "start":
            open_starts[key] = record
        else:
            open_starts.pop(key, None)
    if not open_starts:
        return ran_here
    _kill_leftovers({uid for uid, _, _ in open_starts})
    now = time.time()
    for record in open_starts.values():
        records.append({**record, "event": "end", "time": now, "exitCode": 137,
                        "reason": REASON_RESTARTED})
    log.info("%d processes died with the previous agent", len(open_starts))
    return ran_here


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


def is_orphan(pod: Json, ran_here: set[str]) -> bool:
    """A pod that a previous agent started: its processes died with that agent."""
    status = pod.get("status") or {}
    if status.get("phase") == "Running" or pod["metadata"]["uid"] in ran_here:
        return True
    statuses = (status.get("containerStatuses") or []) + (
        status.get("initContainerStatuses") or [])
    return any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
               for s in statuses)


def orphan_status(pod: Json) -> Json:
    """The status patch that fails an orphan: each container not yet terminated ends now."""
    status = pod.get("status") or {}
    now = time.time()
    message = "the node agent restarted; the pod's processes died with the previous agent"

    def ended(old: Json) -> Json:
        state = old.get("state") or {}
        if "terminated" in state:
            return old
        started = state.get("running", {}).get("startedAt") or timestamp(now)
        return {**old, "ready": False, "state": {"terminated": {
            "exitCode": 137, "reason": REASON_RESTARTED, "message": message,
            "startedAt": started, "finishedAt": timestamp(now)}}}

    def statuses(key: str, specs: list[Json]) -> list[Json]:
        known = {s["name"]: s for s in status.get(key) or []}
        return [ended(known.get(c["name"]) or waiting_status(c, "ContainerCreating"))
                for c in specs]

    spec = pod["spec"]
    patch: Json = {
        "phase": "Failed", "reason": REASON_RESTARTED, "message": message,
        "conditions": [pod_condition("ContainersReady", False, "PodCompleted"),
                       pod_condition("Ready", False, "PodCompleted")],
        "containerStatuses": statuses("containerStatuses", spec.get("containers") or []),
    }
    if spec.get("initContainers"):
        patch["initContainerStatuses"] = statuses("initContainerStatuses",
                                                  spec["initContainers"])
    return patch
