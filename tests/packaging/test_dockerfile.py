"""The Dockerfile: linted with hadolint, and its install steps replayed without Docker (there
is no container runtime here): the build stage's `pip wheel` from exactly the files it
COPYs, then the final stage's `pip install` of those wheels into a fresh environment, whose
`kubetasks` command must work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_final_stage_runs_kubetasks_as_a_non_root_user() -> None:
    steps = instructions()
    final = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    tail = steps[final:]
    users = [rest for k, rest in tail if k == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert ("ENTRYPOINT", '["kubetasks"]') in tail


@pytest.mark.timeout(900)
def test_the_install_steps_give_a_working_kubetasks(tmp_path: Path) -> None:
    steps = instructions()
    # The build stage sees only what it COPYs.
    context = tmp_path / "context"
    context.mkdir()
    copied = [rest.split() for k, rest in steps if k == "COPY" and "--from" not in rest]
    for parts in copied:
        *sources, _ = parts
        for source in sources:
            src = REPO / source
            dst = context / source
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.egg-info"))
            else:
                shutil.copy2(src, dst)
    # The image installs the operator's and the dashboard's extras: the plain install leaves
    # Kopf, Starlette and the rest out.
    runs = " ".join(rest for k, rest in steps if k == "RUN")
    assert '--wheel-dir /wheels ".[operator,dashboard]"' in runs
    assert "--no-index /wheels/*.whl" in runs  # every wheel built: kubetasks and the extra's
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-cache-dir",
                            "--wheel-dir", str(wheels), f"{context}[operator,dashboard]"],
                           capture_output=True, text=True, timeout=600, env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    assert any(w.name.startswith("kubetasks-") for w in wheels.iterdir())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-cache-dir",
                                "--no-index", *map(str, wheels.iterdir())],
                               capture_output=True, text=True, timeout=600, env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    helped = subprocess.run([str(venv / "bin" / "kubetasks"), "--help"], capture_output=True,
                            text=True, timeout=60, env=clean, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("operator", "worker", "deploy", "dev", "dashboard"):
        assert command in helped.stdout
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import kubetasks_operator.handlers, kubetasks.worker.runtime, "
         "kubetasks.dashboard.app; print('ok')"],
        capture_output=True, text=True, timeout=120, env=clean, cwd=tmp_path)
    assert imported.stdout.strip() == "ok", imported.stderr
    # The worker outside a pod fails with one clear line, not a traceback.
    worker = subprocess.run([str(venv / "bin" / "kubetasks"), "worker"], capture_output=True,
                            text=True, timeout=60, env=clean, cwd=tmp_path)
    assert worker.returncode != 0
    assert "Traceback" not in worker.stderr, worker.stderr
