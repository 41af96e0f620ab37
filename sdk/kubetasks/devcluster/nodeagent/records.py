"""``<workdir>/records.jsonl``: what really ran, one JSON line per process start and end."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Literal, NotRequired, TypedDict, cast


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


class RecordLog:
    """The agent's records file, appended to from every pod's thread."""

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
