"""Pure logic of finding and building the control-plane binaries, and their errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubetasks.devcluster import binaries
from kubetasks.devcluster.binaries import ALL_COMMANDS, _required_go, _staging_replaces
from kubetasks.devcluster.errors import ComponentError

GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/spf13/cobra v1.10.2
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_staging_modules_are_pinned_to_their_published_tag() -> None:
    assert _staging_replaces(GOMOD, "v0.36.3") == [
        "replace k8s.io/api => k8s.io/api v0.36.3",
        "replace k8s.io/client-go => k8s.io/client-go v0.36.3",
    ]


def test_required_go_version_is_read_from_go_mod() -> None:
    assert _required_go(GOMOD) == (1, 26)


def _fake_bin_dir(tmp_path: Path, commands: tuple[str, ...]) -> Path:
    for name in commands:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def test_env_var_directory_is_used_when_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(binaries.BIN_ENV, str(_fake_bin_dir(tmp_path, ALL_COMMANDS)))
    assert binaries.find_binaries(build=False).directory == tmp_path


def test_env_var_directory_missing_a_command_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(binaries.BIN_ENV, str(_fake_bin_dir(tmp_path, ALL_COMMANDS[:-1])))
    with pytest.raises(ComponentError) as info:
        binaries.find_binaries(build=False)
    assert "kubectl" in str(info.value)
    assert "what to do" in str(info.value)


def test_no_binaries_and_no_build_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(binaries.BIN_ENV, raising=False)
    monkeypatch.setenv(binaries.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ComponentError) as info:
        binaries.find_binaries(build=False)
    assert "python -m kubetasks.devcluster build" in str(info.value)


def test_missing_go_toolchain_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(binaries.BIN_ENV, raising=False)
    monkeypatch.setenv(binaries.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ComponentError) as info:
        binaries.find_binaries(build=True, progress=lambda _: None)
    assert info.value.component == "go"
    assert "install Go" in info.value.remedy
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("etcd"))


def test_cache_directory_is_keyed_by_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(binaries.CACHE_ENV, str(tmp_path))
    assert binaries.cached_bin_dir("1.36.3", "3.6.8") != binaries.cached_bin_dir("1.37.2", "3.6.8")
    assert str(binaries.cached_bin_dir("1.36.3", "3.6.8")).startswith(str(tmp_path))
    assert os.path.basename(os.path.dirname(binaries.cached_bin_dir())).startswith("k8s-v")
