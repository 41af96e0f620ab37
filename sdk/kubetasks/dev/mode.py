"""``kubetasks dev``: kubetasks on the embedded local cluster, for development.

It starts the local control plane and node agent, Redis and the S3 server, installs the CRDs,
runs the operator (attempts run the real worker as local processes, importing tasks from the
current directory), deploys the tasks of the given modules, optionally runs a driver function
that triggers runs, and shows the runs live until Ctrl-C, which stops everything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from kubetasks.errors import KubetasksError

REFRESH_SECONDS = 0.5


class DevError(KubetasksError):
    """A problem with what ``kubetasks dev`` was asked to run."""


def load_driver(spec: str) -> Callable[[], Any]:
    """``module:function`` → the function (called with no arguments)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise DevError(f"--run {spec!r}: write it as module:function, e.g. examples.main:main")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DevError(f"--run {spec!r}: cannot import {module_name!r} ({exc}); run from the "
                       "directory that holds it") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DevError(f"--run {spec!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def _age(created: str | None) -> str:
    if not created:
        return "-"
    start = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = int((dt.datetime.now(dt.UTC) - start).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def runs_table(runs: list[dict[str, Any]]) -> Any:
    """A rich Table of TaskRuns, newest last."""
    from rich.table import Table

    table = Table(title=f"TaskRuns ({len(runs)})", expand=False)
    for column in ("name", "task", "status", "attempt", "queue", "age"):
        table.add_column(column)
    ordered = sorted(runs, key=lambda r: r["metadata"].get("creationTimestamp") or "")
    for run in ordered[-40:]:
        status = run.get("status") or {}
        phase = status.get("phase") or "Pending"
        style = {"Completed": "green", "Failed": "red", "Crashed": "red", "TimedOut": "red",
                 "Executing": "cyan", "Waiting": "magenta", "Retrying": "yellow"}.get(phase)
        table.add_row(run["metadata"]["name"], run["spec"].get("task", ""),
                      f"[{style}]{phase}[/]" if style else phase,
                      str(status.get("attempt") or 0), status.get("queue") or "-",
                      _age(run["metadata"].get("creationTimestamp")))
    return table


class DevSession:
    """Everything ``kubetasks dev`` starts, stopped together."""

    def __init__(self, workdir: Path | None, namespace: str, out: TextIO = sys.stderr) -> None:
        from kubetasks.devcluster.local import LocalCluster

        self.local = LocalCluster(workdir)
        self.namespace = namespace
        self.out = out
        self.operator: Any = None
        self.dashboard_url: str | None = None
        self._stop_dashboard: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        from kubetasks.devcluster.local import OperatorProcess

        self.say("starting the local control plane, node agent, Redis and S3 server...")
        self.local.start()
        self.say(f"cluster ready in {self.local.started_seconds:.1f} s "
                 f"(workdir {self.local.workdir})")
        cwd = os.getcwd()
        pythonpath = os.pathsep.join(p for p in (cwd, os.environ.get("PYTHONPATH")) if p)
        task_env = {"KUBECONFIG": str(self.local.control_plane.kubeconfig),
                    "PYTHONPATH": pythonpath, **self.local.s3.env()}
        env = {
            **self.local.env(),
            "KUBETASKS_WORKER_COMMAND": f"{sys.executable} -m kubetasks worker",
            "KUBETASKS_TASK_ENV": json.dumps(task_env),
        }
        self.operator = OperatorProcess(self.local.workdir / "operator", env).start()
        self.say(f"operator running (log {self.operator.log_path})")
        # This process's SDK calls (the driver's) use the local cluster too.
        os.environ.update({**self.local.env(), "KUBETASKS_NAMESPACE": self.namespace})
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        self._ensure_namespace()
        from kubetasks._internal.client import configure
        from kubetasks.protocol.storage import StorageSettings

        s3 = self.local.s3
        configure(kubeconfig=self.local.control_plane.kubeconfig, namespace=self.namespace,
                  storage=StorageSettings(bucket=s3.bucket, endpoint=s3.endpoint,
                                          region=s3.region))
        self._start_dashboard()

    def _start_dashboard(self) -> None:
        import importlib.util

        if any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "jinja2")):
            self.say("dashboard: not installed (pip install 'kubetasks[dashboard]')")
            return
        from kubetasks.dashboard.serve import start_in_background

        self.dashboard_url, self._stop_dashboard = start_in_background(
            [self.namespace], kubeconfig=self.local.control_plane.kubeconfig)
        self.say(f"dashboard on {self.dashboard_url}")
        os.environ["KUBETASKS_DASHBOARD_URL"] = self.dashboard_url  # for --run scripts

    def _ensure_namespace(self) -> None:
        from kubetasks._internal.client import KubeApi

        api = KubeApi.from_environment(self.local.control_plane.kubeconfig)
        try:
            api.request("POST", "/api/v1/namespaces",
                        body={"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": self.namespace}})
        except KubetasksError as exc:
            if getattr(exc, "status", None) != 409:
                raise
        # Pods need the namespace's default ServiceAccount, made by the controller manager.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(KubetasksError):
                api.request("GET", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/"
                                   "default")
                return
            time.sleep(0.2)
        raise DevError(f"namespace {self.namespace!r} got no default ServiceAccount in 30 s")

    def deploy(self, modules: list[str]) -> None:
        from kubetasks._internal.client import default_client
        from kubetasks.cli import deployment as deploying

        client = default_client()
        for module in modules:
            try:
                objects = deploying.manifests(module, "local")
            except ImportError as exc:
                raise DevError(f"cannot import {module!r} ({exc}); run from the directory "
                               "that holds it, or set PYTHONPATH") from None
            applied = deploying.deploy(client, module, objects).applied
            tasks = [o["metadata"]["name"] for o in applied if o["kind"] == "Task"]
            self.say(f"deployed {len(tasks)} task(s) from {module}: {', '.join(tasks)}")

    def list_runs(self) -> list[dict[str, Any]]:
        from kubetasks._internal.client import default_client

        client = default_client()
        return list(client.kube.list_objects("taskruns", self.namespace))

    def stop(self) -> None:
        self.say("stopping...")
        if self._stop_dashboard is not None:
            with contextlib.suppress(Exception):
                self._stop_dashboard()
        if self.operator is not None:
            with contextlib.suppress(Exception):
                self.operator.stop()
        self.local.stop()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch_runs(session: DevSession, stop: threading.Event) -> None:
    """A live table of the namespace's runs until ``stop`` is set (plain lines when the
    output is not a terminal)."""
    from rich.console import Console
    from rich.live import Live

    console = Console(file=session.out)
    if not console.is_terminal:
        seen: dict[str, str] = {}
        while not stop.wait(REFRESH_SECONDS * 2):
            for run in session.list_runs():
                name = run["metadata"]["name"]
                phase = (run.get("status") or {}).get("phase") or "Pending"
                if seen.get(name) != phase:
                    seen[name] = phase
                    session.say(f"{name}: {phase}")
        return
    with Live(runs_table(session.list_runs()), console=console, refresh_per_second=4) as live:
        while not stop.wait(REFRESH_SECONDS):
            with contextlib.suppress(Exception):
                live.update(runs_table(session.list_runs()))


def run(modules: list[str], driver: str | None, once: bool, workdir: Path | None,
        namespace: str = "default") -> int:
    """Start everything, deploy ``modules``, call ``driver`` (``module:function``) if given,
    then show runs live until Ctrl-C (``once``: stop right after the driver). The exit code
    is the driver's return value when it is an int, else 0."""
    fn = None
    if driver is not None:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        fn = load_driver(driver)  # fail before starting anything
    session = DevSession(workdir, namespace)
    code = 0
    with _stop_on_signals() as stop:
        try:
            session.start()
            if modules:
                session.deploy(modules)
            session.say("environment for kubectl and SDK scripts against this cluster:")
            for key, value in {**session.local.env(), "KUBETASKS_NAMESPACE": namespace}.items():
                session.say(f"  export {key}={value}")
            if fn is not None:
                session.say(f"running {driver} ...")
                result = fn()
                code = result if isinstance(result, int) else 0
            if not once and not stop.is_set():
                session.say("showing runs; press Ctrl-C to stop everything")
                watch_runs(session, stop)
        finally:
            session.stop()
    return code
