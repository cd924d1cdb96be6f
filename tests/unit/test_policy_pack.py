"""The policy pack's files, read as files: a Python pack pinned to the pulumi-policy the venv has.

The rules themselves run on every stack's resources in tests/tool/test_policy.py (pulumi_policy).
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_pack_is_a_python_pack_of_this_repository() -> None:
    meta = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python" and meta["version"]
    assert "pulumi-policy==1.21.0" in (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in (ROOT / "requirements.lock").read_text().splitlines()
