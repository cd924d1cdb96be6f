"""The project's own packaging metadata builds without setuptools deprecation warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_license_is_an_spdx_string_and_setuptools_new_enough() -> None:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(doc["project"]["license"], str)  # a TOML table is deprecated since setuptools 77
    assert doc["build-system"]["requires"] == ["setuptools>=77"]


def test_building_the_package_prints_no_deprecation_warning(tmp_path: Path) -> None:
    """What `./run` runs (`pip install -e .`), with pip's build isolation: the current setuptools."""
    # a copy of what the build reads: pip builds in the source tree (build/, *.egg-info), not in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("erpops", "healthchecks", "loadtests", "infra"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-v",
                           "--wheel-dir", str(tmp_path / "wheels"), str(src)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "deprecat" not in (done.stdout + done.stderr).lower(), done.stdout[-3000:]
