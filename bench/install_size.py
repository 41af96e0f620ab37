"""What an application installs and imports: ``pip install kubetasks`` (no extras) of this
checkout against the same of an earlier commit (the baseline), each into a fresh virtualenv,
side by side in one run.

    .venv/bin/python bench/install_size.py --before 65beb4a --rounds 7

For each side: the packages installed (pip, setuptools and wheel not counted), the MB of the
venv's site-packages, and ``import kubetasks`` time from ``python -X importtime`` (the
cumulative figure of the ``kubetasks`` line, median of ``--rounds`` cold-cache-free runs after
one warm-up, so that .pyc compilation is not counted). Writes ``bench/results/install.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "install.json"
NOT_COUNTED = {"pip", "setuptools", "wheel"}


def source_of(rev: str | None, into: Path) -> Path:
    """The tree to install: this checkout's files, or ``git archive`` of ``rev``."""
    into.mkdir(parents=True)
    if rev is None:
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, into / name)
        for name in ("sdk", "operator"):
            shutil.copytree(REPO / name, into / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        return into
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def site_packages(env_dir: Path) -> Path:
    found = list((env_dir / "lib").glob("python3*/site-packages"))
    assert len(found) == 1, found
    return found[0]


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def import_ms(python: Path, rounds: int) -> float:
    samples = []
    for i in range(rounds + 1):
        done = subprocess.run([str(python), "-X", "importtime", "-c", "import kubetasks"],
                              capture_output=True, text=True, check=True)
        line = [ln for ln in done.stderr.splitlines() if re.search(r"\|\s+kubetasks$", ln)]
        cumulative_us = int(line[-1].split("|")[1])
        if i:  # the first run compiles .pyc files
            samples.append(cumulative_us / 1000)
    return statistics.median(samples)


def measure(label: str, rev: str | None, work: Path, rounds: int) -> dict[str, Any]:
    source = source_of(rev, work / f"{label}-src")
    env_dir = work / f"{label}-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(source)], check=True)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json",
                             "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True)
    packages = sorted(p["name"] for p in json.loads(listed.stdout)
                      if p["name"].lower() not in NOT_COUNTED)
    site = site_packages(env_dir)
    for tool in NOT_COUNTED:  # not counted in the size either
        for path in site.glob(f"{tool}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return {"side": label, "rev": rev or "working tree", "packages": len(packages),
            "names": packages, "site_packages_mb": round(size_mb(site), 1),
            "import_ms": round(import_ms(python, rounds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="65beb4a",
                        help="the baseline commit (default: the last one before the light "
                             "install)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubetasks-install-") as tmp:
        work = Path(tmp)
        rows = [measure("before", args.before, work, args.rounds),
                measure("after", None, work, args.rounds)]
    print(f"{'side':<8}{'rev':<16}{'packages':>10}{'MB':>10}{'import ms':>12}")
    for row in rows:
        print(f"{row['side']:<8}{row['rev']:<16}{row['packages']:>10}"
              f"{row['site_packages_mb']:>10}{row['import_ms']:>12}")
    gone = sorted(set(rows[0]["names"]) - set(rows[1]["names"]))
    print(f"not installed any more ({len(gone)}): {', '.join(gone)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "rounds": args.rounds, "sides": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
