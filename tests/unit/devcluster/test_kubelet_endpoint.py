"""The node agent's kubelet endpoint on its own (no cluster): container logs over HTTPS,
with tailLines, limitBytes and follow until the container ends or the caller hangs up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from kubetasks.devcluster.kubelet_endpoint import KubeletEndpoint, tail_offset

# The endpoint's certificate is self-signed, as a kubelet's default one: not verified here.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


class Containers:
    def __init__(self) -> None:
        self.active: set[tuple[str, str, str]] = set()

    def __call__(self, namespace: str, pod: str, container: str) -> bool:
        return (namespace, pod, container) in self.active


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, Path, Containers]]:
    containers = Containers()
    pods = tmp_path / "pods"
    server = KubeletEndpoint(pods, "local-node", containers, tmp_path / "certs")
    port = server.start()
    try:
        yield f"https://127.0.0.1:{port}", pods, containers
    finally:
        server.stop()


def http() -> urllib3.PoolManager:
    return urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False,
                               timeout=urllib3.Timeout(connect=5, read=10))


def write_log(pods: Path, text: str) -> Path:
    path = pods / "ns" / "pod-1" / "task.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(text)
    return path


def test_serves_a_log_whole_by_tail_lines_and_by_limit_bytes(
        endpoint: tuple[str, Path, Containers]) -> None:
    base, pods, _ = endpoint
    write_log(pods, "one\ntwo\nthree\n")
    pool = http()
    whole = pool.request("GET", f"{base}/containerLogs/ns/pod-1/task")
    assert (whole.status, whole.data) == (200, b"one\ntwo\nthree\n")
    tail = pool.request("GET", f"{base}/containerLogs/ns/pod-1/task?tailLines=2")
    assert tail.data == b"two\nthree\n"
    limited = pool.request("GET", f"{base}/containerLogs/ns/pod-1/task?limitBytes=5")
    assert limited.data == b"one\nt"


def test_refuses_what_it_cannot_serve_with_a_message(
        endpoint: tuple[str, Path, Containers]) -> None:
    base, pods, containers = endpoint
    pool = http()
    containers.active.add(("ns", "pod-2", "task"))
    waiting = pool.request("GET", f"{base}/containerLogs/ns/pod-2/task")
    assert waiting.status == 400 and b"is waiting to start" in waiting.data
    missing = pool.request("GET", f"{base}/containerLogs/ns/pod-3/task")
    assert missing.status == 404
    write_log(pods, "x\n")
    previous = pool.request("GET", f"{base}/containerLogs/ns/pod-1/task?previous=true")
    assert previous.status == 400 and b"never restarts" in previous.data
    assert pool.request("GET", f"{base}/containerLogs/ns/pod-1/task?tailLines=x").status == 400
    assert pool.request("GET", f"{base}/pods").status == 404
    assert pool.request("GET", f"{base}/containerLogs/ns/..%2Fpod-1/task").status == 400


def test_follow_streams_until_the_container_ended_and_all_it_wrote_was_sent(
        endpoint: tuple[str, Path, Containers]) -> None:
    base, pods, containers = endpoint
    key = ("ns", "pod-1", "task")
    containers.active.add(key)
    write_log(pods, "first\n")
    response = http().request("GET", f"{base}/containerLogs/ns/pod-1/task?follow=true",
                              preload_content=False)
    assert response.status == 200
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(response.stream(1024)))
    reader.start()
    deadline = time.monotonic() + 5
    while b"".join(received) != b"first\n" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"".join(received) == b"first\n"
    write_log(pods, "second\n")
    time.sleep(0.3)
    containers.active.discard(key)
    write_log(pods, "last words\n")  # written before the container ended: still sent
    reader.join(5)
    assert not reader.is_alive()
    assert b"".join(received) == b"first\nsecond\nlast words\n"


def test_follow_stops_when_the_caller_hangs_up(
        endpoint: tuple[str, Path, Containers]) -> None:
    base, pods, containers = endpoint
    containers.active.add(("ns", "pod-1", "task"))
    write_log(pods, "x\n")
    before = threading.active_count()
    response = http().request("GET", f"{base}/containerLogs/ns/pod-1/task?follow=true",
                              preload_content=False)
    assert response.read(2) == b"x\n"
    response.release_conn()
    response.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


@pytest.mark.parametrize("content", [b"", b"a", b"a\n", b"a\nb", b"a\nb\n", b"\n\n\n",
                                     b"x" * 100_000 + b"\n" + b"y" * 70_000 + b"\nz\n"])
def test_tail_offset(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "log"
    path.write_bytes(content)
    lines = content.splitlines(keepends=True)
    for count in range(5):
        assert content[tail_offset(path, count):] == (b"".join(lines[-count:]) if count
                                                      else b"")
