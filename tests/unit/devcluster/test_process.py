"""Process supervision of local components: errors name the component and the cause."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from kubetasks.devcluster.errors import ComponentError
from kubetasks.devcluster.process import ManagedProcess, free_port


def test_port_in_use_is_refused_before_starting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = ManagedProcess("demo", [sys.executable, "-c", "pass"], tmp_path / "x.log",
                              ports=(port,))
        with pytest.raises(ComponentError) as info:
            proc.start()
    assert info.value.component == "demo"
    assert f"127.0.0.1:{port} is already in use" in info.value.cause


def test_a_component_that_dies_reports_its_log_tail(tmp_path: Path) -> None:
    script = "import sys; print('bad flag --frobnicate'); sys.exit(3)"
    proc = ManagedProcess("demo", [sys.executable, "-c", script], tmp_path / "x.log")
    proc.start()
    with pytest.raises(ComponentError) as info:
        proc.wait_ready(lambda: False, timeout=10)
    assert "exited with code 3" in info.value.cause
    assert "bad flag --frobnicate" in info.value.cause


def test_readiness_timeout_is_an_error_not_a_hang(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "sleepy", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "x.log"
    )
    proc.start()
    try:
        with pytest.raises(ComponentError) as info:
            proc.wait_ready(lambda: False, timeout=0.5)
        assert "not ready after" in info.value.cause
    finally:
        proc.stop(grace=1)
    assert not proc.alive()


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The child spawns a grandchild; stopping must take both.
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid));"
        "time.sleep(60)"
    )
    proc = ManagedProcess("parent", [sys.executable, "-c", script], tmp_path / "x.log")
    proc.start()
    proc.wait_ready(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=10)
    grandchild = int(pid_file.read_text())
    proc.stop(grace=2)
    # SIGKILL is delivered asynchronously: give the kernel a moment to finish the process.
    deadline = time.monotonic() + 3
    while Path(f"/proc/{grandchild}").exists() and not _is_zombie(grandchild):
        assert time.monotonic() < deadline, f"grandchild {grandchild} survived stop()"
        time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
