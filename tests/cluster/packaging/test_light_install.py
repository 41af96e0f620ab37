"""The plain install, as an application gets it: ``pip install kubetasks`` (no extras) into a
fresh virtualenv, then that venv's Python triggers a run on the real local cluster and reads
its output, and its ``kubetasks`` command lists the run. The operator's stack (Kopf, the
Kubernetes client, aiohttp, Redis, prometheus-client) and boto3 must not be installed, and
the features that need them must fail with a message naming the extra to install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetasks._internal.client import Client
from kubetasks.devcluster.controlplane import ControlPlane
from kubetasks.devcluster.services import S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("kopf", "kubernetes", "aiohttp", "redis", "prometheus-client", "boto3", "botocore")


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv with ``pip install <this repository>`` and nothing else. The source is
    copied first so that the build leaves nothing in the checkout."""
    root = tmp_path_factory.mktemp("light")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("sdk", "operator"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(source)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield env_dir


def light_env(control_plane: ControlPlane, s3: S3Server, namespace: str) -> dict[str, str]:
    # No PYTHONPATH: the light venv must find kubetasks in its own site-packages.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, **s3.env(), "KUBECONFIG": str(control_plane.kubeconfig),
            "KUBETASKS_NAMESPACE": namespace}


def run_python(env_dir: Path, code: str, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([str(env_dir / "bin" / "python"), "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=env_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_plain_install_has_only_what_an_application_needs(light_venv: Path) -> None:
    listed = subprocess.run(
        [str(light_venv / "bin" / "python"), "-m", "pip", "list", "--format=json",
         "--disable-pip-version-check"], capture_output=True, text=True, timeout=60, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "kubetasks" in names
    assert not names & set(HEAVY), f"the plain install pulled in {sorted(names & set(HEAVY))}"
    assert {"pydantic", "pyyaml", "click", "rich", "urllib3"} <= names
    # The import itself loads nothing of the operator's stack, and is the installed copy.
    result = run_python(light_venv, """
        import json, sys
        import kubetasks
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in {"kopf", "kubernetes", "aiohttp", "redis",
                                              "boto3", "botocore", "kubetasks_operator"})
        print(json.dumps({"file": kubetasks.__file__, "heavy": heavy,
                          "public": len(kubetasks.__all__)}))
        """, {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert str(light_venv) in str(result["file"])
    assert result["heavy"] == []


def test_the_plain_install_triggers_polls_and_lists_runs(
    light_venv: Path, sdk: Client, control_plane: ControlPlane, s3_server: S3Server,
    namespace: str,
) -> None:
    env = light_env(control_plane, s3_server, namespace)
    result = run_python(light_venv, """
        import json
        from kubetasks import runs, tasks
        handle = tasks.trigger("receipt", {"id": "light-1", "amount": 21}, tags=["light"])
        done = runs.poll(handle.id, timeout=90)
        print(json.dumps({"id": handle.id, "status": done.status, "output": done.output}))
        """, env)
    assert result["status"] == "Completed"
    assert result["output"] == {"order_id": "light-1", "total": 42, "attempt": 1}
    listed = subprocess.run(
        [str(light_venv / "bin" / "kubetasks"), "runs", "list", "--namespace", namespace],
        capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0, listed.stderr
    assert str(result["id"]).split("/")[-1] in listed.stdout


def test_what_needs_an_extra_says_which(
    light_venv: Path, sdk: Client, control_plane: ControlPlane, s3_server: S3Server,
    namespace: str,
) -> None:
    env = light_env(control_plane, s3_server, namespace)
    # A payload too big to travel inline goes to S3, which needs boto3: refused before any
    # run exists, with the extra to install.
    result = run_python(light_venv, """
        import json
        from kubetasks import MissingDependencyError, tasks
        try:
            tasks.trigger("receipt", {"id": "big", "amount": 1, "pad": "x" * 200_000})
        except MissingDependencyError as exc:
            print(json.dumps({"error": str(exc)}))
        else:
            print(json.dumps({"error": None}))
        """, env)
    assert result["error"] and "pip install 'kubetasks[s3]'" in str(result["error"])
    runs_here = list(sdk.kube.list_objects("taskruns", namespace))
    assert runs_here == [], [r["metadata"]["name"] for r in runs_here]
    operator = subprocess.run([str(light_venv / "bin" / "kubetasks"), "operator"],
                              capture_output=True, text=True, timeout=60, env=env)
    assert operator.returncode == 1
    assert "pip install 'kubetasks[operator]'" in operator.stderr
    assert "Traceback" not in operator.stderr
    dev = subprocess.run([str(light_venv / "bin" / "kubetasks"), "dev", "--once"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert dev.returncode == 1
    assert "pip install 'kubetasks[local]'" in dev.stderr

