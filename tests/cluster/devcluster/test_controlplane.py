"""The local control plane is real, isolated, and cleans up after itself."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest
from kubernetes import client

from kubetasks.devcluster import Binaries, ComponentError, ControlPlane

pytestmark = pytest.mark.cluster


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def test_all_components_are_up_and_report_their_version(control_plane: ControlPlane) -> None:
    assert set(control_plane.processes) == {
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
    }
    assert all(p.alive() for p in control_plane.processes.values())
    version = control_plane.kubectl("version", "-o", "json")
    assert '"gitVersion": "v1.36.3"' in version
    rss = control_plane.memory_rss_mb()
    assert set(rss) == set(control_plane.processes)


def test_default_service_account_and_root_ca_exist_in_new_namespaces(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.read_namespaced_service_account("default", namespace)
    # The root CA publisher is part of the controller manager: pods mount this.
    for _ in range(50):
        try:
            cm = core.read_namespaced_config_map("kube-root-ca.crt", namespace)
        except client.ApiException as exc:
            assert exc.status == 404
            time.sleep(0.1)
            continue
        assert "BEGIN CERTIFICATE" in cm.data["ca.crt"]
        return
    pytest.fail("kube-root-ca.crt was never published")


def test_a_second_cluster_runs_side_by_side_and_stops_cleanly(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    second = ControlPlane(tmp_path / "second", binaries=control_plane.binaries).start()
    try:
        assert second.ports.apiserver != control_plane.ports.apiserver
        second.kubectl("create", "namespace", "only-in-second")
        assert "only-in-second" in second.kubectl("get", "ns", "-o", "name")
        assert "only-in-second" not in control_plane.kubectl("get", "ns", "-o", "name")
        pids = [p.pid for p in second.processes.values() if p.pid]
    finally:
        second.stop()
    assert len(pids) == 4
    assert _pids_alive(pids) == []
    # The first cluster is untouched.
    assert control_plane.kubectl("get", "--raw", "/readyz") == "ok"


def test_a_component_that_fails_to_start_names_itself_and_shows_its_log(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    bad = tmp_path / "bin"
    bad.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kubectl"):
        os.symlink(control_plane.binaries.path(name), bad / name)
    fake = bad / "kube-apiserver"
    fake.write_text("#!/bin/sh\necho 'error: unknown flag --storage-magic' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    cp = ControlPlane(tmp_path / "broken", binaries=Binaries(bad), start_timeout=20)
    with pytest.raises(ComponentError) as info:
        cp.start()
    assert info.value.component == "kube-apiserver"
    assert "exited with code 1" in info.value.cause
    assert "unknown flag --storage-magic" in info.value.cause
    # etcd, started before the failure, was stopped again.
    assert not cp.processes["etcd"].alive()
    shutil.rmtree(tmp_path / "broken", ignore_errors=True)
