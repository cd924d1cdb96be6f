"""The `erpops` console script as an operator runs it: a child process, its exit code and streams.

The validator's rules themselves are in tests/unit/test_spec.py (in process, no child).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

from tests.unit.test_spec import ROOT, put, raw_spec, write_project


def test_console_script_exit_code_and_size_json(tmp_path: Path) -> None:
    erpops = Path(sys.executable).with_name("erpops")
    ok = subprocess.run([erpops, "--root", ROOT, "size", "--stack", "prod", "--json"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert '"max_connections"' in ok.stdout and '"formula"' in ok.stdout
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "odoo.version", "15.0")
    root = write_project(tmp_path, "dev", raw)
    bad = subprocess.run([erpops, "--root", root, "size", "--stack", "dev"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "odoo.version" in bad.stderr and bad.stdout == ""
