"""Where the tests find what they read: the repository, the chart, and the shared fixtures beside the repo.

`../shared/` sits beside the repository and is never copied into it: `fixtures/odoo17-mfg.zip` (a real
Odoo 17 database backup, see its README) and `crds/cloudnative-pg/` (the CloudNativePG CRDs). This
module is the one place that spells those paths; tests get them through the `odoo_fixture` and
`cnpg_crds` fixtures (tests/conftest.py) or `require()`.

A missing shared file skips the tests that need it, with what is missing, where it is expected and
how to provide it. In CI (`CI=true`) the same message fails them instead: CI must run everything,
and a skip there would only hide a broken checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ODOO_CHART = REPO / "helm" / "odoo"
SHARED = REPO.parent / "shared"
ODOO_FIXTURE = SHARED / "fixtures" / "odoo17-mfg.zip"
CRDS_README = SHARED / "crds" / "README.md"


def crds_dir() -> Path:
    """The CloudNativePG CRDs: $ERPOPS_CRDS_DIR, else ../shared/crds/cloudnative-pg (as the CRD schema code does)."""
    env = os.environ.get("ERPOPS_CRDS_DIR")
    return Path(env) if env else SHARED / "crds" / "cloudnative-pg"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _present(path: Path) -> bool:
    return any(path.glob("*.yaml")) if path.is_dir() else path.is_file()


def missing_message(path: Path, what: str, hint: str = "") -> str:
    return (f"{what} not found at {path}. The shared folder {SHARED} sits beside the repository and is "
            f"never copied into it: put it there, as the other checkouts of this project have it{hint}. "
            "In CI (CI=true) a missing shared fixture fails the run instead of skipping its tests.")


def require(path: Path, what: str, hint: str = "") -> Path:
    """`path`, if it is there; else skip the test, or fail it in CI, saying what is missing and how to get it."""
    if not _present(path):
        if in_ci():
            pytest.fail(missing_message(path, what, hint), pytrace=False)
        pytest.skip(missing_message(path, what, hint))
    return path


def optional(path: Path, what: str, hint: str = "") -> Path | None:
    """`path` if it is there; None outside CI (the caller has a fallback); in CI a failure, as `require`."""
    if _present(path):
        return path
    if in_ci():
        pytest.fail(missing_message(path, what, hint), pytrace=False)
    return None


ODOO_FIXTURE_WHAT = "The Odoo 17 backup fixture (odoo17-mfg.zip)"
CRDS_WHAT = "The CloudNativePG CRDs (Cluster, Pooler, ScheduledBackup YAML)"
CRDS_HINT = "; or point ERPOPS_CRDS_DIR at a directory of the CRD YAML files"
