"""The Helm chart ships the same CRDs as crds/, both generated from the models."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetasks.api import crdgen

REPO = Path(__file__).resolve().parents[3]
TOP_LEVEL = REPO / "crds"
IN_CHART = REPO / "charts" / "kubetasks" / "crds"


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in TOP_LEVEL.glob("*")}
    chart = {p.name: p.read_bytes() for p in IN_CHART.glob("*")}
    assert sorted(chart) == sorted(top), (
        f"charts/kubetasks/crds/ and crds/ hold different files: {crdgen.REGENERATE_HINT}")
    differing = [name for name in top if top[name] != chart[name]]
    assert not differing, (
        f"charts/kubetasks/crds/ differs from crds/ in {differing}: {crdgen.REGENERATE_HINT}")


def test_chart_crds_match_the_models() -> None:
    problems = crdgen.drift(IN_CHART)
    assert not problems, (
        f"charts/kubetasks/crds/ drifted from the models: {crdgen.REGENERATE_HINT}.\n"
        + "".join(problems))


def test_the_regenerate_hint_names_both_copies() -> None:
    assert crdgen.CRD_DIRS == ("crds/", "charts/kubetasks/crds/")
    assert "--write crds/ charts/kubetasks/crds/" in crdgen.REGENERATE_HINT


def test_write_and_check_take_several_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "crds", tmp_path / "chart" / "crds"
    assert crdgen.main(["--write", str(first), str(second)]) == 0
    assert sorted(p.name for p in second.glob("*.yaml")) == sorted(crdgen.rendered_files())
    assert crdgen.main(["--check", str(first), str(second)]) == 0

    drifted = second / "tasks.kubetasks.dev.yaml"
    drifted.write_text(drifted.read_text() + "# edited by hand\n")
    capsys.readouterr()
    assert crdgen.main(["--check", str(first), str(second)]) == 1
    out, err = capsys.readouterr()
    assert str(drifted) in out
    assert str(first / "tasks.kubetasks.dev.yaml") not in out
    assert "--write crds/ charts/kubetasks/crds/" in err
