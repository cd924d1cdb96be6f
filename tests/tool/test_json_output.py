"""Every `--json` output carries the envelope of docs/json-output.md: schema_version, command, ok, and on
failure error, error_type, exit_code (and problems), on stdout, with the CLI's exit code."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from erpops.jsonout import SCHEMA_VERSION
from tests.unit.test_spec import ROOT, put, raw_spec, write_project

ERPOPS = str(Path(sys.executable).with_name("erpops"))


def cli(*args: str, root: Path | str = ROOT) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([ERPOPS, "--root", str(root), *args], capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": str(Path(sys.executable).parent), "HOME": "/tmp",
                                            "AWS_EC2_METADATA_DISABLED": "true"})
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture
def bad_root(tmp_path: Path) -> Path:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "odoo.version", "15.0")
    return Path(write_project(tmp_path, "dev", raw))


@pytest.mark.parametrize("args", [["spec", "validate", "--json"], ["spec", "validate", "--stack", "prod", "--json"],
                                  ["size", "--stack", "prod", "--json"], ["size", "--json"]],
                         ids=["validate-all", "validate-prod", "size-prod", "size-all"])
def test_success_carries_the_envelope(args: list[str]) -> None:
    code, doc, _ = cli(*args)
    assert code == 0
    assert (doc["schema_version"], doc["ok"]) == (SCHEMA_VERSION, True)
    assert doc["command"] == "erpops " + " ".join(a for a in args if not a.startswith("-") and a not in ("prod",))
    assert doc["stacks"] and all("stack" in s for s in doc["stacks"])


def test_size_json_keeps_every_setting_with_its_formula() -> None:
    _, doc, _ = cli("size", "--stack", "prod", "--json")
    [prod] = doc["stacks"]
    assert prod["stack"] == "prod" and any(r["name"] == "max_connections" for r in prod["connections"])


@pytest.mark.parametrize("args", [["spec", "validate", "--stack", "dev", "--json"],
                                  ["size", "--stack", "dev", "--json"],
                                  ["render", "--stack", "dev", "--out", "OUT", "--json"]],
                         ids=["validate", "size", "render"])
def test_a_bad_spec_is_an_error_envelope_with_every_problem(args: list[str], bad_root: Path, tmp_path: Path) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    code, doc, stderr = cli(*args, root=bad_root)
    assert code == 2 and doc["exit_code"] == 2
    assert (doc["schema_version"], doc["ok"], doc["error_type"]) == (SCHEMA_VERSION, False, "SpecError")
    assert any(p["key"] == "odoo.version" for p in doc["problems"]), doc
    assert "odoo.version" in stderr  # people still read the reason on stderr


def test_backup_commands_carry_the_envelope(tmp_path: Path) -> None:
    target = f"file://{tmp_path / 'backups'}"
    (tmp_path / "backups").mkdir()
    code, doc, _ = cli("list", "--target", target, "--json")
    assert code == 0 and (doc["schema_version"], doc["command"], doc["ok"]) == (SCHEMA_VERSION, "erpops list", True)
    assert doc["sets"] == []
    code, doc, _ = cli("verify", "no-such-set", "--target", target, "--json")
    assert code == doc["exit_code"] != 0 and doc["ok"] is False and doc["command"] == "erpops verify"


def test_health_json_carries_the_envelope() -> None:
    done = subprocess.run([ERPOPS, "--root", str(ROOT), "health", "--no-host", "--redis-url", "redis://127.0.0.1:1/0",
                           "--json"], capture_output=True, text=True, timeout=120, check=False)
    doc = json.loads(done.stdout)
    assert (doc["schema_version"], doc["command"], doc["ok"]) == (SCHEMA_VERSION, "erpops health", False)
    assert done.returncode == 3 and doc["state"] == "UNKNOWN"
