"""Opt-in (``--kind``, needs Docker and ``pip install 'kubetasks[kind]'``): the CRDs on a kind
cluster, for machines that can run one. The local control plane covers the same in CI."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kind

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_are_served_and_reject_bad_input_on_kind(kind_cluster: Any, tmp_path: Path) -> None:
    kind_cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    kind_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f",
                         str(CRDS))
    names = kind_cluster.kubectl("get", "crds", "-o", "name")
    assert "taskruns.kubetasks.dev" in names
    bad = (
        "apiVersion: kubetasks.dev/v1alpha1\nkind: TaskRun\nmetadata: {name: bad}\n"
        "spec: {task: t, payload: {}, maxAttempts: 0}\n"
    )
    manifest = tmp_path / "bad-taskrun.yaml"
    manifest.write_text(bad)
    result = subprocess.run(
        [str(kind_cluster.kubectl_path), f"--kubeconfig={kind_cluster.kubeconfig_path}",
         "apply", "-f", str(manifest)],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "maxAttempts" in result.stderr
