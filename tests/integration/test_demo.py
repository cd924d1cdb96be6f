"""`erpops demo`: the README's main job runs end to end on real local servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_rehearses_backup_verify_restore_health_without_the_fixture() -> None:
    erpops = Path(sys.executable).with_name("erpops")
    proc = subprocess.run([erpops, "demo", "--no-fixture"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for step in ("backup", "verify", "restore", "health"):
        assert f"  {step} " in out
    assert "restored demo_restored (neutralized: True): {'res_partner': 200, 'mrp_production': 50}" in out
    assert "'CRIT'" not in out and "'UNKNOWN'" not in out
