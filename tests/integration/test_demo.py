"""`erpops demo`: the README's main job runs end to end on real local servers."""

from __future__ import annotations

import json
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
    for step in ("backup", "verify", "restore", "health", "rehearse"):
        assert f"  {step} " in out
    assert "restore   demo_restored, neutralized yes: res_partner 200, mrp_production 50" in out
    assert "rehearsal PASSED: RPO" in out and "(met), RTO" in out
    assert "{" not in out  # a summary for people, not Python dict reprs
    marker = "The rehearsal report: "
    [report] = [line.split(marker)[1] for line in out.splitlines() if marker in line]
    assert Path(report).is_file() and "RTO" in Path(report).read_text()
    assert "Next: " in out
    # latency-graded checks may WARN or CRIT on a loaded machine; nothing may be UNKNOWN or CRIT otherwise
    bad = [line.split()[1] for line in out.splitlines() if line.strip().startswith(("CRIT ", "UNKNOWN "))]
    assert set(bad) <= {"pg.connect:", "redis.ping:"}, out


def test_demo_json_is_one_envelope_on_stdout_with_the_summary_on_stderr() -> None:
    erpops = Path(sys.executable).with_name("erpops")
    proc = subprocess.run([erpops, "demo", "--no-fixture", "--json"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)  # nothing else on stdout
    assert (doc["schema_version"], doc["command"], doc["ok"]) == (1, "erpops demo", True)
    assert doc["set_id"] == doc["backup"]["set_id"] and doc["restore"]["neutralized"]
    assert doc["restore"]["row_counts"]["res_partner"] == 200
    assert doc["rehearsal"]["status"] == "passed" and doc["rehearsal"]["rpo"]["met"]
    assert sum(doc["health"]["states"].values()) == len(doc["health"]["checks"]) > 0
    assert "rehearsal PASSED: RPO" in proc.stderr and "Next: " in proc.stderr
