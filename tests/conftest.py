"""Shared pytest setup. The real-service fixtures (pg, redis_server, s3) live in tests/fixtures_local.py;
the paths of what the tests read (and the ../shared fixtures' skip-or-fail rule) in tests/paths.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import paths

pytest_plugins = ["tests.fixtures_local"]


@pytest.fixture(scope="session")
def odoo_fixture() -> Path:
    """../shared/fixtures/odoo17-mfg.zip, a real Odoo 17 backup; absent: a skip, or in CI a failure."""
    return paths.require(paths.ODOO_FIXTURE, paths.ODOO_FIXTURE_WHAT)


@pytest.fixture(scope="session")
def cnpg_crds() -> Path:
    """The CloudNativePG CRDs directory ($ERPOPS_CRDS_DIR or ../shared/crds/cloudnative-pg); absent: skip, CI: fail."""
    return paths.require(paths.crds_dir(), paths.CRDS_WHAT, paths.CRDS_HINT)


SHARED = {  # the names @pytest.mark.needs_shared takes: where each is expected, and what it is
    "odoo_fixture": lambda: (paths.ODOO_FIXTURE, paths.ODOO_FIXTURE_WHAT, ""),
    "crds": lambda: (paths.crds_dir(), paths.CRDS_WHAT, paths.CRDS_HINT),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.needs_shared("crds")`: the fixtures' rule for a test or a single parameter (where
    `usefixtures` cannot go): skip when the shared file is absent, fail in CI."""
    for mark in item.iter_markers("needs_shared"):
        for name in mark.args:
            if name not in SHARED:
                pytest.fail(f"needs_shared({name!r}): not one of {sorted(SHARED)}", pytrace=False)
            paths.require(*SHARED[name]())
