"""Start, watch and stop one local server process, with its output in a log file."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubetasks.devcluster.errors import ComponentError

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved once here: a dlopen() between fork and exec can deadlock in a threaded parent.
_PRCTL = _load_prctl()


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` giving the child SIGKILL when ``parent_pid`` dies, even by SIGKILL.

    The signal follows the parent *thread* that forked: fork from a thread that outlives
    the child. A child whose parent died before the hook ran exits at once.
    """

    def hook() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(137)

    return hook


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class ManagedProcess:
    """A server process in its own process group, logging to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ports: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.ports = list(ports)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        for port in self.ports:
            if port_in_use(port):
                raise ComponentError(
                    self.name,
                    f"port 127.0.0.1:{port} is already in use",
                    "stop whatever listens there, or let kubetasks pick free ports "
                    "(leave the port settings at 0)",
                )
        if not os.access(self.argv[0], os.X_OK):
            raise ComponentError(
                self.name, f"{self.argv[0]} is missing or not executable",
                "rebuild the binaries (`python -m kubetasks.devcluster build`)",
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                # No control-plane process outlives a crashed test session.
                preexec_fn=die_with_parent(os.getpid()),
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` until it is true; fail with the log's tail if the process dies."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ComponentError(
                    self.name,
                    f"exited with code {code} while starting; last log lines "
                    f"({self.log_path}):\n{log_tail(self.log_path)}",
                    "read the log above; a port clash or a bad flag is the usual cause",
                )
            try:
                if check():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise ComponentError(
                    self.name,
                    f"not ready after {timeout:.0f} s; last log lines ({self.log_path}):\n"
                    f"{log_tail(self.log_path)}",
                    "read the log above; the machine may be overloaded",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def signal(self, sig: int) -> None:
        if self.alive() and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        # Children left in the group (if any) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL at once (crash simulation)."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
