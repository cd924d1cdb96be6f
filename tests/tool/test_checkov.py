"""checkov scans every object each stack would create and reports no failed check.

checkov lives in its own venv (it pins packaging<24, pulumi needs >=26): `./run test` installs it
and exports ERPOPS_CHECKOV. It runs fully offline (no update check, no mapping download).
The only accepted failures are listed, with their reasons, in tests/checkov-skips.yaml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SKIPS = yaml.safe_load((ROOT / "tests" / "checkov-skips.yaml").read_text())["skips"]
STACKS = ("dev", "staging", "prod")


def checkov_bin() -> str:
    path = os.environ.get("ERPOPS_CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(path).is_file():
        pytest.fail(f"checkov not found at {path}: run ./run test, which installs it in .venv-checkov")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    erpops = Path(sys.executable).with_name("erpops")
    proc = subprocess.run([erpops, "--root", ROOT, "render", "--out", out], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def scan(directory: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    proc = subprocess.run(
        [checkov_bin(), "-d", str(directory), "--framework", "kubernetes", "--skip-download", "--compact",
         "--quiet", "-o", "json"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    return [f for r in reports for f in r.get("results", {}).get("failed_checks", [])]


@pytest.fixture(scope="module")
def failures_by_stack(rendered: Path) -> dict[str, list[dict[str, Any]]]:
    return {stack: scan(rendered / stack) for stack in STACKS}


def accepted(failure: dict[str, Any]) -> bool:
    for skip in SKIPS:
        if skip["id"] == failure["check_id"] and re.search(skip.get("resource", ""), failure["resource"]):
            return True
    return False


@pytest.mark.parametrize("stack", STACKS)
def test_checkov_finds_nothing_beyond_the_listed_skips(
    stack: str, failures_by_stack: dict[str, list[dict[str, Any]]]
) -> None:
    failures = failures_by_stack[stack]
    unexpected = [f"{f['check_id']} {f['check_name']}: {f['resource']}" for f in failures if not accepted(f)]
    assert unexpected == [], "\n".join(unexpected)


def test_every_skip_has_a_reason_and_is_still_needed(failures_by_stack: dict[str, list[dict[str, Any]]]) -> None:
    used = {f["check_id"] for failures in failures_by_stack.values() for f in failures}
    for skip in SKIPS:
        assert len(skip.get("reason", "").split()) >= 8, f"{skip['id']}: give the reason for skipping"
        assert skip["id"] in used, f"{skip['id']} no longer fails anywhere: remove it from checkov-skips.yaml"


def test_scan_is_not_blind(tmp_path: Path) -> None:
    """A privileged pod must fail: proves checkov really scans what we hand it."""
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]},
    }))
    ids = {f["check_id"] for f in scan(tmp_path)}
    assert "CKV_K8S_16" in ids  # "Container should not be privileged"
