"""Render the Helm chart ``charts/kubetasks`` with a real ``helm`` (shared by the chart's unit
and cluster tests)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kubetasks.devcluster.helm import find_helm

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kubetasks"
VALUES_DIR = REPO / "tests" / "chart"
VALUES_FILES = sorted(VALUES_DIR.glob("values-*.yaml"))
INVALID_VALUES_FILES = sorted((VALUES_DIR / "invalid").glob("*.yaml"))
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"

Manifest = dict[str, Any]


@cache
def helm_binary() -> str:
    path = str(find_helm())
    version = subprocess.run([path, "version", "--short"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    # The messages of values.schema.json checks that the tests assert on are helm v4's.
    assert version.startswith("v4."), (
        f"the chart's tests need helm v4, {path} is {version or 'unknown'}: point "
        "KUBETASKS_HELM at a helm v4 (`python -m kubetasks.devcluster.helm` fetches one when "
        "no helm is on PATH)")
    return path


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [helm_binary(), *args]
    if kubeconfig is not None:
        command.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"`helm {' '.join(args)}` failed ({result.returncode}):\n"
                             f"{result.stderr}{result.stdout}")
    return result


def template_args(values: Sequence[Path] = (), sets: Sequence[str] = (),
                  namespace: str = "kubetasks", release: str = "kubetasks") -> list[str]:
    args = ["template", release, str(CHART), f"--namespace={namespace}",
            f"--api-versions={SERVICE_MONITOR_API}"]
    for path in values:
        args.append(f"--values={path}")
    for item in sets:
        args.append(f"--set={item}")
    return args


def render_text(values: Sequence[Path] = (), sets: Sequence[str] = (),
                namespace: str = "kubetasks", release: str = "kubetasks") -> str:
    return helm(*template_args(values, sets, namespace, release)).stdout


def render(values: Sequence[Path] = (), sets: Sequence[str] = (),
           namespace: str = "kubetasks", release: str = "kubetasks") -> list[Manifest]:
    """The chart's objects (CRDs excluded, as ``helm template`` does without
    ``--include-crds``)."""
    text = render_text(values, sets, namespace, release)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template_error(values: Sequence[Path] = (), sets: Sequence[str] = (),
                   api_versions: bool = False) -> str:
    """stderr of a ``helm template`` that must fail."""
    args = ["template", "kubetasks", str(CHART)]
    if api_versions:
        args.append(f"--api-versions={SERVICE_MONITOR_API}")
    args += [f"--values={path}" for path in values] + [f"--set={item}" for item in sets]
    result = helm(*args, check=False)
    assert result.returncode != 0, f"helm template accepted {values} {sets}"
    return result.stderr


def expected_error(path: Path) -> str:
    """The message an invalid values file must fail with: its first line, ``# error: ...``."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path} must start with '# error: <message>'"
    return first.removeprefix("# error: ")


def values_namespaces(path: Path) -> list[str]:
    """The namespaces a values file names (watched, or where tasks run)."""
    values = yaml.safe_load(path.read_text()) or {}
    tasks = values.get("tasks") or {}
    return list(values.get("watchNamespaces") or []) + list(tasks.get("namespaces") or [])


def find(objects: list[Manifest], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)]


def one(objects: list[Manifest], kind: str, name: str | None = None,
        namespace: str | None = None) -> Manifest:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container_env(deployment: Manifest) -> dict[str, Any]:
    """NAME -> value (a string) or valueFrom (a dict) of the first container."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
