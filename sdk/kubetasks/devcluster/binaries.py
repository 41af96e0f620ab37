"""Find or build the control-plane binaries (etcd, kube-apiserver, controller manager,
scheduler, kubectl).

Order of lookup: the directory in ``KUBETASKS_K8S_BIN``, then ``PATH``, then the cache under
``~/.cache/kubetasks/k8s-<version>/bin``; if none has all five, they are built once from the
Go module proxy with the machine's Go toolchain and cached there.

``go install k8s.io/kubernetes/cmd/...@v`` is refused because kubernetes' go.mod replaces its
staging modules with local paths; a small wrapper module that pins each staging module to its
published ``v0.<minor>.<patch>`` tag builds the commands instead. etcd's server module has the
same problem and gets the same treatment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubetasks.devcluster.errors import ComponentError

KUBERNETES_VERSION = "1.36.3"
ETCD_VERSION = "3.6.8"

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ALL_COMMANDS = ("etcd", *KUBE_COMMANDS)

BIN_ENV = "KUBETASKS_K8S_BIN"
CACHE_ENV = "KUBETASKS_CACHE_DIR"

Progress = Callable[[str], None]


def _stderr_progress(message: str) -> None:
    print(f"[kubetasks devcluster] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Binaries:
    """Paths of the five control-plane commands."""

    directory: Path

    def path(self, command: str) -> str:
        return str(self.directory / command)

    @property
    def etcd(self) -> str:
        return self.path("etcd")

    @property
    def kube_apiserver(self) -> str:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> str:
        return self.path("kube-controller-manager")

    @property
    def kube_scheduler(self) -> str:
        return self.path("kube-scheduler")

    @property
    def kubectl(self) -> str:
        return self.path("kubectl")


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV)
    return Path(base) if base else Path.home() / ".cache" / "kubetasks"


def cached_bin_dir(version: str = KUBERNETES_VERSION, etcd_version: str = ETCD_VERSION) -> Path:
    return cache_root() / f"k8s-v{version}-etcd-v{etcd_version}" / "bin"


def _has_all(directory: Path) -> bool:
    return all(os.access(directory / c, os.X_OK) for c in ALL_COMMANDS)


def find_binaries(
    *,
    version: str = KUBERNETES_VERSION,
    etcd_version: str = ETCD_VERSION,
    build: bool = True,
    progress: Progress = _stderr_progress,
) -> Binaries:
    """Return the directory holding all five commands, building them if needed."""
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        directory = Path(explicit)
        if not _has_all(directory):
            missing = [c for c in ALL_COMMANDS if not os.access(directory / c, os.X_OK)]
            raise ComponentError(
                "binaries",
                f"{BIN_ENV}={explicit} lacks executable {', '.join(missing)}",
                f"put {', '.join(ALL_COMMANDS)} there, or unset {BIN_ENV} to build them",
            )
        return Binaries(directory)
    on_path = [shutil.which(c) for c in ALL_COMMANDS]
    if all(on_path):
        dirs = {Path(p).parent for p in on_path if p}
        if len(dirs) == 1:
            return Binaries(dirs.pop())
    cached = cached_bin_dir(version, etcd_version)
    if _has_all(cached):
        return Binaries(cached)
    if not build:
        raise ComponentError(
            "binaries",
            f"no control-plane binaries in {BIN_ENV}, PATH or {cached}",
            "run `python -m kubetasks.devcluster build` once (needs Go), "
            f"or point {BIN_ENV} at a directory holding {', '.join(ALL_COMMANDS)}",
        )
    build_binaries(cached, version=version, etcd_version=etcd_version, progress=progress)
    return Binaries(cached)


# --- building ---------------------------------------------------------------------------


def _go_version(go: str) -> tuple[int, int]:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if not match:
        raise ComponentError("go", f"cannot read the Go version from {out.stdout!r}", "install Go")
    return int(match.group(1)), int(match.group(2))


def _required_go(gomod_text: str) -> tuple[int, int]:
    match = re.search(r"^go (\d+)\.(\d+)", gomod_text, re.MULTILINE)
    return (int(match.group(1)), int(match.group(2))) if match else (1, 0)


def _staging_replaces(gomod_text: str, tag: str) -> list[str]:
    """Turn ``k8s.io/x => ./staging/src/k8s.io/x`` into ``replace k8s.io/x => k8s.io/x TAG``."""
    lines = []
    for module in re.findall(r"^\s*(\S+)\s*=>\s*\./\S+\s*$", gomod_text, re.MULTILINE):
        lines.append(f"replace {module} => {module} {tag}")
    return lines


def _run_go(
    args: list[str], cwd: Path, env: dict[str, str], what: str, progress: Progress
) -> None:
    log_path = cwd / "build.log"
    started = time.monotonic()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        last = started
        while proc.poll() is None:
            time.sleep(1)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                progress(f"still building {what} ({last - started:.0f} s)")
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        raise ComponentError(
            "binaries",
            f"`{' '.join(args)}` failed with exit code {proc.returncode} while building "
            f"{what}:\n" + "\n".join(tail),
            f"see {log_path}; check that the Go module proxy is reachable and that the disk "
            "has about 4 GB free",
        )
    progress(f"built {what} in {time.monotonic() - started:.0f} s")


def build_binaries(
    target: Path,
    *,
    version: str = KUBERNETES_VERSION,
    etcd_version: str = ETCD_VERSION,
    progress: Progress = _stderr_progress,
) -> None:
    """Build all five commands into ``target`` (about 6-10 minutes cold on 2 cores)."""
    go = _require_go(version)
    env = dict(os.environ, GOFLAGS="-mod=mod")
    have = _go_version(go)
    if have >= (1, 27):
        # Go 1.27's encoding/json v2 breaks /openapi/v2 in these releases (503).
        env["GOEXPERIMENT"] = "nojsonv2"
    work = Path(tempfile.mkdtemp(prefix="kubetasks-build-"))
    progress(f"building Kubernetes v{version} and etcd v{etcd_version} with {go} into {target}")
    progress("this takes several minutes the first time; later builds reuse Go's cache")

    kube_dir = _kubernetes_module(work, go, have, env, version)
    ldflags = _version_ldflags(version)
    staging = target.parent / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _run_go(
        [go, "build", "-ldflags", f"-s -w {ldflags}", "-o", str(staging) + "/",
         *(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS)],
        kube_dir, env, ", ".join(KUBE_COMMANDS), progress,
    )
    etcd_dir = _etcd_module(work, etcd_version)
    _run_go(
        [go, "build", "-ldflags", "-s -w", "-o", str(staging / "etcd"),
         "go.etcd.io/etcd/server/v3"],
        etcd_dir, env, "etcd", progress,
    )
    # Publish atomically so a half-built directory is never taken as complete.
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    shutil.rmtree(work, ignore_errors=True)
    progress(f"binaries ready in {target}")


def _require_go(version: str) -> str:
    """The ``go`` command on PATH."""
    go = shutil.which("go")
    if go is None:
        raise ComponentError(
            "go",
            "the Go toolchain is not on PATH, and no control-plane binaries were found",
            f"install Go (>= 1.26 for Kubernetes {version}) or set {BIN_ENV} to a directory "
            f"with {', '.join(ALL_COMMANDS)}",
        )
    return go


def _kubernetes_module(
    work: Path, go: str, have: tuple[int, int], env: dict[str, str], version: str
) -> Path:
    """The directory of a wrapper module that requires k8s.io/kubernetes at ``version`` and
    pins its staging modules to their published tags; checks that ``have`` (this machine's
    Go) is recent enough for that release."""
    kube_dir = work / "kubernetes"
    kube_dir.mkdir()
    download = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@v{version}"],
        capture_output=True, text=True, env=env, cwd=kube_dir,
    )
    if download.returncode != 0:
        raise ComponentError(
            "binaries",
            f"cannot download k8s.io/kubernetes@v{version}: {download.stdout}{download.stderr}",
            "check that the Go module proxy is reachable (GOPROXY)",
        )
    gomod_text = Path(json.loads(download.stdout)["GoMod"]).read_text()
    need = _required_go(gomod_text)
    if have < need:
        raise ComponentError(
            "go",
            f"Kubernetes v{version} needs Go >= {need[0]}.{need[1]}, this machine has "
            f"{have[0]}.{have[1]}",
            "install a newer Go, or set KUBETASKS_K8S_BIN to prebuilt binaries",
        )
    minor_tag = "v0." + version.split(".", 1)[1]
    (kube_dir / "go.mod").write_text(
        "module kubetasks.dev/k8sbuild\n\n"
        f"go {need[0]}.{need[1]}\n\n"
        f"require k8s.io/kubernetes v{version}\n\n"
        + "\n".join(_staging_replaces(gomod_text, minor_tag))
        + "\n"
    )
    return kube_dir


def _version_ldflags(version: str) -> str:
    """``-X`` flags that stamp ``version`` into the commands, as a release build does."""
    major, minor = version.split(".")[:2]
    return " ".join(
        f"-X {pkg}.{key}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in (
            ("gitVersion", f"v{version}"),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    )


def _etcd_module(work: Path, etcd_version: str) -> Path:
    """The directory of a wrapper module for etcd's server: it replaces its siblings with
    ../paths too, so they are pinned to the release."""
    etcd_dir = work / "etcd"
    etcd_dir.mkdir()
    siblings = ("api/v3", "client/pkg/v3", "client/v3", "pkg/v3")
    (etcd_dir / "go.mod").write_text(
        "module kubetasks.dev/etcdbuild\n\ngo 1.24.0\n\n"
        f"require go.etcd.io/etcd/server/v3 v{etcd_version}\n\n"
        + "".join(
            f"replace go.etcd.io/etcd/{s} => go.etcd.io/etcd/{s} v{etcd_version}\n"
            for s in siblings
        )
    )
    return etcd_dir
