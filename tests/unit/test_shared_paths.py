"""tests/paths.py: a missing ../shared fixture is a skip that says what, where and how; in CI, a failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import paths


def test_the_shared_folder_sits_beside_the_repository() -> None:
    assert paths.REPO.parent / "shared" == paths.SHARED
    assert paths.ODOO_FIXTURE == paths.SHARED / "fixtures" / "odoo17-mfg.zip"
    assert paths.ODOO_FIXTURE.parent.parent == paths.SHARED and not paths.ODOO_FIXTURE.is_relative_to(paths.REPO)


def test_no_test_spells_the_shared_path_itself() -> None:
    """One home: a test that builds `.../"shared"/...` on its own would skip where the others fail."""
    spelled = [str(p.relative_to(paths.REPO)) for p in (paths.REPO / "tests").rglob("*.py")
               if p.name not in ("paths.py", Path(__file__).name)
               and re.search(r"""["'](shared|odoo17-mfg\.zip)["']""", p.read_text())]
    assert spelled == [], f"use tests/paths.py (odoo_fixture, cnpg_crds, needs_shared) in {spelled}"


@pytest.mark.parametrize("ci", ["", "false"])
def test_outside_ci_a_missing_fixture_is_a_skip_naming_what_where_and_how(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", ci)
    missing = tmp_path / "fixtures" / "odoo17-mfg.zip"
    with pytest.raises(pytest.skip.Exception) as skipped:
        paths.require(missing, paths.ODOO_FIXTURE_WHAT)
    message = str(skipped.value)
    assert f"(odoo17-mfg.zip) not found at {missing}" in message
    assert f"shared folder {paths.SHARED} sits beside the repository" in message and "put it there" in message


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_in_ci_a_missing_fixture_is_a_failure(ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"not found at .*fails the run instead of skipping"):
        paths.require(tmp_path / "odoo17-mfg.zip", paths.ODOO_FIXTURE_WHAT)
    with pytest.raises(pytest.fail.Exception, match="ERPOPS_CRDS_DIR"):
        paths.require(tmp_path, paths.CRDS_WHAT, paths.CRDS_HINT)  # a directory without any CRD YAML is missing too
    with pytest.raises(pytest.fail.Exception):
        paths.optional(tmp_path / "odoo17-mfg.zip", paths.ODOO_FIXTURE_WHAT)


def test_a_present_fixture_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    zipped = tmp_path / "odoo17-mfg.zip"
    zipped.write_bytes(b"PK")
    (tmp_path / "cluster.yaml").write_text("kind: CustomResourceDefinition\n")
    assert paths.require(zipped, paths.ODOO_FIXTURE_WHAT) == zipped
    assert paths.require(tmp_path, paths.CRDS_WHAT) == tmp_path
    monkeypatch.delenv("CI")
    assert paths.optional(tmp_path / "absent.zip", paths.ODOO_FIXTURE_WHAT) is None


def test_the_crds_dir_follows_erpops_crds_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERPOPS_CRDS_DIR", raising=False)
    assert paths.crds_dir() == paths.SHARED / "crds" / "cloudnative-pg"
    monkeypatch.setenv("ERPOPS_CRDS_DIR", "/srv/crds")
    assert paths.crds_dir() == Path("/srv/crds")
